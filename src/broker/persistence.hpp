// The broker's side of persistence: turning messages into store records and
// back, and loading what a store holds at start-up. Retained messages only,
// so far; see docs/persistence.md for the rest of the plan.
#pragma once

#include "broker/message.hpp"
#include "store/records.hpp"
#include "store/store.hpp"

namespace sluice::broker {

class Broker;

store::MessageRecord to_record(const Message& message);

// `now` and `wall_now_ms` place the record's Unix expiry on the steady clock.
MessagePtr from_record(store::MessageRecord&& record, Clock::time_point now,
                       std::int64_t wall_now_ms);

std::int64_t wall_clock_ms();

// Loads the store's retained messages into `broker`; expired ones are skipped.
store::Status load_retained(store::Store& store, Broker& broker, std::size_t& loaded);

}  // namespace sluice::broker
