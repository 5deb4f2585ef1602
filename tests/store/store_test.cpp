// One test suite, run against every store: what goes in comes back, batches
// are atomic units, a session is deleted with all its records, and (RocksDB)
// everything survives reopening while a foreign directory is refused.
#include "store/store.hpp"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <functional>

namespace sluice::store {
namespace {

struct Loaded : LoadVisitor {
  std::vector<SessionRecord> sessions;
  std::vector<std::pair<std::string, WillRecord>> wills;
  std::vector<SubscriptionRecord> subscriptions;
  std::vector<OutboundRecord> outbounds;
  std::vector<std::pair<std::string, std::uint16_t>> inbounds;
  std::vector<std::pair<std::uint64_t, MessageRecord>> messages;
  std::vector<MessageRecord> retaineds;

  void session(SessionRecord&& r) override { sessions.push_back(std::move(r)); }
  void will(const std::string& c, WillRecord&& r) override { wills.emplace_back(c, std::move(r)); }
  void subscription(SubscriptionRecord&& r) override { subscriptions.push_back(std::move(r)); }
  void outbound(OutboundRecord&& r) override { outbounds.push_back(std::move(r)); }
  void inbound(const std::string& c, std::uint16_t p) override { inbounds.emplace_back(c, p); }
  void message(std::uint64_t id, MessageRecord&& r) override {
    messages.emplace_back(id, std::move(r));
  }
  void retained(MessageRecord&& r) override { retaineds.push_back(std::move(r)); }
};

MessageRecord message(std::string topic, std::string payload) {
  MessageRecord m;
  m.topic = std::move(topic);
  m.payload.assign(payload.begin(), payload.end());
  m.qos = 1;
  m.properties = {0x01, 0x01};
  m.expires_at_ms = 1'700'000'000'000;
  return m;
}

SessionRecord session(std::string client_id) {
  SessionRecord s;
  s.client_id = std::move(client_id);
  s.expiry_s = 3600;
  s.disconnected_at_ms = 1'700'000'000'123;
  s.owner = SessionOwner::kNamed;
  s.identity = "owner-of-" + s.client_id;
  return s;
}

OutboundRecord outbound(std::string client_id, std::uint64_t message_id) {
  OutboundRecord o;
  o.client_id = std::move(client_id);
  o.message_id = message_id;
  o.qos = 2;
  o.identifiers = {7, 268'435'455};
  o.packet_id = static_cast<std::uint16_t>(message_id);
  o.stage = OutboundRecord::Stage::kAwaitingPubrec;
  return o;
}

class TempDir {
 public:
  TempDir() {
    path_ = std::filesystem::temp_directory_path() /
            ("sluice-store-test-" + std::to_string(::getpid()) + "-" + std::to_string(counter_++));
    std::filesystem::remove_all(path_);
  }
  ~TempDir() { std::filesystem::remove_all(path_); }
  std::string str() const { return path_.string(); }

 private:
  static inline int counter_ = 0;
  std::filesystem::path path_;
};

struct StoreKind {
  std::string name;
  std::function<std::unique_ptr<Store>(const std::string& dir)> open;
};

void PrintTo(const StoreKind& kind, std::ostream* os) {
  *os << kind.name;
}

class StoreTest : public ::testing::TestWithParam<StoreKind> {
 protected:
  void SetUp() override { store_ = GetParam().open(dir_.str()); }
  Loaded load() {
    Loaded loaded;
    const Status status = store_->load(loaded);
    EXPECT_TRUE(status.ok) << status.message;
    return loaded;
  }
  void write(const WriteBatch& batch) {
    const Status status = store_->write(batch, true);
    ASSERT_TRUE(status.ok) << status.message;
  }

