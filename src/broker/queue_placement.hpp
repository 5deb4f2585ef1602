// Where each queue lives in a cluster (docs/cluster.md, "Queues"): one node,
// the queue's home, holds its log and serves its consumers; a publish to it
// on another node is forwarded there. The cluster implements this and the
// queue layer asks it before it appends, captures or takes a consumer. A
// single node has none (Broker::queue_placement() is nullptr): every queue is
// here.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "broker/queue_gateway.hpp"
#include "mqtt/packets.hpp"
#include "store/write_batch.hpp"

namespace sluice::broker {

struct QueueHome {
  enum class Kind {
    kHere,
    kElsewhere,
    kUnclaimed,  // no node has claimed it yet (a queue made while the cluster runs)
  };
  Kind kind = Kind::kHere;
  std::string node_id;  // kElsewhere: the home's id
};

class QueuePlacement {
 public:
  virtual ~QueuePlacement() = default;

  // The home of queue `name` as this node knows it now; any thread.
  virtual QueueHome home_of(std::string_view name) const = 0;

  // Claims the queues `names` for this node, those no node has yet: all of
  // them in one transaction when it can (a queue and its dead-letter queue
  // share a home), otherwise each alone. `done`, if given, runs on worker
  // `shard` with the home of names[0] then (here, or the node that was
  // first; unclaimed when etcd did not answer).
  virtual void claim(std::uint32_t shard, std::vector<std::string> names,
                     std::function<void(QueueHome home)> done) = 0;

  // Sends a publish to a queue homed on another node; `acknowledge` runs on
  // worker `shard` with the home's answer, or with why there was none
  // (the home is down or did not answer in time: 0x80, with a Reason String).
  virtual void forward(std::uint32_t shard, const QueueHome& home, mqtt::Publish&& publish,
                       QueueGateway::Acknowledge acknowledge) = 0;

  // A replicated queue's writes (its keys in the store's queue space) go
  // into its replica group's log, not this node's journal
  // (docs/replication.md): `done` runs on worker `shard`, true once the
  // group committed them and this node applied them to its store, false
  // when they may not have been (this node does not lead the group).
  virtual void replicate(std::uint32_t shard, std::string_view name, store::WriteBatch&& writes,
                         std::function<void(bool committed)> done) = 0;
};

}  // namespace sluice::broker
