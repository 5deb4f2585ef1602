// Session and protocol state machines, driven through ClientProtocol with a
// recording link instead of a socket.
#include <gtest/gtest.h>

#include "broker/broker.hpp"
#include "broker/client_protocol.hpp"
#include "broker/shard.hpp"
#include "test_client.hpp"

namespace sluice::broker {
namespace {

using mqtt::QoS;
using mqtt::ReasonCode;
using testing_support::Client;

// Every test runs with one shard and with four: clients land on the shard
// their client id maps to, and what crosses shards is delivered as the
// workers would (LoopbackBroker::settle).
class SessionTest : public ::testing::TestWithParam<std::uint32_t> {
 protected:
  SessionTest() : loopback(config::Config{}, GetParam()), broker(loopback.broker) {}
  Session* session(const std::string& id) { return loopback.shard_for(id).find_session(id); }
  testing_support::LoopbackBroker loopback;
  Broker& broker;
};

TEST_P(SessionTest, ConnectIsAnsweredWithConnack) {
  Client c(loopback, "a");
  c.connect();
  const auto connacks = c.link.sent<mqtt::Connack>();
  ASSERT_EQ(connacks.size(), 1u);
  EXPECT_EQ(connacks[0].reason, ReasonCode::kSuccess);
  EXPECT_FALSE(connacks[0].session_present);
  EXPECT_TRUE(c.protocol.connected());
}

TEST_P(SessionTest, QoS1DeliveryWaitsForTheWindow) {
  Client sub(loopback, "sub");
  sub.connect(true, 0, /*receive_maximum=*/2);
  sub.subscribe("t", QoS::kAtLeastOnce);
  Client pub(loopback, "pub");
  pub.connect();
  for (int i = 0; i < 5; ++i)
    pub.publish("t", std::to_string(i), QoS::kAtLeastOnce);
  ASSERT_EQ(sub.link.publishes.size(), 2u);
  sub.packet(mqtt::Puback{sub.link.publishes[0].packet_id, ReasonCode::kSuccess, {}});
  ASSERT_EQ(sub.link.publishes.size(), 3u);
  EXPECT_EQ(sub.link.publishes[2].payload, "2");
}

TEST_P(SessionTest, InboundQoS2IsRoutedOnceUntilPubrel) {
  Client sub(loopback, "sub");
  sub.connect();
  sub.subscribe("t", QoS::kExactlyOnce);
  Client pub(loopback, "pub");
  pub.connect();
  pub.publish("t", "x", QoS::kExactlyOnce, 9);
  pub.publish("t", "x", QoS::kExactlyOnce, 9, /*dup=*/true);
  EXPECT_EQ(sub.link.publishes.size(), 1u);
  EXPECT_EQ(pub.link.sent<mqtt::Pubrec>().size(), 2u);
  pub.packet(mqtt::Pubrel{9, ReasonCode::kSuccess, {}});
  EXPECT_EQ(pub.link.sent<mqtt::Pubcomp>().back().reason, ReasonCode::kSuccess);
  pub.publish("t", "y", QoS::kExactlyOnce, 9);
  EXPECT_EQ(sub.link.publishes.size(), 2u);
}

TEST_P(SessionTest, PersistentSessionQueuesOfflineAndResendsInflightWithDup) {
  auto sub = std::make_unique<Client>(loopback, "sub");
  sub->connect(false, 300);
  sub->subscribe("t", QoS::kAtLeastOnce);
  Client pub(loopback, "pub");
  pub.connect();
  pub.publish("t", "inflight", QoS::kAtLeastOnce);
  ASSERT_EQ(sub->link.publishes.size(), 1u);
  const std::uint16_t packet_id = sub->link.publishes[0].packet_id;
  sub->lost();
  sub.reset();
  pub.publish("t", "queued", QoS::kAtLeastOnce);

  Client again(loopback, "sub");
  again.connect(false, 300);
  EXPECT_TRUE(again.link.sent<mqtt::Connack>().at(0).session_present);
  ASSERT_EQ(again.link.publishes.size(), 2u);
  EXPECT_EQ(again.link.publishes[0].payload, "inflight");
  EXPECT_TRUE(again.link.publishes[0].dup);
  EXPECT_EQ(again.link.publishes[0].packet_id, packet_id);
  EXPECT_EQ(again.link.publishes[1].payload, "queued");
  EXPECT_FALSE(again.link.publishes[1].dup);
}

TEST_P(SessionTest, WillIsPublishedWhenTheConnectionIsLost) {
  Client watcher(loopback, "watcher");
  watcher.connect();
  watcher.subscribe("wills/#", QoS::kAtLeastOnce);
  Client dying(loopback, "dying");
  mqtt::Will will;
  will.topic = "wills/dying";
  will.payload = {'x'};
  will.qos = QoS::kAtLeastOnce;
  dying.connect(true, 0, 0, will);
  dying.lost();
  ASSERT_EQ(watcher.link.publishes.size(), 1u);
  EXPECT_EQ(watcher.link.publishes[0].topic, "wills/dying");
}

TEST_P(SessionTest, SlowClientDropsQoS0ButQueuesQoS1) {
  Client sub(loopback, "sub");
  sub.connect();
  sub.subscribe("t", QoS::kAtLeastOnce);
  Client pub(loopback, "pub");
  pub.connect();
  sub.link.unsent = 10 * 1024 * 1024;  // far behind
  pub.publish("t", "q0", QoS::kAtMostOnce);
  pub.publish("t", "q1", QoS::kAtLeastOnce);
  EXPECT_TRUE(sub.link.publishes.empty());
  EXPECT_EQ(loopback.total(&ShardStats::dropped_slow_client), 1u);
  sub.link.unsent = 0;
  sub.writable();
  ASSERT_EQ(sub.link.publishes.size(), 1u);
  EXPECT_EQ(sub.link.publishes[0].payload, "q1");
}

TEST_P(SessionTest, TakeoverClosesTheOldConnection) {
  Client first(loopback, "same");
  first.connect();
  Client second(loopback, "same");
  second.connect();
  EXPECT_TRUE(first.link.closed);
  EXPECT_EQ(first.link.sent<mqtt::Disconnect>().at(0).reason, ReasonCode::kSessionTakenOver);
  EXPECT_TRUE(second.protocol.connected());
}

}  // namespace
}  // namespace sluice::broker

