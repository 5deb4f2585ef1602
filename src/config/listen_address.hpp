// HOST:PORT as given to --listen.
#pragma once

#include <optional>
#include <string_view>

#include "config/config.hpp"

namespace sluice::config {

// "127.0.0.1:1883", "[::1]:1883" or "localhost:1883"; nullopt when malformed.
std::optional<ListenerConfig> parse_listen_address(std::string_view text);

}  // namespace sluice::config
