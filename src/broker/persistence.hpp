// The broker's side of persistence: turning messages into store records and
// back, and loading what a store holds at start-up. Retained messages only,
// so far; see docs/persistence.md for the rest of the plan.
#pragma once

#include "broker/message.hpp"
#include "store/records.hpp"
#include "store/store.hpp"

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

// The record of a session (without its will: wills are not stored yet).
store::SessionRecord session_record(const Session& session, std::int64_t disconnected_at_ms);

// Subscription options as the SUBSCRIBE options byte (MQTT 5 layout), and back.
std::uint8_t options_byte(const mqtt::SubscriptionOptions& options);
mqtt::SubscriptionOptions options_from_byte(std::uint8_t byte);

struct LoadCounts {
  std::size_t sessions = 0;
  std::size_t subscriptions = 0;
  std::size_t retained = 0;
};

// Loads what the store holds into `broker`, before any worker runs: sessions
// (offline, their expiry counting from when they were disconnected), their
// subscriptions, and retained messages (expired ones skipped).
store::Status load_state(store::Store& store, Broker& broker, LoadCounts& counts);

}  // namespace sluice::broker
