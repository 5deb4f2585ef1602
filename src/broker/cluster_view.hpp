// What the cluster shows the admin API (cluster/nodes, cluster/status,
// metrics): plain values, so that the admin layer needs nothing of gRPC or
// etcd. A single node shows enabled = false and itself.
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace sluice::broker {

struct ClusterNodeView {
  std::string id;
  std::string advertise;  // its gRPC address
  std::string version;
  bool this_node = false;
  bool up = false;                     // its membership key is in etcd (its lease alive)
  std::uint64_t routes = 0;            // filters it announced
  std::uint64_t forwarded = 0;         // messages this node forwarded to it
  std::uint64_t forward_failures = 0;  // messages it did not confirm (unreachable, refused)
  std::uint64_t queued = 0;            // waiting to be sent to it
};

// One replicated queue's Raft group, as this node sees it (docs/replication.md).
struct ReplicaGroupView {
  std::string queue;
  std::vector<std::string> members;  // node ids; empty: not placed yet
  std::string leader;                // node id; empty: none known
  bool member_here = false;
  bool leading_here = false;  // led here, and served here
  std::string role;           // this node's in the group, when a member
  std::uint64_t term = 0;
  std::uint64_t commit_index = 0;
  std::uint64_t last_applied = 0;    // applied to this node's store
  std::uint64_t last_index = 0;      // in this node's log
  std::uint64_t leaderships = 0;     // times this node began leading it
  std::uint64_t elections = 0;       // elections this node's member started
  std::uint64_t snapshot_index = 0;  // the last entry this member's snapshot covers
  std::uint64_t snapshot_bytes = 0;  // the last snapshot it took or installed
  // While this node's member leads: every other member's replication.
  struct Follower {
    std::string node;
    std::uint64_t match_index = 0;  // the last entry it is known to hold
    std::uint64_t lag = 0;          // entries of the leader's log it lacks
    bool in_sync = false;           // holds what was committed one window ago
  };
  std::vector<Follower> followers;
  std::uint32_t in_sync = 0;  // the leader and its in-sync followers; 0: not led here
};

struct ClusterView {
  bool enabled = false;
  std::string node_id;
  bool joined = false;  // this node holds its membership lease
  std::int64_t lease_id = 0;
  std::uint32_t lease_ttl_s = 0;
  std::uint64_t local_routes = 0;         // filters this node announced
  std::uint64_t received = 0;             // messages other nodes forwarded here
  std::uint64_t lease_losses = 0;         // times the membership lease was lost
  std::uint64_t sessions_owned = 0;       // session keys this node holds in etcd
  std::uint64_t takeovers = 0;            // sessions other nodes handed over to this one
  std::uint64_t ownership_conflicts = 0;  // claims of a session key another node changed first
  std::vector<ClusterNodeView> nodes;     // every node, this one included
  std::vector<std::pair<std::string, std::string>> queue_homes;  // (queue, its home node's id)
  std::vector<ReplicaGroupView> replicas;
};

}  // namespace sluice::broker
