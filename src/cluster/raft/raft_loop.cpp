#include "cluster/raft/raft_loop.hpp"

#include <uv.h>

#include <deque>
#include <future>
#include <mutex>
#include <stdexcept>
#include <thread>
#include <utility>

namespace sluice::cluster::raft {

struct RaftLoop::Impl {
  explicit Impl(std::string n) : name(std::move(n)) {}

  std::string name;
  uv_loop_t loop{};
  uv_async_t wake{};
  std::thread thread;
  std::thread::id thread_id;

  std::mutex mutex;
  std::deque<std::function<void()>> tasks;
  bool started = false;
  bool stopping = false;

  static void on_wake(uv_async_t* handle) {
    auto* self = static_cast<Impl*>(handle->data);
    self->drain();
  }

  // uv_async_send coalesces: one wake-up runs everything queued by then.
  void drain() {
    std::deque<std::function<void()>> now;
    bool closing;
    {
      std::lock_guard lock(mutex);
      now.swap(tasks);
      closing = stopping;
    }
    for (std::function<void()>& task : now)
      task();
    if (closing && !uv_is_closing(reinterpret_cast<uv_handle_t*>(&wake)))
      uv_close(reinterpret_cast<uv_handle_t*>(&wake), nullptr);
  }
};

RaftLoop::RaftLoop(std::string name) : impl_(std::make_unique<Impl>(std::move(name))) {
  if (uv_loop_init(&impl_->loop) != 0) throw std::runtime_error("uv_loop_init failed");
  impl_->wake.data = impl_.get();
  uv_async_init(&impl_->loop, &impl_->wake, &Impl::on_wake);
}

RaftLoop::~RaftLoop() {
  stop();
  uv_loop_close(&impl_->loop);
}

void RaftLoop::start() {
  Impl& l = *impl_;
  std::lock_guard lock(l.mutex);
  if (l.started) return;
  l.started = true;
  l.thread = std::thread([&l] {
    { std::lock_guard started(l.mutex); }  // thread_id is set
    uv_run(&l.loop, UV_RUN_DEFAULT);
  });
  l.thread_id = l.thread.get_id();
}

bool RaftLoop::post(std::function<void()> task) {
  Impl& l = *impl_;
  {
    std::lock_guard lock(l.mutex);
    if (l.stopping) return false;
    l.tasks.push_back(std::move(task));
  }
  uv_async_send(&l.wake);
  return true;
}

bool RaftLoop::run(const std::function<void()>& task) {
  if (on_loop_thread()) {
    task();
    return true;
  }
  std::promise<void> done;
  std::future<void> finished = done.get_future();
  if (!post([&task, &done] {
        task();
        done.set_value();
      }))
    return false;
  finished.wait();
  return true;
}

void RaftLoop::stop() {
  Impl& l = *impl_;
  bool join;
  {
    std::lock_guard lock(l.mutex);
    if (l.stopping) return;
    l.stopping = true;
    join = l.started;
  }
  if (!join) {
    // Never ran: close the wake handle here, on what would be its thread.
    uv_close(reinterpret_cast<uv_handle_t*>(&l.wake), nullptr);
    uv_run(&l.loop, UV_RUN_DEFAULT);
    return;
  }
  uv_async_send(&l.wake);
  l.thread.join();
}

uv_loop_s* RaftLoop::uv() {
  return &impl_->loop;
}

bool RaftLoop::on_loop_thread() const {
  return std::this_thread::get_id() == impl_->thread_id;
}

const std::string& RaftLoop::name() const {
  return impl_->name;
}

}  // namespace sluice::cluster::raft
