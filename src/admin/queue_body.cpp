#include "admin/queue_body.hpp"

#include <nlohmann/json.hpp>

namespace sluice::admin {
namespace {

using nlohmann::json;

// "x_ms": N becomes "x": "Nms" (and a list of numbers, a list of durations);
// inside `retention` too. Anything else is left for the loader to judge.
json file_form(const json& object) {
  json out = json::object();
  for (const auto& [key, value] : object.items()) {
    const bool shown_duration = key.size() > 3 && key.ends_with("_ms");
    if (key == "retention" && value.is_object()) {
      out[key] = file_form(value);
    } else if (shown_duration && value.is_number_unsigned()) {
      out[key.substr(0, key.size() - 3)] = std::to_string(value.get<std::uint64_t>()) + "ms";
    } else if (shown_duration && value.is_array()) {
      json steps = json::array();
      for (const json& step : value)
        steps.push_back(step.is_number_unsigned()
                            ? json(std::to_string(step.get<std::uint64_t>()) + "ms")
                            : step);
      out[key.substr(0, key.size() - 3)] = std::move(steps);
    } else {
      out[key] = value;
    }
  }
  return out;
}

}  // namespace

std::optional<std::string> queue_body_yaml(std::string_view body, std::string& error) {
  json parsed = json::parse(body, nullptr, false);
  if (parsed.is_discarded() || !parsed.is_object()) {
    error =
        "expected a JSON object with a queue's keys, e.g. {\"name\": \"jobs\", "
        "\"max_deliveries\": 3}";
    return std::nullopt;
  }
  // GET's answer nests the options; the file has them beside the name.
  if (parsed.contains("options") && parsed["options"].is_object()) {
    json options = parsed["options"];
    parsed.erase("options");
    for (auto& [key, value] : options.items())
      if (!parsed.contains(key)) parsed[key] = value;
  }
  // What GET shows and nobody sets: its numbers and state.
  for (const char* shown : {"origin", "depth", "bytes", "oldest_age_ms", "anonymous_readers",
                            "counters", "groups", "partitions_held"})
    parsed.erase(shown);
  // JSON is YAML's flow form; the loader reads it with the file's rules.
  return file_form(parsed).dump(-1, ' ', false, json::error_handler_t::replace);
}

}  // namespace sluice::admin
