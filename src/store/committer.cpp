// The committer loop: take everything pending, write it as one batch, sync
// per policy, call back, repeat.
#include "store/committer.hpp"

#include <spdlog/spdlog.h>

namespace sluice::store {

Committer::Committer(Store& store, Durability durability, std::chrono::milliseconds batch_interval)
    : store_(store), durability_(durability), batch_interval_(batch_interval) {
  thread_ = std::thread([this] { run(); });
}

Committer::~Committer() {
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
  }
  wake_.notify_one();
  thread_.join();
}

void Committer::submit(WriteBatch&& batch, Done done) {
  {
    std::lock_guard lock(mutex_);
    pending_.emplace_back(std::move(batch), std::move(done));
  }
  wake_.notify_one();
}

std::uint64_t Committer::writes() const {
  std::lock_guard lock(mutex_);
  return writes_;
}

JournalHealth Committer::health() const {
  std::lock_guard lock(mutex_);
  return health_;
}

void Committer::record(const Status& status, const char* what) {
  if (status.ok) return;
  std::uint64_t failures = 0;
  {
    std::lock_guard lock(mutex_);
    failures = ++health_.failures;
    health_.healthy = false;
    health_.last_error = status.message;
  }
  // Each failure is worth a line: they are rare, and each may mean lost data.
  spdlog::error("event=store_{}_failed failures={} error=\"{}\"", what, failures, status.message);
}

JournalStats Committer::stats() const {
  return {&commit_seconds_, &batch_size_, syncs_.load(std::memory_order_relaxed)};
}

void Committer::run() {
  auto next_sync = std::chrono::steady_clock::now() + batch_interval_;
  bool unsynced = false;
  while (true) {
    std::vector<std::pair<WriteBatch, Done>> taken;
    bool stopping = false;
    {
      std::unique_lock lock(mutex_);
      const auto ready = [&] { return stopping_ || !pending_.empty(); };
      if (durability_ == Durability::kBatch && unsynced) {
        wake_.wait_until(lock, next_sync, ready);
      } else {
        wake_.wait(lock, ready);
      }
      stopping = stopping_;
      if (pending_.empty() && stopping) break;
      taken.swap(pending_);
    }
    if (durability_ == Durability::kBatch && unsynced &&
        std::chrono::steady_clock::now() >= next_sync) {
      record(store_.sync(), "sync");
      syncs_.store(syncs_.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
      unsynced = false;
      next_sync = std::chrono::steady_clock::now() + batch_interval_;
    }
    if (taken.empty()) continue;

    WriteBatch merged;
    bool awaited = false;
    for (auto& [batch, done] : taken) {
      merged.append(std::move(batch));
      awaited = awaited || static_cast<bool>(done);
    }
    // Under sync, a group that nobody waits for (a PUBACK's deletion, a
    // queue's settlements) is written without its own fsync: the next
    // awaited write's fsync covers it (the log is written in order), and
    // so does a clean stop. One publisher with one message in flight then
    // costs one fsync per message, not two.
    const bool sync_now = durability_ == Durability::kSync && awaited;
    const auto began = std::chrono::steady_clock::now();
    const Status status = store_.write(merged, sync_now);
    commit_seconds_.observe(
        std::chrono::duration<double>(std::chrono::steady_clock::now() - began).count());
    batch_size_.observe(static_cast<double>(taken.size()));
    if (sync_now)
      syncs_.store(syncs_.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
    record(status, "write");
    unsynced = unsynced || !sync_now;
    if (sync_now) unsynced = false;
    {
      std::lock_guard lock(mutex_);
      ++writes_;
    }
    for (auto& [batch, done] : taken) {
      if (done) done(status);
    }
  }
  // A clean stop leaves everything on disk, whatever the policy.
  if (unsynced) record(store_.sync(), "sync");
}

}  // namespace sluice::store
