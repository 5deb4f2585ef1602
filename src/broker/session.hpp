// A client's session: what outlives a connection [MQTT-4.1] — subscriptions,
// QoS 1/2 messages in flight both ways, messages queued while offline or
// while the client's window is full, and the will. Owned by one shard and
// only ever touched on that shard's thread.
//
// Outbound flow: a delivery goes straight out when the client is online, has
// room in its Receive Maximum window and is keeping up with its socket;
// otherwise QoS 1/2 (and, if configured, offline QoS 0) wait in `queue_`,
// bounded by max_queued_messages (the newest is dropped when it is full).
// QoS 0 to a client that is not keeping up is dropped and counted.
#pragma once

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <utility>
#include <vector>

#include "auth/acl_file.hpp"
#include "broker/client_link.hpp"
#include "broker/delivery.hpp"
#include "broker/delivery_queue.hpp"
#include "broker/inflight_table.hpp"
#include "broker/on_demand.hpp"
#include "broker/stats.hpp"
#include "config/config.hpp"
#include "mqtt/packets.hpp"
#include "store/records.hpp"
#include "store/write_batch.hpp"

namespace sluice::broker {

class Shard;
class ClientProtocol;

struct SubscriptionRecord {
  mqtt::SubscriptionOptions options;
  std::uint32_t identifier = 0;
};

// The connection-scoped limits a client announced in CONNECT.
struct ClientLimits {
  std::uint16_t receive_maximum = 65535;
  std::uint32_t maximum_packet_size = 268'435'460;
  std::uint16_t topic_alias_maximum = 0;
};

class Session {
 public:
  Session(Shard& shard, std::uint64_t id, std::string client_id);
  ~Session();
  Session(const Session&) = delete;
  Session& operator=(const Session&) = delete;

  std::uint64_t id() const { return id_; }
  const std::string& client_id() const { return tag_->client_id; }
  // What the hash_client_id shared strategy distributes this client's messages by.
  std::uint64_t client_hash() const { return client_hash_; }
  TargetRef ref() const;

  // ---- connection ----
  // Attached to a connection that was sent its CONNACK: deliveries go out.
  bool online() const { return link_ != nullptr; }
  // The connection's, while online (nullptr otherwise).
  const ClientLink* link() const { return link_; }
  // The protocol of its last connection.
  mqtt::ProtocolVersion version() const { return version_; }
  // The connection that claimed the session, attached or still connecting;
  // nullptr when none did.
  ClientProtocol* owner() const { return owner_; }
  // Shared with the subscription index: read by publishers on every shard.
  std::shared_ptr<const SessionTag> tag() const { return tag_; }
  // A connection takes the session; it stays offline until attach().
  void claim(ClientProtocol& owner) { owner_ = &owner; }
  // Binds the session to its connection and resends what was in flight
  // [MQTT-4.4.0-1], then what was queued. What the client may read now (its
  // owner's ACL) is checked for every delivery when it is written.
  void attach(ClientLink& link, mqtt::ProtocolVersion version, const ClientLimits& limits);
  // The connection went away. Unacknowledged shared-subscription messages go
  // to another online member of their group, if there is one. Deliveries
  // whose target keeps them (a queue's, with a listener) end here, each told
  // so: the queue offers them again as new messages, never as a resend in
  // this session.
  void detach(Clock::time_point now);

  // ---- owner ----
  // Who made the session (store::SessionOwner). Only the same identity may
  // resume it or take it over; a session whose owner is unknown goes to the
  // next client that claims it.
  store::SessionOwner owner_kind() const { return owner_kind_; }
  // The verified username with SessionOwner::kNamed; nullptr otherwise.
  const std::string* identity() const { return identity_.get(); }
  void set_owner(store::SessionOwner kind, std::unique_ptr<std::string> identity) {
    owner_kind_ = kind;
    identity_ = std::move(identity);
  }
  // Whether a client with this verified `identity` (nullptr: anonymous) owns it.
  bool belongs_to(const std::string* identity) const {
    switch (owner_kind_) {
      case store::SessionOwner::kUnknown:
        return true;
      case store::SessionOwner::kAnonymous:
        return identity == nullptr;
      case store::SessionOwner::kNamed:
        return identity != nullptr && *identity == *identity_;
    }
    return false;
  }

  // ---- persistence ----
  // Whether the store holds a record of this session (so ending it must delete it).
  bool stored() const { return tag_->stored.load(std::memory_order_relaxed); }
  void set_stored(bool stored) { tag_->stored.store(stored, std::memory_order_relaxed); }
  // Puts back what the store held for this session at start-up: an
  // outbound message queued (`packet_id` 0) or in flight, in message-id
  // order. An in-flight one is resent with DUP when the client is back.
  // False when it cannot be put back (then its record should go).
  bool restore_outbound(Delivery&& delivery, std::uint16_t packet_id,
                        store::OutboundRecord::Stage stage);
  // The session ends: its stored deliveries let go of their messages (the
  // caller deletes the session's records).
  void release_stored(store::WriteBatch& batch);

