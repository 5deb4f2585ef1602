// Which messages a compaction pass removes from a stream's partition
// (cleanup: compact): pure decisions over the partition's entries, so that
// Kafka's guarantees can be tested as properties over random logs.
//
// An entry goes when all of these hold:
//   - it has a key (keyless messages are left to retention);
//   - it is not the newest entry of the partition (the active tail);
//   - it was appended at least min_compaction_lag ago (a reader that keeps
//     within that lag of the head sees every message);
//   - a later entry has its key, or it is a tombstone (an empty payload)
//     older than delete_retention (readers from the start see a deleted
//     key's tombstone until then).
// Offsets never change: removing an entry leaves a gap readers step over.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <unordered_map>

namespace sluice::queue {

struct CompactionRules {
  std::int64_t now_ms = 0;
  std::int64_t min_compaction_lag_ms = 0;
  std::int64_t delete_retention_ms = 0;
};

class CompactionPlan {
 public:
  explicit CompactionPlan(const CompactionRules& rules) : rules_(rules) {}

  // First pass: every entry of the partition, in offset order.
  void see(std::uint64_t offset, std::string_view key);
  // Second pass: whether the entry at `offset` goes.
  bool removes(std::uint64_t offset, std::string_view key, std::int64_t timestamp_ms,
               bool tombstone) const;
  // When a pass would remove more of what it kept this time only for its
  // age (min_compaction_lag, delete_retention): 0 when never. Valid after
  // the second pass.
  std::int64_t again_at_ms() const { return again_at_ms_; }

 private:
  CompactionRules rules_;
  std::unordered_map<std::string, std::uint64_t> newest_;  // per key
  std::uint64_t last_ = 0;                                 // the newest offset seen
  bool any_ = false;
  mutable std::int64_t again_at_ms_ = 0;
};

}  // namespace sluice::queue
