// Reading the YAML configuration, strictly: an unknown key, a value of the
// wrong type or out of range stops start-up with a message that names the
// file, the line, the key and what is allowed.
#pragma once

#include <optional>
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

// One queue declaration, as an entry of `queues:` (YAML, or JSON) but
// without `capture` (filters are fixed at start): the admin API's create.
// Options not given are `defaults`.
using QueueResult = std::variant<QueueConfig, ConfigError>;
QueueResult parse_queue(std::string_view text, const QueueOptions& defaults,
                        std::string_view source);

// The options given in `text` (a queue entry's keys less name, kind and
// capture) over `options`: the admin API's update. On an error `options`
// is left as it was.
std::optional<ConfigError> parse_queue_options(std::string_view text, QueueOptions& options,
                                               std::string_view source);

// Every option, as text that parse_queue_options reads back to the same
// options: how a queue made at run time keeps its options in the store.
std::string queue_options_yaml(const QueueOptions& options);

// Reads and parses a file.
LoadResult load_config_file(const std::string& path);

}  // namespace sluice::config
