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

class SessionTest : public ::testing::Test {
 protected:
  SessionTest() : broker(config::Config{}, 1, "test"), shard(broker.shard(0)) {}
  Broker broker;
  Shard& shard;
};

TEST_F(SessionTest, ConnectIsAnsweredWithConnack) {
  Client c(shard, "a");
  c.connect();
  const auto connacks = c.link.sent<mqtt::Connack>();
  ASSERT_EQ(connacks.size(), 1u);
  EXPECT_EQ(connacks[0].reason, ReasonCode::kSuccess);
  EXPECT_FALSE(connacks[0].session_present);
  EXPECT_TRUE(c.protocol.connected());
}

TEST_F(SessionTest, QoS1DeliveryWaitsForTheWindow) {
  Client sub(shard, "sub");
  sub.connect(true, 0, /*receive_maximum=*/2);
  sub.subscribe("t", QoS::kAtLeastOnce);
  Client pub(shard, "pub");
  pub.connect();
  for (int i = 0; i < 5; ++i)
    pub.publish("t", std::to_string(i), QoS::kAtLeastOnce);
  ASSERT_EQ(sub.link.publishes.size(), 2u);
  sub.protocol.on_packet(mqtt::Puback{sub.link.publishes[0].packet_id, ReasonCode::kSuccess, {}});
  ASSERT_EQ(sub.link.publishes.size(), 3u);
  EXPECT_EQ(sub.link.publishes[2].payload, "2");
}

TEST_F(SessionTest, InboundQoS2IsRoutedOnceUntilPubrel) {
  Client sub(shard, "sub");
  sub.connect();
  sub.subscribe("t", QoS::kExactlyOnce);
  Client pub(shard, "pub");
  pub.connect();
  pub.publish("t", "x", QoS::kExactlyOnce, 9);
  pub.publish("t", "x", QoS::kExactlyOnce, 9, /*dup=*/true);
  EXPECT_EQ(sub.link.publishes.size(), 1u);
  EXPECT_EQ(pub.link.sent<mqtt::Pubrec>().size(), 2u);
  pub.protocol.on_packet(mqtt::Pubrel{9, ReasonCode::kSuccess, {}});
  EXPECT_EQ(pub.link.sent<mqtt::Pubcomp>().back().reason, ReasonCode::kSuccess);
  pub.publish("t", "y", QoS::kExactlyOnce, 9);
  EXPECT_EQ(sub.link.publishes.size(), 2u);
}

TEST_F(SessionTest, PersistentSessionQueuesOfflineAndResendsInflightWithDup) {
  auto sub = std::make_unique<Client>(shard, "sub");
  sub->connect(false, 300);
  sub->subscribe("t", QoS::kAtLeastOnce);
  Client pub(shard, "pub");
  pub.connect();
  pub.publish("t", "inflight", QoS::kAtLeastOnce);
  ASSERT_EQ(sub->link.publishes.size(), 1u);
  const std::uint16_t packet_id = sub->link.publishes[0].packet_id;
  sub->protocol.on_connection_lost();
  sub.reset();
  pub.publish("t", "queued", QoS::kAtLeastOnce);

  Client again(shard, "sub");
  again.connect(false, 300);
  EXPECT_TRUE(again.link.sent<mqtt::Connack>().at(0).session_present);
  ASSERT_EQ(again.link.publishes.size(), 2u);
  EXPECT_EQ(again.link.publishes[0].payload, "inflight");
  EXPECT_TRUE(again.link.publishes[0].dup);
  EXPECT_EQ(again.link.publishes[0].packet_id, packet_id);
  EXPECT_EQ(again.link.publishes[1].payload, "queued");
  EXPECT_FALSE(again.link.publishes[1].dup);
}

TEST_F(SessionTest, WillIsPublishedWhenTheConnectionIsLost) {
  Client watcher(shard, "watcher");
  watcher.connect();
  watcher.subscribe("wills/#", QoS::kAtLeastOnce);
  Client dying(shard, "dying");
  mqtt::Will will;
  will.topic = "wills/dying";
  will.payload = {'x'};
  will.qos = QoS::kAtLeastOnce;
  dying.connect(true, 0, 0, will);
  dying.protocol.on_connection_lost();
  ASSERT_EQ(watcher.link.publishes.size(), 1u);
  EXPECT_EQ(watcher.link.publishes[0].topic, "wills/dying");
}

TEST_F(SessionTest, SlowClientDropsQoS0ButQueuesQoS1) {
  Client sub(shard, "sub");
  sub.connect();
  sub.subscribe("t", QoS::kAtLeastOnce);
  Client pub(shard, "pub");
  pub.connect();
  sub.link.unsent = 10 * 1024 * 1024;  // far behind
  pub.publish("t", "q0", QoS::kAtMostOnce);
  pub.publish("t", "q1", QoS::kAtLeastOnce);
  EXPECT_TRUE(sub.link.publishes.empty());
  EXPECT_EQ(shard.stats().dropped_slow_client.load(), 1u);
  sub.link.unsent = 0;
  sub.protocol.on_writable();
  ASSERT_EQ(sub.link.publishes.size(), 1u);
  EXPECT_EQ(sub.link.publishes[0].payload, "q1");
}

