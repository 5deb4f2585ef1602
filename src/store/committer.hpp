// Group commit, the single node's Journal. Workers hand in batches; one
// committer thread writes all that gathered while the previous write was on
// its way as one store write, so many publishers share one fsync. Each
// batch's callback runs on the committer thread once its changes are as
// durable as the policy says:
//
//   kSync   written and fsynced before the callback (an acknowledgement sent
//           from it survives kill -9 and power loss);
//   kBatch  written before the callback, fsynced every `batch_interval`
//           (kill -9 loses nothing, power loss up to one interval);
//   kNone   written before the callback, fsync left to the OS.
//
// One thread writes, in the order batches were handed in: that is the
// journal's ordering guarantee (journal.hpp). A failed write or fsync is
// logged, counted, and turns the journal unhealthy; under kBatch the failed
// fsync comes after acknowledgements were sent, so it can only be reported.
#pragma once

#include <chrono>
#include <condition_variable>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

#include "store/journal.hpp"
#include "store/store.hpp"

namespace sluice::store {

enum class Durability { kSync, kBatch, kNone };

class Committer final : public Journal {
 public:
  Committer(Store& store, Durability durability, std::chrono::milliseconds batch_interval);
  ~Committer() override;  // writes what was handed in, syncs it, then stops
  Committer(const Committer&) = delete;
  Committer& operator=(const Committer&) = delete;

  void submit(WriteBatch&& batch, Done done) override;
  JournalHealth health() const override;
  JournalStats stats() const override;

  // Number of store writes so far (each may carry many batches).
  std::uint64_t writes() const;

 private:
  void run();
  void record(const Status& status, const char* what);

  Store& store_;
  const Durability durability_;
  const std::chrono::milliseconds batch_interval_;
  mutable std::mutex mutex_;
  std::condition_variable wake_;
  std::vector<std::pair<WriteBatch, Done>> pending_;
  bool stopping_ = false;
  std::uint64_t writes_ = 0;
  JournalHealth health_;
  // Written by the committer thread only.
  Histogram commit_seconds_{0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005,
                            0.01,   0.025,   0.05,   0.1,   0.25,   1};
  Histogram batch_size_{1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024};
  std::atomic<std::uint64_t> syncs_{0};
  std::thread thread_;
};

}  // namespace sluice::store
