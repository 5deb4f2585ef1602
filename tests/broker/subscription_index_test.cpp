// The subscription index: wildcards, $share groups, overlapping subscriptions.
#include "broker/subscription_index.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <map>
#include <set>
#include <thread>

namespace sluice::broker {
namespace {

using mqtt::QoS;
using Strategy = config::SharedStrategy;

std::shared_ptr<SessionTag> online(bool value = true) {
  auto tag = std::make_shared<SessionTag>("client");
  tag->online = value;
  return tag;
}

SubscriptionIndex::Entry entry(std::uint64_t session, QoS qos = QoS::kAtMostOnce,
                               std::uint32_t identifier = 0) {
  return {TargetRef::session(0, session), mqtt::SubscriptionOptions{qos}, identifier};
}

Message message(std::string topic, std::uint64_t origin = 0) {
  Message m;
  m.topic = std::move(topic);
  m.origin_session = origin;
  return m;
}

std::set<std::uint64_t> sessions_matching(const SubscriptionIndex& index,
                                          const std::string& topic) {
  std::vector<Target> targets;
  index.match(message(topic), Strategy::kRoundRobin, targets);
  std::set<std::uint64_t> out;
  for (const auto& t : targets)
    out.insert(t.ref.id);
  return out;
}

TEST(SubscriptionIndex, MatchesExactAndWildcardFilters) {
  SubscriptionIndex index;
  index.subscribe("a/b/c", entry(1), online());
  index.subscribe("a/+/c", entry(2), online());
  index.subscribe("a/#", entry(3), online());
  index.subscribe("#", entry(4), online());
  index.subscribe("+/+/+", entry(5), online());
  index.subscribe("b/#", entry(6), online());
  EXPECT_EQ(sessions_matching(index, "a/b/c"), (std::set<std::uint64_t>{1, 2, 3, 4, 5}));
  EXPECT_EQ(sessions_matching(index, "a"), (std::set<std::uint64_t>{3, 4}));
  EXPECT_EQ(sessions_matching(index, "a/x/c/d"), (std::set<std::uint64_t>{3, 4}));
  EXPECT_EQ(sessions_matching(index, "b/x/y"), (std::set<std::uint64_t>{4, 5, 6}));
  EXPECT_EQ(index.size(), 6u);
}

TEST(SubscriptionIndex, MQTT_4_7_2_1_FirstLevelWildcardsSkipDollarTopics) {
  SubscriptionIndex index;
  index.subscribe("#", entry(1), online());
  index.subscribe("+/broker", entry(2), online());
  index.subscribe("$SYS/#", entry(3), online());
  EXPECT_EQ(sessions_matching(index, "$SYS/broker"), (std::set<std::uint64_t>{3}));
}

TEST(SubscriptionIndex, MQTT_3_3_4_2_OverlappingSubscriptionsMergeToHighestQoSAndAllIdentifiers) {
  SubscriptionIndex index;
  index.subscribe("a/#", entry(1, QoS::kAtMostOnce, 7), online());
  index.subscribe("a/+", entry(1, QoS::kExactlyOnce, 9), online());
  index.subscribe("a/b", entry(1, QoS::kAtLeastOnce), online());
  std::vector<Target> targets;
  index.match(message("a/b"), Strategy::kRoundRobin, targets);
  ASSERT_EQ(targets.size(), 1u);
  EXPECT_EQ(targets[0].max_qos, QoS::kExactlyOnce);
  EXPECT_EQ(std::set<std::uint32_t>(targets[0].identifiers.begin(), targets[0].identifiers.end()),
            (std::set<std::uint32_t>{7, 9}));
}

// [MQTT-3.3.4-3] The merge of one subscriber's targets used to move a target
// onto itself when no merge had happened before it, and a vector moved onto
// itself is emptied: the subscriber lost its identifiers whenever another
// subscriber sorted before it.
TEST(SubscriptionIndex, MQTT_3_3_4_3_IdentifiersSurviveTheMergeBehindAnotherSubscriber) {
  SubscriptionIndex index;
  index.subscribe("wc/+/temp", entry(2, QoS::kAtLeastOnce, 11), online());
  index.subscribe("wc/#", entry(2, QoS::kAtLeastOnce, 12), online());
  index.subscribe("wc/#", entry(1), online());
  index.subscribe("wc/+/temp", entry(3), online());
  for (int pass = 0; pass < 2; ++pass) {  // walked, then from this thread's cache
    std::vector<Target> targets;
    index.match(message("wc/b/temp"), Strategy::kRoundRobin, targets);
    ASSERT_EQ(targets.size(), 3u);
    for (const Target& target : targets) {
      const std::set<std::uint32_t> ids(target.identifiers.begin(), target.identifiers.end());
      const std::set<std::uint32_t> expected =
          target.ref.id == 2 ? std::set<std::uint32_t>{11, 12} : std::set<std::uint32_t>{};
      EXPECT_EQ(ids, expected) << "session " << target.ref.id << " pass " << pass;
    }
    targets.clear();
    index.match(message("wc/a/hum"), Strategy::kRoundRobin, targets);
    ASSERT_EQ(targets.size(), 2u);
    for (const Target& target : targets) {
      const std::vector<std::uint32_t> expected =
          target.ref.id == 2 ? std::vector<std::uint32_t>{12} : std::vector<std::uint32_t>{};
      EXPECT_EQ(target.identifiers, expected) << "session " << target.ref.id;
    }
  }
}

TEST(SubscriptionIndex, MQTT_3_3_4_3_AnIdentifierIsSentOnceWhateverHowManySubscriptionsCarryIt) {
  SubscriptionIndex index;
  index.subscribe("a/#", entry(1, QoS::kAtMostOnce, 5), online());
  index.subscribe("a/+", entry(1, QoS::kAtMostOnce, 5), online());
  index.subscribe("a/b", entry(1, QoS::kAtMostOnce, 6), online());
  index.subscribe("+/b", entry(1, QoS::kAtMostOnce, 5), online());
  std::vector<Target> targets;
  index.match(message("a/b"), Strategy::kRoundRobin, targets);
  ASSERT_EQ(targets.size(), 1u);
  std::vector<std::uint32_t> ids = targets[0].identifiers;
  std::sort(ids.begin(), ids.end());
  EXPECT_EQ(ids, (std::vector<std::uint32_t>{5, 6}));
}

TEST(SubscriptionIndex, MQTT_3_8_4_3_ResubscribingReplaces) {
  SubscriptionIndex index;
  EXPECT_TRUE(index.subscribe("t", entry(1, QoS::kAtMostOnce), online()));
  EXPECT_FALSE(index.subscribe("t", entry(1, QoS::kExactlyOnce), online()));
  std::vector<Target> targets;
  index.match(message("t"), Strategy::kRoundRobin, targets);
  ASSERT_EQ(targets.size(), 1u);
  EXPECT_EQ(targets[0].max_qos, QoS::kExactlyOnce);
  EXPECT_EQ(index.size(), 1u);
}

TEST(SubscriptionIndex, NoLocalLeavesOutThePublisher) {
  SubscriptionIndex index;
  auto e = entry(1);
  e.options.no_local = true;
  index.subscribe("t", e, online());
  index.subscribe("t", entry(2), online());
  std::vector<Target> targets;
  index.match(message("t", /*origin=*/1), Strategy::kRoundRobin, targets);
  ASSERT_EQ(targets.size(), 1u);
  EXPECT_EQ(targets[0].ref.id, 2u);
}

TEST(SubscriptionIndex, UnsubscribeRemovesAndPrunes) {
  SubscriptionIndex index;
  index.subscribe("a/b/c", entry(1), online());
  EXPECT_TRUE(index.unsubscribe("a/b/c", TargetRef::session(0, 1)));
  EXPECT_FALSE(index.unsubscribe("a/b/c", TargetRef::session(0, 1)));
  EXPECT_FALSE(index.unsubscribe("never", TargetRef::session(0, 1)));
  EXPECT_TRUE(sessions_matching(index, "a/b/c").empty());
  EXPECT_EQ(index.size(), 0u);
}

TEST(SubscriptionIndex, SharedGroupRoundRobinsOverItsMembers) {
  SubscriptionIndex index;
  index.subscribe("$share/g/jobs/+", entry(1), online());
  index.subscribe("$share/g/jobs/+", entry(2), online());
  index.subscribe("$share/other/jobs/#", entry(3), online());
  std::vector<std::uint64_t> picked;
  for (int i = 0; i < 4; ++i) {
    std::vector<Target> targets;
    index.match(message("jobs/new"), Strategy::kRoundRobin, targets);
    ASSERT_EQ(targets.size(), 2u);  // one per group
    for (const auto& t : targets) {
      ASSERT_TRUE(t.shared_filter);
      if (*t.shared_filter == "$share/g/jobs/+") picked.push_back(t.ref.id);
    }
  }
  EXPECT_EQ(std::set<std::uint64_t>(picked.begin(), picked.end()), (std::set<std::uint64_t>{1, 2}));
  EXPECT_NE(picked[0], picked[1]);
}

TEST(SubscriptionIndex, SharedGroupPrefersOnlineMembers) {
  SubscriptionIndex index;
  index.subscribe("$share/g/t", entry(1), online(false));
  index.subscribe("$share/g/t", entry(2), online(true));
  for (int i = 0; i < 4; ++i) {
    std::vector<Target> targets;
    index.match(message("t"), Strategy::kRoundRobin, targets);
    ASSERT_EQ(targets.size(), 1u);
    EXPECT_EQ(targets[0].ref.id, 2u);
  }
}

TEST(SubscriptionIndex, PickSharedExcludesTheLeavingMember) {
  SubscriptionIndex index;
  index.subscribe("$share/g/t", entry(1), online());
  index.subscribe("$share/g/t", entry(2), online());
  for (int i = 0; i < 4; ++i) {
    const auto target = index.pick_shared("$share/g/t", message("t"), Strategy::kRoundRobin,
                                          TargetRef::session(0, 1), false);
    ASSERT_TRUE(target);
    EXPECT_EQ(target->ref.id, 2u);
  }
  index.unsubscribe("$share/g/t", TargetRef::session(0, 2));
  EXPECT_FALSE(index.pick_shared("$share/g/t", message("t"), Strategy::kRoundRobin,
                                 TargetRef::session(0, 1), false));
}

TEST(SubscriptionIndex, PickSharedOnlineOnlySkipsOfflineMembers) {
  SubscriptionIndex index;
  index.subscribe("$share/g/t", entry(1), online());
  index.subscribe("$share/g/t", entry(2), online(false));
  const Message m = message("t");
  EXPECT_FALSE(
      index.pick_shared("$share/g/t", m, Strategy::kRoundRobin, TargetRef::session(0, 1), true));
  const auto any =
      index.pick_shared("$share/g/t", m, Strategy::kRoundRobin, TargetRef::session(0, 1), false);
  ASSERT_TRUE(any);
  EXPECT_EQ(any->ref.id, 2u);
}

TEST(SubscriptionIndex, HashClientIdKeepsOnePublisherOnOneMember) {
  SubscriptionIndex index;
  for (std::uint64_t s = 1; s <= 3; ++s)
    index.subscribe("$share/g/t", entry(s), online());
  Message m = message("t");
  m.origin_client_hash = 12345;
  std::set<std::uint64_t> picked;
  for (int i = 0; i < 10; ++i) {
    std::vector<Target> targets;
    index.match(m, Strategy::kHashClientId, targets);
    picked.insert(targets.at(0).ref.id);
  }
  EXPECT_EQ(picked.size(), 1u);
}

// The per-thread cache of what a topic matched: every change to the index
// shows in the next match on the same thread, from this index only.
TEST(SubscriptionIndex, ARepeatedTopicSeesEverySubscribeAndUnsubscribe) {
  SubscriptionIndex index;
  index.subscribe("cache/t", entry(1), online());
  EXPECT_EQ(sessions_matching(index, "cache/t"), (std::set<std::uint64_t>{1}));
  EXPECT_EQ(sessions_matching(index, "cache/t"), (std::set<std::uint64_t>{1}));  // remembered
  index.subscribe("cache/+", entry(2), online());
  EXPECT_EQ(sessions_matching(index, "cache/t"), (std::set<std::uint64_t>{1, 2}));
  index.subscribe("cache/t", entry(1, QoS::kAtLeastOnce), online());  // replaced
  std::vector<Target> targets;
  index.match(message("cache/t"), Strategy::kRoundRobin, targets);
  ASSERT_EQ(targets.size(), 2u);
  EXPECT_EQ(targets[0].max_qos, QoS::kAtLeastOnce);
  index.unsubscribe("cache/t", TargetRef::session(0, 1));
  EXPECT_EQ(sessions_matching(index, "cache/t"), (std::set<std::uint64_t>{2}));
}

TEST(SubscriptionIndex, ARememberedTopicStillLeavesOutANoLocalPublisher) {
  SubscriptionIndex index;
  index.subscribe("t", {TargetRef::session(0, 1), {QoS::kAtMostOnce, true}, 0}, online());
  index.subscribe("t", entry(2), online());
  std::vector<Target> targets;
  index.match(message("t", /*origin=*/2), Strategy::kRoundRobin, targets);
  EXPECT_EQ(targets.size(), 2u);
  targets.clear();
  index.match(message("t", /*origin=*/1), Strategy::kRoundRobin, targets);
  ASSERT_EQ(targets.size(), 1u);
  EXPECT_EQ(targets[0].ref.id, 2u);
}

TEST(SubscriptionIndex, TwoIndexesOnOneThreadDoNotShareWhatTheyRemember) {
  SubscriptionIndex first;
  SubscriptionIndex second;
  first.subscribe("same/topic", entry(1), online());
  second.subscribe("same/topic", entry(2), online());
  for (int i = 0; i < 2; ++i) {
    EXPECT_EQ(sessions_matching(first, "same/topic"), (std::set<std::uint64_t>{1}));
    EXPECT_EQ(sessions_matching(second, "same/topic"), (std::set<std::uint64_t>{2}));
  }
}

TEST(SubscriptionIndex, ARepeatedTopicOfASharedGroupStillRoundRobins) {
  SubscriptionIndex index;
  index.subscribe("$share/g/jobs", entry(1), online());
  index.subscribe("$share/g/jobs", entry(2), online());
  index.subscribe("jobs", entry(3), online());
  std::multiset<std::uint64_t> got;
  for (int i = 0; i < 4; ++i) {
    for (std::uint64_t session : sessions_matching(index, "jobs"))
      got.insert(session);
  }
  EXPECT_EQ(got.count(1), 2u);
  EXPECT_EQ(got.count(2), 2u);
  EXPECT_EQ(got.count(3), 4u);
}

TEST(SubscriptionIndex, ARepeatedTopicStillMergesOneSubscribersOverlappingFilters) {
  SubscriptionIndex index;
  index.subscribe("m/t", entry(1, QoS::kAtMostOnce, 5), online());
  index.subscribe("m/+", entry(1, QoS::kAtLeastOnce, 6), online());
  index.subscribe("m/#", entry(2), online());
  for (int i = 0; i < 2; ++i) {  // walked, then remembered
    std::vector<Target> targets;
    index.match(message("m/t"), Strategy::kRoundRobin, targets);
    ASSERT_EQ(targets.size(), 2u) << i;
    const Target& first = targets[0].ref.id == 1 ? targets[0] : targets[1];
    EXPECT_EQ(first.max_qos, QoS::kAtLeastOnce);
    EXPECT_EQ(first.identifiers.size(), 2u);
  }
}

// Past the cache's bound on members per topic the topic is walked every
// time, with the same answers.
TEST(SubscriptionIndex, ATopicWithMoreSubscribersThanTheCacheHoldsIsStillMatched) {
  SubscriptionIndex index;
  for (std::uint64_t session = 1; session <= 1500; ++session)
    index.subscribe(session % 2 == 0 ? "big/t" : "big/+", entry(session), online());
  for (int i = 0; i < 2; ++i)
    EXPECT_EQ(sessions_matching(index, "big/t").size(), 1500u) << i;
  index.unsubscribe("big/t", TargetRef::session(0, 2));
  EXPECT_EQ(sessions_matching(index, "big/t").size(), 1499u);
}

}  // namespace
}  // namespace sluice::broker

