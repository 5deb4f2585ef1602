// A node that joins the cluster, or comes back after a restart, reads the
// retained messages of another node (Peer.Retained) and makes its own the
// same before it takes clients: the messages it lacks or holds in another
// form are set, those nobody holds any more are deleted, in memory and in
// its store. Run from Cluster::start, before the workers.
#pragma once

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "broker/broker.hpp"

namespace grpc {
class ChannelCredentials;
}

namespace sluice::cluster {

struct RetainedCatchUp {
  bool done = false;  // false: no other node answered (nothing changed)
  std::string from;   // the node read
  std::size_t set = 0;
  std::size_t deleted = 0;
};

// `peers`: the other members, (id, gRPC address); tried in turn until one
// answers within `timeout`.
RetainedCatchUp catch_up_retained(broker::Broker& broker, const std::string& node_id,
                                  const std::vector<std::pair<std::string, std::string>>& peers,
                                  const std::shared_ptr<grpc::ChannelCredentials>& credentials,
                                  std::chrono::milliseconds timeout);

}  // namespace sluice::cluster
