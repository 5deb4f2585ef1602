// N nodes' PeerRaftLinks in one process, each with a gRPC server of its
// own on 127.0.0.1 that serves only the Raft stream: what the Raft tests
// and benchmarks run groups on when they want the node-to-node path.
#pragma once

#include <grpcpp/grpcpp.h>

#include <array>
#include <chrono>
#include <cstdint>
#include <memory>
#include <string>

#include "cluster/peer_raft_links.hpp"
#include "peer.grpc.pb.h"

namespace sluice::cluster::testing_support {

inline std::string node_name(int i) {
  return "node-" + std::to_string(i + 1);
}

// A node's Peer service with only the Raft stream.
class RaftOnlyPeer final : public Peer::Service {
 public:
  explicit RaftOnlyPeer(PeerRaftLinks& links) : links_(links) {}
  grpc::Status Raft(grpc::ServerContext* context,
                    grpc::ServerReaderWriter<RaftFrame, RaftFrame>* stream) override {
    return links_.serve(context, stream);
  }

 private:
  PeerRaftLinks& links_;
};

template <int N>
class PeerNodes {
 public:
  PeerNodes() {
    for (int i = 0; i < N; ++i) {
      links_[i] = std::make_unique<PeerRaftLinks>(
          node_name(i), [this](const std::string& node) { return channel_to(node); },
          std::chrono::milliseconds(2000));
      services_[i] = std::make_unique<RaftOnlyPeer>(*links_[i]);
      grpc::ServerBuilder builder;
      builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &ports_[i]);
      builder.RegisterService(services_[i].get());
      servers_[i] = builder.BuildAndStart();
    }
    for (int i = 0; i < N; ++i)
      for (int k = 0; k < N; ++k)
        links_[i]->connect(node_name(k));
  }
  ~PeerNodes() {
    // Links first: stop() waits for the streams they serve to end.
    for (auto& links : links_)
      links->stop();
    for (auto& server : servers_)
      if (server) server->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(5));
  }
  PeerNodes(const PeerNodes&) = delete;
  PeerNodes& operator=(const PeerNodes&) = delete;

  bool listening() const {
    for (int i = 0; i < N; ++i)
      if (!servers_[i] || ports_[i] == 0) return false;
    return true;
  }
  PeerRaftLinks& links(int i) { return *links_[i]; }
  // Ends the streams between node i and the others; they come back.
  void reset(int i) {
    for (int k = 0; k < N; ++k)
      if (k != i) links_[i]->reset(node_name(k));
  }
  std::uint64_t streams_opened() const {
    std::uint64_t sum = 0;
    for (const auto& links : links_)
      sum += links->streams_opened();
    return sum;
  }

 private:
  std::shared_ptr<grpc::Channel> channel_to(const std::string& node) {
    for (int i = 0; i < N; ++i)
      if (node == node_name(i))
        return grpc::CreateChannel("127.0.0.1:" + std::to_string(ports_[i]),
                                   grpc::InsecureChannelCredentials());
    return nullptr;
  }

  std::array<std::unique_ptr<PeerRaftLinks>, N> links_;
  std::array<std::unique_ptr<RaftOnlyPeer>, N> services_;
  std::array<std::unique_ptr<grpc::Server>, N> servers_;
  std::array<int, N> ports_{};
};

}  // namespace sluice::cluster::testing_support