namespace sluice::broker {
namespace {

// [Issue 11, item 15] A thread's cached answer survives (un)subscribes that
// cannot touch its topic, and never outlives one that can: whether the
// change was the last one, among many elsewhere, or beyond the log's reach.
TEST(SubscriptionIndexCache, ChangesElsewhereKeepTheAnswerAndChangesHereReplaceIt) {
  SubscriptionIndex index;
  index.subscribe("site/1/device/7/#", entry(1), online());
  EXPECT_EQ(sessions_matching(index, "site/1/device/7/temp"), (std::set<std::uint64_t>{1}));
  for (std::uint64_t churn : {10u, 2000u}) {  // within the change log, and past it
    for (std::uint64_t i = 0; i < churn; ++i) {
      const std::string filter = "site/1/device/" + std::to_string(100 + i) + "/#";
      index.subscribe(filter, entry(1000 + i), online());
      index.unsubscribe(filter, TargetRef::session(0, 1000 + i));
    }
    EXPECT_EQ(sessions_matching(index, "site/1/device/7/temp"), (std::set<std::uint64_t>{1}));
  }
  index.subscribe("site/+/device/7/temp", entry(2), online());  // matches: must be seen
  EXPECT_EQ(sessions_matching(index, "site/1/device/7/temp"), (std::set<std::uint64_t>{1, 2}));
  for (int i = 0; i < 5; ++i)
    index.subscribe("elsewhere/" + std::to_string(i), entry(3), online());
  index.unsubscribe("site/1/device/7/#", TargetRef::session(0, 1));  // among others
  index.subscribe("elsewhere/last", entry(3), online());
  EXPECT_EQ(sessions_matching(index, "site/1/device/7/temp"), (std::set<std::uint64_t>{2}));
}

}  // namespace
}  // namespace sluice::broker

