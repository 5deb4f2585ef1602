// The gRPC server of this node (proto/peer.proto): publishes other nodes
// forwarded here are routed to this node's sessions, on one worker per
// sending node (so each node's messages keep their order), and answered
// once routed and stored where they had to be.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>

#include "broker/broker.hpp"
#include "config/config.hpp"

namespace grpc {
class ServerCredentials;
}

namespace sluice::cluster {

class PeerRaftLinks;

class PeerService {
 public:
  PeerService(broker::Broker& broker, const config::ClusterConfig& config);
  ~PeerService();

  // What a Barrier call waits for (Cluster's barrier); set before start.
  using Barrier = std::function<bool(std::int64_t revision, const std::string& holder,
                                     std::chrono::steady_clock::time_point deadline)>;
  void set_barrier(Barrier barrier);
  // Serves Peer.Raft with `links` (null: refused); set before start.
  void set_raft_links(PeerRaftLinks* links);
  // Told when a session was handed to another node here (TakeSession).
  void set_session_taken(std::function<void(const std::string& client_id)> taken);
  // Binds config.listen; an error when it cannot.
  std::optional<std::string> start(std::shared_ptr<grpc::ServerCredentials> credentials);
  // Forwards are refused (UNAVAILABLE) until the workers run.
  void accept();
  void stop();
  std::uint64_t received() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
  std::string listen_;
  std::uint64_t max_packet_bytes_;
};

}  // namespace sluice::cluster
