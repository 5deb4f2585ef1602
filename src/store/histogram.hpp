// A histogram with fixed buckets that one thread writes and any thread reads
// (relaxed atomics: no lock, no contention, a reader sees recent values), for
// the store's commit latency and batch size and the workers' loop lag. In
// store/ because it is the lowest layer that needs one.
#pragma once

#include <atomic>
#include <cstdint>
#include <initializer_list>
#include <memory>
#include <vector>

namespace sluice::store {

class Histogram {
 public:
  // `bounds`: the buckets' upper bounds, ascending (a +Inf bucket follows).
  Histogram(std::initializer_list<double> bounds)
      : bounds_(bounds),
        counts_(std::make_unique<std::atomic<std::uint64_t>[]>(bounds.size() + 1)) {}

  // From the one writing thread.
  void observe([[maybe_unused]] double value) {
#ifndef SLUICE_METRICS_OFF
    std::size_t i = 0;
    while (i < bounds_.size() && value > bounds_[i])
      ++i;
    bump(counts_[i], 1);
    sum_.store(sum_.load(std::memory_order_relaxed) + value, std::memory_order_relaxed);
#endif
  }

  struct Snapshot {
    std::vector<double> bounds;
    std::vector<std::uint64_t> counts;  // per bucket, the last one +Inf
    double sum = 0;
  };
  Snapshot snapshot() const {
    Snapshot s{bounds_, std::vector<std::uint64_t>(bounds_.size() + 1), 0};
    for (std::size_t i = 0; i <= bounds_.size(); ++i)
      s.counts[i] = counts_[i].load(std::memory_order_relaxed);
    s.sum = sum_.load(std::memory_order_relaxed);
    return s;
  }

 private:
  static void bump(std::atomic<std::uint64_t>& counter, std::uint64_t n) {
    counter.store(counter.load(std::memory_order_relaxed) + n, std::memory_order_relaxed);
  }
  std::vector<double> bounds_;
  std::unique_ptr<std::atomic<std::uint64_t>[]> counts_;
  std::atomic<double> sum_{0};
};

}  // namespace sluice::store
