#include "queue/address.hpp"

namespace sluice::queue {

bool valid_queue_name(std::string_view name) {
  if (name.empty() || name.size() > 200) return false;
  for (const char c : name) {
    const bool allowed = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
                         (c >= '0' && c <= '9') || c == '_' || c == '.' || c == '-';
    if (!allowed) return false;
  }
  return true;
}

std::optional<Address> parse_address(std::string_view topic) {
  constexpr std::string_view kQueue = "$queue/", kStream = "$stream/";
  Address address;
  if (topic.starts_with(kQueue)) {
    topic.remove_prefix(kQueue.size());
  } else if (topic.starts_with(kStream)) {
    topic.remove_prefix(kStream.size());
    address.stream = true;
  } else {
    return std::nullopt;
  }
  const auto slash = topic.find('/');
  address.name = topic.substr(0, slash);
  if (!valid_queue_name(address.name)) return std::nullopt;
  if (slash == std::string_view::npos) return address;
  const std::string_view rest = topic.substr(slash + 1);
  if (rest.starts_with('$')) {
    if (rest.find('/') != std::string_view::npos) return std::nullopt;
    address.verb = rest;
    return address;
  }
  address.subtopic = rest;
  return address;
}

}  // namespace sluice::queue
