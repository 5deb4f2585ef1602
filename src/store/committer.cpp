// The committer loop: take everything pending, write it as one batch, sync
// per policy, call back, repeat.
#include "store/committer.hpp"

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

void Committer::run() {
  auto next_sync = std::chrono::steady_clock::now() + batch_interval_;
  bool unsynced = false;
  while (true) {
    std::vector<std::pair<WriteBatch, Done>> taken;
    {
      std::unique_lock lock(mutex_);
      const auto ready = [&] { return stopping_ || !pending_.empty(); };
      if (durability_ == Durability::kBatch && unsynced) {
        wake_.wait_until(lock, next_sync, ready);
      } else {
        wake_.wait(lock, ready);
      }
      if (pending_.empty() && stopping_) break;
      taken.swap(pending_);
    }
    if (durability_ == Durability::kBatch && unsynced &&
        std::chrono::steady_clock::now() >= next_sync) {
      store_.sync();
      unsynced = false;
      next_sync = std::chrono::steady_clock::now() + batch_interval_;
    }
    if (taken.empty()) continue;

    WriteBatch merged;
    for (auto& [batch, done] : taken)
      merged.append(std::move(batch));
    const Status status = store_.write(merged, durability_ == Durability::kSync);
    unsynced = durability_ == Durability::kBatch;
    {
      std::lock_guard lock(mutex_);
      ++writes_;
    }
    for (auto& [batch, done] : taken) {
      if (done) done(status);
    }
  }
  if (unsynced) store_.sync();
}

}  // namespace sluice::store
