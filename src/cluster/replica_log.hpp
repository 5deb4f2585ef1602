// A replicated queue's Raft log (docs/replication.md): each entry is the
// writes one change of the queue layer made to the store's queue space,
// and the state machine applies them to this node's store. Snapshots are
// every key the group's queues hold there.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "cluster/raft/raft_member.hpp"
#include "store/write_batch.hpp"

namespace sluice::store {
class Store;
}

namespace sluice::cluster {

// The queue-space puts, erases and range erases of `writes` as one entry
// (anything else in it is left out: the caller sends only those).
std::string encode_queue_writes(const store::WriteBatch& writes);
// nullopt when `entry` is not one encode_queue_writes made.
std::optional<store::WriteBatch> decode_queue_writes(std::string_view entry);

class QueueLogMachine final : public raft::StateMachine {
 public:
  // `queues`: the names whose keys the group keeps (a queue and its
  // dead-letter queue).
  QueueLogMachine(store::Store& store, std::vector<std::string> queues);

  // The writes go to the store without waiting for the disk: the Raft log
  // is what is durable, and a restart applies what the store may have lost
  // again (writes of whole keys, so applying one twice changes nothing).
  void apply(std::uint64_t index, std::string_view entry) override;
  std::string snapshot() override;
  void restore(std::string_view snapshot) override;

 private:
  store::Store& store_;
  const std::vector<std::string> queues_;
};

}  // namespace sluice::cluster
