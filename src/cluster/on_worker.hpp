// Runs a task on a worker (a shard's thread) from one of the cluster's own
// threads and waits for it: a task that has not started when the caller
// gives up never runs; one that started is waited for to the end, since it
// may use the caller's stack and what it did (a session closed, handed
// over) must reach the caller.
#pragma once

#include <atomic>
#include <chrono>
#include <future>
#include <memory>

#include "broker/broker.hpp"

namespace sluice::cluster {

// False when the task did not start by `deadline`, or `give_up()` said so
// first (it is asked every 100 ms), or there is no mailbox.
template <class Task, class GiveUp>
bool run_on_worker(broker::Broker& broker, std::uint32_t shard, Task& task,
                   std::chrono::steady_clock::time_point deadline, GiveUp&& give_up) {
  broker::Mailbox* mailbox = broker.mailbox();
  if (mailbox == nullptr) return false;
  enum State : int { kWaiting, kRunning, kAbandoned };
  struct Call {
    std::promise<void> done;
    std::atomic<int> state{kWaiting};
  };
  auto call = std::make_shared<Call>();
  std::future<void> done = call->done.get_future();
  mailbox->post_task(shard, [&broker, shard, call, &task] {
    int waiting = kWaiting;
    if (!call->state.compare_exchange_strong(waiting, kRunning)) return;
    task(broker.shard(shard));
    call->done.set_value();
  });
  while (done.wait_for(std::chrono::milliseconds(100)) != std::future_status::ready) {
    if (give_up() || std::chrono::steady_clock::now() >= deadline) {
      int waiting = kWaiting;
      if (call->state.compare_exchange_strong(waiting, kAbandoned)) return false;
      done.wait();  // it is running: it ends soon
      return true;
    }
  }
  return true;
}

}  // namespace sluice::cluster
