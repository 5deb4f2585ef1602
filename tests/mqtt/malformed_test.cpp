// Malformed and protocol-violating input, one case per normative statement:
// each case is named after the statement it checks and expects the reason
// code the broker must answer with and that statement's id.
#include <gtest/gtest.h>

#include <set>

#include "support/decode_bytes.hpp"
#include "support/packet_bytes.hpp"

namespace sluice::mqtt {
namespace {

using namespace sluice::mqtt::testing;

constexpr auto V31 = ProtocolVersion::kV3_1;
constexpr auto V311 = ProtocolVersion::kV3_1_1;
constexpr auto V5 = ProtocolVersion::kV5;

constexpr auto kMalformed = ReasonCode::kMalformedPacket;
constexpr auto kProtocol = ReasonCode::kProtocolError;

struct BadInput {
  std::string name;  // the statement's id, then what is wrong
  ProtocolVersion version;
  Bytes bytes;
  ReasonCode code;
  std::string rule;
  std::uint32_t max_packet_bytes = kProtocolMaxPacketBytes;
};

void PrintTo(const BadInput& input, std::ostream* os) {
  *os << input.name;
}

// ---- packet builders ---------------------------------------------------------

Bytes connect5(int flags, Bytes properties, Bytes payload) {
  return packet(0x10, cat({str("MQTT"), raw({5, flags}), u16(60), props(std::move(properties)),
                           std::move(payload)}));
}

Bytes connect311(int flags, Bytes payload) {
  return packet(0x10, cat({str("MQTT"), raw({4, flags}), u16(60), std::move(payload)}));
}

Bytes publish5(int first_byte, std::string_view topic, Bytes properties, Bytes rest = {}) {
  return packet(static_cast<std::uint8_t>(first_byte),
                cat({str(topic), props(std::move(properties)), std::move(rest)}));
}

Bytes publish5_qos1(std::string_view topic, std::uint16_t id, Bytes properties) {
  return packet(0x32, cat({str(topic), u16(id), props(std::move(properties))}));
}

Bytes subscribe5(Bytes properties, Bytes entries, std::uint16_t id = 1) {
  return packet(0x82, cat({u16(id), props(std::move(properties)), std::move(entries)}));
}

Bytes subscribe311(Bytes entries, std::uint16_t id = 1) {
  return packet(0x82, cat({u16(id), std::move(entries)}));
}

Bytes entry(std::string_view filter, int options) {
  return cat({str(filter), raw({options})});
}

Bytes connack5(int flags, int code, Bytes properties = {}) {
  return packet(0x20, cat({raw({flags, code}), props(std::move(properties))}));
}

// Properties, by identifier.
Bytes prop_u8(int id, int value) {
  return raw({id, value});
}
Bytes prop_u16(int id, std::uint16_t value) {
  return cat({raw({id}), u16(value)});
}
Bytes prop_u32(int id, std::uint32_t value) {
  return raw({id, static_cast<int>(value >> 24), static_cast<int>((value >> 16) & 0xFF),
              static_cast<int>((value >> 8) & 0xFF), static_cast<int>(value & 0xFF)});
}
Bytes prop_str(int id, std::string_view value) {
  return cat({raw({id}), str(value)});
}

const Bytes kClientId = str("client");

Bytes with_first_byte(Bytes bytes, int first_byte) {
  bytes[0] = static_cast<std::uint8_t>(first_byte);
  return bytes;
}

// ---- the cases -------------------------------------------------------------

std::vector<BadInput> fixed_header_cases() {
  return {
      {"MQTT_2_1_3_1_ConnackFlagsNotZero", V5, packet(0x21, raw({0, 0, 0})), kMalformed,
       "MQTT-2.1.3-1"},
      {"MQTT_2_1_3_1_PubackFlagsNotZero", V5, packet(0x42, u16(1)), kMalformed, "MQTT-2.1.3-1"},
      {"MQTT_2_1_3_1_PingreqFlagsNotZero", V5, packet(0xC8, {}), kMalformed, "MQTT-2.1.3-1"},
      {"MQTT_2_1_3_1_ConnectFlagsNotZero", V5, with_first_byte(connect5(0x02, {}, kClientId), 0x11),
       kMalformed, "MQTT-2.1.3-1"},
      {"MQTT_2_2_2_1_SubackFlagsNotZeroOn311", V311, packet(0x91, cat({u16(1), raw({0})})),
       kMalformed, "MQTT-2.2.2-1"},
      {"MQTT_3_6_1_1_PubrelFlagsNot0010", V5, packet(0x60, u16(1)), kMalformed, "MQTT-3.6.1-1"},
      {"MQTT_3_6_1_1_PubrelDupNotAllowedAfter31", V311, packet(0x6A, u16(1)), kMalformed,
       "MQTT-3.6.1-1"},
      {"MQTT_3_8_1_1_SubscribeFlagsNot0010", V5,
       packet(0x80, cat({u16(1), props({}), entry("a", 0)})), kMalformed, "MQTT-3.8.1-1"},
      {"MQTT_3_10_1_1_UnsubscribeFlagsNot0010", V311, packet(0xA0, cat({u16(1), str("a")})),
       kMalformed, "MQTT-3.10.1-1"},
      {"MQTT_3_14_1_1_DisconnectFlagsNotZero", V5, packet(0xE1, {}), kMalformed, "MQTT-3.14.1-1"},
      {"MQTT_3_15_1_1_AuthFlagsNotZero", V5, packet(0xF2, {}), kMalformed, "MQTT-3.15.1-1"},
      {"Section_2_1_2_PacketTypeZeroIsReserved", V5, packet(0x00, {}), kMalformed, "§2.1.2"},
      {"Section_2_1_2_AuthIsReservedBeforeMqtt5", V311, packet(0xF0, {}), kMalformed, "§2.1.2"},
      {"MQTT_1_5_5_1_RemainingLengthNotShortest", V5, raw({0xC0, 0x80, 0x00}), kMalformed,
       "MQTT-1.5.5-1"},
      {"Section_1_5_5_RemainingLengthOverFourBytes", V5, raw({0x30, 0xFF, 0xFF, 0xFF, 0xFF, 0x01}),
       kMalformed, "§1.5.5"},
      {"MQTT_3_2_2_15_PacketTooLarge", V5, publish5(0x30, "t", {}, Bytes(200, 0)),
       ReasonCode::kPacketTooLarge, "MQTT-3.2.2-15", 100},
      {"MQTT_1_5_5_1_PropertyLengthNotShortest", V5,
       packet(0x30, cat({str("t"), raw({0x80, 0x00})})), kMalformed, "MQTT-1.5.5-1"},
      {"Section_1_5_5_PropertyLengthOverFourBytes", V5,
       packet(0x30, cat({str("t"), raw({0x80, 0x80, 0x80, 0x80, 0x01})})), kMalformed, "§1.5.5"},
      {"Section_4_13_1_StringLongerThanPacket", V5, packet(0x30, raw({0x00, 0x09, 'a', 'b'})),
       kMalformed, "§4.13.1"},
      {"Section_4_13_1_PingreqWithBody", V5, packet(0xC0, raw({0})), kMalformed, "§4.13.1"},
      {"Section_4_13_1_PubackWithExtraBytesOn311", V311, packet(0x40, cat({u16(1), raw({0})})),
       kMalformed, "§4.13.1"},
      {"Section_4_13_1_PropertyLengthPastPacket", V5,
       packet(0x30, cat({str("t"), raw({0x05, 0x01})})), kMalformed, "§4.13.1"},
  };
}

std::vector<BadInput> utf8_cases() {
  return {
      {"MQTT_1_5_4_1_OverlongEncodingInTopic", V5, publish5(0x30, "a\xC0\x80", {}), kMalformed,
       "MQTT-1.5.4-1"},
      {"MQTT_1_5_4_1_SurrogateInClientId", V5, connect5(0x02, {}, str("a\xED\xA0\x80")), kMalformed,
       "MQTT-1.5.4-1"},
      {"MQTT_1_5_4_1_TruncatedSequenceInTopic", V311, packet(0x30, str("ab\xE2\x82")), kMalformed,
       "MQTT-1.5.4-1"},
      {"MQTT_1_5_4_1_InvalidByteInFilter", V5, subscribe5({}, entry("a/\xFF", 0)), kMalformed,
       "MQTT-1.5.4-1"},
      {"MQTT_1_5_4_1_AboveU10FFFFInUsername", V311,
       connect311(0x82, cat({kClientId, str("\xF4\x90\x80\x80")})), kMalformed, "MQTT-1.5.4-1"},
      {"MQTT_1_5_4_2_NullCharacterInTopic", V5, publish5(0x30, std::string_view("a\0b", 3), {}),
       kMalformed, "MQTT-1.5.4-2"},
      {"MQTT_1_5_4_2_NullCharacterInUserProperty", V5,
       publish5(0x30, "t", cat({raw({0x26}), str("k"), str(std::string_view("v\0", 2))})),
       kMalformed, "MQTT-1.5.4-2"},
      {"MQTT_1_5_4_2_NullCharacterInClientId", V311,
       connect311(0x02, str(std::string_view("\0", 1))), kMalformed, "MQTT-1.5.4-2"},
  };
}

std::vector<BadInput> connect_cases() {
  return {
      {"MQTT_3_1_2_1_UnknownProtocolName", V5,
       packet(0x10, cat({str("MQTX"), raw({5, 2}), u16(0), props({}), kClientId})),
       ReasonCode::kUnsupportedProtocolVersion, "MQTT-3.1.2-1"},
      {"MQTT_3_1_2_2_UnsupportedProtocolLevel", V5,
       packet(0x10, cat({str("MQTT"), raw({6, 2}), u16(0), kClientId})),
       ReasonCode::kUnsupportedProtocolVersion, "MQTT-3.1.2-2"},
      {"MQTT_3_1_2_2_MQIsdpWithLevel4", V311,
       packet(0x10, cat({str("MQIsdp"), raw({4, 2}), u16(0), kClientId})),
       ReasonCode::kUnsupportedProtocolVersion, "MQTT-3.1.2-2"},
      {"MQTT_3_1_2_3_ReservedConnectFlagSet", V5, connect5(0x03, {}, kClientId), kMalformed,
       "MQTT-3.1.2-3"},
      {"MQTT_3_1_2_3_ReservedConnectFlagSetOn311", V311, connect311(0x03, kClientId), kMalformed,
       "MQTT-3.1.2-3"},
      {"MQTT_3_1_2_11_WillQoSWithoutWill", V5, connect5(0x0A, {}, kClientId), kMalformed,
       "MQTT-3.1.2-11"},
      {"MQTT_3_1_2_13_WillQoSWithoutWillOn311", V311, connect311(0x12, kClientId), kMalformed,
       "MQTT-3.1.2-13"},
      {"MQTT_3_1_2_13_WillRetainWithoutWill", V5, connect5(0x22, {}, kClientId), kMalformed,
       "MQTT-3.1.2-13"},
      {"MQTT_3_1_2_15_WillRetainWithoutWillOn311", V311, connect311(0x22, kClientId), kMalformed,
       "MQTT-3.1.2-15"},
      {"MQTT_3_1_2_12_WillQoS3", V5,
       connect5(0x1E, {}, cat({kClientId, props({}), str("w"), str("x")})), kMalformed,
       "MQTT-3.1.2-12"},
      {"MQTT_3_1_2_14_WillQoS3On311", V311, connect311(0x1E, cat({kClientId, str("w"), str("x")})),
       kMalformed, "MQTT-3.1.2-14"},
      {"MQTT_3_1_2_22_PasswordWithoutUsernameOn311", V311,
       connect311(0x42, cat({kClientId, str("pw")})), kMalformed, "MQTT-3.1.2-22"},
      {"MQTT_3_1_2_22_PasswordWithoutUsernameOn31", V31,
       packet(0x10, cat({str("MQIsdp"), raw({3, 0x42}), u16(0), kClientId, str("pw")})), kMalformed,
       "MQTT-3.1.2-22"},
      {"MQTT_3_3_2_2_WillTopicWithWildcard", V5,
       connect5(0x06, {}, cat({kClientId, props({}), str("w/+"), str("x")})),
       ReasonCode::kTopicNameInvalid, "MQTT-3.3.2-2"},
      {"MQTT_4_7_3_1_EmptyWillTopic", V311, connect311(0x06, cat({kClientId, str(""), str("x")})),
       kProtocol, "MQTT-4.7.3-1"},
      {"Section_4_13_1_PasswordFlagWithoutPassword", V5,
       connect5(0xC2, {}, cat({kClientId, str("user")})), kMalformed, "§4.13.1"},
      {"Section_3_1_2_11_10_AuthenticationDataWithoutMethod", V5,
       connect5(0x02, cat({raw({0x16}), u16(1), raw({7})}), kClientId), kProtocol, "§3.1.2.11.10"},
      {"Section_3_1_2_11_3_ReceiveMaximumZero", V5, connect5(0x02, prop_u16(0x21, 0), kClientId),
       kProtocol, "§3.1.2.11.3"},
      {"Section_3_1_2_11_4_MaximumPacketSizeZero", V5, connect5(0x02, prop_u32(0x27, 0), kClientId),
       kProtocol, "§3.1.2.11.4"},
      {"Section_3_1_2_11_6_RequestResponseInformationNotBoolean", V5,
       connect5(0x02, prop_u8(0x19, 2), kClientId), kProtocol, "§3.1.2.11.6"},
      {"Section_3_1_2_11_7_RequestProblemInformationNotBoolean", V5,
       connect5(0x02, prop_u8(0x17, 2), kClientId), kProtocol, "§3.1.2.11.7"},
      {"Section_2_2_2_2_PropertyRepeated", V5,
       connect5(0x02, cat({prop_u32(0x11, 10), prop_u32(0x11, 20)}), kClientId), kProtocol,
       "§2.2.2.2"},
      {"Section_2_2_2_2_PropertyInWrongPacket", V5, connect5(0x02, prop_u16(0x23, 1), kClientId),
       kMalformed, "§2.2.2.2"},
      {"Section_2_2_2_2_WillPropertyInConnectProperties", V5,
       connect5(0x02, prop_u32(0x18, 5), kClientId), kMalformed, "§2.2.2.2"},
      {"Section_2_2_2_2_ConnectPropertyInWillProperties", V5,
       connect5(0x06, {}, cat({kClientId, props(prop_u32(0x11, 5)), str("w"), str("x")})),
       kMalformed, "§2.2.2.2"},
      {"Section_2_2_2_2_UnknownPropertyIdentifier", V5, connect5(0x02, prop_u8(0x05, 1), kClientId),
       kMalformed, "§2.2.2.2"},
  };
}

std::vector<BadInput> publish_cases() {
  return {
      {"MQTT_3_3_1_4_QoS3", V5, publish5(0x36, "t", {}), kMalformed, "MQTT-3.3.1-4"},
      {"MQTT_3_3_1_4_QoS3On311", V311, packet(0x36, cat({str("t"), u16(1)})), kMalformed,
       "MQTT-3.3.1-4"},
      {"MQTT_3_3_1_2_DupOnQoS0", V5, publish5(0x38, "t", {}), kMalformed, "MQTT-3.3.1-2"},
      {"MQTT_3_3_2_2_TopicWithPlus", V5, publish5(0x30, "a/+/c", {}), ReasonCode::kTopicNameInvalid,
       "MQTT-3.3.2-2"},
      {"MQTT_3_3_2_2_TopicWithHash", V311, packet(0x30, str("a/#")), ReasonCode::kTopicNameInvalid,
       "MQTT-3.3.2-2"},
      {"Section_3_3_2_1_EmptyTopicWithoutAlias", V5, publish5(0x30, "", {}), kProtocol, "§3.3.2.1"},
      {"MQTT_4_7_3_1_EmptyTopicOn311", V311, packet(0x30, str("")), kProtocol, "MQTT-4.7.3-1"},
      {"MQTT_2_2_1_3_PacketIdZero", V5, publish5_qos1("t", 0, {}), kProtocol, "MQTT-2.2.1-3"},
      {"MQTT_2_3_1_1_PacketIdZeroOn311", V311, packet(0x34, cat({str("t"), u16(0)})), kProtocol,
       "MQTT-2.3.1-1"},
      {"MQTT_3_3_2_8_TopicAliasZero", V5, publish5(0x30, "t", prop_u16(0x23, 0)),
       ReasonCode::kTopicAliasInvalid, "MQTT-3.3.2-8"},
      {"Section_3_3_2_3_2_PayloadFormatIndicatorNotBoolean", V5,
       publish5(0x30, "t", prop_u8(0x01, 2)), kProtocol, "§3.3.2.3.2"},
      {"Section_2_2_2_2_SessionExpiryInPublish", V5, publish5(0x30, "t", prop_u32(0x11, 1)),
       kMalformed, "§2.2.2.2"},
      {"Section_2_2_2_2_TopicAliasRepeated", V5,
       publish5(0x30, "t", cat({prop_u16(0x23, 1), prop_u16(0x23, 2)})), kProtocol, "§2.2.2.2"},
      {"Section_2_2_2_2_ContentTypeRepeated", V5,
       publish5(0x30, "t", cat({prop_str(0x03, "a"), prop_str(0x03, "b")})), kProtocol, "§2.2.2.2"},
      {"MQTT_3_3_2_14_ResponseTopicWithWildcard", V5,
       publish5(0x30, "t", prop_str(0x08, "reply/#")), kProtocol, "MQTT-3.3.2-14"},
      {"Section_3_8_2_1_2_SubscriptionIdentifierZero", V5, publish5(0x30, "t", raw({0x0B, 0x00})),
       kProtocol, "§3.8.2.1.2"},
  };
}

std::vector<BadInput> subscribe_cases() {
  return {
      {"MQTT_3_8_3_2_NoSubscriptions", V5, subscribe5({}, {}), kProtocol, "MQTT-3.8.3-2"},
      {"MQTT_3_8_3_3_NoSubscriptionsOn311", V311, subscribe311({}), kProtocol, "MQTT-3.8.3-3"},
      {"MQTT_3_8_3_5_ReservedOptionBits", V5, subscribe5({}, entry("a", 0x40)), kMalformed,
       "MQTT-3.8.3-5"},
      {"Section_3_8_3_1_MaximumQoS3", V5, subscribe5({}, entry("a", 0x03)), kProtocol, "§3.8.3.1"},
      {"Section_3_8_3_1_RetainHandling3", V5, subscribe5({}, entry("a", 0x30)), kProtocol,
       "§3.8.3.1"},
      {"MQTT_3_8_3_4_NoLocalOnSharedSubscription", V5, subscribe5({}, entry("$share/g/a", 0x04)),
       kProtocol, "MQTT-3.8.3-4"},
      {"MQTT_3_8_3_4_ReservedBitsOn311", V311, subscribe311(entry("a", 0x04)), kMalformed,
       "MQTT-3-8.3-4"},
      {"MQTT_3_8_3_4_QoS3On311", V311, subscribe311(entry("a", 0x03)), kMalformed, "MQTT-3-8.3-4"},
      {"MQTT_4_7_1_1_HashNotLast", V5, subscribe5({}, entry("a/#/b", 0)), kMalformed,
       "MQTT-4.7.1-1"},
      {"MQTT_4_7_1_1_HashNotAloneInLevel", V311, subscribe311(entry("a/b#", 0)), kMalformed,
       "MQTT-4.7.1-1"},
      {"MQTT_4_7_1_2_PlusNotAloneInLevel", V5, subscribe5({}, entry("a/b+/c", 0)), kMalformed,
       "MQTT-4.7.1-2"},
      {"MQTT_4_7_1_2_PlusFollowedByText", V311, subscribe311(entry("+a", 0)), kMalformed,
       "MQTT-4.7.1-2"},
      {"MQTT_4_7_3_1_EmptyFilter", V5, subscribe5({}, entry("", 0)), kProtocol, "MQTT-4.7.3-1"},
      {"MQTT_4_8_2_1_EmptyShareName", V5, subscribe5({}, entry("$share//a", 0)), kProtocol,
       "MQTT-4.8.2-1"},
      {"MQTT_4_8_2_2_SharedWithoutFilter", V5, subscribe5({}, entry("$share/g", 0)), kProtocol,
       "MQTT-4.8.2-2"},
      {"MQTT_4_8_2_2_SharedWithEmptyFilter", V311, subscribe311(entry("$share/g/", 0)), kProtocol,
       "MQTT-4.8.2-2"},
      {"MQTT_4_8_2_2_WildcardInShareName", V5, subscribe5({}, entry("$share/g+/a", 0)), kProtocol,
       "MQTT-4.8.2-2"},
      {"MQTT_4_7_1_1_SharedFilterHashNotLast", V5, subscribe5({}, entry("$share/g/#/a", 0)),
       kMalformed, "MQTT-4.7.1-1"},
      {"Section_3_8_2_1_2_SubscriptionIdentifierZeroInSubscribe", V5,
       subscribe5(raw({0x0B, 0x00}), entry("a", 0)), kProtocol, "§3.8.2.1.2"},
      {"Section_2_2_2_2_SubscriptionIdentifierRepeatedInSubscribe", V5,
       subscribe5(raw({0x0B, 0x01, 0x0B, 0x02}), entry("a", 0)), kProtocol, "§2.2.2.2"},
      {"Section_2_2_2_2_ReasonStringInSubscribe", V5,
       subscribe5(prop_str(0x1F, "no"), entry("a", 0)), kMalformed, "§2.2.2.2"},
      {"MQTT_2_2_1_3_SubscribePacketIdZero", V5, subscribe5({}, entry("a", 0), 0), kProtocol,
       "MQTT-2.2.1-3"},
      {"MQTT_3_10_3_2_UnsubscribeWithoutFilter", V5, packet(0xA2, cat({u16(1), props({})})),
       kProtocol, "MQTT-3.10.3-2"},
      {"MQTT_3_10_3_2_UnsubscribeWithoutFilterOn311", V311, packet(0xA2, u16(1)), kProtocol,
       "MQTT-3.10.3-2"},
      {"MQTT_4_7_1_1_InvalidFilterInUnsubscribe", V5,
       packet(0xA2, cat({u16(1), props({}), str("#/a")})), kMalformed, "MQTT-4.7.1-1"},
  };
}

std::vector<BadInput> acknowledgement_cases() {
  return {
      {"MQTT_3_4_2_1_PubackReasonNotForPuback", V5, packet(0x40, cat({u16(1), raw({0x92})})),
       kMalformed, "MQTT-3.4.2-1"},
      {"MQTT_3_5_2_1_PubrecReasonNotForPubrec", V5, packet(0x50, cat({u16(1), raw({0x04})})),
       kMalformed, "MQTT-3.5.2-1"},
      {"MQTT_3_6_2_1_PubrelReasonNotForPubrel", V5, packet(0x62, cat({u16(1), raw({0x10})})),
       kMalformed, "MQTT-3.6.2-1"},
      {"MQTT_3_7_2_1_PubcompReasonNotForPubcomp", V5, packet(0x70, cat({u16(1), raw({0x80})})),
       kMalformed, "MQTT-3.7.2-1"},
      {"Section_2_2_1_PubackPacketIdZero", V5, packet(0x40, u16(0)), kProtocol, "MQTT-2.2.1-3"},
      {"Section_2_2_2_2_UserPropertyAllowedButTopicAliasNotInPuback", V5,
       packet(0x40, cat({u16(1), raw({0}), props(prop_u16(0x23, 1))})), kMalformed, "§2.2.2.2"},
      {"MQTT_3_2_2_1_ConnackReservedFlags", V5, connack5(0x02, 0), kMalformed, "MQTT-3.2.2-1"},
      {"MQTT_3_2_2_6_SessionPresentWithError", V5, connack5(0x01, 0x87), kProtocol, "MQTT-3.2.2-6"},
      {"MQTT_3_2_2_8_ConnackReasonNotForConnack", V5, connack5(0x00, 0x10), kMalformed,
       "MQTT-3.2.2-8"},
      {"Section_3_2_2_3_ConnackReturnCodeReservedOn311", V311, packet(0x20, raw({0, 6})),
       kMalformed, "§3.2.2.3"},
      {"Section_3_2_2_3_4_MaximumQoS2", V5, connack5(0x00, 0x00, prop_u8(0x24, 2)), kProtocol,
       "§3.2.2.3.4"},
      {"Section_3_2_2_3_RetainAvailableNotBoolean", V5, connack5(0x00, 0x00, prop_u8(0x25, 3)),
       kProtocol, "§3.2.2.3"},
      {"MQTT_3_9_3_2_SubackReturnCodeReservedOn311", V311, packet(0x90, cat({u16(1), raw({0x03})})),
       kMalformed, "MQTT-3.9.3-2"},
      {"MQTT_3_9_3_2_SubackReasonNotForSuback", V5,
       packet(0x90, cat({u16(1), props({}), raw({0x11})})), kMalformed, "MQTT-3.9.3-2"},
      {"MQTT_3_9_3_2_SubackWithoutReasonCodes", V5, packet(0x90, cat({u16(1), props({})})),
       kProtocol, "MQTT-3.9.3-2"},
      {"MQTT_3_11_3_2_UnsubackReasonNotForUnsuback", V5,
       packet(0xB0, cat({u16(1), props({}), raw({0x01})})), kMalformed, "MQTT-3.11.3-2"},
      {"MQTT_3_14_2_1_DisconnectReasonNotForDisconnect", V5, packet(0xE0, raw({0x84})), kMalformed,
       "MQTT-3.14.2-1"},
      {"Section_4_13_1_DisconnectWithBodyOn311", V311, packet(0xE0, raw({0x00})), kMalformed,
       "§4.13.1"},
      {"MQTT_3_15_2_1_AuthReasonNotForAuth", V5,
       packet(0xF0, cat({raw({0x01}), props(prop_str(0x15, "m"))})), kMalformed, "MQTT-3.15.2-1"},
      {"Section_3_15_2_2_2_AuthWithoutMethod", V5, packet(0xF0, cat({raw({0x18}), props({})})),
       kProtocol, "§3.15.2.2.2"},
  };
}

std::vector<BadInput> all_cases() {
  std::vector<BadInput> all;
  for (auto group : {fixed_header_cases(), utf8_cases(), connect_cases(), publish_cases(),
                     subscribe_cases(), acknowledgement_cases()}) {
    all.insert(all.end(), group.begin(), group.end());
  }
  return all;
}

class Malformed : public ::testing::TestWithParam<BadInput> {};

TEST_P(Malformed, IsRefusedWithTheSpecsReasonCode) {
  const BadInput& input = GetParam();
  Packet packet;
  const DecodeError error =
      decode_bytes(input.bytes, input.version, packet, input.max_packet_bytes);
  EXPECT_EQ(static_cast<int>(error.code), static_cast<int>(input.code))
      << "got " << to_string(error.code) << " (" << error.rule << ": " << error.detail << ")";
  EXPECT_EQ(std::string(error.rule), input.rule) << error.detail;
}

std::string case_name(const ::testing::TestParamInfo<BadInput>& param_info) {
  return param_info.param.name;
}

INSTANTIATE_TEST_SUITE_P(Decoder, Malformed, ::testing::ValuesIn(all_cases()), case_name);

TEST(MalformedCases, AtLeastSixtyDistinctCases) {
  const auto cases = all_cases();
  std::set<std::string> names;
  for (const auto& c : cases)
    names.insert(c.name);
  EXPECT_EQ(names.size(), cases.size()) << "case names must be unique";
  EXPECT_GE(cases.size(), 60u);
}

// ---- what must be accepted -------------------------------------------------

template <class T>
T decode_as(const Bytes& bytes, ProtocolVersion version) {
  Packet packet;
  const DecodeError error = decode_bytes(bytes, version, packet);
  EXPECT_TRUE(error.ok()) << error.rule << ": " << error.detail;
  EXPECT_TRUE(std::holds_alternative<T>(packet));
  return std::holds_alternative<T>(packet) ? std::get<T>(packet) : T{};
}

TEST(Accepted, Mqtt31AllowsDupOnSubscribe) {
  const auto subscribe = decode_as<Subscribe>(packet(0x8A, cat({u16(3), entry("a", 1)})), V31);
  ASSERT_EQ(subscribe.subscriptions.size(), 1u);
  EXPECT_EQ(subscribe.subscriptions[0].options.max_qos, QoS::kAtLeastOnce);
}

TEST(Accepted, Mqtt5AllowsPasswordWithoutUsername) {
  const auto connect = decode_as<Connect>(connect5(0x42, {}, cat({kClientId, str("pw")})), V5);
  EXPECT_FALSE(connect.username.has_value());
  EXPECT_TRUE(connect.password.has_value());
}

TEST(Accepted, ZeroLengthClientIdIsLeftToTheBroker) {
  EXPECT_EQ(decode_as<Connect>(connect311(0x02, str("")), V311).client_id, "");
}

TEST(Accepted, EmptyTopicWithTopicAlias) {
  const auto publish = decode_as<Publish>(publish5(0x30, "", prop_u16(0x23, 3)), V5);
  EXPECT_EQ(publish.topic, "");
  EXPECT_EQ(publish.properties.topic_alias, 3);
}

TEST(Accepted, MQTT_1_5_4_3_ByteOrderMarkIsKept) {
  EXPECT_EQ(decode_as<Publish>(publish5(0x30,
                                        "\xEF\xBB\xBF"
                                        "a",
                                        {}),
                               V5)
                .topic,
            "\xEF\xBB\xBF"
            "a");
}

TEST(Accepted, MQTT_3_3_2_18_UserPropertiesKeepTheirOrder) {
  const Bytes properties = cat({raw({0x26}), str("b"), str("1"), raw({0x26}), str("a"), str("2"),
                                raw({0x26}), str("b"), str("3")});
  const auto publish = decode_as<Publish>(publish5(0x30, "t", properties), V5);
  ASSERT_EQ(publish.properties.user_properties.size(), 3u);
  EXPECT_EQ(publish.properties.user_properties[0], (UserProperty{"b", "1"}));
  EXPECT_EQ(publish.properties.user_properties[1], (UserProperty{"a", "2"}));
  EXPECT_EQ(publish.properties.user_properties[2], (UserProperty{"b", "3"}));
}

TEST(Accepted, MQTT_3_3_4_3_SeveralSubscriptionIdentifiersInPublish) {
  const auto publish = decode_as<Publish>(publish5(0x30, "t", raw({0x0B, 0x01, 0x0B, 0x7F})), V5);
  EXPECT_EQ(publish.properties.subscription_identifiers, (std::vector<std::uint32_t>{1, 127}));
}

TEST(Accepted, PubackWithReasonCodeAndNoPropertyLength) {
  const auto puback = decode_as<Puback>(packet(0x40, cat({u16(9), raw({0x10})})), V5);
  EXPECT_EQ(puback.reason, ReasonCode::kNoMatchingSubscribers);
}

TEST(Accepted, DisconnectWithReasonCodeOnly) {
  EXPECT_EQ(decode_as<Disconnect>(packet(0xE0, raw({0x04})), V5).reason,
            ReasonCode::kDisconnectWithWillMessage);
}

TEST(Accepted, EmptyAuthMeansSuccess) {
  EXPECT_EQ(decode_as<Auth>(packet(0xF0, {}), V5).reason, ReasonCode::kSuccess);
}

TEST(Accepted, UnsupportedLevelNamesTheVersionToAnswerIn) {
  // A client asking for an unknown level is answered in 3.1.1's CONNACK form.
  Packet packet;
  const Bytes bytes = testing::packet(0x10, cat({str("MQTT"), raw({9, 2}), u16(0), kClientId}));
  FrameDecoder decoder;
  decoder.feed(bytes);
  Frame frame;
  ASSERT_EQ(decoder.next(frame), FrameDecoder::Status::kFrame);
  Connect connect;
  EXPECT_EQ(decode_connect(frame, connect).code, ReasonCode::kUnsupportedProtocolVersion);
  EXPECT_EQ(connect.version, ProtocolVersion::kV3_1_1);
}

}  // namespace
}  // namespace sluice::mqtt
