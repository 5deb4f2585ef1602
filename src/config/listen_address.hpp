// HOST:PORT as given to --listen.
#pragma once

#include <optional>
#include <string_view>

#include "config/config.hpp"

namespace sluice::config {

// "127.0.0.1:1883", "[::1]:1883" or "localhost:1883"; nullopt when malformed.
std::optional<ListenerConfig> parse_listen_address(std::string_view text);

// Whether a listener's host is this machine only: a listener elsewhere needs
// authentication (MQTT) or tokens (admin) before start-up lets it open.
inline bool is_loopback_host(std::string_view host) {
  return host == "localhost" || host == "::1" || host.starts_with("127.");
}

}  // namespace sluice::config
