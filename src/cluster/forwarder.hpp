// Carries publishes to the other nodes that have matching subscribers: the
// broker's TargetSink for TargetKind::kNode. Each node the cluster knows has
// a link here: a queue that workers append to, and a thread that sends what
// is queued in one Forward call at a time (so a publisher's messages arrive
// in order, and messages that pile up while a call is out go in the next
// one: batches grow with load, and an idle link sends at once). Once the
// node answered, the deliveries that a publisher's acknowledgement waits for
// are settled on that publisher's worker (broker/remote_acks.hpp).
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <shared_mutex>
#include <string>
#include <vector>

#include "broker/broker.hpp"
#include "broker/cluster_view.hpp"
#include "broker/queue_gateway.hpp"
#include "config/config.hpp"

namespace grpc {
class ChannelCredentials;
}

namespace sluice::cluster {

class PeerLink;

class Forwarder final : public broker::TargetSink {
 public:
  Forwarder(broker::Broker& broker, const config::ClusterConfig& config,
            std::shared_ptr<grpc::ChannelCredentials> credentials);
  ~Forwarder() override;

  // On a worker thread.
  void deliver(std::uint32_t shard, const broker::TargetRef& to,
               broker::Delivery&& delivery) override;
  // A publish to a queue homed on node `number`, from worker `shard`,
  // where `acknowledge` runs with the home's answer (or the failure).
  void to_queue(std::uint16_t number, std::uint32_t shard, broker::MessagePtr message,
                broker::QueueGateway::Acknowledge acknowledge);
  // Every node there is a link to.
  void all_targets(std::vector<broker::TargetRef>& out) const override;

  // The node numbered `number` (TargetRef::node) is at `address`; replaces
  // any link it had. A node that is gone: remove, which fails what its link
  // still holds.
  void add(std::uint16_t number, const std::string& node_id, const std::string& address);
  void remove(std::uint16_t number);
  // Waits until what was queued for node `number` so far has been answered
  // (a session handed over from it: see Cluster's barrier); false at
  // `deadline`.
  bool drain(std::uint16_t number, std::chrono::steady_clock::time_point deadline);
  void stop();

  // Adds what the links counted to the nodes of `view` (matched by id).
  void describe(broker::ClusterView& view) const;

 private:
  broker::Broker& broker_;
  const config::ClusterConfig config_;
  std::shared_ptr<grpc::ChannelCredentials> credentials_;
  mutable std::shared_mutex mutex_;
  std::vector<std::shared_ptr<PeerLink>> links_;  // by node number
};

}  // namespace sluice::cluster
