// How the broker names a subscriber across threads: the shard (worker) that
// owns its session, and the session's id there. Plain values, so the
// subscription index never points into a session that another thread owns.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <string>

namespace sluice::broker {

struct SubscriberRef {
  std::uint32_t shard = 0;
  std::uint64_t session_id = 0;
  auto operator<=>(const SubscriberRef&) const = default;
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
};

}  // namespace sluice::broker
