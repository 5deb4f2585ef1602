// Waits for a condition with a deadline, polling: what tests (and
// benchmarks) wait on instead of sleeping and hoping.
#pragma once

#include <chrono>
#include <thread>

namespace sluice::testing_support {

// True as soon as `condition()` holds; false when it still does not after
// `limit`.
template <class Condition>
bool eventually(Condition condition,
                std::chrono::steady_clock::duration limit = std::chrono::seconds(20),
                std::chrono::steady_clock::duration poll = std::chrono::milliseconds(5)) {
  const auto deadline = std::chrono::steady_clock::now() + limit;
  while (std::chrono::steady_clock::now() < deadline) {
    if (condition()) return true;
    std::this_thread::sleep_for(poll);
  }
  return condition();
}

}  // namespace sluice::testing_support
