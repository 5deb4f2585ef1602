// One worker's part of the broker: the sessions whose client ids map to it,
// the routing of messages published by its clients, and the batches of
// deliveries bound for other shards. Everything here runs on the worker's
// thread only.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "broker/broker.hpp"
#include "broker/remote_acks.hpp"
#include "broker/session.hpp"
#include "broker/stats.hpp"
#include "store/write_batch.hpp"

namespace sluice::broker {

class ClientProtocol;

class Shard {
 public:
  Shard(Broker& broker, std::uint32_t index);
  ~Shard();
  Shard(const Shard&) = delete;
  Shard& operator=(const Shard&) = delete;

  Broker& broker() { return broker_; }
  const config::Config& config() const { return broker_.config(); }
  // The limits in force: the configuration's, and what reloads changed
  // of them since (config::copy_run_time_limits), on this shard's thread.
  const config::LimitsConfig& limits() const { return limits_; }
  void set_limits(const config::LimitsConfig& limits) { limits_ = limits; }
  std::uint32_t index() const { return index_; }
  ShardStats& stats() { return stats_; }

  // ---- sessions ----
  Session* find_session(const std::string& client_id);
  Session* find_session_by_id(std::uint64_t id) {
    const auto it = sessions_by_id_.find(id);
    return it == sessions_by_id_.end() ? nullptr : it->second;
  }
  // A new session, or nullptr when limits.max_sessions are already in use.
  Session* create_session(const std::string& client_id);
  // A session read back from the store at start-up: made whatever
  // max_sessions says, since a lowered limit must not cost stored data (new
  // sessions are refused until the count falls below it).
  Session* restore_session(const std::string& client_id);
  // Removes the session's subscriptions, hands its shared messages on, and destroys it.
  void end_session(Session& session);
  // The session lost its connection: watch it for its will and its expiry.
  void session_went_offline(Session& session, Clock::time_point now);
  void session_came_online(Session& session) { offline_.erase(&session); }

  // Every session of this shard, in no particular order (on its thread:
  // the admin API reads them a page at a time).
  template <class Visit>
  void for_each_session(Visit&& visit) const {
    for (const auto& [client_id, session] : sessions_)
      visit(static_cast<const Session&>(*session));
  }

  // ---- routing ----
  // Routes `message`: sets it as the topic's retained message if it asks,
  // and delivers it to every matching subscriber. What must survive a crash
  // (the retained message; the message and an outbound record for each
  // stored session it goes to) is written to the store without anyone
  // waiting for it. Returns how many subscribers it went to.
  std::size_t publish(const MessagePtr& message);

  // What routing did with a message.
  struct Routed {
    std::size_t receivers = 0;
    // Not routed at all: queue_full_policy is refuse_publish and a
    // subscriber's queue is full (only when the caller allows it).
    bool refused = false;
    // Set when queues captured the message (their appends are in the
    // batch): the caller runs it once the batch is durable (write_then).
    std::function<void(bool durable)> captured;
    // Set when a QoS 1/2 message went to other nodes of the cluster: the
    // publisher's acknowledgement waits for them too (remote_acks.hpp).
    std::shared_ptr<RemoteAcks> remote;
  };

