// Parsing of HOST:PORT, with IPv6 hosts in brackets.
#include "config/listen_address.hpp"

#include <charconv>

namespace sluice::config {

std::optional<ListenerConfig> parse_listen_address(std::string_view text) {
  const std::size_t colon = text.rfind(':');
  if (colon == std::string_view::npos || colon == 0) return std::nullopt;
  std::string_view host = text.substr(0, colon);
  const std::string_view port_text = text.substr(colon + 1);
  if (host.front() == '[') {
    if (host.size() < 3 || host.back() != ']') return std::nullopt;
    host = host.substr(1, host.size() - 2);
  }
  unsigned port = 0;
  const auto [end, ec] =
      std::from_chars(port_text.data(), port_text.data() + port_text.size(), port);
  if (ec != std::errc() || end != port_text.data() + port_text.size() || port > 65535) {
    return std::nullopt;
  }
  ListenerConfig listener;
  listener.host = std::string(host);
  listener.port = static_cast<std::uint16_t>(port);
  return listener;
}

}  // namespace sluice::config