TEST_F(SessionTest, TakeoverClosesTheOldConnection) {
  Client first(shard, "same");
  first.connect();
  Client second(shard, "same");
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
TEST_F(SessionTest, LiveMessagesPassTheReadCheckOfTheClientAtHand) {
  Client sub(shard, "sub");
  sub.connect();
  sub.subscribe("r/#", QoS::kAtLeastOnce);  // allowed: no ACL yet
  // Its rights shrink (as a reload of the ACL file would make them).
  sub.protocol.set_acl(std::make_unique<auth::ClientAcl>(
      std::vector<auth::AclRule>{{"r/#", auth::kRead}, {"r/secret", auth::kDeny}}));
  Client pub(shard, "pub");
  pub.connect();
  pub.publish("r/secret", "live", QoS::kAtLeastOnce);
  pub.publish("r/open", "open", QoS::kAtLeastOnce);
  ASSERT_EQ(sub.link.publishes.size(), 1u);
  EXPECT_EQ(sub.link.publishes[0].topic, "r/open");
  EXPECT_EQ(shard.stats().dropped_not_authorized.load(), 1u);
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
TEST_F(SessionTest, APubacksReasonCodeReachesTheDeliverysListener) {
  Client sub(shard, "sub");
  sub.connect();
  RecordingListener listener;
  const TargetRef to = shard.find_session("sub")->ref();
  for (const QoS qos : {QoS::kAtLeastOnce, QoS::kAtLeastOnce, QoS::kExactlyOnce}) {
    Delivery delivery;
    delivery.message = message_on("t", qos);
    delivery.qos = qos;
    delivery.listener = &listener;
    shard.deliver(to, std::move(delivery));
  }
  ASSERT_EQ(sub.link.publishes.size(), 3u);
  sub.protocol.on_packet(mqtt::Puback{sub.link.publishes[0].packet_id, ReasonCode::kSuccess, {}});
  sub.protocol.on_packet(
      mqtt::Puback{sub.link.publishes[1].packet_id, ReasonCode::kImplementationSpecificError, {}});
  sub.protocol.on_packet(
      mqtt::Pubrec{sub.link.publishes[2].packet_id, ReasonCode::kQuotaExceeded, {}});
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
TEST_F(SessionTest, DeliveriesToOtherTargetKindsGoToTheirSink) {
  RecordingSink queues;
  broker.set_sink(TargetKind::kQueue, &queues);
  const TargetRef queue{42, 0, 0, TargetKind::kQueue};
  const TargetRef node{7, 0, 3, TargetKind::kNode};  // no sink for nodes: dropped, counted
  broker.index().subscribe("jobs/#", {queue, {QoS::kAtLeastOnce}, 0},
                           std::make_shared<SessionTag>("queue:jobs"));
  broker.index().subscribe("jobs/#", {node, {QoS::kAtLeastOnce}, 0},
                           std::make_shared<SessionTag>("node:3"));
  Client pub(shard, "pub");
  pub.connect();
  pub.publish("jobs/1", "work", QoS::kAtLeastOnce);
  ASSERT_EQ(queues.delivered.size(), 1u);
  EXPECT_EQ(queues.delivered[0].first, queue);
  EXPECT_EQ(queues.delivered[0].second, "jobs/1");
  EXPECT_EQ(shard.stats().dropped_no_target.load(), 1u);
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
TEST(QueueFull, DropsAreCountedPerClient) {
  Broker broker(with_queue(config::QueueFullPolicy::kDropNewest, 3), 1, "test");
  Shard& shard = broker.shard(0);
  Client sub(shard, "sub");
  sub.connect(false, 300);
  sub.subscribe("t", QoS::kAtLeastOnce);
  sub.protocol.on_connection_lost();
  Client pub(shard, "pub");
  pub.connect();
  for (int i = 0; i < 5; ++i)
    pub.publish("t", std::to_string(i), QoS::kAtLeastOnce);
  EXPECT_EQ(shard.find_session("sub")->dropped(), 2u);
  EXPECT_EQ(shard.find_session("pub")->dropped(), 0u);
}

// Under refuse_publish every queued message holds a place, and every place
// comes back when its message leaves the queue: a queue drained once takes
// as many again.
TEST(QueueFull, RefusePublishGivesEveryPlaceBack) {
  Broker broker(with_queue(config::QueueFullPolicy::kRefusePublish, 3), 1, "test");
  Shard& shard = broker.shard(0);
  Client pub(shard, "pub");
  pub.connect();
  for (int round = 0; round < 2; ++round) {
    Client sub(shard, "sub");
    sub.connect(false, 300);
    sub.subscribe("t", QoS::kAtLeastOnce);
    sub.protocol.on_connection_lost();
    for (int i = 0; i < 5; ++i)
      pub.publish("t", std::to_string(i), QoS::kAtLeastOnce);
    const auto acks = pub.link.sent<mqtt::Puback>();
    ASSERT_EQ(acks.size(), 5u * (round + 1));
    for (int i = 0; i < 5; ++i) {
      EXPECT_EQ(acks[round * 5 + i].reason,
                i < 3 ? ReasonCode::kSuccess : ReasonCode::kQuotaExceeded);
    }
    EXPECT_EQ(shard.find_session("sub")->tag()->waiting.load(), 3u);
    Client back(shard, "sub");
    back.connect(false, 300);
    ASSERT_EQ(back.link.publishes.size(), 3u);
    for (const auto& p : back.link.publishes)
      back.protocol.on_packet(mqtt::Puback{p.packet_id, ReasonCode::kSuccess, {}});
    EXPECT_EQ(shard.find_session("sub")->tag()->waiting.load(), 0u);
    back.protocol.on_connection_lost();
  }
}

}  // namespace
}  // namespace sluice::broker
