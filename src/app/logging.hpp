// Where log lines go (standard output, or a file rotated by size) and their
// form: text, "event=name key=value key=\"quoted value\"", as every log call
// writes it, or JSON, one object a line with the same event name and keys
// ({"time": ..., "level": ..., "event": ..., "key": "value", ...}).
#pragma once

#include <optional>
#include <string>

#include "config/config.hpp"

namespace sluice::app {

// Sets up the default logger; an error (the file cannot be opened) otherwise.
std::optional<std::string> set_up_logging(const config::LogConfig& log, const std::string& level);

// A text line's "key=value" pairs as one JSON object (what the json format
// writes after the time and level); public for its tests.
std::string event_json(std::string_view message);

}  // namespace sluice::app
