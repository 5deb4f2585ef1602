// One `write_body` per packet type, a template over the writer: run with a
// SizeCounter it gives the Remaining Length, run with a ByteWriter it writes.
#include "mqtt/packet_encoder.hpp"

#include "mqtt/byte_writer.hpp"
#include "mqtt/property_writer.hpp"

namespace sluice::mqtt {
namespace {

using detail::property_list_size;
using detail::PropertySelection;
using detail::write_properties;
using detail::write_property_list;

std::uint8_t type_bits(PacketType type) {
  return static_cast<std::uint8_t>(static_cast<unsigned>(type) << 4);
}

std::uint8_t u8(ReasonCode code) {
  return static_cast<std::uint8_t>(code);
}

template <class W>
void write_properties_if_v5(W& w, ProtocolVersion version, const Properties& properties) {
  if (is_v5(version)) write_properties(w, properties);
}

// ---- first bytes -----------------------------------------------------------

template <class T>
std::uint8_t first_byte(const T&) {
  return type_bits(kPacketTypeOf<T>);
}

std::uint8_t first_byte(const Publish& p) {
  return static_cast<std::uint8_t>(type_bits(PacketType::kPublish) | (p.dup ? 0x08 : 0) |
                                   (static_cast<unsigned>(p.qos) << 1) | (p.retain ? 0x01 : 0));
}
std::uint8_t first_byte(const Pubrel&) {
  return type_bits(PacketType::kPubrel) | 0x02;
}
std::uint8_t first_byte(const Subscribe&) {
  return type_bits(PacketType::kSubscribe) | 0x02;
}
std::uint8_t first_byte(const Unsubscribe&) {
  return type_bits(PacketType::kUnsubscribe) | 0x02;
}

// ---- bodies ----------------------------------------------------------------

template <class W>
void write_body(W& w, const Connect& p, ProtocolVersion) {
  // A CONNECT names its own version; the connection's is not known yet.
  const ProtocolVersion version = p.version;
  const bool v31 = version == ProtocolVersion::kV3_1;
  w.string(v31 ? "MQIsdp" : "MQTT");
  w.u8(static_cast<std::uint8_t>(version));
  unsigned flags = p.clean_start ? 0x02 : 0;
  if (p.will) {
    flags |= 0x04 | (static_cast<unsigned>(p.will->qos) << 3) | (p.will->retain ? 0x20 : 0);
  }
  if (p.password) flags |= 0x40;
  if (p.username) flags |= 0x80;
  w.u8(static_cast<std::uint8_t>(flags));
  w.u16(p.keep_alive_s);
  write_properties_if_v5(w, version, p.properties);
  w.string(p.client_id);
  if (p.will) {
    write_properties_if_v5(w, version, p.will->properties);
    w.string(p.will->topic);
    w.binary(p.will->payload);
  }
  if (p.username) w.string(*p.username);
  if (p.password) w.binary(*p.password);
}

template <class W>
void write_body(W& w, const Connack& p, ProtocolVersion version) {
  const bool has_flags = version != ProtocolVersion::kV3_1;
  w.u8(has_flags && p.session_present ? 1 : 0);
  w.u8(is_v5(version) ? u8(p.reason) : to_v3_connack_code(p.reason));
  write_properties_if_v5(w, version, p.properties);
}

template <class W, class WriteProperties>
void write_publish_fields(W& w, std::string_view topic, QoS qos, std::uint16_t packet_id,
                          ProtocolVersion version, std::size_t properties_size,
                          WriteProperties&& write_property_bytes) {
  w.string(topic);
  if (qos != QoS::kAtMostOnce) w.u16(packet_id);
  if (is_v5(version)) {
    w.varint(static_cast<std::uint32_t>(properties_size));
    write_property_bytes(w);
  }
}

template <class W>
void write_body(W& w, const Publish& p, ProtocolVersion version) {
  const std::size_t properties_size =
      is_v5(version) ? property_list_size(p.properties, PropertySelection::kAll) : 0;
  write_publish_fields(w, p.topic, p.qos, p.packet_id, version, properties_size, [&](auto& out) {
    write_property_list(out, p.properties, PropertySelection::kAll);
  });
  w.raw(p.payload);
}

// PUBACK, PUBREC, PUBREL, PUBCOMP; on 5.0 the reason code and properties are
// left out when there is nothing to say.
template <class W, PacketType kType>
void write_body(W& w, const PublishResponse<kType>& p, ProtocolVersion version) {
  w.u16(p.packet_id);
  if (!is_v5(version)) return;
  const bool has_properties = has_any(p.properties);
  if (p.reason == ReasonCode::kSuccess && !has_properties) return;
  w.u8(u8(p.reason));
  if (has_properties) write_properties(w, p.properties);
}

template <class W>
void write_body(W& w, const Subscribe& p, ProtocolVersion version) {
  w.u16(p.packet_id);
  write_properties_if_v5(w, version, p.properties);
  for (const Subscription& s : p.subscriptions) {
    w.string(s.filter);
    unsigned options = static_cast<unsigned>(s.options.max_qos);
    if (is_v5(version)) {
      options |= (s.options.no_local ? 0x04 : 0) | (s.options.retain_as_published ? 0x08 : 0) |
                 (static_cast<unsigned>(s.options.retain_handling) << 4);
    }
    w.u8(static_cast<std::uint8_t>(options));
  }
}

template <class W>
void write_body(W& w, const Suback& p, ProtocolVersion version) {
  w.u16(p.packet_id);
  write_properties_if_v5(w, version, p.properties);
  for (ReasonCode reason : p.reasons) {
    // 3.x has one failure code for every reason.
    w.u8(is_v5(version) || !is_error(reason) ? u8(reason) : u8(ReasonCode::kUnspecifiedError));
  }
}

template <class W>
void write_body(W& w, const Unsubscribe& p, ProtocolVersion version) {
  w.u16(p.packet_id);
  write_properties_if_v5(w, version, p.properties);
  for (const std::string& filter : p.filters)
    w.string(filter);
}

template <class W>
void write_body(W& w, const Unsuback& p, ProtocolVersion version) {
  w.u16(p.packet_id);
  if (!is_v5(version)) return;
  write_properties(w, p.properties);
  for (ReasonCode reason : p.reasons)
    w.u8(u8(reason));
}

template <class W>
void write_body(W&, const Pingreq&, ProtocolVersion) {}

template <class W>
void write_body(W&, const Pingresp&, ProtocolVersion) {}

// DISCONNECT and AUTH: on 5.0 an empty body means Success with no properties.
template <class W, class T>
void write_reason_and_properties(W& w, const T& p, ProtocolVersion version) {
  if (!is_v5(version)) return;
  const bool has_properties = has_any(p.properties);
  if (p.reason == ReasonCode::kSuccess && !has_properties) return;
  w.u8(u8(p.reason));
  if (has_properties) write_properties(w, p.properties);
}

template <class W>
void write_body(W& w, const Disconnect& p, ProtocolVersion version) {
  write_reason_and_properties(w, p, version);
}

template <class W>
void write_body(W& w, const Auth& p, ProtocolVersion version) {
  write_reason_and_properties(w, p, version);
}

// ---- framing ---------------------------------------------------------------

// The Remaining Length of `p`, or nullopt when `p` cannot be encoded.
template <class T>
std::optional<std::uint32_t> remaining_length(const T& p, ProtocolVersion version) {
  if constexpr (std::is_same_v<T, Auth>) {
    if (!is_v5(version)) return std::nullopt;
  }
  SizeCounter counter;
  write_body(counter, p, version);
  if (!counter.fits() || counter.size() > kMaxVarint) return std::nullopt;
  return static_cast<std::uint32_t>(counter.size());
}

template <class T>
bool encode(const T& p, ProtocolVersion version, std::vector<std::uint8_t>& out) {
  const auto length = remaining_length(p, version);
  if (!length) return false;
  out.reserve(out.size() + 1 + varint_size(*length) + *length);
  ByteWriter w(out);
  w.u8(first_byte(p));
  w.varint(*length);
  write_body(w, p, version);
  return true;
}

// ---- PUBLISH heads ---------------------------------------------------------

std::size_t per_delivery_properties_size(const PublishHead& head) {
  std::size_t size = 0;
  for (std::uint32_t id : head.subscription_identifiers)
    size += 1 + varint_size(id);
  if (head.topic_alias != 0) size += 3;
  if (head.message_expiry_interval) size += 5;
  if (!head.traceparent.empty()) size += 1 + 2 + kTraceparent.size() + 2 + head.traceparent.size();
  return size;
}

template <class W>
void write_head_body(W& w, const PublishHead& head, ProtocolVersion version) {
  const std::size_t properties_size =
      is_v5(version) ? per_delivery_properties_size(head) + head.shared_properties.size() : 0;
  write_publish_fields(w, head.topic, head.qos, head.packet_id, version, properties_size,
                       [&](auto& out) {
                         if (head.message_expiry_interval) {
                           out.u8(static_cast<std::uint8_t>(PropertyId::kMessageExpiryInterval));
                           out.u32(*head.message_expiry_interval);
                         }
                         for (std::uint32_t id : head.subscription_identifiers) {
                           out.u8(static_cast<std::uint8_t>(PropertyId::kSubscriptionIdentifier));
                           out.varint(id);
                         }
                         if (head.topic_alias != 0) {
                           out.u8(static_cast<std::uint8_t>(PropertyId::kTopicAlias));
                           out.u16(head.topic_alias);
                         }
                         out.raw(head.shared_properties);
                         if (!head.traceparent.empty()) {
                           out.u8(static_cast<std::uint8_t>(PropertyId::kUserProperty));
                           out.string(kTraceparent);
                           out.string(head.traceparent);
                         }
                       });
}

std::optional<std::uint32_t> head_remaining_length(const PublishHead& head,
                                                   ProtocolVersion version) {
  SizeCounter counter;
  write_head_body(counter, head, version);
  const std::size_t total = counter.size() + head.payload_bytes;
  if (!counter.fits() || total > kMaxVarint) return std::nullopt;
  return static_cast<std::uint32_t>(total);
}

std::uint8_t head_first_byte(const PublishHead& head) {
  return static_cast<std::uint8_t>(type_bits(PacketType::kPublish) | (head.dup ? 0x08 : 0) |
                                   (static_cast<unsigned>(head.qos) << 1) |
                                   (head.retain ? 0x01 : 0));
}

}  // namespace

bool encode_packet(const Packet& packet, ProtocolVersion version, std::vector<std::uint8_t>& out) {
  return std::visit([&](const auto& p) { return encode(p, version, out); }, packet);
}

std::size_t encoded_size(const Packet& packet, ProtocolVersion version) {
  return std::visit(
      [&](const auto& p) -> std::size_t {
        const auto length = remaining_length(p, version);
        return length ? 1 + varint_size(*length) + *length : 0;
      },
      packet);
}

void encode_shared_properties(const Properties& properties, std::vector<std::uint8_t>& out) {
  out.reserve(out.size() + property_list_size(properties, PropertySelection::kSharedByDeliveries));
  ByteWriter w(out);
  write_property_list(w, properties, PropertySelection::kSharedByDeliveries);
}

void encode_property_block(const Properties& properties, std::vector<std::uint8_t>& out) {
  ByteWriter w(out);
  write_properties(w, properties);
}

bool encode_publish_head(const PublishHead& head, ProtocolVersion version,
                         std::vector<std::uint8_t>& out) {
  const auto length = head_remaining_length(head, version);
  if (!length) return false;
  out.reserve(out.size() + 1 + varint_size(*length) + *length - head.payload_bytes);
  ByteWriter w(out);
  w.u8(head_first_byte(head));
  w.varint(*length);
  write_head_body(w, head, version);
  return true;
}

std::size_t publish_wire_size(const PublishHead& head, ProtocolVersion version) {
  const auto length = head_remaining_length(head, version);
  return length ? 1 + varint_size(*length) + *length : 0;
}

Packet plain_ack_packet(PacketType type, std::uint16_t packet_id) {
  switch (type) {
    case PacketType::kPuback:
      return Puback{packet_id, ReasonCode::kSuccess, {}};
    case PacketType::kPubrec:
      return Pubrec{packet_id, ReasonCode::kSuccess, {}};
    case PacketType::kPubrel:
      return Pubrel{packet_id, ReasonCode::kSuccess, {}};
    default:
      return Pubcomp{packet_id, ReasonCode::kSuccess, {}};
  }
}

void encode_plain_ack(PacketType type, std::uint16_t packet_id, std::vector<std::uint8_t>& out) {
  const std::uint8_t flags = type == PacketType::kPubrel ? 0x02 : 0x00;  // [MQTT-3.6.1-1]
  const std::uint8_t bytes[] = {
      static_cast<std::uint8_t>(static_cast<std::uint8_t>(type) << 4 | flags), 2,
      static_cast<std::uint8_t>(packet_id >> 8), static_cast<std::uint8_t>(packet_id & 0xFF)};
  out.insert(out.end(), std::begin(bytes), std::end(bytes));
}

}  // namespace sluice::mqtt
