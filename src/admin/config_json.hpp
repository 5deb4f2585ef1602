// GET /api/v1/config: the effective configuration as JSON, with the keys of
// the YAML file (durations in milliseconds, under names ending in _ms) and
// secrets redacted.
#pragma once

#include <nlohmann/json_fwd.hpp>
#include <string>

#include "config/config.hpp"

namespace sluice::admin {

std::string config_json(const config::Config& config);

// A queue's options as config_json shows them (the queue API's answers too).
nlohmann::json queue_options_json(const config::QueueOptions& options);

}  // namespace sluice::admin