  // ---- lifetime ----
  std::uint32_t expiry_s() const { return expiry_s_; }
  void set_expiry_s(std::uint32_t seconds) { expiry_s_ = seconds; }
  // Since when the session has been offline; nullopt while connected.
  std::optional<Clock::time_point> offline_since() const { return offline_since_; }
  // When an offline session ends; nullopt for "never".
  std::optional<Clock::time_point> expires_at() const;

  // ---- will ----
  void set_will(std::optional<mqtt::Will> will) {
    will_ = will ? std::make_unique<mqtt::Will>(std::move(*will)) : nullptr;
  }
  const mqtt::Will* will() const { return will_.get(); }
  // Arms the will to be published at `due`, or clears it.
  void arm_will(std::optional<Clock::time_point> due) { will_due_ = due; }
  std::optional<Clock::time_point> will_due() const { return will_due_; }
  std::optional<mqtt::Will> take_will();

  // ---- subscriptions ----
  std::map<std::string, SubscriptionRecord>& subscriptions() { return subscriptions_; }
  // Whether it ever subscribed to a queue (QueueGateway): then its comings
  // and goings are the queue layer's business too.
  bool has_queue_subscriptions() const { return has_queue_subscriptions_; }
  void set_has_queue_subscriptions() { has_queue_subscriptions_ = true; }
  // What the client announced in its CONNECT (while online).
  const ClientLimits& limits() const { return limits_; }

  // ---- outbound ----
  void deliver(Delivery&& delivery);
  // Tells the delivery's listener, if any, how it ended.
  static void settle(const Delivery& delivery, mqtt::ReasonCode reason);
  // The client's PUBACK, with its reason code (0x80 and up: it refused the
  // message; the delivery's listener, if any, is told so).
  void on_puback(std::uint16_t packet_id, mqtt::ReasonCode reason);
  // Returns false when `packet_id` was not awaiting a PUBREC (the caller
  // answers PUBREL 0x92); otherwise the PUBREL is sent here, once the new
  // stage is stored when the session is.
  bool on_pubrec(std::uint16_t packet_id, mqtt::ReasonCode reason);
  void on_pubcomp(std::uint16_t packet_id);
  // Sends queued messages while the window and the socket allow.
  void pump();
  // Drops queued messages whose expiry has passed (an offline session's
  // queue is not otherwise looked at until its client comes back).
  void drop_expired(Clock::time_point now);
  std::size_t inflight() const { return inflight_.size(); }
  std::size_t queued() const { return queue_.size(); }
  // Messages dropped on their way to this client, whatever the reason (queue
  // full, expired, too large, no longer readable, QoS 0 it could not take).
  std::uint32_t dropped() const { return dropped_; }
  // A message dropped on its way to this client: counted in `counter`, and
  // told to webhooks with `reason`.
  void note_drop(ShardStats::Counter& counter, const char* reason, const Delivery& delivery);

  // ---- inbound QoS 2 ----
  // True when `packet_id` is new (the message must be routed); false for a
  // retransmission of one awaiting PUBREL.
  bool begin_inbound_qos2(std::uint16_t packet_id) {
    return inbound_qos2_.get().insert(packet_id).second;
  }
  bool release_inbound_qos2(std::uint16_t packet_id) {
    auto* pending = inbound_qos2_.find();
    return pending != nullptr && pending->erase(packet_id) > 0;
  }
  std::size_t inbound_qos2_pending() const {
    const auto* pending = inbound_qos2_.find();
    return pending != nullptr ? pending->size() : 0;
  }

  // Hands messages that came through shared subscriptions to other members
  // of their groups: any member when the session ends, an online one while
  // the client may still come back.
  void hand_on_shared(bool session_ends);

  // ---- moving to another node of the cluster (broker/session_handover.hpp) ----
  // Another node is taking it: deliveries still arrive here (queued: it is
  // offline) until that node has it and takes them too.
  bool handing_over() const { return handing_over_; }
  void set_handing_over(bool handing_over) { handing_over_ = handing_over; }
  // Every outbound delivery: in flight, in the order sent, then queued.
  template <class Visit>
  void for_each_outbound(Visit&& visit) const {
    std::vector<std::pair<std::uint64_t, std::uint16_t>> order;
    inflight_.for_each([&](std::uint16_t packet_id, const Inflight& entry) {
      order.emplace_back(entry.sequence, packet_id);
    });
    std::sort(order.begin(), order.end());
    for (const auto& [sequence, packet_id] : order) {
      const Inflight& entry = *inflight_.find(packet_id);
      visit(entry.delivery, packet_id, entry.stage);
    }
    queue_.for_each([&](const Delivery& delivery) { visit(delivery, 0, Stage::kQueued); });
  }
  template <class Visit>
  void for_each_inbound_qos2(Visit&& visit) const {
    if (const auto* pending = inbound_qos2_.find())
      for (const std::uint16_t packet_id : *pending)
        visit(packet_id);
  }
  // Empties it of every delivery (they went with the session: none is
  // handed on to a shared group here), letting go of stored messages in
  // `batch`.
  void give_up_outbound(store::WriteBatch& batch);
  // Takes the deliveries of the session as another node held it, in their
  // order and with their packet ids, before what was queued here since; a
  // publish that came both ways (the same Message::cluster_id) is kept
  // once. A stored session's records of them are added to `batch`.
  struct Arriving {
    Delivery delivery;  // without a message for a QoS 2 past its PUBREC
    std::uint16_t packet_id = 0;
    store::OutboundRecord::Stage stage = store::OutboundRecord::Stage::kQueued;
  };
  // The publishes it took so are remembered for a while (twice
  // cluster.forward_timeout_ms): a copy of one still on its way here from
  // another node is dropped when it comes.
  void adopt_outbound(std::vector<Arriving>&& arriving, store::WriteBatch& batch);

