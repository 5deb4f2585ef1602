// Session state and the outbound QoS flows (spec section 4.3 and 4.9).
#include "broker/session.hpp"

#include <algorithm>
#include <unordered_set>
#include <vector>

#include "broker/client_protocol.hpp"
#include "broker/persistence.hpp"
#include "broker/shard.hpp"

namespace sluice::broker {

namespace {
constexpr std::uint32_t kNeverExpires = 0xFFFFFFFF;
}

Session::Session(Shard& shard, std::uint64_t id, std::string client_id)
    : shard_(shard),
      id_(id),
      tag_(std::make_shared<SessionTag>(std::move(client_id))),
      client_hash_(std::hash<std::string>{}(tag_->client_id)) {}

Session::~Session() {
  // What was never acknowledged ends with the session.
  inflight_.for_each([&](std::uint16_t, const Inflight& entry) {
    if (entry.stage != Stage::kAwaitingPubcomp)
      settle(entry.delivery, mqtt::ReasonCode::kUnspecifiedError);
  });
  queue_.for_each([&](const Delivery& delivery) {
    settle(delivery, mqtt::ReasonCode::kUnspecifiedError);
    if (delivery.reserved) tag_->release();  // the tag may outlive the session
  });
}

TargetRef Session::ref() const {
  return TargetRef::session(shard_.index(), id_);
}

std::optional<Clock::time_point> Session::expires_at() const {
  if (!offline_since_ || expiry_s_ == kNeverExpires) return std::nullopt;
  return *offline_since_ + std::chrono::seconds(expiry_s_);
}

std::optional<mqtt::Will> Session::take_will() {
  std::optional<mqtt::Will> will;
  if (will_) will = std::move(*will_);
  will_.reset();
  will_due_.reset();
  return will;
}

void Session::attach(ClientLink& link, mqtt::ProtocolVersion version, const ClientLimits& limits) {
  link_ = &link;
  version_ = version;
  limits_ = limits;
  outbound_aliases_.release();  // aliases belong to one connection [MQTT-3.3.2-7]
  offline_since_.reset();
  tag_->online.store(true, std::memory_order_relaxed);
  resend_inflight();
  pump();
}

void Session::detach(Clock::time_point now) {
  owner_ = nullptr;
  link_ = nullptr;
  offline_since_ = now;
  tag_->online.store(false, std::memory_order_relaxed);
  let_go_of_kept_deliveries();
  hand_on_shared(false);
}

void Session::let_go_of_kept_deliveries() {
  const auto kept = [](const Delivery& delivery) { return delivery.listener != nullptr; };
  std::vector<Delivery> gone;
  inflight_.erase_if([&](std::uint16_t, Inflight& entry) {
    // QoS 2 past its PUBREC is settled already: only its packet id remains.
    if (!kept(entry.delivery) || entry.stage == Stage::kAwaitingPubcomp) return false;
    if (entry.held) --held_publishes_;
    gone.push_back(std::move(entry.delivery));
    return true;
  });
  queue_.erase_if([&](Delivery& delivery) {
    if (!kept(delivery)) return false;
    give_back(delivery);
    gone.push_back(std::move(delivery));
    return true;
  });
  for (const Delivery& delivery : gone)
    settle(delivery, mqtt::ReasonCode::kUnspecifiedError);
}

void Session::hand_on_shared(bool session_ends) {
  // QoS 2 that was sent stays with this client: it must finish the exchange
  // when it comes back [MQTT-4.8.2-4] and no one else may get it [MQTT-4.8.2-5].
  // While the client may come back, a message moves only to a member that is
  // online now; otherwise it waits here for its own client.
  // Every move is one store write: the records leave this session and
  // arrive at their new ones together, before any of them is delivered.
  store::WriteBatch batch;
  std::vector<RemoteDelivery> moved;
  auto hand_on = [&](Delivery& delivery) {
    if (!delivery.shared_filter) return false;
    delivery.retain = false;
    const bool reserved = delivery.reserved;
    const std::uint64_t store_id = delivery.store_id;
    const auto to = shard_.reroute_shared(delivery, ref(), /*online_only=*/!session_ends, batch);
    if (!to) return false;
    if (store_id != 0) batch.add(store::WriteBatch::DeleteOutbound{client_id(), store_id});
    if (reserved) tag_->release();  // its place here; the new session finds its own
    delivery.reserved = false;
    moved.push_back({*to, std::move(delivery)});
    return true;
  };
  inflight_.erase_if([&](std::uint16_t, Inflight& entry) {
    return entry.delivery.qos != mqtt::QoS::kExactlyOnce && hand_on(entry.delivery);
  });
  queue_.erase_if(hand_on);
  if (!batch.empty()) shard_.write_then(std::move(batch), nullptr);
  for (RemoteDelivery& delivery : moved)
    shard_.deliver(delivery.to, std::move(delivery.delivery));
}

void Session::release_stored(store::WriteBatch& batch) {
  inflight_.for_each(
      [&](std::uint16_t, const Inflight& entry) { release_stored_message(entry.delivery, batch); });
  queue_.for_each([&](const Delivery& delivery) { release_stored_message(delivery, batch); });
}

void Session::give_up_outbound(store::WriteBatch& batch) {
  release_stored(batch);
  inflight_.erase_if([&](std::uint16_t, Inflight& entry) {
    if (entry.held) --held_publishes_;
    return true;
  });
  queue_.erase_if([&](Delivery& delivery) {
    give_back(delivery);
    return true;
  });
}

void Session::adopt_outbound(std::vector<Arriving>&& arriving, store::WriteBatch& batch) {
  std::unordered_set<std::uint64_t> handed;
  for (const Arriving& a : arriving)
    if (a.delivery.message && a.delivery.message->cluster_id != 0)
      handed.insert(a.delivery.message->cluster_id);
  // What came here directly while the session moved goes after what it
  // held, unless it is one of those.
  std::vector<Delivery> direct;
  queue_.erase_if([&](Delivery& delivery) {
    const std::uint64_t id = delivery.message->cluster_id;
    if (id != 0 && handed.contains(id)) {
      give_back(delivery);
      forget(delivery);
    } else {
      direct.push_back(std::move(delivery));
    }
    return true;
  });
  Broker& broker = shard_.broker();
  for (Arriving& a : arriving) {
    Delivery& delivery = a.delivery;
    if (stored() && delivery.qos != mqtt::QoS::kAtMostOnce) {
      delivery.store_id = broker.new_message_id();
      if (delivery.message) {
        batch.add(store::WriteBatch::PutMessage{delivery.store_id, to_record(*delivery.message)});
        delivery.message->store_refs.set(1);
      }
      batch.add(store::WriteBatch::PutOutbound{
          outbound_record(client_id(), delivery, a.packet_id, a.stage)});
    }
    const std::uint64_t store_id = delivery.store_id;
    if (!restore_outbound(std::move(delivery), a.packet_id, a.stage) && store_id != 0)
      batch.add(store::WriteBatch::DeleteOutbound{client_id(), store_id});
  }
  for (Delivery& delivery : direct)
    queue_.push_back(std::move(delivery));
  if (!handed.empty()) {
    const auto grace = std::chrono::milliseconds(2 * shard_.config().cluster.forward_timeout_ms);
    handed_ = std::make_unique<Handed>(Handed{std::move(handed), Clock::now() + grace});
  }
}

bool Session::restore_outbound(Delivery&& delivery, std::uint16_t packet_id, Stage stage) {
  const bool in_flight = packet_id != 0 && stage != Stage::kQueued;
  if (in_flight && !inflight_.contains(packet_id)) {
    inflight_.put(packet_id, Inflight{std::move(delivery), next_sequence_++, stage});
    return true;
  }
  // Two records with one packet id (a message was moved back to the queue
  // and its id reused before the broker stopped): the later one is sent anew.
  if (!delivery.message) return false;  // a QoS 2 release whose id was reused
  if (shard_.config().limits.queue_full_policy == config::QueueFullPolicy::kRefusePublish) {
    tag_->waiting.fetch_add(1, std::memory_order_acq_rel);  // it holds a place, whatever the limit
    delivery.reserved = true;
  }
  queue_.push_back(std::move(delivery));
  return true;
}

void Session::settle(const Delivery& delivery, mqtt::ReasonCode reason) {
  if (delivery.listener != nullptr) delivery.listener->on_settled(delivery, reason);
}

void Session::note_drop(ShardStats::Counter& counter, const char* reason,
                        const Delivery& delivery) {
  ShardStats::add(counter);
  Broker& broker = shard_.broker();
  if (!broker.wants(EventKind::kMessageDropped)) return;
  Event e;
  e.kind = EventKind::kMessageDropped;
  e.client_id = client_id();
  if (delivery.message) e.topic = delivery.message->topic;
  e.qos = static_cast<int>(delivery.qos);
  e.reason = reason;
  broker.emit(std::move(e));
}

void Session::drop(const Delivery& delivery) {
  ++dropped_;
  settle(delivery, mqtt::ReasonCode::kUnspecifiedError);
  forget(delivery);
}

void Session::forget(const Delivery& delivery) {
  if (delivery.store_id == 0) return;
  store::WriteBatch batch;
  batch.add(store::WriteBatch::DeleteOutbound{client_id(), delivery.store_id});
  release_stored_message(delivery, batch);
  shard_.write_then(std::move(batch), nullptr);
}

void Session::store_stage(const Delivery& delivery, std::uint16_t packet_id, Stage stage) {
  if (delivery.store_id == 0) return;
  shard_.write_then(std::move(store::WriteBatch().add(store::WriteBatch::PutOutbound{
                        outbound_record(client_id(), delivery, packet_id, stage)})),
                    nullptr);
}

void Session::drop_expired(Clock::time_point now) {
  queue_.erase_if([&](Delivery& delivery) {
    if (!delivery.message->expired(now)) return false;
    note_drop(shard_.stats().dropped_expired, "expired", delivery);
    give_back(delivery);
    drop(delivery);
    return true;
  });
}

void Session::deliver(Delivery&& delivery) {
  if (handed_) {
    // A publish the session brought from its old node, now also arriving
    // here the other way: it has it already.
    if (Clock::now() > handed_->until) {
      handed_.reset();
    } else if (delivery.message->cluster_id != 0 &&
               handed_->cluster_ids.contains(delivery.message->cluster_id)) {
      give_back(delivery);
      return forget(delivery);
    }
  }
  // A place reserved in the queue (refuse_publish) is kept if the delivery
  // is queued, and given back on every other way.
  if (delivery.message->expired_now()) {
    note_drop(shard_.stats().dropped_expired, "expired", delivery);
    give_back(delivery);
    return drop(delivery);
  }
  if (!online()) {
    // A queue's delivery is not kept for a client that left: the queue
    // offers it again to someone who is there.
    if (delivery.listener != nullptr) {
      give_back(delivery);
      return drop(delivery);
    }
    if (delivery.qos == mqtt::QoS::kAtMostOnce && !shard_.config().sessions.queue_qos0_offline) {
      note_drop(shard_.stats().dropped_offline_qos0, "offline_qos0", delivery);
      return drop(delivery);
    }
    return enqueue(std::move(delivery));
  }
  if (delivery.qos == mqtt::QoS::kAtMostOnce) {
    if (link_->unsent_bytes() > shard_.limits().max_write_buffer_bytes) {
      note_drop(shard_.stats().dropped_slow_client, "slow_client", delivery);
      return drop(delivery);
    }
    if (!write_publish(delivery, 0, false)) drop(delivery);
    return;
  }
  if (queue_.empty() && can_send_now() && !behind_held(delivery)) {
    give_back(delivery);
    return send_inflight(std::move(delivery));
  }
  enqueue(std::move(delivery));
}

void Session::enqueue(Delivery&& delivery) {
  const config::LimitsConfig& limits = shard_.limits();
  if (limits.queue_full_policy == config::QueueFullPolicy::kRefusePublish) {
    // Every queued message holds a place: reserved by its publisher, or
    // taken here (a will, a retained message, a shared hand-on).
    if (!delivery.reserved && !tag_->try_reserve(limits.max_queued_messages)) {
      note_drop(shard_.stats().dropped_queue_full, "queue_full", delivery);
      return drop(delivery);
    }
    delivery.reserved = true;
    return queue_.push_back(std::move(delivery));
  }
  if (queue_.size() >= limits.max_queued_messages) {
    note_drop(shard_.stats().dropped_queue_full, "queue_full", delivery);
    if (limits.queue_full_policy == config::QueueFullPolicy::kDropNewest || queue_.empty()) {
      return drop(delivery);
    }
    drop(queue_.pop_front());  // drop_oldest
  }
  queue_.push_back(std::move(delivery));
}

void Session::give_back(Delivery& delivery) const {
  if (!delivery.reserved) return;
  tag_->release();
  delivery.reserved = false;
}

bool Session::can_send_now() const {
  const std::size_t window =
      std::min<std::size_t>(limits_.receive_maximum, shard_.config().limits.max_inflight_messages);
  return online() && inflight_.size() < window &&
         link_->unsent_bytes() <= shard_.limits().max_write_buffer_bytes;
}

std::uint16_t Session::next_packet_id() {
  // The window is at most 65535, so a free identifier always exists.
  return inflight_.free_id();
}

void Session::send_inflight(Delivery&& delivery) {
  const std::uint16_t packet_id = next_packet_id();
  if (delivery.qos == mqtt::QoS::kExactlyOnce && delivery.store_id != 0) {
    // Its packet id is stored before the PUBLISH goes: after a crash it is
    // resent with that id, which the client knows, not as a new message.
    store::WriteBatch batch;
    batch.add(store::WriteBatch::PutOutbound{
        outbound_record(client_id(), delivery, packet_id, Stage::kAwaitingPubrec)});
    inflight_.put(packet_id,
                  Inflight{std::move(delivery), next_sequence_++, Stage::kAwaitingPubrec, true});
    ++held_publishes_;
    return store_stage_then_send(packet_id, std::move(batch));
  }
  if (!write_publish(delivery, packet_id, false)) return drop(delivery);
  const Stage stage =
      delivery.qos == mqtt::QoS::kAtLeastOnce ? Stage::kAwaitingPuback : Stage::kAwaitingPubrec;
  // Not waited for: if the broker stops before this is stored, the message
  // is sent again as a new one, which QoS 1 allows.
  store_stage(delivery, packet_id, stage);
  inflight_.put(packet_id, Inflight{std::move(delivery), next_sequence_++, stage});
}

void Session::store_stage_then_send(std::uint16_t packet_id, store::WriteBatch&& batch) {
  // The committer keeps order, so entries held one after another are
  // released in that order: QoS 2 messages still go out as they came.
  const std::uint64_t sequence = inflight_.find(packet_id)->sequence;
  shard_.write_then(std::move(batch),
                    [&shard = shard_, session = id_, packet_id, sequence](bool /*durable*/) {
                      // A failed write is counted and logged by the committer;
                      // the exchange goes on as it would without a store.
                      if (Session* self = shard.find_session_by_id(session)) {
                        self->release_held(packet_id, sequence);
                      }
                    });
}

void Session::release_held(std::uint16_t packet_id, std::uint64_t sequence) {
  Inflight* entry = inflight_.find(packet_id);
  if (entry == nullptr || entry->sequence != sequence || !entry->held) return;
  entry->held = false;
  if (entry->stage == Stage::kAwaitingPubrec) --held_publishes_;
  if (!online()) return;  // resent when the client is back
  send_stage(packet_id, *entry, false);
  pump();  // what waited behind it
}

bool Session::send_stage(std::uint16_t packet_id, Inflight& entry, bool dup) {
  if (entry.stage == Stage::kAwaitingPubcomp) {
    link_->send_plain_ack(mqtt::PacketType::kPubrel, packet_id);
    return true;
  }
  if (write_publish(entry.delivery, packet_id, dup)) return true;
  drop(entry.delivery);
  inflight_.erase(packet_id);
  return false;
}

bool Session::write_publish(const Delivery& delivery, std::uint16_t packet_id, bool dup) {
  const Message& message = *delivery.message;
  // The rights of the client at hand decide, not those it had when it
  // subscribed or when the message was queued (as Mosquitto does).
  const auth::ClientAcl* acl = owner_ != nullptr ? owner_->read_acl() : nullptr;
  if (acl != nullptr && !acl->may_read(message.topic)) {
    note_drop(shard_.stats().dropped_not_authorized, "not_authorized", delivery);
    return false;
  }
  mqtt::PublishHead head;
  head.topic = message.topic;
  head.qos = delivery.qos;
  head.retain = delivery.retain;
  head.dup = dup;
  head.packet_id = packet_id;
  head.payload_bytes = message.payload.size();
  if (mqtt::is_v5(version_)) {
    head.shared_properties = message.encoded_properties;
    head.subscription_identifiers = delivery.identifiers;
    if (message.expires_at) head.message_expiry_interval = message.remaining_expiry_s(Clock::now());
    if (limits_.topic_alias_maximum > 0) {
      auto& aliases = outbound_aliases_.get();
      const auto it = aliases.find(message.topic);
      if (it != aliases.end()) {
        head.topic_alias = it->second;
        head.topic = {};
      } else if (aliases.size() < limits_.topic_alias_maximum) {
        head.topic_alias = static_cast<std::uint16_t>(aliases.size() + 1);
        aliases.emplace(message.topic, head.topic_alias);
      }
    }
  }
  // [MQTT-3.1.2-24] never more than the client accepts; [MQTT-3.1.2-25] a
  // message that does not fit is dropped as if it had been delivered.
  // 0: it cannot be encoded at all (a topic past 65,535 bytes).
  if (const std::size_t size = mqtt::publish_wire_size(head, version_);
      size == 0 || size > limits_.maximum_packet_size) {
    note_drop(shard_.stats().dropped_too_large, "too_large", delivery);
    if (head.topic_alias != 0 && !head.topic.empty()) outbound_aliases_.get().erase(message.topic);
    return false;
  }
  std::string traceparent;
  std::optional<Span> span;
  // Tracing turned off by a reload ends the spans of traces under way too.
  if (message.trace && shard_.broker().tracer() != nullptr) {
    // A copy with RETAIN set may be a retained message sent on a SUBSCRIBE
    // long after it was routed: its span covers its write only.
    span = child_span(*message.trace, "sluice.deliver", SpanKind::kProducer,
                      delivery.retain ? unix_nanos_now() : message.trace->routed_ns);
    if (mqtt::is_v5(version_)) {
      traceparent = format_traceparent({span->trace_id, span->span_id, true});
      head.traceparent = traceparent;
      if (const std::size_t size = mqtt::publish_wire_size(head, version_);
          size == 0 || size > limits_.maximum_packet_size) {
        head.traceparent = {};  // the trace gives way to the message
      }
    }
  }
  link_->send_publish(head, delivery.message);
  if (span) {
    span->end_ns = unix_nanos_now();
    span->attributes = {{"messaging.client.id", client_id()},
                        {"messaging.mqtt.qos", std::to_string(static_cast<int>(head.qos))},
                        {"sluice.dup", dup ? "true" : "false"}};
    message.trace->sink->record(std::move(*span));
  }
  ShardStats::add(shard_.stats().messages_sent_by_qos[std::min(static_cast<int>(head.qos), 2)]);
  return true;
}

void Session::resend_inflight() {
  std::vector<std::pair<std::uint64_t, std::uint16_t>> order;
  order.reserve(inflight_.size());
  inflight_.for_each([&](std::uint16_t packet_id, const Inflight& entry) {
    order.emplace_back(entry.sequence, packet_id);
  });
  std::sort(order.begin(), order.end());
  // A client may come back with a smaller Receive Maximum [MQTT-3.3.4-9]:
  // QoS 1 messages beyond it go back to the front of the queue. QoS 2 ones
  // keep their packet id, which the client may already hold.
  const std::size_t window =
      std::min<std::size_t>(limits_.receive_maximum, shard_.config().limits.max_inflight_messages);
  std::size_t resent = 0;
  std::vector<Delivery> requeued;
  for (const auto& [sequence, packet_id] : order) {
    Inflight& entry = *inflight_.find(packet_id);
    if (entry.held) {
      ++resent;  // sent once its stage is stored
    } else if (entry.stage != Stage::kAwaitingPubcomp &&
               entry.delivery.qos == mqtt::QoS::kAtLeastOnce && resent >= window) {
      requeued.push_back(std::move(entry.delivery));
      inflight_.erase(packet_id);
    } else if (send_stage(packet_id, entry, true)) {
      ++resent;
    }
  }
  if (shard_.config().limits.queue_full_policy == config::QueueFullPolicy::kRefusePublish) {
    for (Delivery& delivery : requeued) {  // back in the queue: places again, whatever the limit
      tag_->waiting.fetch_add(1, std::memory_order_acq_rel);
      delivery.reserved = true;
    }
  }
  queue_.push_front(std::move(requeued));
}

void Session::pump() {
  while (!queue_.empty() && can_send_now()) {
    if (behind_held(queue_.front())) break;
    Delivery delivery = queue_.pop_front();
    give_back(delivery);
    if (delivery.message->expired_now()) {
      note_drop(shard_.stats().dropped_expired, "expired", delivery);
      drop(delivery);
      continue;
    }
    if (delivery.qos == mqtt::QoS::kAtMostOnce) {
      if (!write_publish(delivery, 0, false)) drop(delivery);
    } else {
      send_inflight(std::move(delivery));
    }
  }
}

void Session::on_puback(std::uint16_t packet_id, mqtt::ReasonCode reason) {
  Inflight* entry = inflight_.find(packet_id);
  if (entry == nullptr || entry->stage != Stage::kAwaitingPuback) return;
  settle(entry->delivery, reason);
  forget(entry->delivery);  // delivered (or refused): nothing to keep
  inflight_.erase(packet_id);
  pump();
}

bool Session::on_pubrec(std::uint16_t packet_id, mqtt::ReasonCode reason) {
  Inflight* entry = inflight_.find(packet_id);
  if (entry == nullptr || entry->stage == Stage::kAwaitingPuback ||
      (entry->held && entry->stage == Stage::kAwaitingPubrec)) {  // not sent yet
    return false;
  }
  Delivery& delivery = entry->delivery;
  if (entry->stage == Stage::kAwaitingPubcomp) {  // a repeated PUBREC: settled already
    if (!entry->held) link_->send_plain_ack(mqtt::PacketType::kPubrel, packet_id);
    return true;
  }
  if (mqtt::is_error(reason)) {  // the client refused it: the flow ends here [MQTT-4.3.3]
    settle(delivery, reason);
    forget(delivery);
    inflight_.erase(packet_id);
    pump();
    return true;
  }
  entry->stage = Stage::kAwaitingPubcomp;
  settle(delivery, reason);  // received: the rest of the exchange only releases the id
  if (delivery.store_id == 0) {
    delivery.message.reset();  // only the packet id is needed from here on
    link_->send_plain_ack(mqtt::PacketType::kPubrel, packet_id);
    return true;
  }
  // The PUBREL waits for the new stage: sent before it is stored, a crash
  // would resend the PUBLISH to a client that already let go of its id.
  store::WriteBatch batch;
  batch.add(store::WriteBatch::PutOutbound{
      outbound_record(client_id(), delivery, packet_id, Stage::kAwaitingPubcomp)});
  release_stored_message(delivery, batch);
  delivery.message.reset();
  entry->held = true;
  store_stage_then_send(packet_id, std::move(batch));
  return true;
}

void Session::on_pubcomp(std::uint16_t packet_id) {
  Inflight* entry = inflight_.find(packet_id);
  if (entry == nullptr || entry->stage != Stage::kAwaitingPubcomp) return;
  if (const std::uint64_t id = entry->delivery.store_id; id != 0) {
    shard_.write_then(
        std::move(store::WriteBatch().add(store::WriteBatch::DeleteOutbound{client_id(), id})),
        nullptr);
  }
  inflight_.erase(packet_id);
  pump();
}

}  // namespace sluice::broker
