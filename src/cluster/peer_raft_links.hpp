// RaftLinks between nodes (docs/replication.md): one Peer.Raft gRPC stream
// per node pair, on the peer channel (mutual TLS where the cluster has it),
// opened by the node whose id is the lower. Every Raft channel between the
// two nodes rides it as frames of up to 64 KiB, both ways; a channel's
// local end is a socket pair whose other end raft_uv reads and writes. A
// stream that ends closes its channels (raft_uv sees them end and dials
// again once the stream is back).
//
// Threads: one pump thread moves bytes from channel sockets into frames
// (epoll); each stream has a writer thread with a queue of its own, so a
// peer that stops reading holds back its own stream only, and a stream
// whose write makes no progress for 2 s is ended; each stream's reader
// moves frames into channel sockets; a dialler thread per peer this node
// dials. Channel state is under one mutex.
//
// Whoever serves the Peer service shuts its server down only after stop()
// (which waits for every serve() under way to return).
#pragma once

#include <chrono>
#include <functional>
#include <memory>
#include <string>

#include "cluster/raft/raft_links.hpp"

namespace grpc {
class Channel;
class ServerContext;
class Status;
template <class W, class R>
class ServerReaderWriter;
}  // namespace grpc

namespace sluice::cluster {

class RaftFrame;

class PeerRaftLinks final : public raft::RaftLinks {
 public:
  // `self`: this node's id, which its members use as their address.
  // `channel_to(node)`: a channel to that node's Peer service; null while
  // it is not a member. `stuck_after`: a stream whose writes make no
  // progress this long is ended and redialled.
  using ChannelTo = std::function<std::shared_ptr<grpc::Channel>(const std::string& node)>;
  PeerRaftLinks(std::string self, ChannelTo channel_to, std::chrono::milliseconds stuck_after);
  ~PeerRaftLinks() override;  // stop()
  PeerRaftLinks(const PeerRaftLinks&) = delete;
  PeerRaftLinks& operator=(const PeerRaftLinks&) = delete;

  // Keeps a stream to `node` open from now on, when this node is the one
  // to dial it (the lower id); otherwise `node` dials here.
  void connect(const std::string& node);

  // Ends the stream to `node` now, with its channels; the dialling side
  // opens a new one shortly (raft_uv then dials its channels again).
  void reset(const std::string& node);

  // The Peer.Raft handler: runs a stream another node opened, until it ends.
  grpc::Status serve(grpc::ServerContext* context,
                     grpc::ServerReaderWriter<RaftFrame, RaftFrame>* stream);

  // Ends every stream and channel, and waits for the threads and serve()
  // calls under way. Links accept nothing afterwards.
  void stop();

  // Streams that came up since the start, both directions (a metric).
  std::uint64_t streams_opened() const;

  void listen(std::uint64_t group, const std::string& address, Accept accept) override;
  void unlisten(std::uint64_t group, const std::string& address) override;
  void open(std::uint64_t group, std::uint64_t from_id, const std::string& from_address,
            const std::string& to_address, Opened opened) override;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace sluice::cluster
