// The raft_uv transport of one group member (docs/raft-research.md,
// section 3): raft_uv asks it for a stream to each peer and hands it the
// streams peers open, and it gets both from the node's RaftLinks. raft_uv
// owns one transport per member, so the transport is how a member's
// channels are told apart from another group's between the same nodes.
//
// Every function runs on the member's loop thread; what the links call
// back on other threads is posted there.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>

#include "cluster/raft/libraft.hpp"
#include "cluster/raft/raft_links.hpp"
#include "cluster/raft/raft_loop.hpp"

namespace sluice::cluster::raft {

class GroupTransport {
 public:
  GroupTransport(RaftLoop& loop, RaftLinks& links, std::uint64_t group);
  ~GroupTransport();
  GroupTransport(const GroupTransport&) = delete;
  GroupTransport& operator=(const GroupTransport&) = delete;

  // What raft_uv_init takes.
  raft_uv_transport* get() { return &transport_; }

 private:
  static int init(raft_uv_transport* t, raft_id id, const char* address);
  static int listen(raft_uv_transport* t, raft_uv_accept_cb accept);
  static int connect(raft_uv_transport* t, raft_uv_connect* request, raft_id id,
                     const char* address, raft_uv_connect_cb done);
  static void close(raft_uv_transport* t, raft_uv_transport_close_cb done);

  void accepted(int fd, std::uint64_t peer_id, const std::string& peer_address);
  void connected(std::uint64_t attempt, int fd);
  // A stream raft_uv can read and write, over one end of a channel; null
  // (and the fd closed) when libuv will not take it.
  uv_stream_t* wrap(int fd);

  // Shared with what the links call back: null once the transport closed.
  struct Alive {
    GroupTransport* transport;
  };

  RaftLoop& loop_;
  RaftLinks& links_;
  const std::uint64_t group_;
  raft_uv_transport transport_{};
  raft_id id_ = 0;
  std::string address_;
  raft_uv_accept_cb accept_ = nullptr;
  bool listening_ = false;
  std::shared_ptr<Alive> alive_;
  // Connects raft_uv is waiting for, by attempt number.
  struct Attempt {
    raft_uv_connect* request;
    raft_uv_connect_cb done;
  };
  std::map<std::uint64_t, Attempt> attempts_;
  std::uint64_t next_attempt_ = 0;
};

}  // namespace sluice::cluster::raft
