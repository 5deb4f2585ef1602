// Which node is each queue's home (docs/cluster.md, "Queues"): the broker's
// QueuePlacement. The key /sluice/queues/<name> holds the home's node id,
// with no lease: a queue's log is on its home's disk, so the queue stays
// there while the home is down (publishes to it on other nodes are refused
// meanwhile) and is there again when it comes back. A key is only ever
// created, by a transaction that requires it absent, so two nodes never
// both take a queue; deleting it by hand (etcdctl) lets the next node that
// uses the queue claim it afresh.
//
// Threading: home_of on any thread, from a map the watch keeps; claims made
// from workers go to a thread of this class, never a worker's.
#pragma once

#include <condition_variable>
#include <deque>
#include <functional>
#include <map>
#include <mutex>
#include <optional>
#include <shared_mutex>
#include <string>
#include <thread>
#include <vector>

#include "broker/broker.hpp"
#include "broker/queue_placement.hpp"
#include "cluster/etcd_client.hpp"

namespace sluice::cluster {

class Forwarder;
class QueueReplicas;
class RouteAnnouncer;

class QueueHomes final : public broker::QueuePlacement {
 public:
  // `number_of` gives a node's number among the forwarder's links (0 when
  // it is not up).
  QueueHomes(broker::Broker& broker, std::string node_id, EtcdClient& etcd, Forwarder& forwarder,
             RouteAnnouncer& announcer, std::function<std::uint16_t(const std::string&)> number_of);
  ~QueueHomes() override;

  // Replicated queues (queue_replicas.hpp) are homed where their group is
  // led, not by a key of their own: these answer for them. Before start.
  void set_replicas(QueueReplicas* replicas) { replicas_ = replicas; }

  // Before clients: claims every queue the queue layer knows that has no
  // home yet, then follows the homes in etcd. An error stops start-up.
  std::optional<std::string> start();
  void stop();

  broker::QueueHome home_of(std::string_view name) const override;
  void claim(std::uint32_t shard, std::vector<std::string> names,
             std::function<void(broker::QueueHome)> done) override;
  void forward(std::uint32_t shard, const broker::QueueHome& home, mqtt::Publish&& publish,
               broker::QueueGateway::Acknowledge acknowledge) override;
  void replicate(std::uint32_t shard, std::string_view name, store::WriteBatch&& writes,
                 std::function<void(bool committed)> done) override;

  // Every queue's home, by name.
  std::map<std::string, std::string> homes() const;

 private:
  struct Claim {
    std::uint32_t shard;
    std::vector<std::string> names;
    std::function<void(broker::QueueHome)> done;
  };
  // Claims the queues of `units` in etcd (a unit: a queue and its
  // dead-letter queue, claimed together or not at all when it can) and
  // notes the homes it learns: false when etcd did not answer.
  using Unit = std::vector<std::string>;
  bool claim_now(const std::vector<Unit>& units);
  bool claim_one_by_one(const Unit& unit);
  // What etcd said of queue `name` at `revision`: its home, or that its key
  // is gone (nullopt). Older news than the map holds changes nothing, so
  // the watch and the claims' own answers can come in any order.
  void note(const std::string& name, std::optional<std::string> node_id, std::int64_t revision);
  void note_snapshot(const EtcdClient::Range& range);
  // The capture filters of the queues homed here are announced as routes,
  // so that what they capture on other nodes is forwarded here.
  void pin_captures();
  void run();

  broker::Broker& broker_;
  const std::string node_id_;
  EtcdClient& etcd_;
  Forwarder& forwarder_;
  RouteAnnouncer& announcer_;
  const std::function<std::uint16_t(const std::string&)> number_of_;
  QueueReplicas* replicas_ = nullptr;

  struct Home {
    std::optional<std::string> node_id;  // nullopt: the key was deleted
    std::int64_t revision = 0;           // etcd's, when that was so
  };
  mutable std::shared_mutex homes_mutex_;
  std::map<std::string, Home, std::less<>> homes_;  // by queue name
  std::mutex pin_mutex_;                            // one pin_captures at a time

  std::mutex claims_mutex_;
  std::condition_variable wake_;
  std::deque<Claim> claims_;
  bool stopping_ = false;
  std::thread thread_;
};

}  // namespace sluice::cluster
