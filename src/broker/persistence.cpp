// Message <-> record, and the start-up load.
#include "broker/persistence.hpp"

#include <algorithm>
#include <unordered_map>
#include <vector>

#include "broker/broker.hpp"
#include "broker/queue_gateway.hpp"
#include "broker/shard.hpp"
#include "mqtt/packet_encoder.hpp"
#include "mqtt/property.hpp"
#include "mqtt/topic.hpp"

namespace sluice::broker {

std::int64_t wall_clock_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

std::int64_t wall_time_ms(Clock::time_point time) {
  return wall_clock_ms() -
         std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - time).count();
}

store::MessageRecord to_record(const Message& message) {
  store::MessageRecord record;
  record.topic = message.topic;
  record.payload = message.payload;
  record.qos = static_cast<std::uint8_t>(message.qos);
  record.retain = message.retain;
  record.properties = message.encoded_properties;
  if (message.expires_at) {
    const auto left =
        std::chrono::duration_cast<std::chrono::milliseconds>(*message.expires_at - Clock::now());
    record.expires_at_ms = wall_clock_ms() + left.count();
  }
  return record;
}

MessagePtr from_record(store::MessageRecord&& record, Clock::time_point now,
                       std::int64_t wall_now_ms) {
  auto message = std::make_shared<Message>();
  message->topic = std::move(record.topic);
  message->payload = std::move(record.payload);
  message->qos = static_cast<mqtt::QoS>(record.qos);
  message->retain = record.retain;
  message->encoded_properties = std::move(record.properties);
  if (record.expires_at_ms != 0) {
    message->expires_at = now + std::chrono::milliseconds(record.expires_at_ms - wall_now_ms);
  }
  return message;
}

store::OutboundRecord outbound_record(const std::string& client_id, const Delivery& delivery,
                                      std::uint16_t packet_id, store::OutboundRecord::Stage stage) {
  store::OutboundRecord record;
  record.client_id = client_id;
  record.message_id = delivery.store_id;
  record.qos = static_cast<std::uint8_t>(delivery.qos);
  record.retain = delivery.retain;
  record.identifiers = delivery.identifiers;
  record.packet_id = packet_id;
  record.stage = stage;
  return record;
}

void release_stored_message(const Delivery& delivery, store::WriteBatch& batch) {
  if (delivery.store_id != 0 && delivery.message && delivery.message->store_refs.release()) {
    batch.add(store::WriteBatch::DeleteMessage{delivery.store_id});
  }
}

store::SessionRecord session_record(const Session& session, std::int64_t disconnected_at_ms) {
  store::SessionRecord record;
  record.client_id = session.client_id();
  record.expiry_s = session.expiry_s();
  record.disconnected_at_ms = disconnected_at_ms;
  record.owner = session.owner_kind();
  if (const std::string* identity = session.identity()) record.identity = *identity;
  return record;
}

store::WillRecord will_record(const mqtt::Will& will) {
  store::WillRecord stored;
  stored.message.topic = will.topic;
  stored.message.payload = will.payload;
  stored.message.qos = static_cast<std::uint8_t>(will.qos);
  stored.message.retain = will.retain;
  mqtt::encode_property_block(will.properties, stored.message.properties);
  stored.delay_s = will.properties.will_delay_interval.value_or(0);
  return stored;
}

store::WriteBatch session_records(const Session& session, std::int64_t disconnected_at_ms) {
  store::WriteBatch batch;
  batch.add(store::WriteBatch::PutSession{session_record(session, disconnected_at_ms)});
  if (const mqtt::Will* will = session.will()) {
    batch.add(store::WriteBatch::PutWill{session.client_id(), will_record(*will)});
  } else {
    batch.add(store::WriteBatch::DeleteWill{session.client_id()});
  }
  return batch;
}

namespace {

// The will of a stored session, as CONNECT gave it; nullopt if its
// properties cannot be read back (then the session goes without its will).
std::optional<mqtt::Will> will_from_record(store::WillRecord&& record) {
  mqtt::Will will;
  will.topic = std::move(record.message.topic);
  will.payload = std::move(record.message.payload);
  will.qos = static_cast<mqtt::QoS>(std::min<int>(record.message.qos, 2));
  will.retain = record.message.retain;
  mqtt::ByteReader reader(record.message.properties);
  mqtt::read_properties(reader, mqtt::PropertyContext::kWill, will.properties);
  if (!reader.ok() || !reader.at_end()) return std::nullopt;
  return will;
}

}  // namespace

std::uint8_t options_byte(const mqtt::SubscriptionOptions& o) {
  return static_cast<std::uint8_t>(static_cast<unsigned>(o.max_qos) | (o.no_local ? 0x04u : 0u) |
                                   (o.retain_as_published ? 0x08u : 0u) |
                                   (static_cast<unsigned>(o.retain_handling) << 4));
}