namespace sluice::broker {
namespace {

// [Issue 11, item 1] Every PUBLISH a session writes passes the read rules
// of the client at hand, whatever allowed the subscription when it was made.
TEST_P(SessionTest, LiveMessagesPassTheReadCheckOfTheClientAtHand) {
  Client sub(loopback, "sub");
  sub.connect();
  sub.subscribe("r/#", QoS::kAtLeastOnce);  // allowed: no ACL yet
  // Its rights shrink (as a reload of the ACL file would make them).
  sub.protocol.set_acl(std::make_unique<auth::ClientAcl>(
      std::vector<auth::AclRule>{{"r/#", auth::kRead}, {"r/secret", auth::kDeny}}));
  Client pub(loopback, "pub");
  pub.connect();
  pub.publish("r/secret", "live", QoS::kAtLeastOnce);
  pub.publish("r/open", "open", QoS::kAtLeastOnce);
  ASSERT_EQ(sub.link.publishes.size(), 1u);
  EXPECT_EQ(sub.link.publishes[0].topic, "r/open");
  EXPECT_EQ(loopback.total(&ShardStats::dropped_not_authorized), 1u);
}

}  // namespace
}  // namespace sluice::broker

namespace sluice::broker {
namespace {

struct RecordingListener final : DeliveryListener {
  std::vector<mqtt::ReasonCode> reasons;
  void on_settled(const Delivery&, mqtt::ReasonCode reason) override { reasons.push_back(reason); }
};

MessagePtr message_on(const std::string& topic, QoS qos) {
  mqtt::Publish publish;
  publish.topic = topic;
  publish.qos = qos;
  publish.payload = {'x'};
  return make_message(std::move(publish), 0, 0);
}

// [Issue 11, item 13] The subscriber's acknowledgement reaches whoever owns
// the delivery, reason code and all: a queue takes 0x80 and up as a nack.
TEST_P(SessionTest, APubacksReasonCodeReachesTheDeliverysListener) {
  Client sub(loopback, "sub");
  sub.connect();
  RecordingListener listener;
  const TargetRef to = session("sub")->ref();
  for (const QoS qos : {QoS::kAtLeastOnce, QoS::kAtLeastOnce, QoS::kExactlyOnce}) {
    Delivery delivery;
    delivery.message = message_on("t", qos);
    delivery.qos = qos;
    delivery.listener = &listener;
    loopback.shard_for("sub").deliver(to, std::move(delivery));
  }
  ASSERT_EQ(sub.link.publishes.size(), 3u);
  sub.packet(mqtt::Puback{sub.link.publishes[0].packet_id, ReasonCode::kSuccess, {}});
  sub.packet(
      mqtt::Puback{sub.link.publishes[1].packet_id, ReasonCode::kImplementationSpecificError, {}});
  sub.packet(mqtt::Pubrec{sub.link.publishes[2].packet_id, ReasonCode::kQuotaExceeded, {}});
  EXPECT_EQ(listener.reasons,
            (std::vector<ReasonCode>{ReasonCode::kSuccess, ReasonCode::kImplementationSpecificError,
                                     ReasonCode::kQuotaExceeded}));
}

struct RecordingSink final : TargetSink {
  std::vector<std::pair<TargetRef, std::string>> delivered;
  void deliver(std::uint32_t, const TargetRef& to, Delivery&& delivery) override {
    delivered.emplace_back(to, delivery.message->topic);
  }
};

// [Issue 11, item 13] Routing reaches targets that are not sessions: the
// subscription index holds node-qualified targets of any kind, and a
// delivery to a queue or another node goes to the sink of that kind.
TEST_P(SessionTest, DeliveriesToOtherTargetKindsGoToTheirSink) {
  RecordingSink queues;
  broker.set_sink(TargetKind::kQueue, &queues);
  const TargetRef queue{42, 0, 0, TargetKind::kQueue};
  const TargetRef node{7, 0, 3, TargetKind::kNode};  // no sink for nodes: dropped, counted
  broker.index().subscribe("jobs/#", {queue, {QoS::kAtLeastOnce}, 0},
                           std::make_shared<SessionTag>("queue:jobs"));
  broker.index().subscribe("jobs/#", {node, {QoS::kAtLeastOnce}, 0},
                           std::make_shared<SessionTag>("node:3"));
  Client pub(loopback, "pub");
  pub.connect();
  pub.publish("jobs/1", "work", QoS::kAtLeastOnce);
  ASSERT_EQ(queues.delivered.size(), 1u);
  EXPECT_EQ(queues.delivered[0].first, queue);
  EXPECT_EQ(queues.delivered[0].second, "jobs/1");
  EXPECT_EQ(loopback.total(&ShardStats::dropped_no_target), 1u);
  broker.set_sink(TargetKind::kQueue, nullptr);
}

}  // namespace
}  // namespace sluice::broker

