// The queue service on a broker whose shards run on the test's thread
// (LoopbackBroker), in memory: what an integration test cannot reach, such
// as the redrive the admin API will call.
#include "queue/queue_service.hpp"

#include <gtest/gtest.h>

#include <map>
#include <memory>
#include <random>

#include "test_client.hpp"

namespace sluice::queue {
namespace {

using broker::testing_support::Client;
using broker::testing_support::LoopbackBroker;
using mqtt::QoS;
using mqtt::ReasonCode;

config::Config queue_config() {
  config::Config config;
  config::QueueConfig jobs{"jobs", config::QueueKind::kQueue, {}, {}, {}};
  jobs.options.max_deliveries = 1;
  jobs.options.redelivery_backoff_ms = {0};
  config.queues.push_back(jobs);
  return config;
}

class QueueServiceTest : public ::testing::Test {
 protected:
  QueueServiceTest() : loop(queue_config(), 2), service(loop.broker, nullptr) {
    EXPECT_TRUE(service.recover().ok);
    loop.broker.set_queues(&service);
  }

  // A loop turn of every shard: what the service deferred to its poll.
  void turn() {
    for (int i = 0; i < 3; ++i) {
      for (std::uint32_t s = 0; s < loop.broker.shard_count(); ++s)
        loop.broker.shard(s).poll_queues(broker::Clock::now());
      loop.settle();
    }
  }

  std::uint64_t depth(const std::string& name) {
    for (const QueueStats& stats : service.stats())
      if (stats.name == name) return stats.depth;
    return ~0ull;
  }

  LoopbackBroker loop;
  QueueService service;
};

TEST_F(QueueServiceTest, RedriveMovesDeadLettersBackWithTheirCountReset) {
  Client consumer(loop, "consumer");
  consumer.connect();
  consumer.subscribe("$queue/jobs/#", QoS::kAtLeastOnce);
  Client publisher(loop, "publisher");
  publisher.connect();
  publisher.publish("$queue/jobs/a", "payload", QoS::kAtLeastOnce);
  turn();
  ASSERT_EQ(consumer.link.publishes.size(), 1u);
  const auto first = consumer.link.publishes[0];
  EXPECT_EQ(first.topic, "$queue/jobs/a");
  consumer.packet(mqtt::Puback{first.packet_id, ReasonCode::kUnspecifiedError, {}});
  turn();  // max_deliveries 1: to jobs.dlq
  EXPECT_EQ(consumer.link.publishes.size(), 1u);
  EXPECT_EQ(depth("jobs.dlq"), 1u);

  EXPECT_FALSE(service.redrive(loop.broker.shard(0), "no-such-queue", 10));
  EXPECT_EQ(service.redrive(loop.broker.shard(0), "jobs.dlq", 10), 1u);
  turn();
  ASSERT_EQ(consumer.link.publishes.size(), 2u);  // back, and delivered again
  const auto again = consumer.link.publishes[1];
  EXPECT_EQ(again.topic, "$queue/jobs/a");
  EXPECT_EQ(again.payload, "payload");
  EXPECT_FALSE(again.dup);
  consumer.packet(mqtt::Puback{again.packet_id, ReasonCode::kSuccess, {}});
  turn();
  // Nothing is left to move: the dead letter went with the redrive.
  EXPECT_EQ(service.redrive(loop.broker.shard(0), "jobs.dlq", 10), 0u);
}

TEST_F(QueueServiceTest, EveryMessageIsSettledOnceWhateverConsumersDo) {
  // Consumers on both shards ack and nack at random; every message
  // ends settled (or dead-lettered) exactly once, none twice.
  std::vector<std::unique_ptr<Client>> consumers;
  for (int i = 0; i < 4; ++i) {
    consumers.push_back(std::make_unique<Client>(loop, "c" + std::to_string(i)));
    consumers.back()->connect();
    consumers.back()->subscribe("$queue/jobs/#", QoS::kAtLeastOnce);
  }
  Client publisher(loop, "publisher");
  publisher.connect();
  constexpr int kMessages = 200;
  for (int n = 0; n < kMessages; ++n)
    publisher.publish("$queue/jobs/m", std::to_string(n), QoS::kAtLeastOnce);
  std::mt19937 random(7);
  std::map<std::string, int> acked;
  std::vector<std::size_t> seen(consumers.size(), 0);
  for (int round = 0; round < 400; ++round) {
    turn();
    for (std::size_t c = 0; c < consumers.size(); ++c) {
      auto& link = consumers[c]->link;
      for (; seen[c] < link.publishes.size(); ++seen[c]) {
        const auto& p = link.publishes[seen[c]];
        if (p.topic.rfind("$queue/jobs/", 0) != 0) continue;
        const bool ack = random() % 4 != 0;
        if (ack) ++acked[p.payload];
        consumers[c]->packet(mqtt::Puback{
            p.packet_id, ack ? ReasonCode::kSuccess : ReasonCode::kUnspecifiedError, {}});
      }
    }
  }
  std::uint64_t dead = depth("jobs.dlq");
  EXPECT_EQ(acked.size() + dead, static_cast<std::size_t>(kMessages));
  for (const auto& [payload, times] : acked)
    EXPECT_EQ(times, 1) << payload;
}

}  // namespace
}  // namespace sluice::queue
