// Threads for the slow part of authentication: checking a password against
// its PBKDF2 hash costs about 1 ms of CPU, which on a worker thread would
// hold up every other client of that worker (a reconnect storm of 2,000
// clients would stall them for two seconds). Workers hand the check in here
// and carry on; the result comes back through a callback on a pool thread.
//
// The threads run at a lower scheduling priority than the workers, so that
// on a machine with as many workers as cores the hashing yields to messages.
#pragma once

#include <condition_variable>
#include <deque>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace sluice::auth {

class HashPool {
 public:
  explicit HashPool(unsigned threads);
  ~HashPool();  // stop()
  HashPool(const HashPool&) = delete;
  HashPool& operator=(const HashPool&) = delete;

  // From any thread. False, and the task dropped, when kMostWaiting tasks
  // already wait (the clients behind them would time out before their turn)
  // or after stop().
  bool submit(std::function<void()> task);

  // About four seconds of checks for one thread: beyond that a client waits
  // longer than it would take to refuse it and let it retry.
  static constexpr std::size_t kMostWaiting = 4096;
  // Lets the running tasks finish, drops those still waiting, and joins the
  // threads: nothing the pool runs touches the broker after this returns.
  void stop();

 private:
  void run();

  std::mutex mutex_;
  std::condition_variable wake_;
  std::deque<std::function<void()>> tasks_;
  bool stopping_ = false;
  std::vector<std::thread> threads_;
};

}  // namespace sluice::auth