namespace sluice::broker {
namespace {

// The change log is read without the lock while another thread writes it
// (run under ThreadSanitizer by make tsan): a reader never loses a stable
// subscription, and sees one that matches its topic once it is made.
TEST(SubscriptionIndexCache, ChurnOnAnotherThreadNeverStalesAnAnswer) {
  SubscriptionIndex index;
  index.subscribe("site/1/device/7/#", entry(1), online());
  std::atomic<bool> stop{false};
  std::atomic<std::uint64_t> made{0};  // subscriptions to the topic made so far
  std::thread writer([&] {
    for (std::uint64_t i = 0; !stop.load(); ++i) {
      const std::string elsewhere = "site/2/device/" + std::to_string(i % 500) + "/#";
      index.subscribe(elsewhere, entry(1000 + i % 500), online());
      index.unsubscribe(elsewhere, TargetRef::session(0, 1000 + i % 500));
      if (i % 100 == 0 && made.load() < 20) {
        index.subscribe("site/1/device/7/temp", entry(100 + made.load()), online());
        made.fetch_add(1);
      }
    }
  });
  for (int round = 0; round < 20'000; ++round) {
    const std::uint64_t before = made.load();
    const auto found = sessions_matching(index, "site/1/device/7/temp");
    ASSERT_TRUE(found.contains(1)) << "round " << round;
    ASSERT_GE(found.size(), 1 + before) << "round " << round;  // none made earlier is missing
  }
  stop = true;
  writer.join();
}

// What the cluster announces: a filter once, while this node's sessions
// have it; other nodes' routes and $share groups are not announced.
TEST(SubscriptionIndex, TellsTheObserverWhenAFilterComesAndGoes) {
  struct Recorder final : FilterObserver {
    std::vector<std::pair<std::string, bool>> seen;
    void on_filter(std::string_view filter, bool present) override {
      seen.emplace_back(std::string(filter), present);
    }
  } recorder;
  SubscriptionIndex index;
  index.set_filter_observer(&recorder);
  index.subscribe("a/#", entry(1), online());
  index.subscribe("a/#", entry(2), online());
  index.subscribe("a/#", entry(2, QoS::kAtLeastOnce), online());  // replaces: no news
  index.subscribe("$share/g/b", entry(3), online());
  const TargetRef node{0, 0, 7, TargetKind::kNode};
  index.subscribe("c", {node, mqtt::SubscriptionOptions{QoS::kExactlyOnce}, 0}, nullptr);
  index.subscribe("$share/g/b", {node, mqtt::SubscriptionOptions{QoS::kExactlyOnce}, 0}, nullptr);
  index.subscribe("$share/g/b", entry(4), online());  // the group's second member here: no news
  using Seen = std::vector<std::pair<std::string, bool>>;
  EXPECT_EQ(recorder.seen, (Seen{{"a/#", true}, {"$share/g/b", true}}));
  index.unsubscribe("a/#", TargetRef::session(0, 1));
  EXPECT_EQ(recorder.seen.size(), 2u);  // session 2 still has it
  index.unsubscribe("a/#", TargetRef::session(0, 2));
  index.unsubscribe("c", node);
  index.unsubscribe("a/#", TargetRef::session(0, 2));  // already gone: no news
  index.unsubscribe("$share/g/b", TargetRef::session(0, 3));
  index.unsubscribe("$share/g/b", TargetRef::session(0, 4));  // the last member here
  EXPECT_EQ(recorder.seen,
            (Seen{{"a/#", true}, {"$share/g/b", true}, {"a/#", false}, {"$share/g/b", false}}));
}

// Another node in a shared group is a member like a session (its own
// members are its business); a forwarded message's group was picked on the
// node it came from, so it matches no group here.
TEST(SubscriptionIndex, AnotherNodeIsAMemberOfASharedGroup) {
  SubscriptionIndex index;
  const TargetRef node{0, 0, 5, TargetKind::kNode};
  index.subscribe("$share/g/t", {node, mqtt::SubscriptionOptions{QoS::kExactlyOnce}, 0}, nullptr);
  index.subscribe("$share/g/t", entry(1), online(false));
  std::vector<Target> targets;
  index.match(message("t"), Strategy::kRoundRobin, targets);
  ASSERT_EQ(targets.size(), 1u);
  EXPECT_EQ(targets[0].ref, node);  // online, where the session here is not
  ASSERT_TRUE(targets[0].shared_filter);
  EXPECT_EQ(*targets[0].shared_filter, "$share/g/t");

  Message forwarded = message("t");
  forwarded.forwarded = true;
  targets.clear();
  index.match(forwarded, Strategy::kRoundRobin, targets);
  EXPECT_TRUE(targets.empty());
  // For the node that picked this one: a session here, never a node.
  const auto here = index.pick_shared("$share/g/t", forwarded, Strategy::kRoundRobin,
                                      TargetRef{0, ~0u, 0, TargetKind::kSession}, false, true);
  ASSERT_TRUE(here);
  EXPECT_EQ(here->ref, TargetRef::session(0, 1));
}

// With prefer_local, an online member on this node is picked before another
// node; without, the strategy goes round all of them.
TEST(SubscriptionIndex, APreferredLocalMemberGoesFirst) {
  SubscriptionIndex index;
  const TargetRef node{0, 0, 5, TargetKind::kNode};
  index.subscribe("$share/g/t", {node, mqtt::SubscriptionOptions{QoS::kExactlyOnce}, 0}, nullptr);
  index.subscribe("$share/g/t", entry(1), online());
  std::map<bool, int> to_node;
  for (const bool prefer_local : {true, false}) {
    for (int i = 0; i < 10; ++i) {
      std::vector<Target> targets;
      index.match(message("t"), Strategy::kRoundRobin, targets, prefer_local);
      ASSERT_EQ(targets.size(), 1u);
      to_node[prefer_local] += targets[0].ref == node ? 1 : 0;
    }
  }
  EXPECT_EQ(to_node[true], 0);
  EXPECT_EQ(to_node[false], 5);
}

// A node with several matching filters gets the message once.
TEST(SubscriptionIndex, ANodeMatchingTwiceIsOneTarget) {
  SubscriptionIndex index;
  const TargetRef node{0, 0, 3, TargetKind::kNode};
  index.subscribe("x/#", {node, mqtt::SubscriptionOptions{QoS::kExactlyOnce}, 0}, nullptr);
  index.subscribe("x/+", {node, mqtt::SubscriptionOptions{QoS::kExactlyOnce}, 0}, nullptr);
  index.subscribe("x/y", entry(1), online());
  std::vector<Target> targets;
  Message m = message("x/y");
  m.qos = QoS::kAtLeastOnce;
  index.match(m, Strategy::kRoundRobin, targets);
  ASSERT_EQ(targets.size(), 2u);
  const auto to_node = std::count_if(targets.begin(), targets.end(), [&](const Target& t) {
    return t.ref == node && t.max_qos == QoS::kExactlyOnce && !t.stored_session;
  });
  EXPECT_EQ(to_node, 1);
}

}  // namespace
}  // namespace sluice::broker