namespace sluice::broker {
namespace {

config::Config with_queue(config::QueueFullPolicy policy, std::uint32_t most) {
  config::Config config;
  config.limits.max_queued_messages = most;
  config.limits.queue_full_policy = policy;
  return config;
}

// [Issue 11, item 7] Drops are counted for the client they were meant for.
class QueueFull : public ::testing::TestWithParam<std::uint32_t> {};

TEST_P(QueueFull, DropsAreCountedPerClient) {
  testing_support::LoopbackBroker loopback(with_queue(config::QueueFullPolicy::kDropNewest, 3),
                                           GetParam());
  Client sub(loopback, "sub");
  sub.connect(false, 300);
  sub.subscribe("t", QoS::kAtLeastOnce);
  sub.lost();
  Client pub(loopback, "pub");
  pub.connect();
  for (int i = 0; i < 5; ++i)
    pub.publish("t", std::to_string(i), QoS::kAtLeastOnce);
  EXPECT_EQ(loopback.shard_for("sub").find_session("sub")->dropped(), 2u);
  EXPECT_EQ(loopback.shard_for("pub").find_session("pub")->dropped(), 0u);
}

// Under refuse_publish every queued message holds a place, and every place
// comes back when its message leaves the queue: a queue drained once takes
// as many again.
TEST_P(QueueFull, RefusePublishGivesEveryPlaceBack) {
  testing_support::LoopbackBroker loopback(with_queue(config::QueueFullPolicy::kRefusePublish, 3),
                                           GetParam());
  Client pub(loopback, "pub");
  pub.connect();
  for (int round = 0; round < 2; ++round) {
    Client sub(loopback, "sub");
    sub.connect(false, 300);
    sub.subscribe("t", QoS::kAtLeastOnce);
    sub.lost();
    for (int i = 0; i < 5; ++i)
      pub.publish("t", std::to_string(i), QoS::kAtLeastOnce);
    const auto acks = pub.link.sent<mqtt::Puback>();
    ASSERT_EQ(acks.size(), 5u * (round + 1));
    for (int i = 0; i < 5; ++i) {
      EXPECT_EQ(acks[round * 5 + i].reason,
                i < 3 ? ReasonCode::kSuccess : ReasonCode::kQuotaExceeded);
    }
    EXPECT_EQ(loopback.shard_for("sub").find_session("sub")->tag()->waiting.load(), 3u);
    Client back(loopback, "sub");
    back.connect(false, 300);
    ASSERT_EQ(back.link.publishes.size(), 3u);
    for (const auto& p : back.link.publishes)
      back.packet(mqtt::Puback{p.packet_id, ReasonCode::kSuccess, {}});
    EXPECT_EQ(loopback.shard_for("sub").find_session("sub")->tag()->waiting.load(), 0u);
    back.lost();
  }
}

}  // namespace
}  // namespace sluice::broker

namespace sluice::broker {
namespace {

INSTANTIATE_TEST_SUITE_P(Shards, SessionTest, ::testing::Values(1u, 4u));
INSTANTIATE_TEST_SUITE_P(Shards, QueueFull, ::testing::Values(1u, 4u));

}  // namespace
}  // namespace sluice::broker
