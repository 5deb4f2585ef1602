#include "cluster/raft/local_links.hpp"

#include <sys/socket.h>

namespace sluice::cluster::raft {

void LocalRaftLinks::listen(std::uint64_t group, const std::string& address, Accept accept) {
  std::lock_guard lock(mutex_);
  listeners_[{group, address}] = std::move(accept);
}

void LocalRaftLinks::unlisten(std::uint64_t group, const std::string& address) {
  std::lock_guard lock(mutex_);
  listeners_.erase({group, address});
}

void LocalRaftLinks::open(std::uint64_t group, std::uint64_t from_id,
                          const std::string& from_address, const std::string& to_address,
                          Opened opened) {
  Accept accept;
  int pair[2] = {-1, -1};
  {
    std::lock_guard lock(mutex_);
    const auto it = listeners_.find({group, to_address});
    if (it != listeners_.end() &&
        ::socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, pair) == 0)
      accept = it->second;
  }
  if (!accept) return opened(-1);
  accept(pair[1], from_id, from_address);
  opened(pair[0]);
}

}  // namespace sluice::cluster::raft
