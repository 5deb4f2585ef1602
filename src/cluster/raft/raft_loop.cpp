#include "cluster/raft/raft_loop.hpp"

#include <pthread.h>
#include <uv.h>

#include <atomic>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <deque>
#include <exception>
#include <future>
#include <stdexcept>
#include <thread>
#include <utility>

namespace sluice::cluster::raft {

namespace {

// A loop that cannot go on: a task threw, or the loop was misused. What
// libraft holds on it is in an unknown state; stopping here says so.
[[noreturn]] void give_up(const std::string& loop, const char* what) {
  std::fprintf(stderr, "raft loop %s: %s\n", loop.c_str(), what);
  std::abort();
}

}  // namespace

bool Gate::post(std::function<void()> task) {
  std::lock_guard lock(mutex_);
  return loop_ != nullptr && loop_->post(std::move(task));
}

struct RaftLoop::Impl {
  explicit Impl(std::string n) : name(std::move(n)) {}

  std::string name;
  uv_loop_t loop{};
  uv_async_t wake{};
  std::thread thread;
  std::atomic<std::thread::id> thread_id{};
  std::shared_ptr<Gate> gate = std::make_shared<Gate>();

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
    for (std::function<void()>& task : now) {
      try {
        task();
      } catch (const std::exception& e) {
        give_up(name, e.what());
      } catch (...) {
        give_up(name, "a task threw");
      }
    }
    if (closing && !uv_is_closing(reinterpret_cast<uv_handle_t*>(&wake)))
      uv_close(reinterpret_cast<uv_handle_t*>(&wake), nullptr);
  }
};

RaftLoop::RaftLoop(std::string name) : impl_(std::make_unique<Impl>(std::move(name))) {
  if (uv_loop_init(&impl_->loop) != 0) throw std::runtime_error("uv_loop_init failed");
  impl_->wake.data = impl_.get();
  uv_async_init(&impl_->loop, &impl_->wake, &Impl::on_wake);
  impl_->gate->loop_ = this;
}

RaftLoop::~RaftLoop() {
  stop();
  uv_loop_close(&impl_->loop);
}

void RaftLoop::start() {
  Impl& l = *impl_;
  std::lock_guard lock(l.mutex);
  if (l.started || l.stopping) return;
  l.started = true;
  l.thread = std::thread([&l] {
    sigset_t pipe;
    sigemptyset(&pipe);
    sigaddset(&pipe, SIGPIPE);
    pthread_sigmask(SIG_BLOCK, &pipe, nullptr);
    uv_run(&l.loop, UV_RUN_DEFAULT);
  });
  l.thread_id.store(l.thread.get_id());
}

bool RaftLoop::post(std::function<void()> task) {
  Impl& l = *impl_;
  {
    std::lock_guard lock(l.mutex);
    if (!l.started || l.stopping) return false;
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

std::shared_ptr<Gate> RaftLoop::gate() const {
  return impl_->gate;
}

void RaftLoop::stop() {
  Impl& l = *impl_;
  if (on_loop_thread()) give_up(l.name, "stop() called on the loop's own thread");
  {
    // From now on a gate refuses, and waits for a post under way.
    std::lock_guard gate(l.gate->mutex_);
    l.gate->loop_ = nullptr;
  }
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
  l.thread_id.store(std::thread::id());
}

uv_loop_s* RaftLoop::uv() {
  return &impl_->loop;
}

bool RaftLoop::on_loop_thread() const {
  return std::this_thread::get_id() == impl_->thread_id.load();
}

const std::string& RaftLoop::name() const {
  return impl_->name;
}

}  // namespace sluice::cluster::raft
