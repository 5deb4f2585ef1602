// One message on its way to one subscriber: the shared message and what is
// particular to this subscriber.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "broker/message.hpp"
#include "broker/subscriber.hpp"
#include "mqtt/reason_code.hpp"

namespace sluice::broker {

struct Delivery;

// Told how a delivery ended, for targets that keep deliveries of their own
// (a queue's consumer group): the subscriber's PUBACK or PUBREC reason code
// (0x80 and up: refused, which a queue takes as a negative acknowledgement),
// or kUnspecifiedError when the delivery was dropped without one (expired,
// too large, no longer readable, session ended). Called on the thread of the
// session that had the delivery.
class DeliveryListener {
 public:
  virtual ~DeliveryListener() = default;
  virtual void on_settled(const Delivery& delivery, mqtt::ReasonCode reason) = 0;
};

struct Delivery {
  MessagePtr message;
  mqtt::QoS qos = mqtt::QoS::kAtMostOnce;  // min(published, granted)
  bool retain = false;                     // the RETAIN flag to send
  // It holds a place in the subscriber's queue, reserved by its publisher
  // (queue_full_policy refuse_publish; see SessionTag::waiting).
  bool reserved = false;
  std::vector<std::uint32_t> identifiers;  // Subscription Identifiers
  // Set when this came through a shared subscription: if the subscriber goes
  // away without acknowledging, the message goes to another member.
  std::shared_ptr<const std::string> shared_filter;
  // The message's id in the store when this delivery is in the subscriber's
  // stored queue (an outbound record); 0 when it lives in memory only.
  std::uint64_t store_id = 0;
  // Set by a target that wants to know how the delivery ended; it outlives
  // its deliveries. nullptr for an ordinary subscription's.
  DeliveryListener* listener = nullptr;
};

// A delivery addressed to a target on another shard.
struct RemoteDelivery {
  TargetRef to;
  Delivery delivery;
};

}  // namespace sluice::broker
