// What the broker keeps across restarts, as plain records. A store writes and
// reads these; it knows nothing of sessions' behaviour.
//
// Keys: a session's subscriptions, outbound entries and inbound QoS 2 ids are
// keyed by its client id first, so each session's records are one key range
// (and a session is deleted with one range delete). Messages are stored once,
// under a broker-wide increasing id, however many sessions hold them.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace sluice::store {

using Bytes = std::vector<std::uint8_t>;

// Key spaces that are read by range from a position rather than loaded whole
// at start: logs and the state beside them (the queue layer's partitions and
// consumer groups). Each is a column family of the RocksDB store.
enum class Space : std::uint8_t {
  kQueues,  // queue partitions' entries and consumer groups' state
};

struct MessageRecord {
  std::string topic;
  Bytes payload;
  std::uint8_t qos = 0;
  bool retain = false;
  Bytes properties;                // the MQTT 5 property list, as encoded on the wire
  std::int64_t expires_at_ms = 0;  // Unix time; 0: never
  bool operator==(const MessageRecord&) const = default;
};

struct WillRecord {
  MessageRecord message;
  std::uint32_t delay_s = 0;
  bool operator==(const WillRecord&) const = default;
};

// Who a session belongs to: only the same identity may resume or take it over.
enum class SessionOwner : std::uint8_t {
  kUnknown,    // made where nothing verified names (or by a store of format 1): the next
               // client to claim it becomes its owner
  kAnonymous,  // made by a client that authenticated as nobody while names were verified
  kNamed,      // made by the verified username in `identity`
};

// A session's will is a record of its own (keyed by client id), so that
// publishing it and forgetting it are one write, whatever else the session
// record says.
struct SessionRecord {
  std::string client_id;
  std::uint8_t protocol_version = 5;
  std::uint32_t expiry_s = 0;
  std::int64_t disconnected_at_ms = 0;  // Unix time; 0 while connected
  SessionOwner owner = SessionOwner::kUnknown;
  std::string identity;  // with kNamed
  bool operator==(const SessionRecord&) const = default;
};

struct SubscriptionRecord {
  std::string client_id;
  std::string filter;
  std::uint8_t options = 0;  // the SUBSCRIBE options byte as on the wire (5.0 layout)
  std::uint32_t identifier = 0;
  // A queue or stream subscription's SUBSCRIBE properties (its group,
  // ack-mode, ...) as an encoded property block, for making it again at
  // start-up; empty for any other subscription.
  Bytes queue_properties;
  bool operator==(const SubscriptionRecord&) const = default;
};

// A message on its way to one session: queued (packet_id 0) or in flight.
struct OutboundRecord {
  enum class Stage : std::uint8_t { kQueued, kAwaitingPuback, kAwaitingPubrec, kAwaitingPubcomp };
  std::string client_id;
  std::uint64_t message_id = 0;  // also the order of delivery
  std::uint8_t qos = 0;
  bool retain = false;
  std::vector<std::uint32_t> identifiers;
  std::uint16_t packet_id = 0;
  Stage stage = Stage::kQueued;
  bool operator==(const OutboundRecord&) const = default;
};

}  // namespace sluice::store
