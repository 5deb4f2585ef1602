// The broker's side of persistence: turning messages, sessions and
// deliveries into store records and back, and loading what a store holds at
// start-up. docs/persistence.md says who writes what, and when.
#pragma once

#include <string>
#include <vector>

#include "broker/delivery.hpp"
#include "broker/message.hpp"
#include "mqtt/property.hpp"
#include "mqtt/reason_code.hpp"
#include "store/records.hpp"
#include "store/store.hpp"
#include "store/write_batch.hpp"

namespace sluice::broker {

class Broker;
class Session;

store::MessageRecord to_record(const Message& message);

// `now` and `wall_now_ms` place the record's Unix expiry on the steady clock.
MessagePtr from_record(store::MessageRecord&& record, Clock::time_point now,
                       std::int64_t wall_now_ms);

std::int64_t wall_clock_ms();

// The Unix time, in milliseconds, of a point on the steady clock.
std::int64_t wall_time_ms(Clock::time_point time);

// The record of `delivery` in `client_id`'s stored queue.
store::OutboundRecord outbound_record(const std::string& client_id, const Delivery& delivery,
                                      std::uint16_t packet_id, store::OutboundRecord::Stage stage);

// A stored delivery lets go of its message: the last one deletes it.
void release_stored_message(const Delivery& delivery, store::WriteBatch& batch);

// The record of a session (its will is a record of its own).
store::SessionRecord session_record(const Session& session, std::int64_t disconnected_at_ms);
store::WillRecord will_record(const mqtt::Will& will);
// A stored session's record with its will (put, or deleted when it has none).
store::WriteBatch session_records(const Session& session, std::int64_t disconnected_at_ms);

// Subscription options as the SUBSCRIBE options byte (MQTT 5 layout), and back.
std::uint8_t options_byte(const mqtt::SubscriptionOptions& options);
mqtt::SubscriptionOptions options_from_byte(std::uint8_t byte);

// What of a SUBSCRIBE's properties a stored queue subscription keeps (its
// user properties: group, ack-mode, prefetch, stream-offset, ...), encoded.
store::Bytes queue_subscription_properties(const mqtt::Properties& properties);

struct LoadCounts {
  std::size_t sessions = 0;
  std::size_t subscriptions = 0;
  std::size_t outbound = 0;  // queued and in-flight messages restored to sessions
  std::size_t inbound = 0;   // QoS 2 packet ids awaiting PUBREL
  std::size_t messages = 0;
  std::size_t retained = 0;
  std::size_t removed = 0;  // records deleted as expired or orphaned
};

// Loads what the store holds into `broker`, before any worker runs: sessions
// (offline, their expiry counting from when they were disconnected), their
// subscriptions, queues and in-flight messages, inbound QoS 2 ids, and
// retained messages. What has expired, or belongs to nothing any more, is
// deleted from the store.
// Stored sessions' queue and stream subscriptions are not made while loading
// (the queue layer recovers after the sessions): they are handed back in
// `queue_subscriptions` for restore_queue_subscriptions.
store::Status load_state(store::Store& store, Broker& broker, LoadCounts& counts,
                         std::vector<store::SubscriptionRecord>& queue_subscriptions);

// Once the queue layer has recovered (broker.queues() set), before any
// worker runs: makes the stored sessions' queue subscriptions again, their
// consumers offline until each session resumes. One the queue layer now
// refuses (its queue was removed from the config, ...) is dropped: its
// record's deletion is added to `cleanup`, and it is listed for the log.
struct RestoredQueueSubscriptions {
  struct Dropped {
    std::string client_id;
    std::string filter;
    mqtt::ReasonCode reason;
  };
  std::size_t made = 0;
  std::vector<Dropped> dropped;
};
RestoredQueueSubscriptions restore_queue_subscriptions(
    Broker& broker, std::vector<store::SubscriptionRecord>&& records, store::WriteBatch& cleanup);

}  // namespace sluice::broker
