// Routing and session bookkeeping on one shard.
#include "broker/shard.hpp"

#include <algorithm>
#include <functional>

#include "broker/client_protocol.hpp"
#include "broker/persistence.hpp"
#include "broker/queue_gateway.hpp"
#include "broker/session_directory.hpp"
#include "mqtt/topic.hpp"
#include "store/journal.hpp"

namespace sluice::broker {

namespace {
// How often expired messages are looked for where nothing else would find
// them: the retained store (by shard 0) and offline sessions' queues.
constexpr auto kPurgeInterval = std::chrono::seconds(60);
}  // namespace

Shard::Shard(Broker& broker, std::uint32_t index)
    : broker_(broker),
      index_(index),
      limits_(broker.config().limits),
      outbox_(broker.shard_count()) {}

Shard::~Shard() = default;

Session* Shard::find_session(const std::string& client_id) {
  const auto it = sessions_.find(client_id);
  return it == sessions_.end() ? nullptr : it->second.get();
}

Session* Shard::create_session(const std::string& client_id) {
  // Callers look first; a second session under one id would leave the
  // first's entries pointing at nothing.
  if (Session* existing = find_session(client_id)) return existing;
  if (broker_.sessions().fetch_add(1) >= limits_.max_sessions) {
    broker_.sessions().fetch_sub(1);
    return nullptr;
  }
  return add_session(client_id);
}

Session* Shard::restore_session(const std::string& client_id) {
  if (Session* existing = find_session(client_id)) return existing;
  broker_.sessions().fetch_add(1);
  return add_session(client_id);
}

Session* Shard::add_session(const std::string& client_id) {
  auto session = std::make_unique<Session>(*this, broker_.new_session_id(), client_id);
  Session& ref = *session;
  sessions_by_id_.emplace(ref.id(), &ref);
  sessions_.emplace(ref.client_id(), std::move(session));  // keyed by the session's own id
  return &ref;
}

void Shard::end_session(Session& session) {
  if (session.has_queue_subscriptions()) {
    if (QueueGateway* queues = broker_.queues()) queues->session_ended(*this, session.ref());
  }
  for (const auto& [filter, record] : session.subscriptions()) {
    broker_.index().unsubscribe(filter, session.ref());
  }
  session.subscriptions().clear();
  session.hand_on_shared(true);
  if (session.stored()) {
    // After the hand-on, which rewrites the records of what it moved.
    store::WriteBatch batch;
    batch.add(store::WriteBatch::DeleteSession{session.client_id()});
    session.release_stored(batch);
    write_then(std::move(batch), nullptr);
  }
  offline_.erase(&session);
  sessions_by_id_.erase(session.id());
  broker_.sessions().fetch_sub(1);  // live sessions are counted, not sessions ever made
  if (SessionDirectory* directory = broker_.session_directory())
    directory->ended(session.client_id());
  // By position: the key is a view of the client id that the erase destroys.
  if (const auto it = sessions_.find(session.client_id()); it != sessions_.end())
    sessions_.erase(it);
}

void Shard::session_went_offline(Session& session, Clock::time_point now) {
  session.detach(now);
  offline_.insert(&session);
}

std::size_t Shard::publish(const MessagePtr& message) {
  return publish(message, store::WriteBatch(),
                 [&](Routed routed, store::WriteBatch&& batch) {
                   if (!batch.empty()) write_then(std::move(batch), std::move(routed.captured));
                 })
      .receivers;
}

void Shard::retry_held_publishers() {
  if (held_publishers_.empty()) return;
  const Clock::time_point now = Clock::now();
  // Taken out first: a retry may hold its publisher again.
  std::vector<std::weak_ptr<ClientProtocol*>> held;
  held.swap(held_publishers_);
  for (auto& weak : held) {
    const auto protocol = weak.lock();
    if (protocol && (*protocol)->retry_held_publish(now))
      held_publishers_.push_back(std::move(weak));
  }
}

void Shard::add_retained_write(const Message& message, RetainedStore::SetResult result,
                               store::WriteBatch& batch) const {
  if (!has_store() || result == RetainedStore::SetResult::kLimitReached ||
      mqtt::is_sys_topic(message.topic)) {
    return;
  }
  if (message.payload.empty()) {
    batch.add(store::WriteBatch::DeleteRetained{message.topic});
  } else {
    batch.add(store::WriteBatch::PutRetained{to_record(message)});
  }
}

void Shard::delete_retained(const std::string& topic, std::function<void(RetainedDeletion)> then) {
  auto deletion = std::make_shared<Message>();
  deletion->topic = topic;
  deletion->retain = true;  // an empty retained message: the deletion
  bool found = false;
  bool written = false;
  broker_.retained().locked([&](RetainedStore::Writer& retained) {
    found = retained.has(topic);
    if (!found) return;
    store::WriteBatch batch;
    add_retained_write(*deletion, retained.set(deletion), batch);
    if (batch.empty()) return;
    // Handed to the store under the lock, as a publish's retained write is:
    // a message retained on the topic right after is written after this.
    written = true;
    write_then(std::move(batch), [then](bool durable) {
      then(durable ? RetainedDeletion::kDeleted : RetainedDeletion::kStoreFailed);
    });
  });
  if (!written) then(found ? RetainedDeletion::kDeleted : RetainedDeletion::kNotFound);
}

Shard::Routed Shard::route(const MessagePtr& message, store::WriteBatch& batch, bool may_refuse) {
  const bool storing = has_store();
  targets_.clear();
  const config::SharedStrategy strategy = broker_.config().sessions.shared_subscription_strategy;
  if (message->for_shared_group) {
    // Another node picked this one for a shared group: one member here gets it.
    if (auto member = broker_.index().pick_shared(*message->for_shared_group, *message, strategy,
                                                  TargetRef{0, ~0u, 0, TargetKind::kSession}, false,
                                                  /*local_only=*/true))
      targets_.push_back(std::move(*member));
  } else {
    broker_.index().match(*message, strategy, targets_,
                          broker_.config().cluster.shared_prefer_local);
  }
  routed_.clear();
  const bool reserving =
      may_refuse && message->qos != mqtt::QoS::kAtMostOnce &&
      broker_.config().limits.queue_full_policy == config::QueueFullPolicy::kRefusePublish;
  if (reserving && !reserve_places()) return {0, true, nullptr, nullptr};
  Routed routed;
  const bool sys_topic = mqtt::is_sys_topic(message->topic);
  // Each queue captures at its home (queue_placement.hpp): the node it was
  // published on for the queues homed there, the node it was forwarded to
  // for those homed there. A copy for one shared group's member is not the
  // node's copy of the message.
  if (QueueGateway* queues = broker_.queues();
      queues != nullptr && !sys_topic && !message->for_shared_group)
    routed.captured = queues->capture(*this, *message, batch);
  std::uint64_t store_id = 0;
  std::uint32_t holders = 0;
  std::size_t receivers = 0;
  // The message as it goes to another node, which routes it again there.
  const auto forward_to = [&](TargetRef node, std::shared_ptr<const std::string> shared_filter) {
    // Before the message reaches any other thread (the retained store shares it).
    if (message->cluster_id == 0) message->cluster_id = broker_.new_cluster_id();
    Delivery forward;
    forward.message = message;
    forward.qos = message->qos;
    forward.retain = message->retain;
    forward.shared_filter = std::move(shared_filter);  // that node delivers to one member
    if (message->qos != mqtt::QoS::kAtMostOnce) {
      // The publisher's acknowledgement waits for that node's (remote_acks.hpp).
      if (!routed.remote) routed.remote = std::make_shared<RemoteAcks>();
      routed.remote->expect();
      forward.listener = routed.remote.get();
    }
    routed_.push_back({node, std::move(forward)});
  };
  for (Target& target : targets_) {
    if (target.ref.kind == TargetKind::kNode) {
      // Another node has subscribers. A message that came from a node goes
      // to no node again, and each node's $SYS topics are its own.
      if (message->forwarded || sys_topic) continue;
      forward_to(target.ref, std::move(target.shared_filter));
      ++receivers;
      continue;
    }
    ++receivers;
    Delivery delivery;
    delivery.message = message;
    delivery.qos = std::min(message->qos, target.max_qos);
    // [MQTT-3.3.1-12] RETAIN is cleared unless the subscription asked to keep it.
    delivery.retain = message->retain && target.retain_as_published && !target.shared_filter;
    delivery.identifiers = std::move(target.identifiers);
    delivery.reserved = reserving && reserves(target);
    delivery.shared_filter = std::move(target.shared_filter);
    if (storing && target.stored_session && delivery.qos != mqtt::QoS::kAtMostOnce) {
      if (store_id == 0) store_id = broker_.new_message_id();
      delivery.store_id = store_id;
      batch.add(store::WriteBatch::PutOutbound{outbound_record(
          target.stored_session->client_id, delivery, 0, store::OutboundRecord::Stage::kQueued)});
      ++holders;
    }
    routed_.push_back({target.ref, std::move(delivery)});
  }
  // A retained message is every node's: each keeps it for its own future
  // subscribers, so it goes to the nodes that have no subscriber for it too.
  if (!message->forwarded && !sys_topic && retains(*message)) {
    if (const TargetSink* nodes = broker_.sink(TargetKind::kNode)) {
      std::vector<TargetRef> all;
      nodes->all_targets(all);
      for (const TargetRef& node : all) {
        const bool routed_there = std::any_of(
            routed_.begin(), routed_.end(),
            [&](const RemoteDelivery& d) { return d.to == node && !d.delivery.shared_filter; });
        if (!routed_there) forward_to(node, nullptr);
      }
    }
  }
  if (holders != 0) {
    message->store_refs.set(holders);
    batch.add(store::WriteBatch::PutMessage{store_id, to_record(*message)});
  }
  routed.receivers = receivers;
  return routed;
}

bool Shard::reserves(const Target& target) {
  // A shared group's member is picked per message and may be any: a full one
  // there loses the message as under drop_newest. QoS 0 is never queued.
  return target.ref.kind == TargetKind::kSession && target.session && !target.shared_filter &&
         target.max_qos != mqtt::QoS::kAtMostOnce;
}

bool Shard::reserve_places() {
  const std::uint32_t most = limits_.max_queued_messages;
  for (std::size_t i = 0; i < targets_.size(); ++i) {
    if (!reserves(targets_[i]) || targets_[i].session->try_reserve(most)) continue;
    for (std::size_t j = 0; j < i; ++j)  // all or none
      if (reserves(targets_[j])) targets_[j].session->release();
    return false;
  }
  return true;
}

void Shard::dispatch() {
  // Nothing a delivery does routes another message, so routed_ stays put.
  for (RemoteDelivery& routed : routed_)
    deliver(routed.to, std::move(routed.delivery));
  routed_.clear();
}

void Shard::deliver(TargetRef to, Delivery&& delivery) {
  if (to.kind != TargetKind::kSession) {
    if (TargetSink* sink = broker_.sink(to.kind))
      return sink->deliver(index_, to, std::move(delivery));
    ShardStats::add(stats_.dropped_no_target);  // nothing of that kind on this node
    return Session::settle(delivery, mqtt::ReasonCode::kUnspecifiedError);
  }
  if (to.shard != index_) {
    outbox_[to.shard].push_back({to, std::move(delivery)});
    return;
  }
  const auto it = sessions_by_id_.find(to.id);
  if (it != sessions_by_id_.end()) return it->second->deliver(std::move(delivery));
  // The session ended on the way. Its record, if written after the session's
  // were deleted, has no session left and goes at the next start.
  Session::settle(delivery, mqtt::ReasonCode::kUnspecifiedError);
  store::WriteBatch batch;
  release_stored_message(delivery, batch);
  if (!batch.empty()) write_then(std::move(batch), nullptr);
}

void Shard::deliver_batch(std::vector<RemoteDelivery>&& batch) {
  for (RemoteDelivery& remote : batch)
    deliver(remote.to, std::move(remote.delivery));
}

std::optional<TargetRef> Shard::reroute_shared(Delivery& delivery, TargetRef exclude,
                                               bool online_only, store::WriteBatch& batch) {
  // A member on this node: a message moved to another node would travel
  // untracked, and be lost if that node could not take it.
  const auto target = broker_.index().pick_shared(
      *delivery.shared_filter, *delivery.message,
      broker_.config().sessions.shared_subscription_strategy, exclude, online_only,
      /*local_only=*/true);
  if (!target) return std::nullopt;
  delivery.qos = std::min(delivery.message->qos, target->max_qos);
  delivery.identifiers = target->identifiers;
  if (delivery.store_id != 0) {
    // The stored copy moves with it, to a session the store keeps; or goes.
    if (target->stored_session && delivery.qos != mqtt::QoS::kAtMostOnce) {
      batch.add(store::WriteBatch::PutOutbound{outbound_record(
          target->stored_session->client_id, delivery, 0, store::OutboundRecord::Stage::kQueued)});
    } else {
      release_stored_message(delivery, batch);
      delivery.store_id = 0;
    }
  }
  return target->ref;
}

void Shard::flush_outbox() {
  Mailbox* mailbox = broker_.mailbox();
  for (std::uint32_t shard = 0; shard < outbox_.size(); ++shard) {
    if (outbox_[shard].empty()) continue;
    std::vector<RemoteDelivery> batch;
    batch.swap(outbox_[shard]);
    mailbox->post(shard, std::move(batch));
  }
}

void Shard::publish_will(Session& session) {
  std::optional<mqtt::Will> will = session.take_will();
  if (!will) return;
  mqtt::Publish packet;
  packet.topic = std::move(will->topic);
  packet.payload = std::move(will->payload);
  packet.qos = will->qos;
  packet.retain = will->retain;
  packet.properties = std::move(will->properties);
  packet.properties.will_delay_interval.reset();
  // The will leaves the store in the write that stores its message: across a
  // crash it is published once, not again by the next start.
  store::WriteBatch batch;
  if (session.stored() && has_store()) {
    batch.add(store::WriteBatch::DeleteWill{session.client_id()});
  }
  publish(make_message(std::move(packet), session.id(), session.client_hash()), std::move(batch),
          [&](Routed routed, store::WriteBatch&& changes) {
            if (!changes.empty()) write_then(std::move(changes), std::move(routed.captured));
          });
}

void Shard::write_then(store::WriteBatch&& batch, std::function<void(bool durable)> then) {
  store::Journal* journal = broker_.journal();
  if (journal == nullptr) {
    if (then) then(true);
    return;
  }
  if (!then) return journal->submit(std::move(batch), nullptr);  // nothing waits for it
  journal->submit(std::move(batch), [mailbox = broker_.mailbox(), shard = index_,
                                     then = std::move(then)](const store::Status& status) {
    mailbox->post_task(shard, [then, durable = status.ok] { then(durable); });
  });
}

void Shard::poll_queues(Clock::time_point now) {
  if (QueueGateway* queues = broker_.queues()) queues->poll(*this, now);
}

void Shard::tick(Clock::time_point now) {
  retry_held_publishers();
  poll_queues(now);
  std::vector<Session*> ended;
  for (Session* session : offline_) {
    if (session->will_due() && *session->will_due() <= now) publish_will(*session);
    const auto expires = session->expires_at();
    if (expires && *expires <= now) ended.push_back(session);
  }
  for (Session* session : ended) {
    if (broker_.wants(EventKind::kSessionExpired)) {
      Event e;
      e.kind = EventKind::kSessionExpired;
      e.client_id = session->client_id();
      broker_.emit(std::move(e));
    }
    publish_will(*session);  // a will still pending goes out when the session ends
    end_session(*session);
  }
  if (now >= next_queue_purge_) {
    for (Session* session : offline_)
      session->drop_expired(now);
    next_queue_purge_ = now + kPurgeInterval;
  }
  if (index_ == 0 && now >= next_retained_purge_) {
    store::WriteBatch batch;
    broker_.retained().purge_expired(
        now,
        [&](const Message& message) {
          if (has_store()) batch.add(store::WriteBatch::DeleteRetained{message.topic});
        },
        [&] {  // under the lock, as publish's retained writes
          if (!batch.empty()) write_then(std::move(batch), nullptr);
        });
    next_retained_purge_ = now + kPurgeInterval;
  }
  if (index_ == 0 && broker_.config().sys_interval_s > 0 && now >= next_sys_publish_) {
    publish_sys_topics(now);
    next_sys_publish_ = now + std::chrono::seconds(broker_.config().sys_interval_s);
  }
}

void Shard::publish_sys_topics(Clock::time_point now) {
  std::uint64_t received = 0, sent = 0, bytes_in = 0, bytes_out = 0, clients = 0, dropped = 0;
  std::uint64_t rejected_connections = 0, rejected_publishes = 0, rejected_subscriptions = 0;
  std::uint64_t refused_queue_full = 0;
  auto read = [](const ShardStats::Counter& c) { return c.load(std::memory_order_relaxed); };
  for (std::uint32_t i = 0; i < broker_.shard_count(); ++i) {
    const ShardStats& s = broker_.shard(i).stats();
    received += s.messages_received();
    sent += s.messages_sent();
    bytes_in += read(s.bytes_received);
    bytes_out += read(s.bytes_sent);
    clients += read(s.clients_connected);
    dropped += read(s.dropped_queue_full) + read(s.dropped_slow_client) +
               read(s.dropped_too_large) + read(s.dropped_expired) + read(s.dropped_offline_qos0) +
               read(s.dropped_not_authorized) + read(s.dropped_no_target);
    rejected_connections += read(s.rejected_connections);
    rejected_publishes += read(s.rejected_publishes);
    rejected_subscriptions += read(s.rejected_subscriptions);
    refused_queue_full += read(s.refused_queue_full);
  }
  const auto uptime_s =
      std::chrono::duration_cast<std::chrono::seconds>(now - broker_.started_at()).count();
  const std::pair<const char*, std::string> topics[] = {
      {"$SYS/broker/version", "sluice " + broker_.version()},
      {"$SYS/broker/uptime", std::to_string(uptime_s) + " seconds"},
      {"$SYS/broker/clients/connected", std::to_string(clients)},
      {"$SYS/broker/messages/received", std::to_string(received)},
      {"$SYS/broker/messages/sent", std::to_string(sent)},
      {"$SYS/broker/messages/dropped", std::to_string(dropped)},
      {"$SYS/broker/bytes/received", std::to_string(bytes_in)},
      {"$SYS/broker/bytes/sent", std::to_string(bytes_out)},
      {"$SYS/broker/subscriptions/count", std::to_string(broker_.index().size())},
      {"$SYS/broker/retained messages/count", std::to_string(broker_.retained().size())},
      {"$SYS/broker/rejected/connections", std::to_string(rejected_connections)},
      {"$SYS/broker/rejected/publishes", std::to_string(rejected_publishes)},
      {"$SYS/broker/rejected/subscriptions", std::to_string(rejected_subscriptions)},
      {"$SYS/broker/rejected/queue_full", std::to_string(refused_queue_full)},
  };
  std::vector<std::pair<std::string, std::string>> all(std::begin(topics), std::end(topics));
  if (const store::Journal* journal = broker_.journal()) {
    // A failed store write or fsync is not silent: it shows here (and in the log).
    const store::JournalHealth health = journal->health();
    all.emplace_back("$SYS/broker/store/healthy", health.healthy ? "1" : "0");
    all.emplace_back("$SYS/broker/store/failures", std::to_string(health.failures));
    all.emplace_back("$SYS/broker/store/lost_writes", std::to_string(broker_.store_lost_writes()));
  }
  if (const QueueGateway* queues = broker_.queues()) queues->sys_topics(all);
  for (const auto& [topic, value] : all) {
    mqtt::Publish packet;
    packet.topic = topic;
    packet.retain = true;
    packet.payload.assign(value.begin(), value.end());
    publish(make_message(std::move(packet), 0, 0));
  }
}

}  // namespace sluice::broker
