// One message on its way to one subscriber: the shared message and what is
// particular to this subscriber.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "broker/message.hpp"
#include "broker/subscriber.hpp"

namespace sluice::broker {

struct Delivery {
  MessagePtr message;
  mqtt::QoS qos = mqtt::QoS::kAtMostOnce;  // min(published, granted)
  bool retain = false;                     // the RETAIN flag to send
  std::vector<std::uint32_t> identifiers;  // Subscription Identifiers
  // Set when this came through a shared subscription: if the subscriber goes
  // away without acknowledging, the message goes to another member.
  std::shared_ptr<const std::string> shared_filter;
  // The message's id in the store when this delivery is in the subscriber's
  // stored queue (an outbound record); 0 when it lives in memory only.
  std::uint64_t store_id = 0;
};

// A delivery addressed to a session on another shard.
struct RemoteDelivery {
  SubscriberRef to;
  Delivery delivery;
};

}  // namespace sluice::broker
