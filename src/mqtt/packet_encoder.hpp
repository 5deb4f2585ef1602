// Encoding packets for the wire.
//
// `encode_packet` appends any packet to a byte buffer. For a message going to
// many subscribers there is `encode_publish_head`: it writes a PUBLISH up to,
// not including, its payload, so the connection sends [head, payload] as one
// gathered write and the payload (stored once, shared by every subscriber) is
// never copied. The message's properties that are the same for every
// subscriber are encoded once per message by `encode_shared_properties`; each
// delivery adds only its own Subscription Identifiers, Topic Alias and
// remaining Message Expiry Interval.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string_view>
#include <vector>

#include "mqtt/packets.hpp"

namespace sluice::mqtt {

// Appends `packet`, encoded for `version`, to `out`. Returns false and appends
// nothing when the packet cannot be encoded: a string or binary field over
// 65,535 bytes, a packet over the protocol's size limit, or AUTH before MQTT 5.
bool encode_packet(const Packet& packet, ProtocolVersion version, std::vector<std::uint8_t>& out);

// The size `encode_packet` would append (0 when it would fail).
std::size_t encoded_size(const Packet& packet, ProtocolVersion version);

// The W3C trace context's name, as a User Property (broker/trace.hpp).
inline constexpr std::string_view kTraceparent = "traceparent";

struct PublishHead {
  std::string_view topic;  // may be empty on MQTT 5 when topic_alias is set
  QoS qos = QoS::kAtMostOnce;
  bool retain = false;
  bool dup = false;
  std::uint16_t packet_id = 0;  // written only for QoS 1 and 2
  // Properties common to all deliveries, from encode_shared_properties.
  std::span<const std::uint8_t> shared_properties;
  // Per delivery (MQTT 5 only):
  std::span<const std::uint32_t> subscription_identifiers;
  std::uint16_t topic_alias = 0;  // 0: none
  std::optional<std::uint32_t> message_expiry_interval;
  std::string_view traceparent;   // set: a kTraceparent User Property of this delivery's own
  std::size_t payload_bytes = 0;  // counted in the Remaining Length, not written
};

// Appends the properties of `properties` that do not vary per delivery (all
// but Subscription Identifier, Topic Alias and Message Expiry Interval),
// without the Property Length in front.
void encode_shared_properties(const Properties& properties, std::vector<std::uint8_t>& out);

// Appends a whole property block (its length, then every property) as it
// stands in a packet; read_properties reads it back. For keeping properties
// outside a packet, such as a stored will's.
void encode_property_block(const Properties& properties, std::vector<std::uint8_t>& out);

// Appends the PUBLISH of `head` without its payload. Returns false and appends
// nothing when it cannot be encoded (see encode_packet).
bool encode_publish_head(const PublishHead& head, ProtocolVersion version,
                         std::vector<std::uint8_t>& out);

// Appends the PUBACK, PUBREC, PUBREL or PUBCOMP of `packet_id` with reason
// Success and no properties: four bytes, the same in every MQTT version.
void encode_plain_ack(PacketType type, std::uint16_t packet_id, std::vector<std::uint8_t>& out);
// The same acknowledgement as a Packet, for whoever must queue or encode it
// the general way.
Packet plain_ack_packet(PacketType type, std::uint16_t packet_id);

// The whole packet's size, payload included: what a client's Maximum Packet
// Size is compared with [MQTT-3.1.2-24].
std::size_t publish_wire_size(const PublishHead& head, ProtocolVersion version);

}  // namespace sluice::mqtt
