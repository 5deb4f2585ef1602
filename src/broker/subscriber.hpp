// How the broker names a subscriber across threads: the shard (worker) that
// owns its session, and the session's id there. Plain values, so the
// subscription index never points into a session that another thread owns.
#pragma once

#include <cstdint>
#include <functional>

namespace sluice::broker {

struct SubscriberRef {
  std::uint32_t shard = 0;
  std::uint64_t session_id = 0;
  auto operator<=>(const SubscriberRef&) const = default;
};

}  // namespace sluice::broker
