// How the members of Raft groups on one node reach their peers on others
// (docs/raft-research.md, section 3). libraft's raft_uv speaks to each peer
// of each group over a stream it asks its transport for; Sluice's transport
// (group_transport.cpp) gets those streams from here, as one end of a local
// socket pair whose other end the links carry to the peer node. So every
// group between two nodes shares whatever joins the two nodes (one
// connection per node pair), and a group is known by its id, not by a port.
//
// Thread-safe; callbacks may come on any thread, and may come before the
// call that asked for them returns.
#pragma once

#include <cstdint>
#include <functional>
#include <string>

namespace sluice::cluster::raft {

class RaftLinks {
 public:
  // A channel another node opened to this node's member of a group: `fd`
  // (this side's end, owned by the callee from then on) and who opened it.
  using Accept =
      std::function<void(int fd, std::uint64_t peer_id, const std::string& peer_address)>;
  // This side's end of a channel that was opened, or -1 when the peer
  // cannot be reached now.
  using Opened = std::function<void(int fd)>;

  virtual ~RaftLinks() = default;

  // This node's member `address` of `group` takes channels opened to it.
  virtual void listen(std::uint64_t group, const std::string& address, Accept accept) = 0;
  // And no longer does. An open() already under way may still call
  // `accept` after this returns: the member closes such an fd.
  virtual void unlisten(std::uint64_t group, const std::string& address) = 0;
  // Opens a channel from member (`from_id`, `from_address`) of `group` to
  // the member at `to_address`.
  virtual void open(std::uint64_t group, std::uint64_t from_id, const std::string& from_address,
                    const std::string& to_address, Opened opened) = 0;
};

}  // namespace sluice::cluster::raft
