// A broker::Message as it travels between nodes (proto/peer.proto's
// ForwardedMessage), both ways: forwarded publishes and the messages of a
// handed-over session use the same form and the same checks.
#pragma once

#include <cstdint>
#include <optional>

#include "broker/message.hpp"
#include "config/config.hpp"
#include "mqtt/packets.hpp"

namespace sluice::cluster {

class ForwardedMessage;

void to_forwarded(const broker::Message& message, broker::Clock::time_point now,
                  ForwardedMessage& out);

// A peer is another Sluice, but what it sends is checked as a client's
// PUBLISH would be: the topic (a name, valid UTF-8, within max_topic_levels,
// not $SYS, not a queue address), the QoS, and the properties, read with the
// codec's own rules and written again (so a per-hop property, or bytes that
// are not properties, never reach a subscriber). nullptr, and `reason` (an
// MQTT reason code), when refused.
broker::MessagePtr from_forwarded(const ForwardedMessage& m, broker::Clock::time_point now,
                                  const config::Config& config, std::uint32_t& reason);

// A publish to a queue homed here (ForwardedMessage::queue), checked the
// same way, its topic a queue address: the PUBLISH the queue layer takes,
// its expiry left in whole seconds. nullopt, and `reason`, when refused.
std::optional<mqtt::Publish> queue_publish_from_forwarded(const ForwardedMessage& m,
                                                          const config::Config& config,
                                                          std::uint32_t& reason);

}  // namespace sluice::cluster
