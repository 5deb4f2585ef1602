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
  void will(const std::string&, WillRecord&&) override {}
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

// A store that keeps nothing: the tests' stores override what they watch.
class NothingStore : public Store {
 public:
  Status write(const WriteBatch&, bool) override { return {}; }
  Status load(LoadVisitor&) override { return {}; }
  Status scan(Space, std::string_view, std::string_view,
              const std::function<bool(std::string_view, std::string_view)>&) override {
    return {};
  }
  Status scan_back(Space, std::string_view, std::string_view,
                   const std::function<bool(std::string_view, std::string_view)>&) override {
    return {};
  }
  Status sync() override { return {}; }
};

// A store whose writes or syncs fail, as a full or failing disk makes them.
class FailingStore final : public NothingStore {
 public:
  bool fail_writes = false;
  bool fail_syncs = false;
  Status write(const WriteBatch&, bool) override {
    return fail_writes ? Status::error("disk full") : Status{};
  }
  Status sync() override {
    return fail_syncs ? Status::error("fsync: input/output error") : Status{};
  }
};

// [Issue 11, item 6] A failed write reaches whoever waits for it, and every
// failure (a sync under `batch` too, which nobody waits for) is counted and
// turns the journal unhealthy.
TEST_P(CommitterTest, AFailedWriteOrSyncIsReportedCountedAndUnhealthy) {
  FailingStore store;
  store.fail_writes = true;  // syncs succeed: the failure seen is the write's
  std::promise<Status> result;
  {
    Committer committer(store, GetParam(), std::chrono::milliseconds(1));
    EXPECT_TRUE(committer.health().healthy);
    committer.submit(retain(1), [&](const Status& status) { result.set_value(status); });
    auto future = result.get_future();
    ASSERT_EQ(future.wait_for(std::chrono::seconds(10)), std::future_status::ready);
    EXPECT_FALSE(future.get().ok);
    const JournalHealth health = committer.health();
    EXPECT_FALSE(health.healthy);
    EXPECT_GE(health.failures, 1u);
    EXPECT_EQ(health.last_error, "disk full");
  }
}

TEST(Committer, AFailedPeriodicSyncUnderBatchIsCounted) {
  FailingStore store;
  store.fail_syncs = true;
  Committer committer(store, Durability::kBatch, std::chrono::milliseconds(1));
  std::promise<void> written;
  committer.submit(retain(1), [&](const Status& status) {
    EXPECT_TRUE(status.ok);  // the write itself went fine: acknowledged
    written.set_value();
  });
  written.get_future().wait();
  // The sync comes an interval later; nothing waits for it, so only the
  // journal's health can tell.
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (committer.health().healthy && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  EXPECT_FALSE(committer.health().healthy);
  EXPECT_EQ(committer.health().last_error, "fsync: input/output error");
}

// A store that records which writes asked for an fsync.
class SyncRecordingStore final : public NothingStore {
 public:
  std::mutex mutex;
  std::vector<bool> synced_writes;
  int syncs = 0;
  Status write(const WriteBatch&, bool sync) override {
    std::lock_guard lock(mutex);
    synced_writes.push_back(sync);
    return {};
  }
  Status sync() override {
    std::lock_guard lock(mutex);
    ++syncs;
    return {};
  }
};

// Under sync, only writes that someone waits for are fsynced; one that
// nobody waits for is covered by the next fsync, or by the one at a clean stop.
TEST(Committer, UnderSyncOnlyAwaitedWritesAreFsynced) {
  SyncRecordingStore store;
  {
    Committer committer(store, Durability::kSync, std::chrono::milliseconds(10));
    std::promise<void> first_written;
    committer.submit(WriteBatch(), [&](const Status&) { first_written.set_value(); });
    first_written.get_future().wait();
    committer.submit(WriteBatch(), nullptr);  // a deletion nobody waits for
    std::promise<void> last_written;
    committer.submit(WriteBatch(), [&](const Status&) { last_written.set_value(); });
    last_written.get_future().wait();
    std::lock_guard lock(store.mutex);
    ASSERT_FALSE(store.synced_writes.empty());
    EXPECT_TRUE(store.synced_writes.front());
    EXPECT_TRUE(store.synced_writes.back());  // awaited: synced (and with it what came before)
    EXPECT_EQ(store.syncs, 0);
  }
  SyncRecordingStore idle;
  {
    Committer committer(idle, Durability::kSync, std::chrono::milliseconds(10));
    committer.submit(WriteBatch(), nullptr);
  }  // the stop syncs what no fsync covered
  EXPECT_EQ(idle.synced_writes, std::vector<bool>{false});
  EXPECT_EQ(idle.syncs, 1);
}

INSTANTIATE_TEST_SUITE_P(Policies, CommitterTest,
                         ::testing::Values(Durability::kSync, Durability::kBatch,
                                           Durability::kNone));

}  // namespace
}  // namespace sluice::store
