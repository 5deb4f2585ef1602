// The MQTT 5 property table (spec section 2.2.2.2) and the property decoder.
//
// Decoding walks the block once: each identifier is looked up, checked against
// the packet it sits in and against repeats, read into its member of
// `Properties`, and its value checked where the spec restricts it.
#include "mqtt/property.hpp"

#include <array>

#include "mqtt/property_table.hpp"

namespace sluice::mqtt {
namespace {

constexpr std::uint16_t in(std::initializer_list<PropertyContext> contexts) {
  std::uint16_t mask = 0;
  for (auto context : contexts) mask |= static_cast<std::uint16_t>(1u << static_cast<unsigned>(context));
  return mask;
}

using C = PropertyContext;
using P = Properties;

constexpr std::uint16_t kMessage = in({C::kPublish, C::kWill});
constexpr std::uint16_t kAcks = in({C::kConnack, C::kPuback, C::kPubrec, C::kPubrel, C::kPubcomp,
                                    C::kSuback, C::kUnsuback, C::kDisconnect, C::kAuth});
constexpr std::uint16_t kEverywhere =
    in({C::kWill, C::kConnect, C::kConnack, C::kPublish, C::kPuback, C::kPubrec, C::kPubrel,
        C::kPubcomp, C::kSubscribe, C::kSuback, C::kUnsubscribe, C::kUnsuback, C::kDisconnect,
        C::kAuth});

#define SLUICE_PROPERTY(id, name, type, member, contexts) \
  PropertyRow { {PropertyId::id, name, PropertyType::type}, &P::member, contexts }

const PropertyRow kRows[] = {
    SLUICE_PROPERTY(kPayloadFormatIndicator, "Payload Format Indicator", kByte,
                    payload_format_indicator, kMessage),
    SLUICE_PROPERTY(kMessageExpiryInterval, "Message Expiry Interval", kFourByteInteger,
                    message_expiry_interval, kMessage),
    SLUICE_PROPERTY(kContentType, "Content Type", kUtf8String, content_type, kMessage),
    SLUICE_PROPERTY(kResponseTopic, "Response Topic", kUtf8String, response_topic, kMessage),
    SLUICE_PROPERTY(kCorrelationData, "Correlation Data", kBinaryData, correlation_data, kMessage),
    SLUICE_PROPERTY(kSubscriptionIdentifier, "Subscription Identifier", kVariableByteInteger,
                    subscription_identifiers, in({C::kPublish, C::kSubscribe})),
    SLUICE_PROPERTY(kSessionExpiryInterval, "Session Expiry Interval", kFourByteInteger,
                    session_expiry_interval, in({C::kConnect, C::kConnack, C::kDisconnect})),
    SLUICE_PROPERTY(kAssignedClientIdentifier, "Assigned Client Identifier", kUtf8String,
                    assigned_client_identifier, in({C::kConnack})),
    SLUICE_PROPERTY(kServerKeepAlive, "Server Keep Alive", kTwoByteInteger, server_keep_alive,
                    in({C::kConnack})),
    SLUICE_PROPERTY(kAuthenticationMethod, "Authentication Method", kUtf8String,
                    authentication_method, in({C::kConnect, C::kConnack, C::kAuth})),
    SLUICE_PROPERTY(kAuthenticationData, "Authentication Data", kBinaryData, authentication_data,
                    in({C::kConnect, C::kConnack, C::kAuth})),
    SLUICE_PROPERTY(kRequestProblemInformation, "Request Problem Information", kByte,
                    request_problem_information, in({C::kConnect})),
    SLUICE_PROPERTY(kWillDelayInterval, "Will Delay Interval", kFourByteInteger,
                    will_delay_interval, in({C::kWill})),
    SLUICE_PROPERTY(kRequestResponseInformation, "Request Response Information", kByte,
                    request_response_information, in({C::kConnect})),
    SLUICE_PROPERTY(kResponseInformation, "Response Information", kUtf8String,
                    response_information, in({C::kConnack})),
    SLUICE_PROPERTY(kServerReference, "Server Reference", kUtf8String, server_reference,
                    in({C::kConnack, C::kDisconnect})),
    SLUICE_PROPERTY(kReasonString, "Reason String", kUtf8String, reason_string, kAcks),
    SLUICE_PROPERTY(kReceiveMaximum, "Receive Maximum", kTwoByteInteger, receive_maximum,
                    in({C::kConnect, C::kConnack})),
    SLUICE_PROPERTY(kTopicAliasMaximum, "Topic Alias Maximum", kTwoByteInteger,
                    topic_alias_maximum, in({C::kConnect, C::kConnack})),
    SLUICE_PROPERTY(kTopicAlias, "Topic Alias", kTwoByteInteger, topic_alias, in({C::kPublish})),
    SLUICE_PROPERTY(kMaximumQoS, "Maximum QoS", kByte, maximum_qos, in({C::kConnack})),
    SLUICE_PROPERTY(kRetainAvailable, "Retain Available", kByte, retain_available,
                    in({C::kConnack})),
    SLUICE_PROPERTY(kUserProperty, "User Property", kUtf8StringPair, user_properties,
                    kEverywhere),
    SLUICE_PROPERTY(kMaximumPacketSize, "Maximum Packet Size", kFourByteInteger,
                    maximum_packet_size, in({C::kConnect, C::kConnack})),
    SLUICE_PROPERTY(kWildcardSubscriptionAvailable, "Wildcard Subscription Available", kByte,
                    wildcard_subscription_available, in({C::kConnack})),
    SLUICE_PROPERTY(kSubscriptionIdentifierAvailable, "Subscription Identifier Available", kByte,
                    subscription_identifier_available, in({C::kConnack})),
    SLUICE_PROPERTY(kSharedSubscriptionAvailable, "Shared Subscription Available", kByte,
                    shared_subscription_available, in({C::kConnack})),
};

#undef SLUICE_PROPERTY

std::array<const PropertyRow*, 128> make_index() {
  std::array<const PropertyRow*, 128> index{};
  for (const auto& row : kRows) index[static_cast<std::uint8_t>(row.info.id)] = &row;
  return index;
}
const std::array<const PropertyRow*, 128> kIndex = make_index();

const PropertyRow* find_row(std::uint32_t id) { return id < kIndex.size() ? kIndex[id] : nullptr; }

bool repeatable(PropertyId id, PropertyContext context) {
  // User properties may repeat anywhere; a PUBLISH to a subscriber carries one
  // Subscription Identifier per matching subscription [MQTT-3.3.4-3].
  return id == PropertyId::kUserProperty ||
         (id == PropertyId::kSubscriptionIdentifier && context == PropertyContext::kPublish);
}

// Reads one value of the member's type.
void read_value(ByteReader& r, std::optional<std::uint8_t>& out) { out = r.u8(); }
void read_value(ByteReader& r, std::optional<std::uint16_t>& out) { out = r.u16(); }
void read_value(ByteReader& r, std::optional<std::uint32_t>& out) { out = r.u32(); }
void read_value(ByteReader& r, std::vector<std::uint32_t>& out) { out.push_back(r.varint()); }
void read_value(ByteReader& r, std::optional<std::string>& out) { out = r.string(); }
void read_value(ByteReader& r, std::optional<Bytes>& out) { out = r.binary(); }
void read_value(ByteReader& r, std::vector<UserProperty>& out) {
  std::string name = r.string();
  std::string value = r.string();
  out.push_back({std::move(name), std::move(value)});
}

bool is_boolean(const std::optional<std::uint8_t>& value) { return !value || *value <= 1; }

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

std::span<const PropertyRow> property_rows() { return kRows; }

const PropertyInfo* find_property(std::uint8_t id) {
  const PropertyRow* row = find_row(id);
  return row != nullptr ? &row->info : nullptr;
}

bool property_allowed(PropertyId id, PropertyContext context) {
  const PropertyRow* row = find_row(static_cast<std::uint8_t>(id));
  return row != nullptr && (row->contexts & (1u << static_cast<unsigned>(context))) != 0;
}

bool has_any(const Properties& properties) { return properties != Properties{}; }

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
