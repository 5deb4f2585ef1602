// Group commit: every batch is written and called back, concurrent batches
// share writes, and what was handed in before destruction is written.
#include "store/committer.hpp"

#include <gtest/gtest.h>

#include <atomic>
#include <future>

namespace sluice::store {
namespace {

struct CountingLoad : LoadVisitor {
  std::size_t retained_count = 0;
  void session(SessionRecord&&) override {}
  void subscription(SubscriptionRecord&&) override {}
  void outbound(OutboundRecord&&) override {}
  void inbound(const std::string&, std::uint16_t) override {}
  void message(std::uint64_t, MessageRecord&&) override {}
  void retained(MessageRecord&&) override { ++retained_count; }
};

WriteBatch retain(int i) {
  MessageRecord m;
  m.topic = "t/" + std::to_string(i);
  m.payload = {1};
  return std::move(WriteBatch().add(WriteBatch::PutRetained{m}));
}

class CommitterTest : public ::testing::TestWithParam<Durability> {};

TEST_P(CommitterTest, EveryBatchIsWrittenBeforeItsCallback) {
  auto store = make_memory_store();
  constexpr int kBatches = 2000;
  std::atomic<int> done{0};
  std::promise<void> all_done;
  {
    Committer committer(*store, GetParam(), std::chrono::milliseconds(5));
    std::vector<std::thread> threads;
    for (int t = 0; t < 4; ++t) {
      threads.emplace_back([&, t] {
        for (int i = 0; i < kBatches / 4; ++i) {
          committer.submit(retain(t * kBatches + i), [&](const Status& status) {
            EXPECT_TRUE(status.ok);
            if (++done == kBatches) all_done.set_value();
          });
        }
      });
    }
    for (auto& thread : threads)
      thread.join();
    ASSERT_EQ(all_done.get_future().wait_for(std::chrono::seconds(30)), std::future_status::ready);
    // Group commit: far fewer store writes than batches under concurrency is
    // likely but not certain, so only the upper bound is asserted.
    EXPECT_LE(committer.writes(), static_cast<std::uint64_t>(kBatches));
  }
  CountingLoad loaded;
  ASSERT_TRUE(store->load(loaded).ok);
  EXPECT_EQ(loaded.retained_count, static_cast<std::size_t>(kBatches));
}

TEST_P(CommitterTest, DestructionWritesWhatWasHandedIn) {
  auto store = make_memory_store();
  int called = 0;
  {
    Committer committer(*store, GetParam(), std::chrono::milliseconds(5));
    for (int i = 0; i < 100; ++i)
      committer.submit(retain(i), [&](const Status&) { ++called; });
  }
  EXPECT_EQ(called, 100);
  CountingLoad loaded;
  ASSERT_TRUE(store->load(loaded).ok);
  EXPECT_EQ(loaded.retained_count, 100u);
}

INSTANTIATE_TEST_SUITE_P(Policies, CommitterTest,
                         ::testing::Values(Durability::kSync, Durability::kBatch,
                                           Durability::kNone));

}  // namespace
}  // namespace sluice::store
