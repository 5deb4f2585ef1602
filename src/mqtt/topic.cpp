// Topic validation and matching. Matching walks filter and topic level by
// level, side by side, without splitting either into a list.
#include "mqtt/topic.hpp"

#include <algorithm>

namespace sluice::mqtt {
namespace {

constexpr std::string_view kSharePrefix = "$share/";

// Wildcard placement within a filter that is not shared.
DecodeError check_wildcards(std::string_view filter) {
  for (std::size_t i = 0; i < filter.size(); ++i) {
    const char c = filter[i];
    if (c != '#' && c != '+') continue;
    const bool starts_level = i == 0 || filter[i - 1] == '/';
    if (c == '#' && (!starts_level || i + 1 != filter.size())) {
      return malformed("MQTT-4.7.1-1", "'#' must be alone in the last level of a topic filter");
    }
    const bool ends_level = i + 1 == filter.size() || filter[i + 1] == '/';
    if (c == '+' && (!starts_level || !ends_level)) {
      return malformed("MQTT-4.7.1-2", "'+' must occupy a whole level of a topic filter");
    }
  }
  return {};
}

}  // namespace

DecodeError check_topic_name(std::string_view name) {
  if (name.empty()) return protocol_error("MQTT-4.7.3-1", "topic name is empty");
  if (has_wildcard(name)) {
    return {ReasonCode::kTopicNameInvalid, "MQTT-3.3.2-2", "topic name contains a wildcard"};
  }
  return {};
}

DecodeError check_topic_filter(std::string_view filter) {
  if (filter.empty()) return protocol_error("MQTT-4.7.3-1", "topic filter is empty");
  if (!filter.starts_with(kSharePrefix)) return check_wildcards(filter);

  const std::string_view rest = filter.substr(kSharePrefix.size());
  const std::size_t slash = rest.find('/');
  const std::string_view group = rest.substr(0, slash);
  if (group.empty()) {
    return protocol_error("MQTT-4.8.2-1", "shared subscription has an empty ShareName");
  }
  if (group.find_first_of("+#") != std::string_view::npos) {
    return protocol_error("MQTT-4.8.2-2", "ShareName contains a wildcard");
  }
  if (slash == std::string_view::npos || slash + 1 == rest.size()) {
    return protocol_error("MQTT-4.8.2-2", "shared subscription has no topic filter");
  }
  return check_wildcards(rest.substr(slash + 1));
}

std::optional<SharedFilter> parse_shared_filter(std::string_view filter) {
  if (!filter.starts_with(kSharePrefix)) return std::nullopt;
  const std::string_view rest = filter.substr(kSharePrefix.size());
  const std::size_t slash = rest.find('/');
  if (slash == std::string_view::npos) return std::nullopt;
  return SharedFilter{rest.substr(0, slash), rest.substr(slash + 1)};
}

bool has_wildcard(std::string_view filter) {
  // One pass over the bytes: find_first_of("+#") calls memchr on the set once
  // per character, and this runs for every PUBLISH's topic.
  return std::any_of(filter.begin(), filter.end(), [](char c) { return c == '+' || c == '#'; });
}

std::size_t topic_levels(std::string_view topic) {
  return 1 + static_cast<std::size_t>(std::count(topic.begin(), topic.end(), '/'));
}

bool topic_matches(std::string_view filter, std::string_view topic) {
  if (!topic.empty() && topic[0] == '$' && !filter.empty() &&
      (filter[0] == '+' || filter[0] == '#')) {
    return false;  // [MQTT-4.7.2-1]
  }
  std::size_t f = 0;  // start of the current level in `filter`
  std::size_t t = 0;  // start of the current level in `topic`
  while (true) {
    if (filter.compare(f, std::string_view::npos, "#") == 0) return true;
    const std::size_t f_end = std::min(filter.find('/', f), filter.size());
    const std::size_t t_end = std::min(topic.find('/', t), topic.size());
    const std::string_view filter_level = filter.substr(f, f_end - f);
    if (filter_level != "+" && filter_level != topic.substr(t, t_end - t)) return false;

    const bool filter_done = f_end == filter.size();
    const bool topic_done = t_end == topic.size();
    if (filter_done) return topic_done;
    // "a/#" also matches "a": '#' includes the parent level.
    if (topic_done) return filter.substr(f_end) == "/#";
    f = f_end + 1;
    t = t_end + 1;
  }
}

}  // namespace sluice::mqtt
