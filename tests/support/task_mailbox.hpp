// A broker::Mailbox for tests and benchmarks that drive a shard from one
// thread: tasks posted from the store's committer thread wait here until
// that thread runs them.
#pragma once

#include <condition_variable>
#include <cstdlib>
#include <deque>
#include <functional>
#include <mutex>
#include <vector>

#include "broker/broker.hpp"

namespace sluice::testing_support {

class TaskMailbox final : public broker::Mailbox {
 public:
  // One shard only: nothing is ever addressed to another.
  void post(std::uint32_t, std::vector<broker::RemoteDelivery>&&) override { std::abort(); }

  void post_task(std::uint32_t, std::function<void()> task) override {
    {
      std::lock_guard lock(mutex_);
      tasks_.push_back(std::move(task));
    }
    ready_.notify_one();
  }

  // Runs the tasks that have arrived; first waits for one if `wait` is set.
  void run(bool wait) {
    std::deque<std::function<void()>> tasks;
    {
      std::unique_lock lock(mutex_);
      if (wait) ready_.wait(lock, [&] { return !tasks_.empty(); });
      tasks.swap(tasks_);
    }
    for (auto& task : tasks)
      task();
  }

 private:
  std::mutex mutex_;
  std::condition_variable ready_;
  std::deque<std::function<void()>> tasks_;
};

}  // namespace sluice::testing_support
