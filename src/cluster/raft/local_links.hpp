// RaftLinks between members in one process: a channel is a socket pair
// whose ends go straight to the two members. What the tests run groups on,
// and what a node-to-node link builds on (it carries the far end of the
// pair over the wire instead of handing it over).
#pragma once

#include <map>
#include <mutex>
#include <string>
#include <utility>

#include "cluster/raft/raft_links.hpp"

namespace sluice::cluster::raft {

class LocalRaftLinks final : public RaftLinks {
 public:
  void listen(std::uint64_t group, const std::string& address, Accept accept) override;
  void unlisten(std::uint64_t group, const std::string& address) override;
  void open(std::uint64_t group, std::uint64_t from_id, const std::string& from_address,
            const std::string& to_address, Opened opened) override;

 private:
  std::mutex mutex_;
  std::map<std::pair<std::uint64_t, std::string>, Accept> listeners_;
};

}  // namespace sluice::cluster::raft
