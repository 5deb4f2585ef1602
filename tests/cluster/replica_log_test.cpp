// A replicated queue's log entries and state machine (cluster/replica_log.hpp)
// on real RocksDB stores: what one member applies, another has after a
// snapshot, and nothing of other queues is touched.
#include "cluster/replica_log.hpp"

#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <map>

#include "queue/log_codec.hpp"
#include "store/store.hpp"

namespace sluice::cluster {
namespace {

using store::Space;
using store::WriteBatch;
namespace keys = queue::keys;

class Stores : public ::testing::Test {
 protected:
  void SetUp() override {
    for (int i = 0; i < 2; ++i) {
      dirs_[i] = std::filesystem::temp_directory_path() /
                 ("sluice-replica-log-" + std::to_string(::getpid()) + "-" + std::to_string(i));
      std::filesystem::remove_all(dirs_[i]);
      ASSERT_TRUE(store::open_rocksdb_store(dirs_[i].string(), stores_[i]).ok);
    }
  }
  void TearDown() override {
    for (int i = 0; i < 2; ++i) {
      stores_[i].reset();
      std::filesystem::remove_all(dirs_[i]);
    }
  }
  // Every key of the queue space, with its value.
  std::map<std::string, std::string> everything(int i) {
    std::map<std::string, std::string> out;
    EXPECT_TRUE(stores_[i]
                    ->scan(Space::kQueues, std::string(1, '\0'), std::string(1, '\x7f'),
                           [&](std::string_view key, std::string_view value) {
                             out.emplace(key, value);
                             return true;
                           })
                    .ok);
    return out;
  }
  std::filesystem::path dirs_[2];
  std::unique_ptr<store::Store> stores_[2];
};

TEST(QueueWrites, RoundTripEveryKindOfWrite) {
  WriteBatch writes;
  writes.add(WriteBatch::Put{Space::kQueues, keys::entry("jobs", 1, 7), std::string("v\0w", 3)});
  writes.add(WriteBatch::Put{Space::kQueues, keys::queue("jobs"), ""});
  writes.add(WriteBatch::Erase{Space::kQueues, keys::entry("jobs", 0, 3)});
  writes.add(
      WriteBatch::EraseRange{Space::kQueues, keys::entry("jobs", 0, 0), keys::entry("jobs", 0, 3)});
  const auto decoded = decode_queue_writes(encode_queue_writes(writes));
  ASSERT_TRUE(decoded);
  ASSERT_EQ(decoded->size(), 4u);
  const auto& ops = decoded->operations();
  EXPECT_EQ(std::get<WriteBatch::Put>(ops[0]).key, keys::entry("jobs", 1, 7));
  EXPECT_EQ(std::get<WriteBatch::Put>(ops[0]).value, std::string("v\0w", 3));
  EXPECT_EQ(std::get<WriteBatch::Put>(ops[1]).value, "");
  EXPECT_EQ(std::get<WriteBatch::Erase>(ops[2]).key, keys::entry("jobs", 0, 3));
  EXPECT_EQ(std::get<WriteBatch::EraseRange>(ops[3]).to, keys::entry("jobs", 0, 3));
  EXPECT_TRUE(decode_queue_writes("")->empty());
}

TEST(QueueWrites, AnythingElseIsRefused) {
  const std::string entry =
      encode_queue_writes(WriteBatch().add(WriteBatch::Put{Space::kQueues, "key", "value"}));
  EXPECT_FALSE(decode_queue_writes(entry.substr(0, entry.size() - 1)));    // cut short
  EXPECT_FALSE(decode_queue_writes("X" + entry.substr(1)));                // no such kind
  EXPECT_FALSE(decode_queue_writes(std::string("P\xff\xff\xff\xff", 5)));  // longer than it is
}

TEST_F(Stores, AppliedEntriesAndARestoredSnapshotGiveTheSameQueue) {
  QueueLogMachine first(*stores_[0], {"jobs", "jobs.dlq"});
  QueueLogMachine second(*stores_[1], {"jobs", "jobs.dlq"});
  // Another queue on the second node, and a stale key of this one.
  ASSERT_TRUE(
      stores_[1]
          ->write(WriteBatch()
                      .add(WriteBatch::Put{Space::kQueues, keys::entry("other", 0, 0), "theirs"})
                      .add(WriteBatch::Put{Space::kQueues, keys::entry("jobs", 0, 99), "stale"}),
                  true)
          .ok);
  WriteBatch appends;
  for (std::uint64_t offset = 0; offset < 5; ++offset) {
    appends.add(WriteBatch::Put{Space::kQueues, keys::entry("jobs", 0, offset),
                                "m" + std::to_string(offset)});
  }
  appends.add(WriteBatch::Put{Space::kQueues, keys::entry("jobs.dlq", 0, 0), "dead"});
  first.apply(1, encode_queue_writes(appends));
  first.apply(2, encode_queue_writes(WriteBatch().add(WriteBatch::EraseRange{
                     Space::kQueues, keys::entry("jobs", 0, 0), keys::entry("jobs", 0, 2)})));
  // Applied twice (a restart applies again what the store may have lost).
  first.apply(2, encode_queue_writes(WriteBatch().add(WriteBatch::EraseRange{
                     Space::kQueues, keys::entry("jobs", 0, 0), keys::entry("jobs", 0, 2)})));
  const auto held = everything(0);
  EXPECT_EQ(held.size(), 4u);
  EXPECT_EQ(held.at(keys::entry("jobs", 0, 4)), "m4");
  EXPECT_FALSE(held.contains(keys::entry("jobs", 0, 1)));

  second.restore(first.snapshot());
  auto restored = everything(1);
  EXPECT_EQ(restored.at(keys::entry("other", 0, 0)), "theirs");  // not the group's
  restored.erase(keys::entry("other", 0, 0));
  EXPECT_EQ(restored, held);  // the stale key went
}

}  // namespace
}  // namespace sluice::cluster
