// The body of the admin API's queue create and update: a JSON object with
// the keys of a `queues:` entry in the configuration file ("lease_timeout":
// "30s"), or the keys GET shows ("lease_timeout_ms": 30000), so that what
// GET /api/v1/queues/{name} answers can be edited and sent back.
#pragma once

#include <optional>
#include <string>
#include <string_view>

namespace sluice::admin {

// The body as YAML text for config::parse_queue and parse_queue_options,
// or nullopt (and `error`) when it is not a JSON object. Keys of the shown
// form are renamed (less _ms, their numbers made durations); `options`, as
// GET nests them, are taken up to the top level.
std::optional<std::string> queue_body_yaml(std::string_view body, std::string& error);

}  // namespace sluice::admin
