#include "queue/compaction.hpp"

#include <algorithm>

namespace sluice::queue {

void CompactionPlan::see(std::uint64_t offset, std::string_view key) {
  last_ = offset;
  any_ = true;
  if (key.empty()) return;
  const auto [it, inserted] = newest_.try_emplace(std::string(key), offset);
  if (!inserted) it->second = std::max(it->second, offset);
}

bool CompactionPlan::removes(std::uint64_t offset, std::string_view key, std::int64_t timestamp_ms,
                             bool tombstone) const {
  if (key.empty() || !any_ || offset >= last_) return false;
  const auto newest = newest_.find(std::string(key));
  if (newest == newest_.end()) return false;  // appended after the first pass: not planned
  const bool superseded = newest->second > offset;
  if (!superseded && !tombstone) return false;
  const auto later = [&](std::int64_t at) {
    again_at_ms_ = again_at_ms_ == 0 ? at : std::min(again_at_ms_, at);
    return false;
  };
  const std::int64_t age = rules_.now_ms - timestamp_ms;
  if (age < rules_.min_compaction_lag_ms) return later(timestamp_ms + rules_.min_compaction_lag_ms);
  if (superseded) return true;
  // The newest of its key, and a tombstone: kept for delete_retention.
  if (age < rules_.delete_retention_ms) return later(timestamp_ms + rules_.delete_retention_ms);
  return true;
}

}  // namespace sluice::queue
