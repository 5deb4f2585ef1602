// The pool's threads: take a task, run it, repeat.
#include "auth/hash_pool.hpp"

#include <sys/resource.h>
#include <unistd.h>

namespace sluice::auth {
namespace {

// Nice value of the pool's threads: below the workers (0), so a core that
// both want goes to the worker first.
constexpr int kPoolNice = 10;

}  // namespace

HashPool::HashPool(unsigned threads) {
  for (unsigned i = 0; i < threads; ++i)
    threads_.emplace_back([this] { run(); });
}

HashPool::~HashPool() {
  stop();
}

bool HashPool::submit(std::function<void()> task) {
  {
    std::lock_guard lock(mutex_);
    if (stopping_ || tasks_.size() >= kMostWaiting) return false;
    tasks_.push_back(std::move(task));
  }
  wake_.notify_one();
  return true;
}

void HashPool::stop() {
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
    tasks_.clear();
  }
  wake_.notify_all();
  for (auto& thread : threads_)
    if (thread.joinable()) thread.join();
}

void HashPool::run() {
  // On Linux a thread's nice value is its own (setpriority on its thread id).
  setpriority(PRIO_PROCESS, static_cast<id_t>(gettid()), kPoolNice);
  while (true) {
    std::function<void()> task;
    {
      std::unique_lock lock(mutex_);
      wake_.wait(lock, [&] { return stopping_ || !tasks_.empty(); });
      if (stopping_) return;
      task = std::move(tasks_.front());
      tasks_.pop_front();
    }
    task();
  }
}

}  // namespace sluice::auth
