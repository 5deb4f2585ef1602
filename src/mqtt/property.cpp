// Looking up MQTT 5 properties by identifier, and decoding property blocks.
//
// Decoding walks the block once: each identifier is looked up, checked against
// the packet it sits in and against repeats, read into its member of
// `Properties`, and its value checked where the spec restricts it.
#include "mqtt/property.hpp"

#include <array>
#include <variant>

#include "mqtt/property_table.hpp"

namespace sluice::mqtt {
namespace {

// The decoder's view of one property: where it goes, and where it may appear.
using PropertyField =
    std::variant<std::optional<std::uint8_t> Properties::*,
                 std::optional<std::uint16_t> Properties::*,
                 std::optional<std::uint32_t> Properties::*,
                 std::vector<std::uint32_t> Properties::*, std::optional<std::string> Properties::*,
                 std::optional<Bytes> Properties::*, std::vector<UserProperty> Properties::*>;

struct PropertyRow {
  PropertyInfo info;
  PropertyField field;
  std::uint16_t contexts;
};

// Every identifier is below 128, so they index an array directly.
struct PropertyIndex {
  std::array<PropertyRow, 128> rows{};
  std::array<bool, 128> known{};
};

PropertyIndex make_index() {
  PropertyIndex index;
  for_each_property_def([&](const auto& def) {
    const auto id = static_cast<std::uint8_t>(def.id);
    index.rows[id] = {{def.id, def.name, def.type}, def.member, def.contexts};
    index.known[id] = true;
  });
  return index;
}
const PropertyIndex kIndex = make_index();

const PropertyRow* find_row(std::uint32_t id) {
  return id < kIndex.rows.size() && kIndex.known[id] ? &kIndex.rows[id] : nullptr;
}

bool repeatable(PropertyId id, PropertyContext context) {
  // User properties may repeat anywhere; a PUBLISH to a subscriber carries one
  // Subscription Identifier per matching subscription [MQTT-3.3.4-3].
  return id == PropertyId::kUserProperty ||
         (id == PropertyId::kSubscriptionIdentifier && context == PropertyContext::kPublish);
}

// Reads one value of the member's type.
void read_value(ByteReader& r, std::optional<std::uint8_t>& out) {
  out = r.u8();
}
void read_value(ByteReader& r, std::optional<std::uint16_t>& out) {
  out = r.u16();
}
void read_value(ByteReader& r, std::optional<std::uint32_t>& out) {
  out = r.u32();
}
void read_value(ByteReader& r, std::vector<std::uint32_t>& out) {
  out.push_back(r.varint());
}
void read_value(ByteReader& r, std::optional<std::string>& out) {
  out = r.string();
}
void read_value(ByteReader& r, std::optional<Bytes>& out) {
  out = r.binary();
}
void read_value(ByteReader& r, std::vector<UserProperty>& out) {
  std::string name = r.string();
  std::string value = r.string();
  out.push_back({std::move(name), std::move(value)});
}

bool is_boolean(const std::optional<std::uint8_t>& value) {
  return !value || *value <= 1;
}

// The value rules of section 3 for properties whose range is narrower than their type.
DecodeError check_value(PropertyId id, const Properties& p) {
  switch (id) {
    case PropertyId::kPayloadFormatIndicator:
      if (!is_boolean(p.payload_format_indicator))
        return protocol_error("§3.3.2.3.2", "Payload Format Indicator must be 0 or 1");
      break;
    case PropertyId::kRequestProblemInformation:
      if (!is_boolean(p.request_problem_information))
        return protocol_error("§3.1.2.11.7", "Request Problem Information must be 0 or 1");
      break;
    case PropertyId::kRequestResponseInformation:
      if (!is_boolean(p.request_response_information))
        return protocol_error("§3.1.2.11.6", "Request Response Information must be 0 or 1");
      break;
    case PropertyId::kMaximumQoS:
      if (!is_boolean(p.maximum_qos))
        return protocol_error("§3.2.2.3.4", "Maximum QoS must be 0 or 1");
      break;
    case PropertyId::kRetainAvailable:
    case PropertyId::kWildcardSubscriptionAvailable:
    case PropertyId::kSubscriptionIdentifierAvailable:
    case PropertyId::kSharedSubscriptionAvailable:
      if (!is_boolean(p.retain_available) || !is_boolean(p.wildcard_subscription_available) ||
          !is_boolean(p.subscription_identifier_available) ||
          !is_boolean(p.shared_subscription_available))
        return protocol_error("§3.2.2.3", "availability flags must be 0 or 1");
      break;
    case PropertyId::kReceiveMaximum:
      if (p.receive_maximum == 0)
        return protocol_error("§3.1.2.11.3", "Receive Maximum must not be 0");
      break;
    case PropertyId::kMaximumPacketSize:
      if (p.maximum_packet_size == 0)
        return protocol_error("§3.1.2.11.4", "Maximum Packet Size must not be 0");
      break;
    case PropertyId::kSubscriptionIdentifier:
      if (!p.subscription_identifiers.empty() && p.subscription_identifiers.back() == 0)
        return protocol_error("§3.8.2.1.2", "Subscription Identifier must not be 0");
      break;
    case PropertyId::kTopicAlias:
      if (p.topic_alias == 0)
        return {ReasonCode::kTopicAliasInvalid, "MQTT-3.3.2-8", "Topic Alias must not be 0"};
      break;
    default:
      break;
  }
  return {};
}

}  // namespace

const PropertyInfo* find_property(std::uint8_t id) {
  const PropertyRow* row = find_row(id);
  return row != nullptr ? &row->info : nullptr;
}

bool property_allowed(PropertyId id, PropertyContext context) {
  const PropertyRow* row = find_row(static_cast<std::uint8_t>(id));
  return row != nullptr && (row->contexts & (1u << static_cast<unsigned>(context))) != 0;
}

bool has_any(const Properties& properties) {
  bool any = false;
  for_each_property_def([&](const auto& def) {
    const auto& value = properties.*def.member;
    if constexpr (requires { value.has_value(); }) {
      any = any || value.has_value();
    } else {
      any = any || !value.empty();
    }
  });
  return any;
}

void read_properties(ByteReader& reader, PropertyContext context, Properties& out) {
  const std::uint32_t length = reader.varint();
  ByteReader block = reader.sub_reader(length);
  std::uint64_t seen = 0;  // every property identifier is below 64
  while (reader.ok() && block.ok() && !block.at_end()) {
    const std::uint32_t id = block.varint();
    const PropertyRow* row = find_row(id);
    if (row == nullptr) {
      block.fail(malformed("§2.2.2.2", "unknown property identifier"));
      break;
    }
    if ((row->contexts & (1u << static_cast<unsigned>(context))) == 0) {
      block.fail(malformed("§2.2.2.2", "property not valid in this packet"));
      break;
    }
    const std::uint64_t bit = std::uint64_t{1} << id;
    if ((seen & bit) != 0 && !repeatable(row->info.id, context)) {
      block.fail(protocol_error("§2.2.2.2", "property included more than once"));
      break;
    }
    seen |= bit;
    std::visit([&](auto member) { read_value(block, out.*member); }, row->field);
    if (block.ok()) block.fail(check_value(row->info.id, out));
  }
  if (!block.ok()) reader.fail(block.error());
}

}  // namespace sluice::mqtt
