// MQTT 5 properties as the queue layer keeps them: a stored message's
// property block, and the user properties that carry its keys and ids.
#pragma once

#include <charconv>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "mqtt/property.hpp"

namespace sluice::queue {

// The first user property named `name`, or nullptr.
const std::string* user_property(const mqtt::Properties& properties, std::string_view name);

// All of `text` as a whole number (what the numeric user properties hold);
// nullopt for anything else, an empty text or one out of Number's range.
template <class Number>
std::optional<Number> whole_number(std::string_view text) {
  Number value{};
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (text.empty() || ec != std::errc() || end != text.data() + text.size()) return std::nullopt;
  return value;
}

// A property block as encode_property_block writes it; empty for none.
mqtt::Properties read_block(const std::vector<std::uint8_t>& block);
// A property list without its length (a Message's encoded_properties).
mqtt::Properties read_list(const std::vector<std::uint8_t>& list);
std::vector<std::uint8_t> write_block(const mqtt::Properties& properties);

// The key of a message without a `key` user property: its subtopic, or the
// `level`-th level of it (1 is the first; 0: all of it).
std::string key_from_subtopic(const std::optional<std::string>& subtopic, std::uint32_t level);

}  // namespace sluice::queue
