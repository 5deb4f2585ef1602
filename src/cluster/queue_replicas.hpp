// Replicated queues (docs/replication.md): each queue declared with
// `replication.factor` > 1 is kept, with its dead-letter queue, by a Raft
// group of that many nodes. The group's log holds the queue's writes (its
// keys in the store's queue space, as the queue layer made them on the
// leader); every member applies them to its own store, so any member can
// take over with everything that was acknowledged. The queue is served
// where the group is led: that node is its home.
//
// Placement: the first node that sees enough nodes up picks the members
// (node ids in order, from a place the queue's name hashes to, so queues
// spread round-robin) and writes them to /sluice/replicas/<queue> by a
// transaction that requires the key absent; the set does not change after
// (rebalancing is not built). A leader writes /sluice/leaders/<queue>, so
// that nodes outside the group know where to forward.
//
// Threading: home_of, replicate and when_led on any thread; a thread of
// this class follows the members' roles (and tells the queue layer when
// it leads and when it stops), places queues, and reads leaders.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <shared_mutex>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "broker/broker.hpp"
#include "broker/cluster_view.hpp"
#include "broker/queue_placement.hpp"
#include "config/config.hpp"

namespace sluice::store {
class Store;
}

namespace sluice::cluster {

class EtcdClient;
namespace raft {
class RaftLinks;
class RaftLoop;
}  // namespace raft

class QueueReplicas {
 public:
  struct Membership {
    std::function<std::vector<std::string>()> up_nodes;  // the others that are up
    std::function<std::int64_t()> lease;                 // this node's, 0 while none
  };
  QueueReplicas(broker::Broker& broker, const config::Config& config, EtcdClient& etcd,
                raft::RaftLinks& links, store::Store& store, Membership membership);
  ~QueueReplicas();  // stop()

  // Reads the placements etcd has, starts this node's members, and the thread.
  std::optional<std::string> start();
  // Hands each group this node leads to another member and waits for them
  // to take over (an election timeout at most): a planned stop costs the
  // groups no election. Before stop(), on the same thread.
  void hand_over_leaderships();
  // Closes the members (their logs stay) and stops the thread.
  void stop();

  // Whether `name` is a replicated queue (or one's dead-letter queue).
  bool covers(std::string_view name) const;
  broker::QueueHome home_of(std::string_view name) const;
  // `done` on worker `shard` once queue `name` has a leader (its home), or
  // unclaimed after `wait`.
  void when_led(std::uint32_t shard, std::string_view name,
                std::function<void(broker::QueueHome)> done,
                std::chrono::milliseconds wait = std::chrono::seconds(10));
  void replicate(std::uint32_t shard, std::string_view name, store::WriteBatch&& writes,
                 std::function<void(bool committed)> done);
  std::vector<broker::ReplicaGroupView> describe() const;

 private:
  struct Group;
  struct Waiter {
    std::uint32_t shard;
    std::string group;
    std::function<void(broker::QueueHome)> done;
    std::chrono::steady_clock::time_point deadline;
  };
  // The group that keeps queue `name`; null when none does.
  Group* group_of(std::string_view name) const;
  // The group's members: placed now, or as another node placed them;
  // nullopt while it cannot be placed yet. Reads group fields set once.
  std::optional<std::vector<std::string>> place(const Group& group);
  broker::QueueHome home_locked(const Group& group) const;  // under mutex_
  std::optional<std::string> start_member(Group& group);
  // Before a member with a new log starts: refuses when this node's store
  // holds messages of the group's queues, otherwise clears their old state.
  std::optional<std::string> clear_leftovers(const Group& group);
  void follow_roles();
  void forget_leader_key(const std::string& group);
  void write_leader_keys();
  void read_leaders();
  void answer_waiters(bool all);
  void run();
  void post(std::uint32_t shard, std::function<void()> task) const;
  // On the loop: proposes what waits in the group's batch as one entry.
  void flush(Group& group);
  void fail_batches(Group& group);

  broker::Broker& broker_;
  const std::string node_id_;
  const std::string raft_dir_;
  const config::ClusterRaftConfig raft_timing_;
  EtcdClient& etcd_;
  raft::RaftLinks& links_;
  store::Store& store_;
  const Membership membership_;
  std::unique_ptr<raft::RaftLoop> loop_;

  mutable std::shared_mutex mutex_;
  std::map<std::string, std::unique_ptr<Group>, std::less<>> groups_;  // by queue name
  std::map<std::string, std::string, std::less<>> group_of_;           // queue or dlq -> group
  std::vector<Waiter> waiters_;

  std::mutex wake_mutex_;
  std::condition_variable wake_;
  bool stopping_ = false;
  std::thread thread_;
};

}  // namespace sluice::cluster
