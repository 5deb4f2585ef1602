// Builds the sample packets from the property table, so a property added to
// the table is covered by every round-trip test without further edits here.
#include "support/sample_packets.hpp"

#include "mqtt/property_table.hpp"

namespace sluice::mqtt::testing {
namespace {

struct SampleValue {
  bool repeat;  // give repeatable properties two values
  void operator()(std::optional<std::uint8_t>& v) const { v = 1; }
  void operator()(std::optional<std::uint16_t>& v) const { v = 0x1234; }
  void operator()(std::optional<std::uint32_t>& v) const { v = 0x12345678; }
  void operator()(std::vector<std::uint32_t>& v) const {
    v.push_back(268'435'455);  // the largest Variable Byte Integer
    if (repeat) v.push_back(1);
  }
  void operator()(std::optional<std::string>& v) const { v = "value/ünïcödé"; }
  void operator()(std::optional<Bytes>& v) const { v = Bytes{0x00, 0xFF, 0x10}; }
  void operator()(std::vector<UserProperty>& v) const {
    v.push_back({"key", "value"});
    v.push_back({"key", "second value, same key, order kept"});
  }
};

Properties properties_if(ProtocolVersion version, PropertyContext context) {
  return is_v5(version) ? all_properties(context) : Properties{};
}

template <PacketType kType>
PublishResponse<kType> publish_response(ProtocolVersion version, ReasonCode reason) {
  PublishResponse<kType> p;
  p.packet_id = 0xBEEF;
  if (is_v5(version)) {
    p.reason = reason;
    p.properties = all_properties(context_of(kType));
  }
  return p;
}

Connect sample_connect(ProtocolVersion version) {
  Connect p;
  p.version = version;
  p.clean_start = false;
  p.keep_alive_s = 60;
  p.client_id = "sample-client";
  p.will = Will{"will/topic", Bytes{'b', 'y', 'e'}, QoS::kExactlyOnce, true,
                properties_if(version, PropertyContext::kWill)};
  p.username = "user";
  p.password = Bytes{'s', 'e', 'c', 'r', 'e', 't', 0};
  p.properties = properties_if(version, PropertyContext::kConnect);
  return p;
}

Publish sample_publish(ProtocolVersion version, QoS qos) {
  Publish p;
  p.topic = "sensors/room-1/temperature";
  p.qos = qos;
  p.retain = true;
  p.dup = qos != QoS::kAtMostOnce;
  p.packet_id = qos != QoS::kAtMostOnce ? 42 : 0;
  p.properties = properties_if(version, PropertyContext::kPublish);
  p.payload = Bytes(64, 0xA5);
  return p;
}

}  // namespace

Properties all_properties(PropertyContext context) {
  Properties properties;
  const bool repeat = context != PropertyContext::kSubscribe;
  for_each_property_def([&](const auto& def) {
    if (def.allowed_in(context)) SampleValue{repeat}(properties.*def.member);
  });
  if (properties.response_topic) properties.response_topic = "reply/to/me";
  return properties;
}

std::vector<SamplePacket> sample_packets(ProtocolVersion version) {
  const bool v5 = is_v5(version);
  std::vector<SamplePacket> samples;
  samples.push_back({"CONNECT", sample_connect(version)});
  Connect minimal_connect;
  minimal_connect.version = version;
  minimal_connect.client_id = "c";
  samples.push_back({"CONNECT_minimal", minimal_connect});

  Connack connack;
  connack.session_present = version != ProtocolVersion::kV3_1;
  connack.properties = properties_if(version, PropertyContext::kConnack);
  samples.push_back({"CONNACK", connack});
  samples.push_back({"CONNACK_refused", Connack{false, ReasonCode::kBadUserNameOrPassword, {}}});

  samples.push_back({"PUBLISH_qos0", sample_publish(version, QoS::kAtMostOnce)});
  samples.push_back({"PUBLISH_qos1", sample_publish(version, QoS::kAtLeastOnce)});
  samples.push_back({"PUBLISH_qos2", sample_publish(version, QoS::kExactlyOnce)});
  Publish empty_payload;
  empty_payload.topic = "t";
  samples.push_back({"PUBLISH_empty_payload", empty_payload});

  samples.push_back({"PUBACK", publish_response<PacketType::kPuback>(
                                   version, ReasonCode::kNoMatchingSubscribers)});
  samples.push_back({"PUBACK_minimal", Puback{7, ReasonCode::kSuccess, {}}});
  samples.push_back(
      {"PUBREC", publish_response<PacketType::kPubrec>(version, ReasonCode::kQuotaExceeded)});
  samples.push_back({"PUBREL", publish_response<PacketType::kPubrel>(
                                   version, ReasonCode::kPacketIdentifierNotFound)});
  samples.push_back(
      {"PUBCOMP", publish_response<PacketType::kPubcomp>(version, ReasonCode::kSuccess)});

  Subscribe subscribe;
  subscribe.packet_id = 1;
  subscribe.properties = properties_if(version, PropertyContext::kSubscribe);
  subscribe.subscriptions.push_back({"a/+/c", {QoS::kAtLeastOnce}});
  subscribe.subscriptions.push_back({"#", {QoS::kExactlyOnce}});
  if (v5) {
    subscribe.subscriptions.push_back(
        {"$share/group/x/#", {QoS::kAtMostOnce, false, true, RetainHandling::kDoNotSend}});
    subscribe.subscriptions.push_back(
        {"local/only", {QoS::kAtLeastOnce, true, false, RetainHandling::kSendOnNewSubscribe}});
  }
  samples.push_back({"SUBSCRIBE", subscribe});

  Suback suback;
  suback.packet_id = 1;
  suback.properties = properties_if(version, PropertyContext::kSuback);
  suback.reasons = {ReasonCode::kGrantedQoS1, ReasonCode::kGrantedQoS2, ReasonCode::kSuccess,
                    v5 ? ReasonCode::kNotAuthorized : ReasonCode::kUnspecifiedError};
  samples.push_back({"SUBACK", suback});

  Unsubscribe unsubscribe;
  unsubscribe.packet_id = 2;
  unsubscribe.properties = properties_if(version, PropertyContext::kUnsubscribe);
  unsubscribe.filters = {"a/+/c", "#", "$share/group/x/#"};
  samples.push_back({"UNSUBSCRIBE", unsubscribe});

  Unsuback unsuback;
  unsuback.packet_id = 2;
  if (v5) {
    unsuback.properties = all_properties(PropertyContext::kUnsuback);
    unsuback.reasons = {ReasonCode::kSuccess, ReasonCode::kNoSubscriptionExisted};
  }
  samples.push_back({"UNSUBACK", unsuback});

  samples.push_back({"PINGREQ", Pingreq{}});
  samples.push_back({"PINGRESP", Pingresp{}});

  Disconnect disconnect;
  if (v5) {
    disconnect.reason = ReasonCode::kDisconnectWithWillMessage;
    disconnect.properties = all_properties(PropertyContext::kDisconnect);
  }
  samples.push_back({"DISCONNECT", disconnect});
  samples.push_back({"DISCONNECT_minimal", Disconnect{}});

  if (v5) {
    samples.push_back({"AUTH", Auth{ReasonCode::kContinueAuthentication,
                                    all_properties(PropertyContext::kAuth)}});
  }
  return samples;
}

}  // namespace sluice::mqtt::testing
