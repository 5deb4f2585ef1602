// This node's part of the cluster (docs/cluster.md): its membership in etcd,
// the filters its sessions subscribe to (announced per node), the other
// nodes' filters (entries of the subscription index that name a node), and
// the gRPC server and clients that carry publishes between nodes.
//
// Lifetime, from main: attach() before stored sessions are restored (their
// subscriptions are announced too), start() before the MQTT listeners open
// (a node takes clients only once it knows every other node's filters),
// leave() once the listeners are closed and drained, stop() after the
// workers. gRPC and etcd stay inside src/cluster/*.cpp.
#pragma once

#include <memory>
#include <optional>
#include <string>

#include "broker/cluster_view.hpp"
#include "config/config.hpp"

namespace sluice::broker {
class Broker;
}
namespace sluice::store {
class Store;
}

namespace sluice::cluster {

class Cluster {
 public:
  Cluster(broker::Broker& broker, const config::Config& config, std::string version);
  ~Cluster();
  Cluster(const Cluster&) = delete;
  Cluster& operator=(const Cluster&) = delete;

  void attach();
  // Joins: starts the managed etcd member if configured, takes the
  // membership lease, announces this node and its filters, learns the
  // others', and serves gRPC. An error stops start-up.
  // `store`: this node's (null without one), where replicated queues'
  // logs are applied.
  std::optional<std::string> start(store::Store* store);
  // The workers run: forwards from other nodes are taken from now on (until
  // then they are refused, and fail on their senders' side).
  void accept_forwards();
  // Takes this node's keys out of etcd (the others stop forwarding to it).
  void leave();
  void stop();

  broker::ClusterView view() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace sluice::cluster
