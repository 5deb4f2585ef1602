#include "queue/properties.hpp"

#include "mqtt/byte_reader.hpp"
#include "mqtt/byte_writer.hpp"
#include "mqtt/packet_encoder.hpp"

namespace sluice::queue {

const std::string* user_property(const mqtt::Properties& properties, std::string_view name) {
  for (const mqtt::UserProperty& property : properties.user_properties)
    if (property.name == name) return &property.value;
  return nullptr;
}

mqtt::Properties read_block(const std::vector<std::uint8_t>& block) {
  mqtt::Properties properties;
  if (block.empty()) return properties;
  mqtt::ByteReader reader(block);
  mqtt::read_properties(reader, mqtt::PropertyContext::kPublish, properties);
  return properties;
}

mqtt::Properties read_list(const std::vector<std::uint8_t>& list) {
  if (list.empty()) return {};
  std::vector<std::uint8_t> block;
  mqtt::ByteWriter(block).varint(static_cast<std::uint32_t>(list.size()));
  block.insert(block.end(), list.begin(), list.end());
  return read_block(block);
}

std::vector<std::uint8_t> write_block(const mqtt::Properties& properties) {
  std::vector<std::uint8_t> block;
  if (mqtt::has_any(properties)) mqtt::encode_property_block(properties, block);
  return block;
}

// The key of a message without a `key` user property: the subtopic, or one
// of its levels (key_level).
std::string key_from_subtopic(const std::optional<std::string>& subtopic, std::uint32_t level) {
  if (!subtopic) return {};
  if (level == 0) return *subtopic;
  std::string_view rest = *subtopic;
  for (std::uint32_t i = 1;; ++i) {
    const auto slash = rest.find('/');
    if (i == level) return std::string(rest.substr(0, slash));
    if (slash == std::string_view::npos) return {};
    rest.remove_prefix(slash + 1);
  }
}

}  // namespace sluice::queue