mqtt::SubscriptionOptions options_from_byte(std::uint8_t byte) {
  mqtt::SubscriptionOptions o;
  o.max_qos = static_cast<mqtt::QoS>(std::min(byte & 0x03, 2));
  o.no_local = (byte & 0x04) != 0;
  o.retain_as_published = (byte & 0x08) != 0;
  o.retain_handling = static_cast<mqtt::RetainHandling>(std::min((byte >> 4) & 0x03, 2));
  return o;
}

namespace {

class StateLoader final : public store::LoadVisitor {
 public:
  explicit StateLoader(Broker& broker)
      : broker_(broker), now_(Clock::now()), wall_(wall_clock_ms()) {}
  LoadCounts counts;
  store::WriteBatch cleanup;  // what turned out expired or orphaned
  std::vector<store::SubscriptionRecord> queue_subscriptions;

  void session(store::SessionRecord&& record) override {
    Shard& shard = broker_.shard(broker_.shard_for_client(record.client_id));
    Session* session = shard.restore_session(record.client_id);
    session->set_expiry_s(record.expiry_s);
    session->set_stored(true);
    session->set_owner(record.owner, record.owner == store::SessionOwner::kNamed
                                         ? std::make_unique<std::string>(record.identity)
                                         : nullptr);
    // A session that was connected when the broker stopped counts as
    // disconnected now; otherwise from when it was.
    const std::int64_t away_ms = record.disconnected_at_ms == 0
                                     ? 0
                                     : std::max<std::int64_t>(0, wall_ - record.disconnected_at_ms);
    const Clock::time_point offline_since = now_ - std::chrono::milliseconds(away_ms);
    shard.session_went_offline(*session, offline_since);
    ++counts.sessions;
  }

  void will(const std::string& client_id, store::WillRecord&& record) override {
    Session* session = find(client_id);
    if (session == nullptr) {
      cleanup.add(store::WriteBatch::DeleteWill{client_id});
      return;
    }
    // A will still pending goes out after its delay, counted from the
    // disconnection (the tick publishes it if that time has passed).
    const std::uint32_t delay = std::min(record.delay_s, session->expiry_s());
    session->set_will(will_from_record(std::move(record)));
    if (session->will()) {
      session->arm_will(*session->offline_since() + std::chrono::seconds(delay));
    }
  }

  void subscription(store::SubscriptionRecord&& record) override {
    Session* session = find(record.client_id);
    if (session == nullptr) return;
    const auto shared = mqtt::parse_shared_filter(record.filter);
    if (QueueGateway::addresses(shared ? shared->filter : std::string_view(record.filter))) {
      queue_subscriptions.push_back(std::move(record));
      return;
    }
    const mqtt::SubscriptionOptions options = options_from_byte(record.options);
    broker_.index().subscribe(record.filter, {session->ref(), options, record.identifier},
                              session->tag());
    session->subscriptions()[record.filter] = SubscriptionRecord{options, record.identifier};
    ++counts.subscriptions;
  }

  // Outbound records come before the messages they name: they wait here.
  void outbound(store::OutboundRecord&& record) override {
    max_id_ = std::max(max_id_, record.message_id);
    outbound_.push_back(std::move(record));
  }

  void inbound(const std::string& client_id, std::uint16_t packet_id) override {
    Session* session = find(client_id);
    if (session == nullptr) {
      cleanup.add(store::WriteBatch::DeleteInbound{client_id, packet_id});
      return;
    }
    session->begin_inbound_qos2(packet_id);
    ++counts.inbound;
  }

  void message(std::uint64_t id, store::MessageRecord&& record) override {
    max_id_ = std::max(max_id_, id);
    MessagePtr message = from_record(std::move(record), now_, wall_);
    if (message->expired(now_)) {
      cleanup.add(store::WriteBatch::DeleteMessage{id});
      return;
    }
    messages_.emplace(id, std::move(message));
  }

  void retained(store::MessageRecord&& record) override {
    MessagePtr message = from_record(std::move(record), now_, wall_);
    if (message->expired(now_)) {
      cleanup.add(store::WriteBatch::DeleteRetained{message->topic});
      return;
    }
    if (broker_.retained().set(message) == RetainedStore::SetResult::kStored) ++counts.retained;
  }

