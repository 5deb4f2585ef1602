// Reading the YAML configuration, strictly: an unknown key, a value of the
// wrong type or out of range stops start-up with a message that names the
// file, the line, the key and what is allowed.
#pragma once

#include <string>
#include <string_view>
#include <variant>

#include "config/config.hpp"

namespace sluice::config {

struct ConfigError {
  std::string message;  // "FILE:LINE: key 'limits.max_packet_bytes': ..."
};

using LoadResult = std::variant<Config, ConfigError>;

// Parses YAML text; `source` names it in error messages.
LoadResult parse_config(std::string_view yaml, std::string_view source);

// Reads and parses a file.
LoadResult load_config_file(const std::string& path);

}  // namespace sluice::config
