// One decoding function per packet type, each a straight list of the packet's
// fields in wire order (see ByteReader for how errors stop the list).
#include "mqtt/packet_decoder.hpp"

#include <array>
#include <utility>

#include "mqtt/byte_reader.hpp"
#include "mqtt/property.hpp"
#include "mqtt/topic.hpp"

namespace sluice::mqtt {
namespace {

constexpr std::uint8_t kConnectReservedFlag = 0x01;
constexpr std::uint8_t kCleanStartFlag = 0x02;
constexpr std::uint8_t kWillFlag = 0x04;
constexpr std::uint8_t kWillRetainFlag = 0x20;
constexpr std::uint8_t kPasswordFlag = 0x40;
constexpr std::uint8_t kUsernameFlag = 0x80;

constexpr std::uint8_t kSubscriptionQoSMask = 0x03;
constexpr std::uint8_t kNoLocalBit = 0x04;
constexpr std::uint8_t kRetainAsPublishedBit = 0x08;
constexpr std::uint8_t kRetainHandlingShift = 4;

// Rules numbered differently in 3.1.1 and 5.0.
const char* by_version(ProtocolVersion version, const char* v5, const char* v311) {
  return is_v5(version) ? v5 : v311;
}

void expect_end(ByteReader& r) {
  if (r.ok() && !r.at_end())
    r.fail(malformed("§4.13.1", "bytes left over after the packet's fields"));
}

// [MQTT-2.2.1-3] packets that carry an identifier carry a non-zero one.
std::uint16_t read_packet_id(ByteReader& r, ProtocolVersion version) {
  const std::uint16_t id = r.u16();
  if (r.ok() && id == 0) {
    r.fail(protocol_error(by_version(version, "MQTT-2.2.1-3", "MQTT-2.3.1-1"),
                          "packet identifier is 0"));
  }
  return id;
}

void read_properties_if_v5(ByteReader& r, ProtocolVersion version, PropertyContext context,
                           Properties& out) {
  if (is_v5(version)) read_properties(r, context, out);
}

ReasonCode read_reason_code(ByteReader& r, PacketType type, const char* rule) {
  const auto code = static_cast<ReasonCode>(r.u8());
  if (r.ok() && !reason_code_allowed(code, type)) {
    r.fail(malformed(rule, "reason code not defined for this packet"));
  }
  return code;
}

// ---- CONNECT ---------------------------------------------------------------

// The protocol name and level; false (with `out.version` set for the reply) if
// the broker does not speak them.
bool read_protocol(ByteReader& r, Connect& out, DecodeError& unsupported) {
  const auto name_bytes = r.binary_view();
  const std::string_view name(reinterpret_cast<const char*>(name_bytes.data()), name_bytes.size());
  const std::uint8_t level = r.u8();
  if (!r.ok()) return false;
  if (name == "MQTT" && (level == 4 || level == 5)) {
    out.version = static_cast<ProtocolVersion>(level);
    return true;
  }
  if (name == "MQIsdp" && level == 3) {
    out.version = ProtocolVersion::kV3_1;
    return true;
  }
  out.version = level == 5 && name == "MQTT" ? ProtocolVersion::kV5 : ProtocolVersion::kV3_1_1;
  unsupported = {ReasonCode::kUnsupportedProtocolVersion,
                 name == "MQTT" || name == "MQIsdp" ? "MQTT-3.1.2-2" : "MQTT-3.1.2-1",
                 "unsupported protocol name or level"};
  return false;
}

void check_connect_flags(ByteReader& r, std::uint8_t flags, ProtocolVersion version) {
  if ((flags & kConnectReservedFlag) != 0) {
    r.fail(malformed("MQTT-3.1.2-3", "reserved connect flag is set"));
  }
  const auto will_qos = static_cast<std::uint8_t>((flags >> 3) & 0x03);
  if ((flags & kWillFlag) == 0) {
    if (will_qos != 0) {
      r.fail(malformed(by_version(version, "MQTT-3.1.2-11", "MQTT-3.1.2-13"),
                       "Will QoS set without a will"));
    }
    if ((flags & kWillRetainFlag) != 0) {
      r.fail(malformed(by_version(version, "MQTT-3.1.2-13", "MQTT-3.1.2-15"),
                       "Will Retain set without a will"));
    }
  } else if (will_qos == 3) {
    r.fail(malformed(by_version(version, "MQTT-3.1.2-12", "MQTT-3.1.2-14"), "Will QoS is 3"));
  }
  // 5.0 allows a password without a user name; 3.x does not.
  if (!is_v5(version) && (flags & kPasswordFlag) != 0 && (flags & kUsernameFlag) == 0) {
    r.fail(malformed("MQTT-3.1.2-22", "password flag set without user name flag"));
  }
}

Will read_will(ByteReader& r, std::uint8_t flags, ProtocolVersion version) {
  Will will;
  will.qos = static_cast<QoS>((flags >> 3) & 0x03);
  will.retain = (flags & kWillRetainFlag) != 0;
  read_properties_if_v5(r, version, PropertyContext::kWill, will.properties);
  will.topic = r.string();
  if (r.ok()) r.fail(check_topic_name(will.topic));
  will.payload = r.binary();
  return will;
}

void check_authentication(ByteReader& r, const Properties& p) {
  if (p.authentication_data && !p.authentication_method) {
    r.fail(protocol_error("§3.1.2.11.10", "Authentication Data without Authentication Method"));
  }
}

// ---- PUBLISH ---------------------------------------------------------------

void decode_publish(const Frame& frame, ProtocolVersion version, ByteReader& r, Publish& out) {
  const std::uint8_t flags = frame.flags();
  out.dup = (flags & 0x08) != 0;
  out.retain = (flags & 0x01) != 0;
  const auto qos = static_cast<std::uint8_t>((flags >> 1) & 0x03);
  if (qos == 3) return r.fail(malformed("MQTT-3.3.1-4", "PUBLISH with QoS 3"));
  out.qos = static_cast<QoS>(qos);
  if (out.dup && out.qos == QoS::kAtMostOnce) {
    return r.fail(malformed("MQTT-3.3.1-2", "DUP set on a QoS 0 PUBLISH"));
  }

  out.topic = r.string();
  if (out.qos != QoS::kAtMostOnce) out.packet_id = read_packet_id(r, version);
  read_properties_if_v5(r, version, PropertyContext::kPublish, out.properties);
  if (!r.ok()) return;

  if (!out.topic.empty() || !out.properties.topic_alias) {
    if (out.topic.empty() && is_v5(version)) {
      return r.fail(protocol_error("§3.3.2.1", "empty topic name without a Topic Alias"));
    }
    r.fail(check_topic_name(out.topic));
  }
  if (out.properties.response_topic && has_wildcard(*out.properties.response_topic)) {
    r.fail(protocol_error("MQTT-3.3.2-14", "Response Topic contains a wildcard"));
  }
  const auto payload = r.rest();
  out.payload.assign(payload.begin(), payload.end());
}

// ---- PUBACK, PUBREC, PUBREL, PUBCOMP ---------------------------------------

template <PacketType kType>
void decode_publish_response(ByteReader& r, ProtocolVersion version, PublishResponse<kType>& out,
                             const char* reason_rule) {
  out.packet_id = read_packet_id(r, version);
  // 5.0: the reason code and properties may be left out when there are none.
  if (is_v5(version) && !r.at_end()) {
    out.reason = read_reason_code(r, kType, reason_rule);
    if (!r.at_end()) read_properties(r, context_of(kType), out.properties);
  }
  expect_end(r);
}

// ---- SUBSCRIBE, UNSUBSCRIBE ------------------------------------------------

SubscriptionOptions read_subscription_options(ByteReader& r, ProtocolVersion version,
                                              std::string_view filter) {
  SubscriptionOptions options;
  const std::uint8_t byte = r.u8();
  if (!r.ok()) return options;
  const auto qos = static_cast<std::uint8_t>(byte & kSubscriptionQoSMask);
  if (!is_v5(version)) {
    if ((byte & ~kSubscriptionQoSMask) != 0 || qos == 3) {
      r.fail(malformed("MQTT-3-8.3-4", "reserved bits or QoS 3 in requested QoS"));
    }
    options.max_qos = static_cast<QoS>(qos);
    return options;
  }
  if ((byte & 0xC0) != 0) {
    r.fail(malformed("MQTT-3.8.3-5", "reserved subscription option bits are set"));
    return options;
  }
  const auto retain_handling = static_cast<std::uint8_t>(byte >> kRetainHandlingShift) & 0x03u;
  if (qos == 3) r.fail(protocol_error("§3.8.3.1", "Maximum QoS 3 in subscription options"));
  if (retain_handling == 3) r.fail(protocol_error("§3.8.3.1", "Retain Handling 3"));
  options.max_qos = static_cast<QoS>(qos);
  options.no_local = (byte & kNoLocalBit) != 0;
  options.retain_as_published = (byte & kRetainAsPublishedBit) != 0;
  options.retain_handling = static_cast<RetainHandling>(retain_handling);
  if (options.no_local && parse_shared_filter(filter)) {
    r.fail(protocol_error("MQTT-3.8.3-4", "No Local on a shared subscription"));
  }
  return options;
}

void decode_subscribe(ByteReader& r, ProtocolVersion version, Subscribe& out) {
  out.packet_id = read_packet_id(r, version);
  read_properties_if_v5(r, version, PropertyContext::kSubscribe, out.properties);
  if (r.ok() && r.at_end()) {
    return r.fail(protocol_error(by_version(version, "MQTT-3.8.3-2", "MQTT-3.8.3-3"),
                                 "SUBSCRIBE without a topic filter"));
  }
  while (r.ok() && !r.at_end()) {
    Subscription subscription;
    subscription.filter = r.string();
    if (r.ok()) r.fail(check_topic_filter(subscription.filter));
    subscription.options = read_subscription_options(r, version, subscription.filter);
    out.subscriptions.push_back(std::move(subscription));
  }
}

void decode_unsubscribe(ByteReader& r, ProtocolVersion version, Unsubscribe& out) {
  out.packet_id = read_packet_id(r, version);
  read_properties_if_v5(r, version, PropertyContext::kUnsubscribe, out.properties);
  if (r.ok() && r.at_end()) {
    return r.fail(protocol_error("MQTT-3.10.3-2", "UNSUBSCRIBE without a topic filter"));
  }
  while (r.ok() && !r.at_end()) {
    out.filters.push_back(r.string());
    if (r.ok()) r.fail(check_topic_filter(out.filters.back()));
  }
}

// ---- SUBACK, UNSUBACK ------------------------------------------------------

void read_ack_reasons(ByteReader& r, PacketType type, ProtocolVersion version, const char* rule,
                      std::vector<ReasonCode>& out) {
  if (r.ok() && r.at_end())
    return r.fail(protocol_error(rule, "acknowledgement without reason codes"));
  while (r.ok() && !r.at_end()) {
    if (is_v5(version)) {
      out.push_back(read_reason_code(r, type, rule));
      continue;
    }
    const std::uint8_t code = r.u8();  // 3.x SUBACK: a granted QoS or 0x80
    if (code > 2 && code != 0x80)
      r.fail(malformed("MQTT-3.9.3-2", "SUBACK return code is reserved"));
    out.push_back(static_cast<ReasonCode>(code));
  }
}

void decode_suback(ByteReader& r, ProtocolVersion version, Suback& out) {
  out.packet_id = read_packet_id(r, version);
  read_properties_if_v5(r, version, PropertyContext::kSuback, out.properties);
  read_ack_reasons(r, PacketType::kSuback, version, "MQTT-3.9.3-2", out.reasons);
}

void decode_unsuback(ByteReader& r, ProtocolVersion version, Unsuback& out) {
  out.packet_id = read_packet_id(r, version);
  if (!is_v5(version)) return expect_end(r);
  read_properties(r, PropertyContext::kUnsuback, out.properties);
  read_ack_reasons(r, PacketType::kUnsuback, version, "MQTT-3.11.3-2", out.reasons);
}

// ---- CONNACK, DISCONNECT, AUTH ---------------------------------------------

void decode_connack(ByteReader& r, ProtocolVersion version, Connack& out) {
  const std::uint8_t flags = r.u8();
  const std::uint8_t code = r.u8();
  if (!r.ok()) return;
  if (version == ProtocolVersion::kV3_1) {
    out.reason = from_v3_connack_code(code);  // 3.1's first byte is unused
  } else {
    if ((flags & 0xFE) != 0)
      return r.fail(malformed("MQTT-3.2.2-1", "reserved CONNACK flags are set"));
    out.session_present = (flags & 0x01) != 0;
    out.reason = is_v5(version) ? static_cast<ReasonCode>(code) : from_v3_connack_code(code);
  }
  if (is_v5(version) && !reason_code_allowed(out.reason, PacketType::kConnack)) {
    return r.fail(malformed("MQTT-3.2.2-8", "reason code not defined for CONNACK"));
  }
  if (!is_v5(version) && code > 5)
    return r.fail(malformed("§3.2.2.3", "CONNACK return code is reserved"));
  if (out.session_present && is_error(out.reason)) {
    return r.fail(protocol_error("MQTT-3.2.2-6", "Session Present set on a refused connection"));
  }
  read_properties_if_v5(r, version, PropertyContext::kConnack, out.properties);
  expect_end(r);
}

void decode_disconnect(ByteReader& r, ProtocolVersion version, Disconnect& out) {
  if (is_v5(version) && !r.at_end()) {
    out.reason = read_reason_code(r, PacketType::kDisconnect, "MQTT-3.14.2-1");
    if (!r.at_end()) read_properties(r, PropertyContext::kDisconnect, out.properties);
  }
  expect_end(r);
}

void decode_auth(ByteReader& r, Auth& out) {
  if (r.at_end()) return;  // reason Success, no properties
  out.reason = read_reason_code(r, PacketType::kAuth, "MQTT-3.15.2-1");
  read_properties(r, PropertyContext::kAuth, out.properties);
  if (r.ok() && !out.properties.authentication_method) {
    r.fail(protocol_error("§3.15.2.2.2", "AUTH without Authentication Method"));
  }
  expect_end(r);
}

// ---- fixed header flags ----------------------------------------------------

DecodeError check_fixed_flags(const Frame& frame, ProtocolVersion version) {
  const std::uint8_t flags = frame.flags();
  switch (frame.type()) {
    case PacketType::kPublish:
      return {};  // checked with the packet: they carry DUP, QoS and RETAIN
    case PacketType::kPubrel:
    case PacketType::kSubscribe:
    case PacketType::kUnsubscribe: {
      // 3.1 let a retransmission carry DUP on these packets.
      const bool dup_allowed = version == ProtocolVersion::kV3_1 && flags == 0x0A;
      if (flags == 0x02 || dup_allowed) return {};
      if (frame.type() == PacketType::kPubrel)
        return malformed("MQTT-3.6.1-1", "PUBREL flags must be 0010");
      if (frame.type() == PacketType::kSubscribe)
        return malformed("MQTT-3.8.1-1", "SUBSCRIBE flags must be 0010");
      return malformed("MQTT-3.10.1-1", "UNSUBSCRIBE flags must be 0010");
    }
    case PacketType::kDisconnect:
      if (flags != 0) return malformed("MQTT-3.14.1-1", "DISCONNECT flags must be 0");
      return {};
    case PacketType::kAuth:
      if (flags != 0) return malformed("MQTT-3.15.1-1", "AUTH flags must be 0");
      return {};
    default:
      if (flags != 0) {
        return malformed(by_version(version, "MQTT-2.1.3-1", "MQTT-2.2.2-1"),
                         "reserved flags must be 0");
      }
      return {};
  }
}

// Every packet's body decoder has this one shape, so `decode_as` can serve all.
void decode_body(const Frame&, ByteReader& r, ProtocolVersion version, Connack& out) {
  decode_connack(r, version, out);
}
void decode_body(const Frame& frame, ByteReader& r, ProtocolVersion version, Publish& out) {
  decode_publish(frame, version, r, out);
}
template <PacketType kType>
void decode_body(const Frame&, ByteReader& r, ProtocolVersion version,
                 PublishResponse<kType>& out) {
  constexpr const char* kRules[] = {"MQTT-3.4.2-1", "MQTT-3.5.2-1", "MQTT-3.6.2-1", "MQTT-3.7.2-1"};
  constexpr auto kIndex = static_cast<unsigned>(kType) - static_cast<unsigned>(PacketType::kPuback);
  decode_publish_response(r, version, out, kRules[kIndex]);
}
void decode_body(const Frame&, ByteReader& r, ProtocolVersion version, Subscribe& out) {
  decode_subscribe(r, version, out);
}
void decode_body(const Frame&, ByteReader& r, ProtocolVersion version, Suback& out) {
  decode_suback(r, version, out);
}
void decode_body(const Frame&, ByteReader& r, ProtocolVersion version, Unsubscribe& out) {
  decode_unsubscribe(r, version, out);
}
void decode_body(const Frame&, ByteReader& r, ProtocolVersion version, Unsuback& out) {
  decode_unsuback(r, version, out);
}
void decode_body(const Frame&, ByteReader& r, ProtocolVersion, Pingreq&) {
  expect_end(r);
}
void decode_body(const Frame&, ByteReader& r, ProtocolVersion, Pingresp&) {
  expect_end(r);
}
void decode_body(const Frame&, ByteReader& r, ProtocolVersion version, Disconnect& out) {
  decode_disconnect(r, version, out);
}
void decode_body(const Frame&, ByteReader& r, ProtocolVersion, Auth& out) {
  decode_auth(r, out);
}

template <class T>
DecodeError decode_as(const Frame& frame, ProtocolVersion version, Packet& out) {
  if (DecodeError error = check_fixed_flags(frame, version); !error.ok()) return error;
  ByteReader r(frame.body);
  decode_body(frame, r, version, out.emplace<T>());
  return r.error();
}

template <>
DecodeError decode_as<Connect>(const Frame& frame, ProtocolVersion, Packet& out) {
  return decode_connect(frame, out.emplace<Connect>());
}

using PacketDecoder = DecodeError (*)(const Frame&, ProtocolVersion, Packet&);

// Indexed by packet type; the variant's alternatives are in the same order.
template <std::size_t... kIndex>
constexpr std::array<PacketDecoder, 16> make_decoders(std::index_sequence<kIndex...>) {
  return {nullptr, &decode_as<std::variant_alternative_t<kIndex, Packet>>...};
}
constexpr auto kDecoders = make_decoders(std::make_index_sequence<std::variant_size_v<Packet>>());

}  // namespace

DecodeError decode_publish_into(const Frame& frame, ProtocolVersion version, Publish& out) {
  // Whatever the version: the Publish may come from a 5.0 client's PUBLISH
  // on the same thread, and 3.x reads no properties to overwrite them.
  if (has_any(out.properties)) out.properties = {};
  out.packet_id = 0;
  ByteReader r(frame.body);
  decode_publish(frame, version, r, out);
  return r.error();
}

bool decode_plain_ack(const Frame& frame, std::uint16_t& packet_id) {
  const PacketType type = frame.type();
  if (type != PacketType::kPuback && type != PacketType::kPubrec && type != PacketType::kPubcomp) {
    return false;
  }
  if (frame.flags() != 0 || frame.body.size() != 2) return false;
  packet_id = static_cast<std::uint16_t>((frame.body[0] << 8) | frame.body[1]);
  return packet_id != 0;  // 0 is malformed: decode_packet says so
}

DecodeError decode_connect(const Frame& frame, Connect& out) {
  if (frame.type() != PacketType::kConnect)
    return protocol_error("MQTT-3.1.0-1", "expected CONNECT");
  ByteReader r(frame.body);
  DecodeError unsupported;
  if (!read_protocol(r, out, unsupported)) return r.ok() ? unsupported : r.error();
  if (frame.flags() != 0) return check_fixed_flags(frame, out.version);

  const std::uint8_t flags = r.u8();
  check_connect_flags(r, flags, out.version);
  out.clean_start = (flags & kCleanStartFlag) != 0;
  out.keep_alive_s = r.u16();
  read_properties_if_v5(r, out.version, PropertyContext::kConnect, out.properties);
  check_authentication(r, out.properties);

  out.client_id = r.string();
  if ((flags & kWillFlag) != 0 && r.ok()) out.will = read_will(r, flags, out.version);
  if ((flags & kUsernameFlag) != 0) out.username = r.string();
  if ((flags & kPasswordFlag) != 0) out.password = r.binary();
  expect_end(r);
  return r.error();
}

DecodeError decode_packet(const Frame& frame, ProtocolVersion version, Packet& out) {
  const PacketType type = frame.type();
  if (static_cast<std::uint8_t>(type) == 0) return malformed("§2.1.2", "packet type 0 is reserved");
  if (type == PacketType::kAuth && !is_v5(version)) {
    return malformed("§2.1.2", "packet type 15 is reserved before MQTT 5");
  }
  return kDecoders[static_cast<std::uint8_t>(type)](frame, version, out);
}

}  // namespace sluice::mqtt
