// A published message as the broker keeps it: created once when it arrives,
// never changed after, and shared (by reference count) by every subscriber
// queue, inflight window and the retained store that holds it. What differs
// per subscriber (packet id, QoS, retain flag, subscription identifiers,
// topic alias) lives in the `Delivery` beside it, not in the message.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "broker/trace.hpp"
#include "mqtt/packets.hpp"

namespace sluice::broker {

using Clock = std::chrono::steady_clock;

// How many stored session queues hold a message, so the last one to let go
// deletes the stored message. It changes on any shard's thread, after the
// message is shared: hence atomic, and mutable in an otherwise const Message.
// Copying a message does not copy its holders.
class StoreRefs {
 public:
  StoreRefs() = default;
  StoreRefs(const StoreRefs&) {}
  StoreRefs& operator=(const StoreRefs&) { return *this; }
  void set(std::uint32_t count) const { count_.store(count, std::memory_order_relaxed); }
  void add() const { count_.fetch_add(1, std::memory_order_relaxed); }
  // True when this was the last holder.
  bool release() const { return count_.fetch_sub(1, std::memory_order_acq_rel) == 1; }

 private:
  mutable std::atomic<std::uint32_t> count_{0};
};

struct Message {
  std::string topic;
  mqtt::Bytes payload;
  mqtt::QoS qos = mqtt::QoS::kAtMostOnce;  // as published
  bool retain = false;                     // as published
  // Published on another node of the cluster, which forwarded it here: it is
  // matched against this node's sessions only, never sent on to a node again.
  bool forwarded = false;
  // The MQTT 5 properties as published, encoded once for all deliveries,
  // less those that belong to one hop (Topic Alias, Subscription Identifiers)
  // or change on the way (Message Expiry Interval, kept as `expires_at`).
  std::vector<std::uint8_t> encoded_properties;
  std::optional<Clock::time_point> expires_at;  // from Message Expiry Interval
  std::uint64_t origin_session = 0;             // the publisher's session, for No Local
  std::uint64_t origin_client_hash = 0;         // for the hash_client_id shared strategy
  // One id for every copy of this publish in the cluster (0: never left its
  // node). The node that forwards it first sets it, on the publishing
  // worker before any other thread sees the message; a session handed over
  // between nodes drops the copies it was sent both ways by it.
  mutable std::uint64_t cluster_id = 0;
  // A forwarded message for one `$share/<group>/<filter>` only: the node it
  // was published on picked this node among the group's members, and one
  // member here gets it (nullptr: routed to this node's subscribers).
  std::shared_ptr<const std::string> for_shared_group;
  StoreRefs store_refs;  // only for a message in the store
  // Set for a traced message (broker/trace.hpp); not stored: a message read
  // back after a restart is delivered without a trace.
  std::shared_ptr<const MessageTrace> trace;

  bool expired(Clock::time_point now) const { return expires_at && now >= *expires_at; }
  // The same, reading the clock only for a message that can expire: most
  // cannot, and this is asked once per delivery.
  bool expired_now() const { return expires_at && Clock::now() >= *expires_at; }

  // Seconds of life left, for the rewritten Message Expiry Interval [MQTT-3.3.2-6].
  std::optional<std::uint32_t> remaining_expiry_s(Clock::time_point now) const;
};

using MessagePtr = std::shared_ptr<const Message>;

// Builds the shared message from a PUBLISH (whose topic is already resolved
// from any alias). Moves the payload out of `publish`.
MessagePtr make_message(mqtt::Publish&& publish, std::uint64_t origin_session,
                        std::uint64_t origin_client_hash,
                        std::shared_ptr<const MessageTrace> trace = nullptr);

}  // namespace sluice::broker
