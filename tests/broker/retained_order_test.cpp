// Two workers retaining on one topic at once (issue 11): the store ends with
// the message memory ends with. Each change is handed to the store while the
// retained store is locked for it, so the two orders cannot differ.
#include <gtest/gtest.h>

#include <atomic>
#include <future>
#include <thread>

#include "broker/broker.hpp"
#include "broker/shard.hpp"
#include "store/committer.hpp"
#include "store/store.hpp"
#include "test_client.hpp"

namespace sluice::broker {
namespace {

using testing_support::Client;

struct Retained final : store::LoadVisitor {
  std::string payload;
  void session(store::SessionRecord&&) override {}
  void will(const std::string&, store::WillRecord&&) override {}
  void subscription(store::SubscriptionRecord&&) override {}
  void outbound(store::OutboundRecord&&) override {}
  void inbound(const std::string&, std::uint16_t) override {}
  void message(std::uint64_t, store::MessageRecord&&) override {}
  void retained(store::MessageRecord&& r) override {
    payload.assign(r.payload.begin(), r.payload.end());
  }
};

TEST(RetainedOrder, TwoWorkersOnOneTopicLeaveMemoryAndStoreAlike) {
  auto store = store::make_memory_store();
  Broker broker(config::Config{}, 2, "test");
  store::Committer committer(*store, store::Durability::kNone, std::chrono::milliseconds(10));
  broker.set_journal(&committer);
  // One client on each shard, each shard driven by a thread of its own.
  Client first(broker.shard(0), "first");
  Client second(broker.shard(1), "second");
  first.connect();
  second.connect();
  for (int round = 0; round < 200; ++round) {
    // Both publish until the first has made its 100: their last changes
    // overlap, which is when the two orders could differ.
    std::atomic<bool> go{false}, stop{false};
    std::thread other([&] {
      while (!go.load()) {
      }
      for (int i = 0; !stop.load(); ++i) {
        second.publish("r/t", "second-" + std::to_string(round) + "-" + std::to_string(i),
                       mqtt::QoS::kAtMostOnce, 0, false, /*retain=*/true);
      }
    });
    go = true;
    for (int i = 0; i < 100; ++i) {
      first.publish("r/t", "first-" + std::to_string(round) + "-" + std::to_string(i),
                    mqtt::QoS::kAtMostOnce, 0, false, /*retain=*/true);
    }
    stop = true;
    other.join();
    std::promise<void> written;  // everything handed in before it is in the store
    committer.submit(store::WriteBatch(), [&](const store::Status&) { written.set_value(); });
    written.get_future().wait();
    Retained loaded;
    ASSERT_TRUE(store->load(loaded).ok);
    std::string in_memory;
    broker.retained().for_each_match("r/t", Clock::now(), [&](const MessagePtr& message) {
      in_memory.assign(message->payload.begin(), message->payload.end());
    });
    ASSERT_EQ(loaded.payload, in_memory) << "round " << round;
  }
}

}  // namespace
}  // namespace sluice::broker
