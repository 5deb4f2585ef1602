// MQTT 5 properties: their identifiers, and `Properties`, the decoded property
// block of any packet (or of a will), one optional field per property.
//
// Which property may appear in which packet, and with which data type, is one
// table in property.cpp; the decoder and encoder both walk that table.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "mqtt/byte_reader.hpp"
#include "mqtt/packet_type.hpp"

namespace sluice::mqtt {

enum class PropertyId : std::uint8_t {
  kPayloadFormatIndicator = 0x01,
  kMessageExpiryInterval = 0x02,
  kContentType = 0x03,
  kResponseTopic = 0x08,
  kCorrelationData = 0x09,
  kSubscriptionIdentifier = 0x0B,
  kSessionExpiryInterval = 0x11,
  kAssignedClientIdentifier = 0x12,
  kServerKeepAlive = 0x13,
  kAuthenticationMethod = 0x15,
  kAuthenticationData = 0x16,
  kRequestProblemInformation = 0x17,
  kWillDelayInterval = 0x18,
  kRequestResponseInformation = 0x19,
  kResponseInformation = 0x1A,
  kServerReference = 0x1C,
  kReasonString = 0x1F,
  kReceiveMaximum = 0x21,
  kTopicAliasMaximum = 0x22,
  kTopicAlias = 0x23,
  kMaximumQoS = 0x24,
  kRetainAvailable = 0x25,
  kUserProperty = 0x26,
  kMaximumPacketSize = 0x27,
  kWildcardSubscriptionAvailable = 0x28,
  kSubscriptionIdentifierAvailable = 0x29,
  kSharedSubscriptionAvailable = 0x2A,
};

enum class PropertyType : std::uint8_t {
  kByte,
  kTwoByteInteger,
  kFourByteInteger,
  kVariableByteInteger,
  kUtf8String,
  kBinaryData,
  kUtf8StringPair,
};

// Where a property block sits: in a packet, or in CONNECT's will.
enum class PropertyContext : std::uint8_t {
  kWill = 0,  // packet type 0 is reserved, so its slot names the will
  kConnect = 1,
  kConnack = 2,
  kPublish = 3,
  kPuback = 4,
  kPubrec = 5,
  kPubrel = 6,
  kPubcomp = 7,
  kSubscribe = 8,
  kSuback = 9,
  kUnsubscribe = 10,
  kUnsuback = 11,
  kDisconnect = 14,
  kAuth = 15,
};

inline PropertyContext context_of(PacketType type) {
  return static_cast<PropertyContext>(static_cast<std::uint8_t>(type));
}

struct UserProperty {
  std::string name;
  std::string value;
  bool operator==(const UserProperty&) const = default;
};

struct Properties {
  std::optional<std::uint8_t> payload_format_indicator;
  std::optional<std::uint32_t> message_expiry_interval;
  std::optional<std::string> content_type;
  std::optional<std::string> response_topic;
  std::optional<Bytes> correlation_data;
  // Several in a PUBLISH to a subscriber, at most one in SUBSCRIBE.
  std::vector<std::uint32_t> subscription_identifiers;
  std::optional<std::uint32_t> session_expiry_interval;
  std::optional<std::string> assigned_client_identifier;
  std::optional<std::uint16_t> server_keep_alive;
  std::optional<std::string> authentication_method;
  std::optional<Bytes> authentication_data;
  std::optional<std::uint8_t> request_problem_information;
  std::optional<std::uint32_t> will_delay_interval;
  std::optional<std::uint8_t> request_response_information;
  std::optional<std::string> response_information;
  std::optional<std::string> server_reference;
  std::optional<std::string> reason_string;
  std::optional<std::uint16_t> receive_maximum;
  std::optional<std::uint16_t> topic_alias_maximum;
  std::optional<std::uint16_t> topic_alias;
  std::optional<std::uint8_t> maximum_qos;
  std::optional<std::uint8_t> retain_available;
  // In the order they were sent, which the broker must keep [MQTT-3.3.2-18].
  std::vector<UserProperty> user_properties;
  std::optional<std::uint32_t> maximum_packet_size;
  std::optional<std::uint8_t> wildcard_subscription_available;
  std::optional<std::uint8_t> subscription_identifier_available;
  std::optional<std::uint8_t> shared_subscription_available;

  bool operator==(const Properties&) const = default;
};

struct PropertyInfo {
  PropertyId id;
  const char* name;
  PropertyType type;
};

// The table row for `id`, or nullptr when `id` is no MQTT 5 property.
const PropertyInfo* find_property(std::uint8_t id);

// Whether property `id` may appear in `context` (spec section 2.2.2.2).
bool property_allowed(PropertyId id, PropertyContext context);

// Whether `properties` holds any property at all.
bool has_any(const Properties& properties);

// Reads a property block (its length, then the properties) from `reader` into
// `out`, checking identifiers, duplicates and values for `context`. Errors are
// recorded in the reader.
void read_properties(ByteReader& reader, PropertyContext context, Properties& out);

}  // namespace sluice::mqtt
