// Subscription matching with a large index: 1,000,000 subscriptions, most of
// them exact topics, some with '+' and '#', as a fleet of devices would make.
// Reports publishes matched per second (each against the whole index) and
// allocations per match, for two sets of topics: 1,024 published again and
// again (a thread's match cache holds them all), and 262,144 (it holds few,
// so nearly every publish walks the trie); and the 1,024 while another
// thread subscribes and unsubscribes 1,000 times a second.
//
//   make bench   (or: build/release/bench/subscription_index_bench)
#include <benchmark/benchmark.h>

#include <atomic>
#include <chrono>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "allocation_counter.hpp"
#include "broker/subscription_index.hpp"

namespace {

using namespace sluice;

constexpr int kDevices = 100'000;

// 10 subscriptions per device: 8 exact, one '+', one '#'.
void fill(broker::SubscriptionIndex& index) {
  auto online = std::make_shared<broker::SessionTag>("bench");
  online->online = true;
  std::uint64_t session = 0;
  for (int d = 0; d < kDevices; ++d) {
    const std::string device = "site/" + std::to_string(d % 100) + "/device/" + std::to_string(d);
    for (int m = 0; m < 8; ++m) {
      index.subscribe(device + "/metric/" + std::to_string(m),
                      {broker::TargetRef::session(0, ++session), {}, 0}, online);
    }
    index.subscribe(device + "/+/0", {broker::TargetRef::session(0, ++session), {}, 0}, online);
    index.subscribe(device + "/#", {broker::TargetRef::session(0, ++session), {}, 0}, online);
  }
}

broker::SubscriptionIndex& shared_index() {
  static broker::SubscriptionIndex index;
  static bool filled = [] {
    fill(index);
    return true;
  }();
  (void)filled;
  return index;
}

void BM_MatchMillionSubscriptions(benchmark::State& state) {
  broker::SubscriptionIndex& index = shared_index();
  std::vector<broker::Message> messages(static_cast<std::size_t>(state.range(0)));
  std::mt19937 random(42);
  for (auto& m : messages) {
    const int d = static_cast<int>(random() % kDevices);
    m.topic = "site/" + std::to_string(d % 100) + "/device/" + std::to_string(d) + "/metric/" +
              std::to_string(random() % 8);
  }
  std::vector<broker::Target> targets;
  targets.reserve(64);
  std::size_t i = 0;
  std::size_t matched = 0;
  const auto allocations_before = bench::allocation_count();
  for (auto _ : state) {
    targets.clear();
    index.match(messages[i++ % messages.size()], config::SharedStrategy::kRoundRobin, targets);
    matched += targets.size();
  }
  state.counters["subscriptions"] =
      benchmark::Counter(static_cast<double>(index.size()), benchmark::Counter::kAvgThreads);
  state.counters["targets/match"] =
      benchmark::Counter(static_cast<double>(matched), benchmark::Counter::kAvgIterations);
  state.counters["allocs/match"] =
      benchmark::Counter(static_cast<double>(bench::allocation_count() - allocations_before),
                         benchmark::Counter::kAvgIterations);
  state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations()));
}
BENCHMARK(BM_MatchMillionSubscriptions)
    ->ArgName("topics")
    ->Arg(1024)
    ->Arg(262'144)
    ->Threads(1)
    ->Threads(2);

// The 1,024 repeated topics while another thread subscribes and unsubscribes
// 1,000 times a second, under the same prefixes ("site/N/device/..."), as
// devices coming and going would. The cache keeps its answers through changes
// that cannot touch them; compare with BM_MatchMillionSubscriptions/1024.
void BM_MatchUnderChurn(benchmark::State& state) {
  broker::SubscriptionIndex& index = shared_index();
  std::vector<broker::Message> messages(1024);
  std::mt19937 random(42);
  for (auto& m : messages) {
    const int d = static_cast<int>(random() % kDevices);
    m.topic = "site/" + std::to_string(d % 100) + "/device/" + std::to_string(d) + "/metric/" +
              std::to_string(random() % 8);
  }
  std::atomic<bool> stop{false};
  std::atomic<std::uint64_t> changes{0};
  std::thread churn([&] {
    auto online = std::make_shared<broker::SessionTag>("churn");
    auto next = std::chrono::steady_clock::now();
    for (std::uint64_t n = 0; !stop.load(std::memory_order_relaxed); ++n) {
      const std::string filter =
          "site/" + std::to_string(n % 100) + "/device/new-" + std::to_string(n) + "/#";
      const auto ref = broker::TargetRef::session(1, n);
      index.subscribe(filter, {ref, {}, 0}, online);
      index.unsubscribe(filter, ref);
      changes.fetch_add(2, std::memory_order_relaxed);
      next += std::chrono::microseconds(2000);  // two changes per 2 ms: 1,000 a second
      std::this_thread::sleep_until(next);
    }
  });
  std::vector<broker::Target> targets;
  targets.reserve(64);
  std::size_t i = 0;
  const auto start = std::chrono::steady_clock::now();
  for (auto _ : state) {
    targets.clear();
    index.match(messages[i++ % messages.size()], config::SharedStrategy::kRoundRobin, targets);
  }
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  stop = true;
  churn.join();
  state.counters["changes/s"] = static_cast<double>(changes.load()) / seconds;
  state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations()));
}
BENCHMARK(BM_MatchUnderChurn)->MinTime(2.0);

}  // namespace

BENCHMARK_MAIN();
