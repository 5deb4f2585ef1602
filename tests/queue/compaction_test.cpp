// Kafka's compaction guarantees as properties over random keyed logs: the
// log as appended is the model, passes run at random times between
// appends, and every property is checked after every pass.
#include "queue/compaction.hpp"

#include <gtest/gtest.h>

#include <map>
#include <optional>
#include <random>
#include <set>
#include <string>
#include <vector>

namespace sluice::queue {
namespace {

struct Entry {
  std::uint64_t offset;
  std::string key;  // empty: keyless
  std::int64_t timestamp_ms;
  bool tombstone;
};

// One pass as QueueService runs it: see every entry, then ask of each.
std::vector<Entry> compact(const std::vector<Entry>& log, const CompactionRules& rules,
                           std::size_t* removed = nullptr) {
  CompactionPlan plan(rules);
  for (const Entry& entry : log)
    plan.see(entry.offset, entry.key);
  std::vector<Entry> kept;
  for (const Entry& entry : log) {
    if (!plan.removes(entry.offset, entry.key, entry.timestamp_ms, entry.tombstone))
      kept.push_back(entry);
  }
  if (removed != nullptr) *removed = log.size() - kept.size();
  return kept;
}

class CompactionProperties : public ::testing::TestWithParam<unsigned> {};

TEST_P(CompactionProperties, HoldOverRandomKeyedLogs) {
  std::mt19937_64 random(GetParam());
  const auto pick = [&](std::uint64_t low, std::uint64_t high) {
    return std::uniform_int_distribution<std::uint64_t>(low, high)(random);
  };
  CompactionRules rules;
  // Some logs with no lag at all: then only the active-tail rule protects the newest.
  rules.min_compaction_lag_ms = pick(0, 4) == 0 ? 0 : static_cast<std::int64_t>(pick(1, 200));
  const std::uint64_t most_step = rules.min_compaction_lag_ms == 0
                                      ? 50
                                      : static_cast<std::uint64_t>(rules.min_compaction_lag_ms) / 2;
  rules.delete_retention_ms = pick(0, 4) == 0 ? 0 : static_cast<std::int64_t>(pick(1, 300));
  const std::uint64_t keys = pick(1, 20);
  std::vector<Entry> appended;  // everything, ever: the model
  std::vector<Entry> log;       // what the partition holds
  std::int64_t now = 1'000'000;
  // A reader that keeps up: it reads whatever the log holds past its
  // position at least every min_compaction_lag / 2.
  std::uint64_t position = 0;
  std::int64_t last_read = now;
  std::set<std::uint64_t> read;
  const auto read_up = [&] {
    for (const Entry& entry : log) {
      if (entry.offset >= position) read.insert(entry.offset);
    }
    position = appended.size();
    last_read = now;
  };

  const std::size_t steps = pick(50, 400);
  for (std::size_t step = 0; step < steps; ++step) {
    now += static_cast<std::int64_t>(pick(0, most_step));
    const bool keyless = pick(0, 9) == 0;
    Entry entry{appended.size(), keyless ? "" : "k" + std::to_string(pick(1, keys)), now,
                !keyless && pick(0, 9) == 0};
    appended.push_back(entry);
    log.push_back(entry);
    if (now - last_read >= rules.min_compaction_lag_ms / 2) read_up();
    if (pick(0, 4) != 0) continue;

    rules.now_ms = now;
    std::vector<Entry> before = log;
    log = compact(log, rules);

    // Offsets never change: what is kept is what was there, in order.
    std::size_t at = 0;
    for (const Entry& kept : log) {
      while (at < before.size() && before[at].offset != kept.offset)
        ++at;
      ASSERT_LT(at, before.size()) << "an entry not in the log before the pass";
      EXPECT_EQ(before[at].key, kept.key);
      EXPECT_EQ(before[at].timestamp_ms, kept.timestamp_ms);
    }
    // The active tail (the newest entry) is never compacted.
    ASSERT_FALSE(log.empty());
    EXPECT_EQ(log.back().offset, appended.back().offset);
    std::set<std::uint64_t> present;
    for (const Entry& kept : log)
      present.insert(kept.offset);
    std::map<std::string, const Entry*> newest;
    for (const Entry& any : appended) {
      if (!any.key.empty()) newest[any.key] = &any;
    }
    for (const Entry& any : before) {
      const bool here = present.contains(any.offset);
      // Keyless messages are retention's, not compaction's.
      if (any.key.empty()) {
        EXPECT_TRUE(here) << any.offset;
      }
      // min_compaction_lag: nothing younger goes.
      if (now - any.timestamp_ms < rules.min_compaction_lag_ms) {
        EXPECT_TRUE(here) << any.offset;
      }
    }
    for (const auto& [key, last] : newest) {
      // A reader from the start sees the final value of every key: the
      // newest of each key stays, unless it is a tombstone past
      // delete_retention (and not the active tail).
      const bool expired_tombstone = last->tombstone &&
                                     now - last->timestamp_ms >= rules.delete_retention_ms &&
                                     now - last->timestamp_ms >= rules.min_compaction_lag_ms &&
                                     last->offset != appended.back().offset;
      EXPECT_EQ(present.contains(last->offset), !expired_tombstone) << key;
      // Anything older of the key that is still there is only kept for its age.
      for (const Entry& kept : log) {
        if (kept.key == key && kept.offset < last->offset) {
          EXPECT_LT(now - kept.timestamp_ms, rules.min_compaction_lag_ms) << key;
        }
      }
    }
    // A second pass at the same moment finds nothing more.
    std::size_t removed = 0;
    compact(log, rules, &removed);
    EXPECT_EQ(removed, 0u);
  }
  read_up();
  // The reader that kept up (within a lag there was) saw every message ever appended.
  if (rules.min_compaction_lag_ms > 0) {
    EXPECT_EQ(read.size(), appended.size());
  }
}

INSTANTIATE_TEST_SUITE_P(Seeds, CompactionProperties, ::testing::Range(1u, 201u));

TEST(CompactionPlan, SaysWhenAKeptMessageMayGo) {
  CompactionRules rules{/*now_ms=*/1'000, /*min_compaction_lag_ms=*/500,
                        /*delete_retention_ms=*/2'000};
  CompactionPlan plan(rules);
  plan.see(0, "a");
  plan.see(1, "a");  // supersedes 0, but 0 is too young
  plan.see(2, "b");
  EXPECT_FALSE(plan.removes(0, "a", 800, false));
  EXPECT_EQ(plan.again_at_ms(), 1'300);
  EXPECT_FALSE(plan.removes(1, "a", 900, true));  // the newest of a: a young tombstone
  EXPECT_EQ(plan.again_at_ms(), 1'300);
  EXPECT_FALSE(plan.removes(2, "b", 900, false));  // the active tail
}

}  // namespace
}  // namespace sluice::queue
