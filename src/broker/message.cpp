// Turning an inbound PUBLISH into the shared, immutable Message.
#include "broker/message.hpp"

#include "mqtt/packet_encoder.hpp"
#include "mqtt/property.hpp"

namespace sluice::broker {

std::optional<std::uint32_t> Message::remaining_expiry_s(Clock::time_point now) const {
  if (!expires_at) return std::nullopt;
  const auto left = std::chrono::ceil<std::chrono::seconds>(*expires_at - now).count();
  return static_cast<std::uint32_t>(left > 0 ? left : 0);
}

MessagePtr make_message(mqtt::Publish&& publish, std::uint64_t origin_session,
                        std::uint64_t origin_client_hash,
                        std::shared_ptr<const MessageTrace> trace) {
  auto message = std::make_shared<Message>();
  message->topic = std::move(publish.topic);
  message->payload = std::move(publish.payload);
  message->qos = publish.qos;
  message->retain = publish.retain;
  if (publish.properties.message_expiry_interval) {
    // The clock is read only here: most messages never expire.
    message->expires_at =
        Clock::now() + std::chrono::seconds(*publish.properties.message_expiry_interval);
  }
  // encode_shared_properties leaves out Topic Alias, Subscription Identifiers
  // and Message Expiry Interval. Most messages have no properties at all
  // (every 3.x one): one look at them is cheaper than sizing and writing.
  if (mqtt::has_any(publish.properties)) {
    mqtt::encode_shared_properties(publish.properties, message->encoded_properties);
  }
  message->origin_session = origin_session;
  message->origin_client_hash = origin_client_hash;
  message->trace = std::move(trace);
  return message;
}

}  // namespace sluice::broker