  // After the last record: hands each outbound record its message and its
  // session, and deletes what nothing refers to.
  void finish() {
    std::unordered_map<std::uint64_t, std::uint32_t> refs;
    for (store::OutboundRecord& record : outbound_) {
      Session* session = find(record.client_id);
      Delivery delivery;
      delivery.qos = static_cast<mqtt::QoS>(std::min<int>(record.qos, 2));
      delivery.retain = record.retain;
      delivery.identifiers = std::move(record.identifiers);
      delivery.store_id = record.message_id;
      const bool released = record.stage == store::OutboundRecord::Stage::kAwaitingPubcomp;
      const auto message = messages_.find(record.message_id);
      if (!released && message != messages_.end()) delivery.message = message->second;
      const bool usable = session != nullptr && (released || delivery.message);
      if (!usable ||
          !session->restore_outbound(std::move(delivery), record.packet_id, record.stage)) {
        cleanup.add(store::WriteBatch::DeleteOutbound{record.client_id, record.message_id});
        continue;
      }
      if (!released) ++refs[record.message_id];
      ++counts.outbound;
    }
    for (const auto& [id, message] : messages_) {
      const auto held = refs.find(id);
      if (held == refs.end()) {
        cleanup.add(store::WriteBatch::DeleteMessage{id});
      } else {
        message->store_refs.set(held->second);
        ++counts.messages;
      }
    }
    counts.removed = cleanup.size();
    broker_.set_next_message_id(max_id_ + 1);
  }

 private:
  Session* find(const std::string& client_id) {
    return broker_.shard(broker_.shard_for_client(client_id)).find_session(client_id);
  }

  Broker& broker_;
  Clock::time_point now_;
  std::int64_t wall_;
  std::vector<store::OutboundRecord> outbound_;
  std::unordered_map<std::uint64_t, MessagePtr> messages_;
  std::uint64_t max_id_ = 0;
};

}  // namespace

store::Status load_state(store::Store& store, Broker& broker, LoadCounts& counts,
                         std::vector<store::SubscriptionRecord>& queue_subscriptions) {
  StateLoader loader(broker);
  store::Status status = store.load(loader);
  if (!status.ok) return status;
  loader.finish();
  counts = loader.counts;
  queue_subscriptions = std::move(loader.queue_subscriptions);
  if (!loader.cleanup.empty()) status = store.write(loader.cleanup, true);
  return status;
}

RestoredQueueSubscriptions restore_queue_subscriptions(
    Broker& broker, std::vector<store::SubscriptionRecord>&& records, store::WriteBatch& cleanup) {
  QueueGateway* queues = broker.queues();
  RestoredQueueSubscriptions restored;
  for (store::SubscriptionRecord& record : records) {
    Shard& shard = broker.shard(broker.shard_for_client(record.client_id));
    Session* session = shard.find_session(record.client_id);
    if (session == nullptr) continue;
    mqtt::Properties properties;
    mqtt::ByteReader reader(record.queue_properties);
    if (!record.queue_properties.empty())
      mqtt::read_properties(reader, mqtt::PropertyContext::kSubscribe, properties);
    const auto shared = mqtt::parse_shared_filter(record.filter);
    if (shared && !broker.config().mqtt.shared_subscriptions) {
      cleanup.add(store::WriteBatch::DeleteSubscription{record.client_id, record.filter});
      restored.dropped.push_back({std::move(record.client_id), std::move(record.filter),
                                  mqtt::ReasonCode::kSharedSubscriptionsNotSupported});
      continue;
    }
    QueueGateway::ConsumerSpec consumer;
    consumer.session = session->ref();
    consumer.filter = record.filter;
    consumer.address = shared ? shared->filter : std::string_view(record.filter);
    consumer.share_group = shared ? shared->group : std::string_view();
    consumer.properties = &properties;
    consumer.max_qos = options_from_byte(record.options).max_qos;
    consumer.restored = true;  // its form and pace come with session_online
    const mqtt::ReasonCode granted = !reader.ok() || !reader.at_end()
                                         ? mqtt::ReasonCode::kMalformedPacket
                                     : queues != nullptr ? queues->subscribe(shard, consumer)
                                                         : mqtt::ReasonCode::kTopicFilterInvalid;
    if (mqtt::is_error(granted)) {
      cleanup.add(store::WriteBatch::DeleteSubscription{record.client_id, record.filter});
      restored.dropped.push_back({std::move(record.client_id), std::move(record.filter), granted});
      continue;
    }
    const mqtt::SubscriptionOptions options{static_cast<mqtt::QoS>(granted)};
    session->subscriptions().insert_or_assign(record.filter, SubscriptionRecord{options, 0});
    session->set_has_queue_subscriptions();
    ++restored.made;
  }
  return restored;
}

store::Bytes queue_subscription_properties(const mqtt::Properties& properties) {
  mqtt::Properties kept;
  kept.user_properties = properties.user_properties;
  store::Bytes out;
  if (!kept.user_properties.empty()) mqtt::encode_property_block(kept, out);
  return out;
}

}  // namespace sluice::broker
