// The retained store: set, replace, delete, wildcard queries, the limit.
#include "broker/retained_store.hpp"

#include <gtest/gtest.h>

#include <set>

namespace sluice::broker {
namespace {

MessagePtr retained(std::string topic, std::string payload) {
  auto m = std::make_shared<Message>();
  m->topic = std::move(topic);
  m->payload.assign(payload.begin(), payload.end());
  m->retain = true;
  return m;
}

std::set<std::string> matching(const RetainedStore& store, std::string_view filter) {
  std::set<std::string> topics;
  store.for_each_match(filter, Clock::now(), [&](const MessagePtr& m) { topics.insert(m->topic); });
  return topics;
}

TEST(RetainedStore, SetReplaceDelete) {
  RetainedStore store(100);
  EXPECT_EQ(store.set(retained("a/b", "1")), RetainedStore::SetResult::kStored);
  EXPECT_EQ(store.set(retained("a/b", "2")), RetainedStore::SetResult::kStored);
  EXPECT_EQ(store.size(), 1u);
  std::string payload;
  store.for_each_match("a/b", Clock::now(), [&](const MessagePtr& m) {
    payload.assign(m->payload.begin(), m->payload.end());
  });
  EXPECT_EQ(payload, "2");
  EXPECT_EQ(store.set(retained("a/b", "")), RetainedStore::SetResult::kDeleted);
  EXPECT_EQ(store.size(), 0u);
  EXPECT_TRUE(matching(store, "#").empty());
}

TEST(RetainedStore, WildcardQueries) {
  RetainedStore store(100);
  for (const char* t : {"a", "a/b", "a/b/c", "a/x/c", "b", "$SYS/up", "/lead"})
    store.set(retained(t, "x"));
  EXPECT_EQ(matching(store, "#"),
            (std::set<std::string>{"a", "a/b", "a/b/c", "a/x/c", "b", "/lead"}));
  EXPECT_EQ(matching(store, "a/#"), (std::set<std::string>{"a", "a/b", "a/b/c", "a/x/c"}));
  EXPECT_EQ(matching(store, "a/+/c"), (std::set<std::string>{"a/b/c", "a/x/c"}));
  EXPECT_EQ(matching(store, "+"), (std::set<std::string>{"a", "b"}));
  EXPECT_EQ(matching(store, "+/lead"), (std::set<std::string>{"/lead"}));
  EXPECT_EQ(matching(store, "$SYS/#"), (std::set<std::string>{"$SYS/up"}));
  EXPECT_EQ(matching(store, "a/b"), (std::set<std::string>{"a/b"}));
}

TEST(RetainedStore, LimitRefusesNewTopicsButNotReplacements) {
  RetainedStore store(2);
  EXPECT_EQ(store.set(retained("a", "1")), RetainedStore::SetResult::kStored);
  EXPECT_EQ(store.set(retained("b", "1")), RetainedStore::SetResult::kStored);
  EXPECT_EQ(store.set(retained("c", "1")), RetainedStore::SetResult::kLimitReached);
  EXPECT_EQ(store.set(retained("a", "2")), RetainedStore::SetResult::kStored);
  store.set(retained("b", ""));
  EXPECT_EQ(store.set(retained("c", "1")), RetainedStore::SetResult::kStored);
}

TEST(RetainedStore, ExpiredMessagesAreSkipped) {
  RetainedStore store(10);
  auto m = std::make_shared<Message>();
  m->topic = "t";
  m->payload = {1};
  m->expires_at = Clock::now() - std::chrono::seconds(1);
  store.set(m);
  EXPECT_TRUE(matching(store, "t").empty());
}

TEST(RetainedStore, PurgeRemovesExpiredMessagesAndFreesTheirPlaces) {
  RetainedStore store(2);
  auto expiring = std::make_shared<Message>();
  expiring->topic = "a/b/c";
  expiring->payload = {1};
  expiring->expires_at = Clock::now() + std::chrono::seconds(1);
  store.set(expiring);
  store.set(retained("d", "x"));
  EXPECT_EQ(store.set(retained("e", "x")), RetainedStore::SetResult::kLimitReached);
  EXPECT_EQ(store.purge_expired(Clock::now()), 0u);
  EXPECT_EQ(store.purge_expired(Clock::now() + std::chrono::seconds(2)), 1u);
  EXPECT_EQ(store.size(), 1u);
  EXPECT_EQ(store.set(retained("e", "x")), RetainedStore::SetResult::kStored);
  EXPECT_EQ(matching(store, "#"), (std::set<std::string>{"d", "e"}));
}

}  // namespace
}  // namespace sluice::broker
