// How the broker names what a message is delivered to, across threads and,
// later, across nodes: a delivery target. Plain values, so the subscription
// index never points into an object that another thread owns.
//
// Routing matches a topic to targets of three kinds (DESIGN.md, "Routing and
// queues"): a client's session on this node, a queue's consumer group (the
// queue layer), and another node of the cluster, which matches again on its
// side. Only sessions exist so far; deliveries to the other kinds go to the
// TargetSink registered for their kind (Broker::set_sink).
#pragma once

#include <atomic>
#include <compare>
#include <cstdint>
#include <functional>
#include <string>

namespace sluice::broker {

enum class TargetKind : std::uint8_t {
  kSession,  // `shard`: the worker owning the session; `id`: the session's id there
  kQueue,    // `shard`: the worker of the queue partition; `id`: the consumer group's id
  kNode,     // `node`: the cluster node that matches the message again
};

// 16 bytes: every subscription in the index and every delivery carries one.
struct TargetRef {
  std::uint64_t id = 0;
  std::uint32_t shard = 0;
  std::uint16_t node = 0;  // the node that owns the target; 0: this node
  TargetKind kind = TargetKind::kSession;

  static TargetRef session(std::uint32_t shard, std::uint64_t id) {
    return {id, shard, 0, TargetKind::kSession};
  }
  auto operator<=>(const TargetRef&) const = default;
};

// What other threads may read of a session, shared with its subscription
// index entries: whether it is online (shared groups prefer members that
// are), and whether the store keeps it (then a publisher on any shard writes
// the message into its stored queue before acknowledging).
struct SessionTag {
  explicit SessionTag(std::string id) : client_id(std::move(id)) {}
  const std::string client_id;
  std::atomic<bool> online{false};
  std::atomic<bool> stored{false};
  // Under queue_full_policy refuse_publish: the messages queued for the
  // session plus those routed to it and still on their way. A publisher on
  // any shard reserves a place before it routes a message here, and is
  // refused when there is none; the session gives the place back when the
  // message leaves its queue.
  mutable std::atomic<std::uint32_t> waiting{0};

  bool try_reserve(std::uint32_t most) const {
    if (waiting.fetch_add(1, std::memory_order_acq_rel) < most) return true;
    release();
    return false;
  }
  void release() const { waiting.fetch_sub(1, std::memory_order_acq_rel); }
};

}  // namespace sluice::broker
