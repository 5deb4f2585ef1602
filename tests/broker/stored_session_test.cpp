// What the broker writes to the store for persistent sessions, and what it
// reads back: a memory store behind a real Committer, the shard driven from
// this thread, the store's contents read with load().
#include <gtest/gtest.h>

#include <map>

#include "broker/broker.hpp"
#include "broker/persistence.hpp"
#include "broker/shard.hpp"
#include "store/committer.hpp"
#include "store/store.hpp"
#include "test_client.hpp"

namespace sluice::broker {
namespace {

using mqtt::QoS;
using mqtt::ReasonCode;
using testing_support::Client;

// Everything a store holds, by kind.
struct Contents final : store::LoadVisitor {
  std::vector<store::SessionRecord> sessions;
  std::map<std::string, store::WillRecord> wills;
  std::vector<store::SubscriptionRecord> subscriptions;
  std::vector<store::OutboundRecord> outbound_records;
  std::vector<std::pair<std::string, std::uint16_t>> inbound_ids;
  std::map<std::uint64_t, store::MessageRecord> messages;
  std::vector<store::MessageRecord> retained_messages;

  void session(store::SessionRecord&& r) override { sessions.push_back(std::move(r)); }
  void will(const std::string& id, store::WillRecord&& r) override {
    wills.emplace(id, std::move(r));
  }
  void subscription(store::SubscriptionRecord&& r) override {
    subscriptions.push_back(std::move(r));
  }
  void outbound(store::OutboundRecord&& r) override { outbound_records.push_back(std::move(r)); }
  void inbound(const std::string& id, std::uint16_t packet_id) override {
    inbound_ids.emplace_back(id, packet_id);
  }
  void message(std::uint64_t id, store::MessageRecord&& r) override {
    messages.emplace(id, std::move(r));
  }
  void retained(store::MessageRecord&& r) override { retained_messages.push_back(std::move(r)); }
};

// A broker over `store`, its shards run on this thread (see LoopbackBroker).
struct StoredBroker {
  StoredBroker(store::Store& store, std::uint32_t shards)
      : loopback(config::Config{}, shards),
        broker(loopback.broker),
        committer(store, store::Durability::kNone, std::chrono::milliseconds(10)) {
    broker.set_journal(&committer);
  }
  ~StoredBroker() { settle(); }

  // Waits until everything handed to the store so far is written and its
  // callbacks have run.
  void settle() { loopback.settle_store(); }

  testing_support::LoopbackBroker loopback;
  Broker& broker;
  store::Committer committer;
};

// Every test runs with one shard and with three.
class StoredSessionTest : public ::testing::TestWithParam<std::uint32_t> {
 protected:
  Contents contents() {
    Contents c;
    EXPECT_TRUE(store->load(c).ok);
    return c;
  }
  // A persistent session subscribed to `filter`, now offline.
  void offline_subscriber(StoredBroker& b, const std::string& id, const std::string& filter,
                          QoS qos = QoS::kAtLeastOnce) {
    Client client(b.loopback, id);
    client.connect(false, 300);
    b.settle();  // a stored session's CONNACK waits for its record
    client.subscribe(filter, qos);
    b.settle();
    client.lost();
  }

