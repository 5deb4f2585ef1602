// The PUBLISH head of the message this thread is sending to many
// subscribers. Deliveries of one message mostly share their head: the same
// topic, flags and properties, with only the packet id differing. Encoding
// it once per message instead of once per subscriber was 9 % of the broker's
// time when fanning out to 100 subscribers.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

#include "broker/message.hpp"
#include "mqtt/packet_encoder.hpp"

namespace sluice::net {

class PublishHeadMemo {
 public:
  // Appends the head of `head` (a delivery of `message`) to `out`, copied
  // from the memo when it is the same message in the same form as the one
  // kept, with its own packet id. False when it cannot be encoded, as
  // encode_publish_head says.
  bool append(const mqtt::PublishHead& head, mqtt::ProtocolVersion version,
              const broker::MessagePtr& message, std::vector<std::uint8_t>& out);

 private:
  bool holds(const mqtt::PublishHead& head, mqtt::ProtocolVersion version,
             const broker::MessagePtr& message) const;
  void keep(const mqtt::PublishHead& head, mqtt::ProtocolVersion version,
            const broker::MessagePtr& message, std::span<const std::uint8_t> encoded);

  // Held, not only pointed at: while it is kept, no other message can take
  // its address.
  broker::MessagePtr message_;
  // The message of the previous delivery, compared, never dereferenced: a
  // head is kept from a message's second delivery on, so that messages with
  // one subscriber pay nothing for the memo.
  const broker::Message* previous_ = nullptr;
  mqtt::ProtocolVersion version_ = mqtt::ProtocolVersion::kV3_1_1;
  mqtt::QoS qos_ = mqtt::QoS::kAtMostOnce;
  bool retain_ = false;
  bool dup_ = false;
  std::size_t packet_id_at_ = 0;  // where the packet id goes (QoS 1 and 2)
  std::vector<std::uint8_t> bytes_;
};

}  // namespace sluice::net
