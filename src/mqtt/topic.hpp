// Topic names and topic filters: validation, shared-subscription parsing and
// matching (spec section 4.7 and 4.8.2). Nothing here allocates.
#pragma once

#include <cstddef>
#include <optional>
#include <string_view>

#include "mqtt/decode_error.hpp"

namespace sluice::mqtt {

// A Topic Name as PUBLISH and wills carry it: at least one character and no
// wildcards [MQTT-4.7.3-1, MQTT-3.3.2-2]. UTF-8 validity is the reader's job.
DecodeError check_topic_name(std::string_view name);

// A Topic Filter as SUBSCRIBE and UNSUBSCRIBE carry it: at least one character,
// '#' alone in the last level [MQTT-4.7.1-1], '+' alone in its level
// [MQTT-4.7.1-2], and a well-formed `$share/{group}/{filter}` [MQTT-4.8.2-1,
// MQTT-4.8.2-2].
DecodeError check_topic_filter(std::string_view filter);

struct SharedFilter {
  std::string_view group;   // the ShareName
  std::string_view filter;  // the filter that messages are matched against
};

// Splits `$share/{group}/{filter}`; nullopt for a filter that is not shared.
// Assumes `filter` passed `check_topic_filter`.
std::optional<SharedFilter> parse_shared_filter(std::string_view filter);

bool has_wildcard(std::string_view filter);

// Whether `topic` is in the broker's own `$SYS` tree (`$SYS` or `$SYS/...`,
// section 4.7.2): clients may not publish there, and the broker does not
// store what it publishes there. `$SYSTEM/x` is an ordinary `$` topic.
constexpr bool is_sys_topic(std::string_view topic) {
  return topic.starts_with("$SYS/") || topic == "$SYS";
}

// The number of levels: one more than the number of '/'.
std::size_t topic_levels(std::string_view topic);

// Whether `topic` (a valid Topic Name) matches `filter` (a valid, non-shared
// Topic Filter). Filters starting with a wildcard do not match topics that
// start with '$' [MQTT-4.7.2-1].
bool topic_matches(std::string_view filter, std::string_view topic);

}  // namespace sluice::mqtt
