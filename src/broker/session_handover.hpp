// A session moving between nodes of the cluster, as the shards see it
// (docs/cluster.md, "Session takeover"). The node that holds the session
// closes its connection and lets deliveries pile up (take_session), the
// node taking it subscribes as the session did (prepare_arrival), becomes
// its owner in etcd, then takes everything else the session held
// (release_session on the holder, complete_arrival here). Plain values: the
// cluster carries them in gRPC messages. Each call runs on the shard of the
// client id, on its thread.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "broker/message.hpp"
#include "mqtt/packets.hpp"
#include "store/records.hpp"

namespace sluice::broker {

class Shard;

struct HandedSubscription {
  std::string filter;
  std::uint8_t options = 0;  // the SUBSCRIBE options byte, 5.0 layout
  std::uint32_t identifier = 0;
};

struct HandedOutbound {
  MessagePtr message;  // nullptr for a QoS 2 message past its PUBREC
  mqtt::QoS qos = mqtt::QoS::kAtMostOnce;
  bool retain = false;
  std::vector<std::uint32_t> identifiers;
  std::uint16_t packet_id = 0;  // 0: queued
  store::OutboundRecord::Stage stage = store::OutboundRecord::Stage::kQueued;
};

struct HandedSession {
  std::vector<HandedSubscription> subscriptions;
  std::vector<HandedOutbound> outbound;  // in flight in the order sent, then queued
  std::vector<std::uint16_t> inbound_qos2;
};

// ---- on the node that holds the session ----

enum class TakeOutcome {
  kNotHere,  // no such session (or, for a clean start, it ended here)
  kTaken,    // its connection is closed (0x8E); `subscriptions` are its own
  kRefused,  // it belongs to another identity
};
// Queue and stream subscriptions stay with this node's queues: they are
// not handed over (the client subscribes again on its new node).
TakeOutcome take_session(Shard& shard, const std::string& client_id, const std::string* identity,
                         bool clean_start, std::vector<HandedSubscription>& subscriptions);
// Everything the session holds now, and it ends here without its will (it
// lives on). False when there is no such session.
bool release_session(Shard& shard, const std::string& client_id, HandedSession& out);
// Another node owns the session now (etcd says so): a connection here is
// closed (0x8E) and the session ends without its will. A session being
// handed over is left for its release.
void dispossess(Shard& shard, const std::string& client_id);
// The client ids of the shard's sessions.
std::vector<std::string> session_ids(const Shard& shard);

// ---- on the node that takes it ----

// The session, offline, with the subscriptions it had: from now on this
// node's publishes and the others' reach it too. False when max_sessions
// are in use.
bool prepare_arrival(Shard& shard, const std::string& client_id,
                     const std::vector<HandedSubscription>& subscriptions, bool stored);
// Adds what the holder released: subscriptions made since, inbound QoS 2
// ids, and the deliveries (before those that arrived here meanwhile, a
// publish that came both ways kept once). `then(durable)` runs once a stored
// session's records are written.
void complete_arrival(Shard& shard, const std::string& client_id, HandedSession&& session,
                      std::function<void(bool durable)> then);
// The takeover failed after prepare_arrival: the session made for it goes,
// unless a connection holds it by now.
void abandon_arrival(Shard& shard, const std::string& client_id);

}  // namespace sluice::broker