  std::unique_ptr<store::Store> store = store::make_memory_store();
};

TEST_P(StoredSessionTest, MessageIsStoredOnceForManySessionsAndPubackWaitsForIt) {
  StoredBroker b(*store, GetParam());
  offline_subscriber(b, "a", "t");
  offline_subscriber(b, "b", "t");
  Client pub(b.loopback, "pub");
  pub.connect();
  pub.publish("t", "payload", QoS::kAtLeastOnce);
  EXPECT_TRUE(pub.link.sent<mqtt::Puback>().empty());  // not before it is stored
  b.settle();
  ASSERT_EQ(pub.link.sent<mqtt::Puback>().size(), 1u);
  const Contents c = contents();
  ASSERT_EQ(c.messages.size(), 1u);
  EXPECT_EQ(c.messages.begin()->second.payload,
            std::vector<std::uint8_t>({'p', 'a', 'y', 'l', 'o', 'a', 'd'}));
  ASSERT_EQ(c.outbound_records.size(), 2u);
  EXPECT_EQ(c.outbound_records[0].client_id, "a");
  EXPECT_EQ(c.outbound_records[1].client_id, "b");
  EXPECT_EQ(c.outbound_records[0].stage, store::OutboundRecord::Stage::kQueued);
}

TEST_P(StoredSessionTest, InflightStageIsStoredAndTheLastPubackDeletesTheMessage) {
  StoredBroker b(*store, GetParam());
  offline_subscriber(b, "a", "t");
  offline_subscriber(b, "b", "t");
  Client pub(b.loopback, "pub");
  pub.connect();
  pub.publish("t", "x", QoS::kAtLeastOnce);
  b.settle();

  Client a(b.loopback, "a");
  a.connect(false, 300);
  b.settle();  // a stored session's CONNACK waits for its record
  ASSERT_EQ(a.link.publishes.size(), 1u);
  b.settle();
  Contents c = contents();
  ASSERT_EQ(c.outbound_records.size(), 2u);
  EXPECT_EQ(c.outbound_records[0].stage, store::OutboundRecord::Stage::kAwaitingPuback);
  EXPECT_EQ(c.outbound_records[0].packet_id, a.link.publishes[0].packet_id);

  a.packet(mqtt::Puback{a.link.publishes[0].packet_id, ReasonCode::kSuccess, {}});
  b.settle();
  c = contents();
  EXPECT_EQ(c.outbound_records.size(), 1u);
  EXPECT_EQ(c.messages.size(), 1u);  // "b" still holds it

  Client bee(b.loopback, "b");
  bee.connect(false, 300);
  b.settle();  // a stored session's CONNACK waits for its record
  ASSERT_EQ(bee.link.publishes.size(), 1u);
  bee.packet(mqtt::Puback{bee.link.publishes[0].packet_id, ReasonCode::kSuccess, {}});
  b.settle();
  c = contents();
  EXPECT_TRUE(c.outbound_records.empty());
  EXPECT_TRUE(c.messages.empty());
}

TEST_P(StoredSessionTest, CleanSessionsAndQoS0WriteNothing) {
  StoredBroker b(*store, GetParam());
  offline_subscriber(b, "stored", "t");
  Client clean_sub(b.loopback, "clean");
  clean_sub.connect();
  clean_sub.subscribe("q1", QoS::kAtLeastOnce);
  Client pub(b.loopback, "pub");
  pub.connect();
  b.settle();
  const std::uint64_t writes = b.committer.writes();
  pub.publish("t", "qos0 to a stored session", QoS::kAtMostOnce);
  pub.publish("q1", "qos1 to a clean session", QoS::kAtLeastOnce);
  EXPECT_EQ(pub.link.sent<mqtt::Puback>().size(), 1u);  // at once: nothing to wait for
  EXPECT_EQ(clean_sub.link.publishes.size(), 1u);
  clean_sub.packet(mqtt::Puback{clean_sub.link.publishes[0].packet_id, ReasonCode::kSuccess, {}});
  b.settle();
  EXPECT_EQ(b.committer.writes(), writes + 1);  // settle()'s own empty write only
}

TEST_P(StoredSessionTest, EndingASessionDeletesItsQueueAndMessages) {
  StoredBroker b(*store, GetParam());
  offline_subscriber(b, "a", "t");
  Client pub(b.loopback, "pub");
  pub.connect();
  pub.publish("t", "x", QoS::kExactlyOnce, 5);
  b.settle();
  EXPECT_EQ(contents().outbound_records.size(), 1u);
  Client a(b.loopback, "a");
  a.connect(/*clean=*/true, 0);  // the old session ends
  b.settle();
  const Contents c = contents();
  EXPECT_TRUE(c.outbound_records.empty());
  EXPECT_TRUE(c.messages.empty());
  EXPECT_TRUE(c.sessions.empty());
}

TEST_P(StoredSessionTest, InboundQoS2IdIsStoredUntilPubrelAndPubcompWaitsForTheDelete) {
  StoredBroker b(*store, GetParam());
  Client pub(b.loopback, "pub");
  pub.connect(false, 300);
  b.settle();  // a stored session's CONNACK waits for its record
  pub.publish("nobody/listens", "x", QoS::kExactlyOnce, 9);
  EXPECT_TRUE(pub.link.sent<mqtt::Pubrec>().empty());
  b.settle();
  ASSERT_EQ(pub.link.sent<mqtt::Pubrec>().size(), 1u);
  ASSERT_EQ(contents().inbound_ids.size(), 1u);
  EXPECT_EQ(contents().inbound_ids[0], std::make_pair(std::string("pub"), std::uint16_t{9}));
  pub.packet(mqtt::Pubrel{9, ReasonCode::kSuccess, {}});
  EXPECT_TRUE(pub.link.sent<mqtt::Pubcomp>().empty());
  b.settle();
  ASSERT_EQ(pub.link.sent<mqtt::Pubcomp>().size(), 1u);
  EXPECT_EQ(pub.link.sent<mqtt::Pubcomp>()[0].reason, ReasonCode::kSuccess);
  EXPECT_TRUE(contents().inbound_ids.empty());
}

TEST_P(StoredSessionTest, LoadPutsQueuesInflightAndInboundIdsBack) {
  {
    StoredBroker b(*store, GetParam());
    offline_subscriber(b, "queued", "t");
    offline_subscriber(b, "exactly-once", "q2", QoS::kExactlyOnce);
    Client inflight(b.loopback, "inflight");
    inflight.connect(false, 300);
    b.settle();  // a stored session's CONNACK waits for its record
    inflight.subscribe("t", QoS::kAtLeastOnce);
    Client pub(b.loopback, "pub");
    pub.connect(false, 300);
    b.settle();  // a stored session's CONNACK waits for its record
    pub.publish("t", "first", QoS::kAtLeastOnce);
    pub.publish("t", "second", QoS::kAtLeastOnce);
    pub.publish("q2", "x", QoS::kExactlyOnce, 77);  // PUBREC sent, no PUBREL yet
    b.settle();
    ASSERT_EQ(inflight.link.publishes.size(), 2u);
    inflight.packet(mqtt::Puback{inflight.link.publishes[0].packet_id, ReasonCode::kSuccess, {}});
    b.settle();
  }  // connections, then the broker, go away; the store stays

  StoredBroker again(*store, GetParam());
  LoadCounts counts;
  std::vector<store::SubscriptionRecord> queue_subscriptions;
  ASSERT_TRUE(load_state(*store, again.broker, counts, queue_subscriptions).ok);
  EXPECT_EQ(counts.sessions, 4u);
  EXPECT_EQ(counts.outbound, 4u);  // two queued, one in flight, one QoS 2
  EXPECT_EQ(counts.messages, 3u);
  EXPECT_EQ(counts.inbound, 1u);

  Client queued(again.loopback, "queued");
  queued.connect(false, 300);
  again.settle();  // a stored session's CONNACK waits for its record
  ASSERT_EQ(queued.link.publishes.size(), 2u);
  EXPECT_EQ(queued.link.publishes[0].payload, "first");
  EXPECT_EQ(queued.link.publishes[1].payload, "second");
  EXPECT_FALSE(queued.link.publishes[0].dup);

  Client inflight(again.loopback, "inflight");
  inflight.connect(false, 300);
  again.settle();  // a stored session's CONNACK waits for its record
  ASSERT_EQ(inflight.link.publishes.size(), 1u);
  EXPECT_EQ(inflight.link.publishes[0].payload, "second");
  EXPECT_TRUE(inflight.link.publishes[0].dup);

  Client pub(again.loopback, "pub");
  pub.connect(false, 300);
  again.settle();  // a stored session's CONNACK waits for its record
  // The publisher had no PUBCOMP, so it sends again: the restored id says it
  // is a resend, and the one subscriber gets the message once.
  pub.publish("q2", "x", QoS::kExactlyOnce, 77, /*dup=*/true);
  pub.packet(mqtt::Pubrel{77, ReasonCode::kSuccess, {}});
  again.settle();
  ASSERT_FALSE(pub.link.sent<mqtt::Pubcomp>().empty());
  EXPECT_EQ(pub.link.sent<mqtt::Pubcomp>().back().reason, ReasonCode::kSuccess);
  Client exactly_once(again.loopback, "exactly-once");
  exactly_once.connect(false, 300);
  again.settle();  // the CONNACK waits for the session record,
  again.settle();  // and the QoS 2 PUBLISH for its packet id's
  ASSERT_EQ(exactly_once.link.publishes.size(), 1u);
  EXPECT_EQ(exactly_once.link.publishes[0].payload, "x");
}

// [Issue 11, item 12] Retained messages sent on SUBSCRIBE pass the same read
// check as live ones, with the rights the client has when they are sent: a
// stored session's retained messages follow its SUBACK, after the store
// write, and the client's rights may shrink in between.
TEST_P(StoredSessionTest, RetainedMessagesPassTheReadCheckWhenTheyAreSent) {
  StoredBroker b(*store, GetParam());
  for (const char* topic : {"r/open", "r/secret"}) {
    mqtt::Publish retained;
    retained.topic = topic;
    retained.retain = true;
    retained.payload = {'x'};
    b.broker.retained().set(make_message(std::move(retained), 0, 0));
  }
  Client sub(b.loopback, "sub");
  sub.connect(false, 300);
  b.settle();
  sub.subscribe("r/#", QoS::kAtLeastOnce);  // allowed; its SUBACK waits for the store
  sub.protocol.set_acl(std::make_unique<auth::ClientAcl>(
      std::vector<auth::AclRule>{{"r/#", auth::kRead}, {"r/secret", auth::kDeny}}));
  b.settle();
  ASSERT_EQ(sub.link.publishes.size(), 1u);
  EXPECT_EQ(sub.link.publishes[0].topic, "r/open");
  EXPECT_EQ(b.loopback.total(&ShardStats::dropped_not_authorized), 1u);
}

TEST_P(StoredSessionTest, ANewBrokersMessageIdsFollowTheStoredOnes) {
  {
    StoredBroker b(*store, GetParam());
    offline_subscriber(b, "a", "t");
    Client pub(b.loopback, "pub");
    pub.connect();
    pub.publish("t", "old", QoS::kAtLeastOnce);
  }
  StoredBroker again(*store, GetParam());
  LoadCounts counts;
  std::vector<store::SubscriptionRecord> queue_subscriptions;
  ASSERT_TRUE(load_state(*store, again.broker, counts, queue_subscriptions).ok);
  Client pub(again.loopback, "pub");
  pub.connect();
  pub.publish("t", "new", QoS::kAtLeastOnce);
  again.settle();
  const Contents c = contents();
  ASSERT_EQ(c.outbound_records.size(), 2u);
  EXPECT_LT(c.outbound_records[0].message_id, c.outbound_records[1].message_id);
  EXPECT_EQ(c.messages.at(c.outbound_records[1].message_id).payload,
            std::vector<std::uint8_t>({'n', 'e', 'w'}));
}

}  // namespace
}  // namespace sluice::broker

namespace sluice::broker {
namespace {

INSTANTIATE_TEST_SUITE_P(Shards, StoredSessionTest, ::testing::Values(1u, 3u));

}  // namespace
}  // namespace sluice::broker
