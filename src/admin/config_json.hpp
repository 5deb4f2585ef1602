// GET /api/v1/config: the effective configuration as JSON, with the keys of
// the YAML file (durations in milliseconds, under names ending in _ms) and
// secrets redacted.
#pragma once

#include <string>

#include "config/config.hpp"

namespace sluice::admin {

std::string config_json(const config::Config& config);

}  // namespace sluice::admin
