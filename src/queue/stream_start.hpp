// Where a stream subscription starts reading: the `stream-offset` user
// property of its SUBSCRIBE (docs/queues.md). Pure parsing: no state.
#pragma once

#include <cstdint>
#include <optional>
#include <string_view>

namespace sluice::queue {

struct StreamStart {
  enum class Kind {
    kEarliest,   // the oldest message the stream still holds
    kLatest,     // the newest message, then what follows
    kNext,       // only what is appended after the subscription
    kCommitted,  // where the group committed (a new group: earliest)
    kOffset,     // `offset` itself, or the nearest the stream holds
    kTimestamp,  // the first message appended at or after `timestamp_ms`
  };
  Kind kind = Kind::kCommitted;
  std::uint64_t offset = 0;
  std::int64_t timestamp_ms = 0;
};

// earliest | latest | next | committed | offset=<n> | timestamp=<unix-ms> |
// ago=<n><ms|s|m|h|d>; `ago` becomes a timestamp before `now_ms`. A bare
// number is refused (nullopt): brokers disagree on what it would mean.
std::optional<StreamStart> parse_stream_start(std::string_view text, std::int64_t now_ms);

}  // namespace sluice::queue