  TempDir dir_;
  std::unique_ptr<Store> store_;
};

TEST_P(StoreTest, StartsEmpty) {
  const Loaded loaded = load();
  EXPECT_TRUE(loaded.sessions.empty() && loaded.messages.empty() && loaded.retaineds.empty());
}

TEST_P(StoreTest, WhatGoesInComesBackInKeyOrder) {
  WriteBatch batch;
  batch.add(WriteBatch::PutSession{session("b")}).add(WriteBatch::PutSession{session("a")});
  batch.add(WriteBatch::PutSubscription{{"a", "x/#", 0x2D, 9, {}}});
  // A queue subscription keeps its SUBSCRIBE properties (any bytes, here).
  const SubscriptionRecord queued{"a", "$queue/q", 0x01, 0, {0x26, 0, 1, 'g', 0, 1, 'x'}};
  batch.add(WriteBatch::PutSubscription{queued});
  batch.add(WriteBatch::PutOutbound{outbound("a", 300)})
      .add(WriteBatch::PutOutbound{outbound("a", 2)});
  batch.add(WriteBatch::PutInbound{"a", 513});
  batch.add(WriteBatch::PutMessage{300, message("x/1", "three hundred")});
  batch.add(WriteBatch::PutMessage{2, message("x/2", "two")});
  batch.add(WriteBatch::PutRetained{message("r/1", "kept")});
  write(batch);

  const Loaded loaded = load();
  ASSERT_EQ(loaded.sessions.size(), 2u);
  EXPECT_EQ(loaded.sessions[0], session("a"));
  EXPECT_EQ(loaded.sessions[1], session("b"));
  EXPECT_EQ(loaded.subscriptions,
            (std::vector<SubscriptionRecord>{queued, {"a", "x/#", 0x2D, 9, {}}}));
  ASSERT_EQ(loaded.outbounds.size(), 2u);
  EXPECT_EQ(loaded.outbounds[0], outbound("a", 2));  // by message id: delivery order
  EXPECT_EQ(loaded.outbounds[1], outbound("a", 300));
  EXPECT_EQ(loaded.inbounds, (std::vector<std::pair<std::string, std::uint16_t>>{{"a", 513}}));
  ASSERT_EQ(loaded.messages.size(), 2u);
  EXPECT_EQ(loaded.messages[0].first, 2u);
  EXPECT_EQ(loaded.messages[1].second, message("x/1", "three hundred"));
  EXPECT_EQ(loaded.retaineds, (std::vector<MessageRecord>{message("r/1", "kept")}));
}

TEST_P(StoreTest, PutReplacesAndDeleteRemoves) {
  write(WriteBatch().add(WriteBatch::PutRetained{message("t", "old")}));
  write(WriteBatch().add(WriteBatch::PutRetained{message("t", "new")}));
  EXPECT_EQ(load().retaineds, (std::vector<MessageRecord>{message("t", "new")}));
  write(WriteBatch()
            .add(WriteBatch::DeleteRetained{"t"})
            .add(WriteBatch::PutOutbound{outbound("c", 1)})
            .add(WriteBatch::DeleteOutbound{"c", 1})
            .add(WriteBatch::PutInbound{"c", 1})
            .add(WriteBatch::DeleteInbound{"c", 1})
            .add(WriteBatch::PutMessage{1, message("m", "x")})
            .add(WriteBatch::DeleteMessage{1}));
  const Loaded loaded = load();
  EXPECT_TRUE(loaded.retaineds.empty() && loaded.outbounds.empty() && loaded.inbounds.empty() &&
              loaded.messages.empty());
}

TEST_P(StoreTest, DeletingASessionRemovesItsRecordsAndNoOneElses) {
  WriteBatch batch;
  for (const char* id : {"a", "ab", "a\x01"}) {  // ids that share a prefix with "a"
    batch.add(WriteBatch::PutSession{session(id)});
    batch.add(WriteBatch::PutSubscription{{id, "t", 1, 0, {}}});
    batch.add(WriteBatch::PutOutbound{outbound(id, 5)});
    batch.add(WriteBatch::PutInbound{id, 5});
  }
  write(batch);
  write(WriteBatch().add(WriteBatch::DeleteSession{"a"}));
  const Loaded loaded = load();
  ASSERT_EQ(loaded.sessions.size(), 2u);
  for (const auto& s : loaded.subscriptions)
    EXPECT_NE(s.client_id, "a");
  for (const auto& o : loaded.outbounds)
    EXPECT_NE(o.client_id, "a");
  EXPECT_EQ(loaded.subscriptions.size(), 2u);
  EXPECT_EQ(loaded.outbounds.size(), 2u);
  EXPECT_EQ(loaded.inbounds.size(), 2u);
}

TEST_P(StoreTest, SessionsOfEveryOwnerRoundTrip) {
  SessionRecord anonymous = session("anonymous");
  anonymous.owner = SessionOwner::kAnonymous;
  anonymous.identity.clear();
  SessionRecord unknown = session("unknown");
  unknown.owner = SessionOwner::kUnknown;
  unknown.identity.clear();
  write(WriteBatch()
            .add(WriteBatch::PutSession{anonymous})
            .add(WriteBatch::PutSession{session("named")})
            .add(WriteBatch::PutSession{unknown}));
  EXPECT_EQ(load().sessions, (std::vector<SessionRecord>{anonymous, session("named"), unknown}));
}

TEST_P(StoreTest, WillsAreRecordsOfTheirOwnAndGoWithTheirSession) {
  const WillRecord will{message("wills/a", "gone"), 30};
  write(WriteBatch()
            .add(WriteBatch::PutSession{session("a")})
            .add(WriteBatch::PutWill{"a", will})
            .add(WriteBatch::PutSession{session("b")})
            .add(WriteBatch::PutWill{"b", will}));
  write(WriteBatch().add(WriteBatch::DeleteWill{"b"}));
  Loaded loaded = load();
  ASSERT_EQ(loaded.wills.size(), 1u);
  EXPECT_EQ(loaded.wills[0].first, "a");
  EXPECT_EQ(loaded.wills[0].second, will);
  write(WriteBatch().add(WriteBatch::DeleteSession{"a"}));
  EXPECT_TRUE(load().wills.empty());
}

// [Issue 11, item 14] A key space read by range from a position: what a
// queue partition's log needs.
TEST_P(StoreTest, KeySpacesAreReadByRangeInKeyOrder) {
  WriteBatch batch;
  for (int i = 9; i >= 0; --i)
    batch.add(
        WriteBatch::Put{Space::kQueues, "q/a/" + std::to_string(i), "entry " + std::to_string(i)});
  batch.add(WriteBatch::Put{Space::kQueues, "q/b/0", "another queue"});
  write(batch);
  std::vector<std::string> keys;
  auto collect = [&](std::string_view key, std::string_view) {
    keys.emplace_back(key);
    return true;
  };
  ASSERT_TRUE(store_->scan(Space::kQueues, "q/a/3", "q/a/7", collect).ok);
  EXPECT_EQ(keys, (std::vector<std::string>{"q/a/3", "q/a/4", "q/a/5", "q/a/6"}));
  keys.clear();
  ASSERT_TRUE(store_->scan(Space::kQueues, "q/a/8", "", collect).ok);  // to the end
  EXPECT_EQ(keys, (std::vector<std::string>{"q/a/8", "q/a/9", "q/b/0"}));
  keys.clear();
  int seen = 0;
  ASSERT_TRUE(store_
                  ->scan(Space::kQueues, "", "",
                         [&](std::string_view, std::string_view value) {
                           EXPECT_EQ(value, "entry 0");
                           return ++seen < 1;  // stops when asked
                         })
                  .ok);
  EXPECT_EQ(seen, 1);
  write(WriteBatch()
            .add(WriteBatch::EraseRange{Space::kQueues, "q/a/0", "q/a/5"})
            .add(WriteBatch::Erase{Space::kQueues, "q/b/0"}));
  ASSERT_TRUE(store_->scan(Space::kQueues, "", "", collect).ok);
  EXPECT_EQ(keys, (std::vector<std::string>{"q/a/5", "q/a/6", "q/a/7", "q/a/8", "q/a/9"}));
}

TEST_P(StoreTest, KeySpacesAreReadBackwardsFromBelowTheEnd) {
  WriteBatch batch;
  for (int i = 0; i < 10; ++i)
    batch.add(WriteBatch::Put{Space::kQueues, "q/a/" + std::to_string(i), ""});
  batch.add(WriteBatch::Put{Space::kQueues, "q/b/0", ""});
  write(batch);
  std::vector<std::string> keys;
  auto collect = [&](std::string_view key, std::string_view) {
    keys.emplace_back(key);
    return keys.size() < 3;
  };
  ASSERT_TRUE(store_->scan_back(Space::kQueues, "q/a/", "q/b/", collect).ok);
  EXPECT_EQ(keys, (std::vector<std::string>{"q/a/9", "q/a/8", "q/a/7"}));  // and it stops
  keys.clear();
  // `to` itself is not in the range, and nothing below `from` is read.
  ASSERT_TRUE(store_->scan_back(Space::kQueues, "q/a/4", "q/a/6", collect).ok);
  EXPECT_EQ(keys, (std::vector<std::string>{"q/a/5", "q/a/4"}));
  keys.clear();
  ASSERT_TRUE(store_->scan_back(Space::kQueues, "", "", collect).ok);  // from the very end
  EXPECT_EQ(keys.front(), "q/b/0");
  keys.clear();
  ASSERT_TRUE(store_->scan_back(Space::kQueues, "q/c/", "q/d/", collect).ok);
  EXPECT_TRUE(keys.empty());
}

std::unique_ptr<Store> open_rocksdb(const std::string& dir) {
  std::unique_ptr<Store> store;
  const Status status = open_rocksdb_store(dir, store);
  EXPECT_TRUE(status.ok) << status.message;
  return store;
}

INSTANTIATE_TEST_SUITE_P(
    Stores, StoreTest,
    ::testing::Values(StoreKind{"memory", [](const std::string&) { return make_memory_store(); }},
                      StoreKind{"rocksdb", open_rocksdb}),
    [](const ::testing::TestParamInfo<StoreKind>& param_info) { return param_info.param.name; });

TEST(RocksDbStore, EverythingSurvivesReopening) {
  TempDir dir;
  {
    auto store = open_rocksdb(dir.str());
    ASSERT_TRUE(store
                    ->write(WriteBatch()
                                .add(WriteBatch::PutSession{session("s")})
                                .add(WriteBatch::PutRetained{message("r", "kept")}),
                            true)
                    .ok);
  }
  auto reopened = open_rocksdb(dir.str());
  Loaded loaded;
  ASSERT_TRUE(reopened->load(loaded).ok);
  EXPECT_EQ(loaded.sessions, (std::vector<SessionRecord>{session("s")}));
  EXPECT_EQ(loaded.retaineds, (std::vector<MessageRecord>{message("r", "kept")}));
}

TEST(RocksDbStore, ADirectoryThatIsNotAStoreIsRefusedAndLeftAlone) {
  TempDir dir;
  std::filesystem::create_directories(dir.str());
  { std::ofstream(dir.str() + "/CURRENT") << "not rocksdb\n"; }
  std::unique_ptr<Store> store;
  const Status status = open_rocksdb_store(dir.str(), store);
  EXPECT_FALSE(status.ok);
  EXPECT_NE(status.message.find(dir.str()), std::string::npos) << status.message;
  std::ifstream current(dir.str() + "/CURRENT");
  std::string line;
  std::getline(current, line);
  EXPECT_EQ(line, "not rocksdb");
}

}  // namespace
}  // namespace sluice::store