  // The same for a client's PUBLISH, whose acknowledgement may have to wait
  // for the store. `batch` holds the caller's own changes; routing adds the
  // message's, then calls `acknowledge(routed, std::move(batch))` before
  // anything is delivered. It hands a non-empty batch to write_then (the
  // acknowledgement waiting for it), or acknowledges at once. Writing before
  // delivering means a subscriber's PUBACK can never overtake the record it
  // deletes. `may_refuse`: a full queue under refuse_publish refuses it.
  template <class Acknowledge>
  Routed publish(const MessagePtr& message, store::WriteBatch&& batch, Acknowledge&& acknowledge,
                 bool may_refuse = false) {
    Routed routed;
    if (!retains(*message)) {
      routed = route(message, batch, may_refuse);
      acknowledge(routed, std::move(batch));
    } else {
      // All while the retained store is locked for writing: two workers
      // retaining on one topic write it to the store in the order memory
      // took it, and a client subscribing meanwhile either is matched here or
      // finds the new retained message.
      broker_.retained().locked([&](RetainedStore::Writer& retained) {
        routed = route(message, batch, may_refuse);
        if (!routed.refused) add_retained_write(*message, retained.set(message), batch);
        acknowledge(routed, std::move(batch));
      });
    }
    dispatch();
    return routed;
  }
  // Deliveries that other shards routed to sessions here.
  void deliver_batch(std::vector<RemoteDelivery>&& batch);
  // Readdresses `delivery` to a member of its shared group other than
  // `exclude` (an online one if `online_only`), adding the move of its
  // stored record to `batch`; the caller writes the batch, then delivers.
  // nullopt, and `delivery` untouched, when there is no such member.
  std::optional<TargetRef> reroute_shared(Delivery& delivery, TargetRef exclude, bool online_only,
                                          store::WriteBatch& batch);
  void deliver(TargetRef to, Delivery&& delivery);
  // Hands the deliveries gathered for other shards to their inboxes. The net
  // layer calls this once per loop turn.
  void flush_outbox();

  // An operator deletes `topic`'s retained message (admin API): from memory
  // and the store, without the empty publish a client's deletion sends its
  // subscribers. `then` runs here once the deletion is durable.
  enum class RetainedDeletion { kDeleted, kNotFound, kStoreFailed };
  void delete_retained(const std::string& topic, std::function<void(RetainedDeletion)> then);

  // Publishes a will as the session's client would have.
  void publish_will(Session& session);

  // A 3.x publisher refused for a full queue, which retry_held_publishers
  // tries again (each loop turn and tick) until there is room or its time is up.
  void hold_publisher(std::weak_ptr<ClientProtocol*> protocol) {
    held_publishers_.push_back(std::move(protocol));
  }
  void retry_held_publishers();

  // Hands `batch` to the store; `then(durable)`, if given, runs on this
  // shard's thread once the batch is as durable as configured (at once when
  // state is kept in memory only).
  void write_then(store::WriteBatch&& batch, std::function<void(bool durable)> then);
  bool has_store() const { return broker_.journal() != nullptr; }

  // Once a second or so: due wills, expired sessions, $SYS.
  void tick(Clock::time_point now);
  // The queues' timers (leases, redeliveries): each loop turn and tick.
  void poll_queues(Clock::time_point now);

 private:
  void publish_sys_topics(Clock::time_point now);
  Session* add_session(const std::string& client_id);
  // Matches `message` and prepares its deliveries in `routed_`, adding what
  // must be stored to `batch`; or, with `may_refuse` under refuse_publish,
  // refuses it when a subscriber's queue is full.
  Routed route(const MessagePtr& message, store::WriteBatch& batch, bool may_refuse);
  // Under refuse_publish: a place in the queue of every session the matched
  // targets_ name, or none (false: a queue is full).
  bool reserve_places();
  static bool reserves(const Target& target);
  // Whether `message` changes its topic's retained message.
  bool retains(const Message& message) const {
    return message.retain && broker_.config().mqtt.retain_available;
  }
  // The store's side of a retained change (none for $SYS, which each run
  // makes afresh, or a topic refused at the limit).
  void add_retained_write(const Message& message, RetainedStore::SetResult result,
                          store::WriteBatch& batch) const;
  // Sends what route() prepared.
  void dispatch();

  Broker& broker_;
  const std::uint32_t index_;
  ShardStats stats_;
  config::LimitsConfig limits_;
  // Keyed by a view of the session's own client id: one copy of it per session.
  std::unordered_map<std::string_view, std::unique_ptr<Session>> sessions_;
  std::unordered_map<std::uint64_t, Session*> sessions_by_id_;
  std::unordered_set<Session*> offline_;
  std::vector<std::vector<RemoteDelivery>> outbox_;
  std::vector<Target> targets_;  // reused by every publish
  std::vector<RemoteDelivery> routed_;
  std::vector<std::weak_ptr<ClientProtocol*>> held_publishers_;
  Clock::time_point next_sys_publish_;
  Clock::time_point next_retained_purge_;
  Clock::time_point next_queue_purge_;
};

}  // namespace sluice::broker
