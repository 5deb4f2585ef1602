#include "cluster/message_codec.hpp"

#include <algorithm>

#include "broker/queue_gateway.hpp"
#include "mqtt/byte_reader.hpp"
#include "mqtt/byte_writer.hpp"
#include "mqtt/packet_encoder.hpp"
#include "mqtt/property.hpp"
#include "mqtt/topic.hpp"
#include "mqtt/utf8.hpp"
#include "peer.pb.h"

namespace sluice::cluster {

namespace {

std::uint32_t code(mqtt::ReasonCode reason) {
  return static_cast<std::uint32_t>(reason);
}

}  // namespace

void to_forwarded(const broker::Message& message, broker::Clock::time_point now,
                  ForwardedMessage& m) {
  m.set_topic(message.topic);
  m.set_payload(message.payload.data(), message.payload.size());
  m.set_qos(static_cast<std::uint32_t>(message.qos));
  m.set_retain(message.retain);
  m.set_properties(message.encoded_properties.data(), message.encoded_properties.size());
  if (message.expires_at) {
    const auto left =
        std::chrono::duration_cast<std::chrono::milliseconds>(*message.expires_at - now);
    m.set_expiry_ms(static_cast<std::uint64_t>(std::max<std::int64_t>(left.count(), 1)));
  }
  m.set_publisher_hash(message.origin_client_hash);
  m.set_cluster_id(message.cluster_id);
}

namespace {

// The topic as a client's PUBLISH topic would be checked; a queue address
// only for a queue publish, and never $SYS.
bool valid_topic(const std::string& topic, bool queue, const config::Config& config) {
  return topic.size() <= 0xFFFF && mqtt::check_topic_name(topic).ok() &&
         mqtt::check_utf8(topic) == mqtt::Utf8Check::kValid && !mqtt::is_sys_topic(topic) &&
         broker::QueueGateway::addresses(topic) == queue &&
         mqtt::topic_levels(topic) <= config.limits.max_topic_levels;
}

// Reads the properties with the codec's own rules; false, and `reason`,
// for bytes that are not PUBLISH properties, a per-hop one, or a payload
// that is not the UTF-8 it says it is.
bool read_forwarded_properties(const ForwardedMessage& m, mqtt::Properties& properties,
                               std::uint32_t& reason) {
  if (m.properties().empty()) return true;
  std::vector<std::uint8_t> block;
  mqtt::ByteWriter writer(block);
  writer.varint(static_cast<std::uint32_t>(m.properties().size()));
  block.insert(block.end(), m.properties().begin(), m.properties().end());
  mqtt::ByteReader reader(block);
  mqtt::read_properties(reader, mqtt::PropertyContext::kPublish, properties);
  if (!reader.ok() || !reader.at_end() || properties.topic_alias ||
      !properties.subscription_identifiers.empty() || properties.message_expiry_interval ||
      (properties.response_topic && mqtt::has_wildcard(*properties.response_topic))) {
    reason = code(mqtt::ReasonCode::kMalformedPacket);
    return false;
  }
  if (properties.payload_format_indicator == 1 &&
      mqtt::check_utf8(m.payload()) != mqtt::Utf8Check::kValid) {
    reason = code(mqtt::ReasonCode::kPayloadFormatInvalid);
    return false;
  }
  return true;
}

}  // namespace

broker::MessagePtr from_forwarded(const ForwardedMessage& m, broker::Clock::time_point now,
                                  const config::Config& config, std::uint32_t& reason) {
  const std::string& topic = m.topic();
  if (m.queue() || !valid_topic(topic, /*queue=*/false, config)) {
    reason = code(mqtt::ReasonCode::kTopicNameInvalid);
    return nullptr;
  }
  if (m.qos() > 2) {
    reason = code(mqtt::ReasonCode::kMalformedPacket);
    return nullptr;
  }
  auto message = std::make_shared<broker::Message>();
  mqtt::Properties properties;
  if (!read_forwarded_properties(m, properties, reason)) return nullptr;
  if (!m.properties().empty())
    mqtt::encode_shared_properties(properties, message->encoded_properties);
  message->topic = topic;
  message->payload.assign(m.payload().begin(), m.payload().end());
  message->qos = static_cast<mqtt::QoS>(m.qos());
  message->retain = m.retain();
  message->forwarded = true;
  if (m.expiry_ms() != 0) {
    // At most what a Message Expiry Interval can say.
    const auto left = std::min<std::uint64_t>(m.expiry_ms(), 0xFFFF'FFFFull * 1000);
    message->expires_at = now + std::chrono::milliseconds(left);
  }
  message->origin_client_hash = m.publisher_hash();
  message->cluster_id = m.cluster_id();
  if (!m.shared_filter().empty()) {
    const std::string& filter = m.shared_filter();
    const bool valid = filter.size() <= 0xFFFF &&
                       mqtt::check_utf8(filter) == mqtt::Utf8Check::kValid &&
                       mqtt::check_topic_filter(filter).ok();
    const auto shared = valid ? mqtt::parse_shared_filter(filter) : std::nullopt;
    if (!shared || !mqtt::topic_matches(shared->filter, topic)) {
      reason = code(mqtt::ReasonCode::kTopicFilterInvalid);
      return nullptr;
    }
    message->for_shared_group = std::make_shared<const std::string>(filter);
  }
  return message;
}

std::optional<mqtt::Publish> queue_publish_from_forwarded(const ForwardedMessage& m,
                                                          const config::Config& config,
                                                          std::uint32_t& reason) {
  if (!m.queue() || !valid_topic(m.topic(), /*queue=*/true, config)) {
    reason = code(mqtt::ReasonCode::kTopicNameInvalid);
    return std::nullopt;
  }
  if (m.qos() > 2 || !m.shared_filter().empty()) {
    reason = code(mqtt::ReasonCode::kMalformedPacket);
    return std::nullopt;
  }
  mqtt::Publish publish;
  if (!read_forwarded_properties(m, publish.properties, reason)) return std::nullopt;
  publish.topic = m.topic();
  publish.payload.assign(m.payload().begin(), m.payload().end());
  publish.qos = static_cast<mqtt::QoS>(m.qos());
  if (m.expiry_ms() != 0) {
    // Whole seconds, rounded up: a message never expires sooner than it would have.
    const std::uint64_t seconds =
        std::min<std::uint64_t>((m.expiry_ms() + 999) / 1000, 0xFFFF'FFFFull);
    publish.properties.message_expiry_interval = static_cast<std::uint32_t>(seconds);
  }
  return publish;
}

}  // namespace sluice::cluster
