// Where the broker's durable changes go: an ordered journal of batches. On
// one node it is the store's group commit (Committer); in a cluster a
// Raft-replicated journal takes its place behind this same interface, so the
// broker and the queues do not change.
//
// The ordering guarantee, which the broker relies on everywhere it writes
// before it delivers or acknowledges:
//
//   1. Batches are applied in the order submit() was called. Calls from
//      different threads are ordered as the journal received them; calls
//      from one thread, or made under one lock, keep their order.
//   2. Each batch is applied atomically: all of its changes or none.
//   3. A batch's `done` runs only once that batch, and every batch submitted
//      before it, is applied and as durable as the journal's policy says.
//
// So a later change can never overtake an earlier one (a subscriber's PUBACK
// deleting a record that the publisher's batch is still writing), and
// waiting for one batch waits for everything before it.
//
// After a failure the guarantee is gone: a batch whose write failed reaches
// its `done` as an error, but batches after it may still be applied. The
// journal is then unhealthy (health()), which the broker reports; it does
// not try to stop the world.
#pragma once

#include <cstdint>
#include <functional>

#include "store/histogram.hpp"
#include "store/store.hpp"
#include "store/write_batch.hpp"

namespace sluice::store {

// Whether the journal still keeps its promise.
struct JournalHealth {
  std::uint64_t failures = 0;  // writes or syncs that failed
  bool healthy = true;         // false after any failure: acknowledged data may be lost
  std::string last_error;
};

// What the journal's writes cost: for /metrics.
struct JournalStats {
  const Histogram* commit_seconds = nullptr;  // each store write, its fsync included
  const Histogram* batch_size = nullptr;      // batches merged into one store write
  std::uint64_t syncs = 0;                    // fsyncs
};

class Journal {
 public:
  using Done = std::function<void(const Status&)>;
  virtual ~Journal() = default;

  // From any thread. `done` (may be empty) runs on the journal's thread;
  // a failed write reaches it as an error status.
  virtual void submit(WriteBatch&& batch, Done done) = 0;

  virtual JournalHealth health() const = 0;
  // Empty for a journal that measures nothing.
  virtual JournalStats stats() const { return {}; }
};

}  // namespace sluice::store
