// What the load generator counts as it goes: which messages of a publisher
// a subscriber has seen (to find lost, duplicated and reordered ones), and
// end-to-end latencies as a histogram (cheap enough to keep for every
// message of a throughput run).
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <span>
#include <vector>

namespace sluice::load {

// The numbers every benchmark payload starts with; the rest is padding.
struct PayloadHead {
  std::uint32_t publisher = 0;
  std::uint64_t sequence = 0;
  std::uint64_t sent_ns = 0;  // CLOCK_MONOTONIC, the same clock on both ends
};
inline constexpr std::size_t kPayloadHeadBytes = 20;

inline void write_head(std::span<std::uint8_t> payload, const PayloadHead& head) {
  std::memcpy(payload.data(), &head.publisher, 4);
  std::memcpy(payload.data() + 4, &head.sequence, 8);
  std::memcpy(payload.data() + 12, &head.sent_ns, 8);
}

inline bool read_head(std::span<const std::uint8_t> payload, PayloadHead& head) {
  if (payload.size() < kPayloadHeadBytes) return false;
  std::memcpy(&head.publisher, payload.data(), 4);
  std::memcpy(&head.sequence, payload.data() + 4, 8);
  std::memcpy(&head.sent_ns, payload.data() + 12, 8);
  return true;
}

// One subscriber's view of one publisher's sequence: a bit per message.
class SequenceTracker {
 public:
  void saw(std::uint64_t sequence) {
    const std::size_t word = sequence / 64;
    if (word >= bits_.size()) bits_.resize(std::max(word + 1, bits_.size() * 2), 0);
    const std::uint64_t mask = std::uint64_t{1} << (sequence % 64);
    if (bits_[word] & mask) {
      ++duplicated_;
      return;
    }
    bits_[word] |= mask;
    ++distinct_;
    if (distinct_ > 1 && sequence < highest_) ++reordered_;
    highest_ = std::max(highest_, sequence);
  }
  std::uint64_t distinct() const { return distinct_; }
  std::uint64_t duplicated() const { return duplicated_; }
  std::uint64_t reordered() const { return reordered_; }

 private:
  std::vector<std::uint64_t> bits_;
  std::uint64_t distinct_ = 0, duplicated_ = 0, reordered_ = 0, highest_ = 0;
};

// Latencies in microseconds: exact up to 100 ms, then one overflow bucket.
class LatencyHistogram {
 public:
  LatencyHistogram() : buckets_(kBuckets + 1, 0) {}
  void add(std::uint64_t micros) {
    ++buckets_[std::min<std::uint64_t>(micros, kBuckets)];
    ++count_;
    max_ = std::max(max_, micros);
  }
  void merge(const LatencyHistogram& other) {
    for (std::size_t i = 0; i < buckets_.size(); ++i)
      buckets_[i] += other.buckets_[i];
    count_ += other.count_;
    max_ = std::max(max_, other.max_);
  }
  std::uint64_t count() const { return count_; }
  // The latency that `fraction` of the samples are at or below.
  std::uint64_t percentile(double fraction) const {
    if (count_ == 0) return 0;
    const auto rank = static_cast<std::uint64_t>(fraction * static_cast<double>(count_ - 1)) + 1;
    std::uint64_t seen = 0;
    for (std::size_t i = 0; i < kBuckets; ++i) {
      seen += buckets_[i];
      if (seen >= rank) return i;
    }
    return max_;
  }

 private:
  static constexpr std::size_t kBuckets = 100'000;
  std::vector<std::uint64_t> buckets_;
  std::uint64_t count_ = 0, max_ = 0;
};

}  // namespace sluice::load