 private:
  using Stage = store::OutboundRecord::Stage;
  struct Inflight {
    Delivery delivery;
    std::uint64_t sequence;  // to resend in the original order
    Stage stage;
    // The packet of this stage (a stored QoS 2 PUBLISH, or its PUBREL) waits
    // until the stage is durable: sent earlier, a crash would make the
    // broker deliver the message twice.
    bool held = false;
  };

  bool can_send_now() const;
  // A QoS 2 message that needs no stage write waits while stored ones are
  // held, so QoS 2 messages still go out in the order they came [MQTT-4.6.0-6].
  bool behind_held(const Delivery& delivery) const {
    return held_publishes_ != 0 && delivery.qos == mqtt::QoS::kExactlyOnce &&
           delivery.store_id == 0;
  }
  void send_inflight(Delivery&& delivery);
  // Writes the PUBLISH; false when the client may not have it (too big, or
  // the ACL no longer lets it read the topic): then it is dropped.
  bool write_publish(const Delivery& delivery, std::uint16_t packet_id, bool dup);
  std::uint16_t next_packet_id();
  void enqueue(Delivery&& delivery);
  // The delivery leaves (or never enters) the queue: the place its publisher
  // reserved there, if any, is free again.
  void give_back(Delivery& delivery) const;
  void resend_inflight();
  // Ends the deliveries whose target keeps them (see detach).
  void let_go_of_kept_deliveries();
  // A delivery leaves this session unfinished (dropped, expired, too
  // large): its stored record goes, and with the last one its message.
  void forget(const Delivery& delivery);
  // It ends without an acknowledgement: settled as unspecified error, forgotten.
  void drop(const Delivery& delivery);
  // The stored record of `delivery` now says `stage` with `packet_id`.
  void store_stage(const Delivery& delivery, std::uint16_t packet_id, Stage stage);
  // Stores the stage of the entry `packet_id` (just put in the table, held)
  // and sends its packet once that is durable.
  void store_stage_then_send(std::uint16_t packet_id, store::WriteBatch&& batch);
  void release_held(std::uint16_t packet_id, std::uint64_t sequence);
  // Sends the packet of the entry's stage: the PUBLISH or the PUBREL. False
  // when the PUBLISH could not be sent (then the entry is gone).
  bool send_stage(std::uint16_t packet_id, Inflight& entry, bool dup);

  Shard& shard_;
  const std::uint64_t id_;
  const std::shared_ptr<SessionTag> tag_;
  const std::uint64_t client_hash_;

  ClientProtocol* owner_ = nullptr;
  ClientLink* link_ = nullptr;
  std::unique_ptr<std::string> identity_;
  store::SessionOwner owner_kind_ = store::SessionOwner::kUnknown;
  mqtt::ProtocolVersion version_ = mqtt::ProtocolVersion::kV5;
  ClientLimits limits_;
  OnDemand<std::unordered_map<std::string, std::uint16_t>> outbound_aliases_;  // per connection

  std::uint32_t expiry_s_ = 0;
  std::optional<Clock::time_point> offline_since_;
  std::unique_ptr<mqtt::Will> will_;  // most sessions have none: no room kept for one
  std::optional<Clock::time_point> will_due_;

  std::map<std::string, SubscriptionRecord> subscriptions_;

  InflightTable<Inflight> inflight_;
  std::uint64_t next_sequence_ = 0;
  std::uint32_t held_publishes_ = 0;  // QoS 2 PUBLISHes waiting for their stage write
  std::uint32_t dropped_ = 0;
  bool has_queue_subscriptions_ = false;
  bool handing_over_ = false;
  struct Handed {
    std::unordered_set<std::uint64_t> cluster_ids;
    Clock::time_point until;
  };
  std::unique_ptr<Handed> handed_;  // after adopt_outbound, for a while
  DeliveryQueue queue_;

  OnDemand<std::unordered_set<std::uint16_t>> inbound_qos2_;
};

}  // namespace sluice::broker
