// The rules of sections 3 and 4 of the MQTT specification that concern one
// client's connection, packet by packet.
#include "broker/client_protocol.hpp"

#include "broker/persistence.hpp"
#include "broker/queue_gateway.hpp"
#include "broker/shard.hpp"
#include "mqtt/topic.hpp"
#include "mqtt/utf8.hpp"

namespace sluice::broker {
namespace {

// A QoS 2 publish refused after its PUBLISH was taken: its packet id is free
// again, in memory and in the store, so that the next PUBLISH under it (a
// new message, or the same one sent again) is routed, not taken for a resend.
void release_refused_qos2(Shard& shard, std::uint64_t session_id, std::uint16_t packet_id) {
  Session* session = shard.find_session_by_id(session_id);
  if (session != nullptr && session->release_inbound_qos2(packet_id) && session->stored() &&
      shard.has_store()) {
    shard.write_then(std::move(store::WriteBatch().add(
                         store::WriteBatch::DeleteInbound{session->client_id(), packet_id})),
                     nullptr);
  }
}

using mqtt::ProtocolVersion;
using mqtt::QoS;
using mqtt::ReasonCode;

}  // namespace

ClientProtocol::ClientProtocol(Shard& shard, ClientLink& link) : shard_(shard), link_(link) {}

ClientProtocol::~ClientProtocol() {
  if (acks_) acks_->detach();
  if (session_ != nullptr) leave_session(acknowledged_);  // no will before the CONNACK
  if (counted_) shard_.broker().connections().fetch_sub(1);
}

const std::string& ClientProtocol::client_id() const {
  static const std::string kNone;
  return session_ != nullptr ? session_->client_id() : kNone;
}

Event ClientProtocol::event(EventKind kind, std::string_view client_id) const {
  Event e;
  e.kind = kind;
  e.client_id = std::string(client_id);
  if (identity_) e.username = *identity_;
  e.address = rare_ && !rare_->address.empty() ? rare_->address : link_.peer_address();
  e.protocol = mqtt::to_string(version_);
  return e;
}

void ClientProtocol::emit(Event&& e) const {
  shard_.broker().emit(std::move(e));
}

void ClientProtocol::send_ack(mqtt::Packet&& packet) {
  if (acks_) return acks_->send(std::move(packet));
  link_.send(packet);  // nothing ever waited for the store on this connection
}

void ClientProtocol::send_plain_ack(mqtt::PacketType type, std::uint16_t packet_id) {
  if (acks_ && acks_->holding()) {  // behind those waiting for the store: the slow way
    return acks_->send(mqtt::plain_ack_packet(type, packet_id));
  }
  link_.send_plain_ack(type, packet_id);
}

AckQueue& ClientProtocol::deferred_acks() {
  // Made on first use: most connections never wait for the store.
  if (!acks_) acks_ = std::make_shared<AckQueue>(link_, mqtt::is_v5(version_));
  return *acks_;
}

bool ClientProtocol::within_rate(std::optional<auth::TokenBucket>* bucket) {
  return bucket == nullptr || !*bucket || (*bucket)->take(Clock::now());
}

// ---- the end of a connection ------------------------------------------------

void ClientProtocol::close() {
  closing_ = true;
  link_.close();
}

void ClientProtocol::disconnect_with(ReasonCode reason, const char* reason_string) {
  if (closing_) return;
  if (!acknowledged_) {
    // Before the CONNACK the answer is a CONNACK, where the reason may be one,
    // and a client never acknowledged leaves no will.
    if (session_ != nullptr) leave_session(false);
    if (connect_seen_ && mqtt::is_v5(version_) &&
        mqtt::reason_code_allowed(reason, mqtt::PacketType::kConnack)) {
      return refuse_connect(version_, reason, reason_string);
    }
    return close();
  }
  if (mqtt::is_v5(version_)) {
    mqtt::Disconnect disconnect{reason, {}};
    if (reason_string != nullptr) disconnect.properties.reason_string = reason_string;
    link_.send(disconnect);
  }
  if (session_ != nullptr) leave_session(true);
  close();
}

void ClientProtocol::leave_session(bool publish_will) {
  Session& session = *session_;
  if (const HeldPublish* held = held_publish(); held != nullptr && held->qos == QoS::kExactlyOnce) {
    // Never routed: a resend after reconnecting must be taken as new (those
    // waiting behind it never reached the QoS 2 bookkeeping).
    session.release_inbound_qos2(held->packet_id);
  }
  if (rare_) {
    rare_->held_publish.reset();
    rare_->waiting.reset();
  }
  session_ = nullptr;
  if (acknowledged_) ShardStats::sub(shard_.stats().clients_connected);
  if (acknowledged_ && shard_.broker().wants(EventKind::kClientDisconnected)) {
    Event e = event(EventKind::kClientDisconnected, session.client_id());
    // A will goes out for an end the client did not ask for.
    e.reason = publish_will ? "abnormal" : "normal";
    emit(std::move(e));
  }
  const Clock::time_point now = Clock::now();
  if (!publish_will) session.take_will();
  // What its queue consumers hold goes back to their queues before the
  // session lets go of those deliveries.
  if (session.has_queue_subscriptions()) {
    if (QueueGateway* queues = shard_.broker().queues())
      queues->session_offline(shard_, session.ref());
  }
  // Offline first, so that a will matching the client's own subscriptions is
  // queued for its session rather than written to the closing connection.
  if (session.expiry_s() == 0) {
    session.detach(now);
  } else {
    shard_.session_went_offline(session, now);
  }
  if (session.will()) {
    const std::uint32_t delay = session.will()->properties.will_delay_interval.value_or(0);
    if (delay == 0 || session.expiry_s() == 0) {
      shard_.publish_will(session);
    } else {
      session.arm_will(now + std::chrono::seconds(std::min(delay, session.expiry_s())));
    }
  }
  if (session.expiry_s() == 0) return shard_.end_session(session);
  if (session.stored()) shard_.write_then(session_records(session, wall_clock_ms()), nullptr);
}

void ClientProtocol::on_decode_error(const mqtt::DecodeError& error,
                                     std::optional<ProtocolVersion> connect_version) {
  if (closing_) return;
  if (connect_version) {
    // 3.x answers a bad CONNECT with a CONNACK only for an unknown protocol
    // level [MQTT-3.1.2-2]; otherwise it just closes [MQTT-3.1.4-1].
    if (mqtt::is_v5(*connect_version) || error.code == ReasonCode::kUnsupportedProtocolVersion) {
      return refuse_connect(*connect_version, error.code, error.detail);
    }
    return close();
  }
  disconnect_with(error.code, error.detail);
}

void ClientProtocol::on_connection_lost() {
  // A client never acknowledged (its CONNECT still waiting) leaves no will.
  if (session_ != nullptr) leave_session(acknowledged_);
  closing_ = true;
}

void ClientProtocol::on_keep_alive_expired() {
  disconnect_with(ReasonCode::kKeepAliveTimeout);
}

void ClientProtocol::on_server_shutdown() {
  if (closing_) return;
  if (mqtt::is_v5(version_) && acknowledged_) {
    // With a server reference configured, the client is told where to go.
    const std::string& elsewhere = shard_.config().shutdown.server_reference;
    mqtt::Disconnect disconnect{
        elsewhere.empty() ? ReasonCode::kServerShuttingDown : ReasonCode::kServerMoved, {}};
    if (!elsewhere.empty()) disconnect.properties.server_reference = elsewhere;
    link_.send(disconnect);
  }
  if (session_ != nullptr) leave_session(false);
  close();
}

void ClientProtocol::on_taken_over() {
  if (session_ != nullptr && shard_.broker().wants(EventKind::kSessionTakenOver))
    emit(event(EventKind::kSessionTakenOver, session_->client_id()));
  disconnect_with(ReasonCode::kSessionTakenOver);
}

void ClientProtocol::on_administrative_disconnect() {
  disconnect_with(ReasonCode::kAdministrativeAction, "disconnected by an operator");
}

void ClientProtocol::on_cluster_unavailable() {
  disconnect_with(ReasonCode::kServerBusy, "this node lost its place in the cluster");
}

void ClientProtocol::on_queue_moved(const std::string& why) {
  disconnect_with(ReasonCode::kUseAnotherServer, why.c_str());
}

void ClientProtocol::on_writable() {
  if (session_ != nullptr) session_->pump();
}

// ---- packets after CONNECT --------------------------------------------------

void ClientProtocol::on_packet(mqtt::Packet&& packet) {
  if (closing_) return;
  if (auto* connect = std::get_if<mqtt::Connect>(&packet)) {
    return connect_seen_ ? disconnect_with(ReasonCode::kProtocolError, "second CONNECT")
                         : on_connect(std::move(*connect));
  }
  if (pending_connect() != nullptr) {
    if (const auto* auth = std::get_if<mqtt::Auth>(&packet)) return on_auth(*auth);
  }
  if (!admit_packet()) return;
  std::visit(
      [&](auto& p) {
        using T = std::decay_t<decltype(p)>;
        if constexpr (std::is_same_v<T, mqtt::Publish>) {
          on_publish(std::move(p));
        } else if constexpr (std::is_same_v<T, mqtt::Puback>) {
          session_->on_puback(p.packet_id, p.reason);
        } else if constexpr (std::is_same_v<T, mqtt::Pubrec>) {
          on_pubrec(p.packet_id, p.reason);
        } else if constexpr (std::is_same_v<T, mqtt::Pubrel>) {
          on_pubrel(p);
        } else if constexpr (std::is_same_v<T, mqtt::Pubcomp>) {
          session_->on_pubcomp(p.packet_id);
        } else if constexpr (std::is_same_v<T, mqtt::Subscribe>) {
          on_subscribe(std::move(p));
        } else if constexpr (std::is_same_v<T, mqtt::Unsubscribe>) {
          on_unsubscribe(p);
        } else if constexpr (std::is_same_v<T, mqtt::Pingreq>) {
          link_.send(mqtt::Pingresp{});
        } else if constexpr (std::is_same_v<T, mqtt::Disconnect>) {
          on_disconnect(p);
        } else if constexpr (std::is_same_v<T, mqtt::Auth>) {
          on_auth(p);
        } else {
          // CONNACK, SUBACK, UNSUBACK, PINGRESP: the server's packets.
          disconnect_with(ReasonCode::kProtocolError, "packet only a server sends");
        }
      },
      packet);
}

bool ClientProtocol::admit_packet() {
  if (closing_) return false;
  // Between CONNECT and CONNACK only AUTH may come (section 4.12).
  if (pending_connect() != nullptr) {
    disconnect_with(ReasonCode::kProtocolError);
    return false;
  }
  if (!connected()) {  // [MQTT-3.1.0-1] CONNECT comes first
    close();
    return false;
  }
  return true;
}

void ClientProtocol::on_publish_packet(mqtt::Publish&& publish) {
  if (admit_packet()) on_publish(std::move(publish));
}

void ClientProtocol::on_plain_ack(mqtt::PacketType type, std::uint16_t packet_id) {
  if (!admit_packet()) return;
  switch (type) {
    case mqtt::PacketType::kPuback:
      return session_->on_puback(packet_id, ReasonCode::kSuccess);
    case mqtt::PacketType::kPubrec:
      return on_pubrec(packet_id, ReasonCode::kSuccess);
    default:
      return session_->on_pubcomp(packet_id);
  }
}

void ClientProtocol::on_pubrec(std::uint16_t packet_id, ReasonCode reason) {
  if (!session_->on_pubrec(packet_id, reason)) {
    link_.send(mqtt::Pubrel{packet_id, ReasonCode::kPacketIdentifierNotFound, {}});
  }
}

bool ClientProtocol::resolve_topic_alias(mqtt::Publish& publish) {
  if (!publish.properties.topic_alias) return true;
  const std::uint16_t alias = *publish.properties.topic_alias;
  if (alias == 0 || alias > shard_.config().limits.topic_alias_maximum) {
    disconnect_with(ReasonCode::kTopicAliasInvalid, "Topic Alias out of range");
    return false;
  }
  if (!publish.topic.empty()) {
    inbound_aliases_.get()[alias] = publish.topic;
    return true;
  }
  const std::string* topic = nullptr;
  if (const auto* aliases = inbound_aliases_.find()) {
    if (const auto it = aliases->find(alias); it != aliases->end()) topic = &it->second;
  }
  if (topic == nullptr) {
    disconnect_with(ReasonCode::kProtocolError, "Topic Alias has no topic yet");
    return false;
  }
  publish.topic = *topic;
  return true;
}

std::optional<mqtt::Packet> ClientProtocol::publish_ack(QoS qos, std::uint16_t packet_id,
                                                        ReasonCode reason) const {
  if (!mqtt::is_v5(version_) && mqtt::is_error(reason)) reason = ReasonCode::kSuccess;  // 3.x
  if (qos == QoS::kAtLeastOnce) return mqtt::Puback{packet_id, reason, {}};
  if (qos == QoS::kExactlyOnce) return mqtt::Pubrec{packet_id, reason, {}};
  return std::nullopt;
}

void ClientProtocol::acknowledge_publish(QoS qos, std::uint16_t packet_id, ReasonCode reason) {
  if (qos == QoS::kAtMostOnce) return;
  if (reason == ReasonCode::kSuccess || (!mqtt::is_v5(version_) && mqtt::is_error(reason))) {
    return send_plain_ack(
        qos == QoS::kAtLeastOnce ? mqtt::PacketType::kPuback : mqtt::PacketType::kPubrec,
        packet_id);
  }
  if (auto ack = publish_ack(qos, packet_id, reason)) send_ack(std::move(*ack));
}

void ClientProtocol::on_publish(mqtt::Publish&& publish) {
  if (closing_ || session_ == nullptr) return;
  if (held_publish() != nullptr) return wait_behind_held(std::move(publish));
  const config::Config& config = shard_.config();
  ShardStats::add(
      shard_.stats().messages_received_by_qos[std::min(static_cast<int>(publish.qos), 2)]);
  if (!resolve_topic_alias(publish)) return;
  if (static_cast<std::uint8_t>(publish.qos) > config.mqtt.max_qos) {
    return disconnect_with(ReasonCode::kQoSNotSupported);  // §3.2.2.3.4
  }
  if (publish.retain && !config.mqtt.retain_available) {
    return disconnect_with(ReasonCode::kRetainNotSupported);  // §3.2.2.3.5
  }
  if (!publish.properties.subscription_identifiers.empty()) {
    return disconnect_with(ReasonCode::kProtocolError, "Subscription Identifier from a client");
  }
  if (publish.qos == QoS::kExactlyOnce) {
    if (!session_->begin_inbound_qos2(publish.packet_id)) {
      return acknowledge_publish(publish.qos, publish.packet_id,
                                 ReasonCode::kSuccess);  // a resend: not routed again
    }
    if (session_->inbound_qos2_pending() > config.limits.receive_maximum) {
      session_->release_inbound_qos2(publish.packet_id);  // a resend after reconnect is new
      return disconnect_with(ReasonCode::kReceiveMaximumExceeded);  // §3.3.4
    }
  }
  if (mqtt::topic_levels(publish.topic) > shard_.limits().max_topic_levels) {
    session_->release_inbound_qos2(publish.packet_id);
    if (!mqtt::is_v5(version_)) return disconnect_with(ReasonCode::kTopicNameInvalid);
    return acknowledge_publish(publish.qos, publish.packet_id, ReasonCode::kTopicNameInvalid);
  }
  if (mqtt::is_sys_topic(publish.topic) ||  // $SYS belongs to the broker
      (acl_ && !acl_->may_publish(publish.topic))) {
    // Dropped; 5.0 is told why, 3.x (no negative PUBACK) is acknowledged.
    session_->release_inbound_qos2(publish.packet_id);
    ShardStats::add(shard_.stats().authz_denied);
    if (shard_.broker().wants(EventKind::kAuthzDenied)) {
      Event e = event(EventKind::kAuthzDenied, client_id());
      e.topic = publish.topic;
      e.reason = "publish";
      emit(std::move(e));
    }
    return acknowledge_publish(publish.qos, publish.packet_id, ReasonCode::kNotAuthorized);
  }
  if (!within_rate(rates_ ? &rates_->publishes : nullptr)) {
    // Dropped; 5.0 is told why (0x96), 3.x is acknowledged as for any refusal.
    ShardStats::add(shard_.stats().rejected_publishes);
    session_->release_inbound_qos2(publish.packet_id);
    return acknowledge_publish(publish.qos, publish.packet_id, ReasonCode::kMessageRateTooHigh);
  }
  if (publish.properties.payload_format_indicator == 1 &&
      mqtt::check_utf8({reinterpret_cast<const char*>(publish.payload.data()),
                        publish.payload.size()}) != mqtt::Utf8Check::kValid) {
    session_->release_inbound_qos2(publish.packet_id);
    return acknowledge_publish(publish.qos, publish.packet_id, ReasonCode::kPayloadFormatInvalid);
  }

  // Built before routing takes the message, told once routing took it.
  std::optional<Event> published;
  if (shard_.broker().wants(EventKind::kMessagePublished) &&
      shard_.broker().wants_message(publish.topic)) {
    // Asked of the socket once, not per publish.
    if (rare().address.empty()) rare_->address = link_.peer_address();
    published = event(EventKind::kMessagePublished, client_id());
    published->topic = publish.topic;
    published->qos = static_cast<int>(publish.qos);
    published->retain = publish.retain;
    published->payload = publish.payload;
  }
  const QoS qos = publish.qos;
  const std::uint16_t packet_id = publish.packet_id;
  store::WriteBatch inbound = inbound_write(publish);
  if (QueueGateway::addresses(publish.topic)) {
    return publish_to_queue(std::move(publish), std::move(inbound));
  }
  // Traced (broker/trace.hpp): its receive span ends once routing has it.
  std::optional<PublishTrace> trace;
  if (SpanSink* tracer = shard_.broker().tracer()) {
    trace = start_publish_trace(*tracer, publish.properties, publish.topic, client_id(),
                                static_cast<int>(qos));
  }
  const auto end_receive = [&] {
    if (!trace) return;
    trace->receive.end_ns = unix_nanos_now();
    trace->message->sink->record(std::move(trace->receive));
  };
  HeldPublish routing{make_message(std::move(publish), session_->id(), session_->client_hash(),
                                   trace ? trace->message : nullptr),
                      qos,
                      packet_id,
                      std::move(inbound),
                      {},
                      nullptr,
                      std::nullopt};
  if (route_publish(routing)) {
    end_receive();
    if (published) emit(std::move(*published));
    return;
  }
  end_receive();
  // Refused: a subscriber's queue is full and queue_full_policy is refuse_publish.
  ShardStats::add(shard_.stats().refused_queue_full);
  if (mqtt::is_v5(version_)) {
    session_->release_inbound_qos2(packet_id);
    return acknowledge_publish(qos, packet_id, ReasonCode::kQuotaExceeded);
  }
  // 3.x has no negative acknowledgement: the message waits until there is
  // room (the shard tries it again) or its time is up. The client's other
  // packets go on (its acknowledgements may be what frees the room); its
  // next PUBLISH waits behind this one.
  routing.since = Clock::now();  // read only here: most messages never wait
  rare().held_publish = std::make_unique<HeldPublish>(std::move(routing));
  shard_.hold_publisher(weak_self());
}

store::WriteBatch ClientProtocol::inbound_write(const mqtt::Publish& publish) const {
  store::WriteBatch inbound;
  if (publish.qos == QoS::kExactlyOnce && session_->stored() && shard_.has_store()) {
    // Kept until PUBREL, so that a resend after a restart is not routed twice.
    inbound.add(store::WriteBatch::PutInbound{session_->client_id(), publish.packet_id});
  }
  return inbound;
}

void ClientProtocol::publish_to_queue(mqtt::Publish&& publish, store::WriteBatch&& inbound) {
  const QoS qos = publish.qos;
  const std::uint16_t packet_id = publish.packet_id;
  // Deferred now, so that it keeps its place among this client's acknowledgements.
  std::optional<std::uint64_t> ack;
  if (qos != QoS::kAtMostOnce) {
    ack = deferred_acks().defer(*publish_ack(qos, packet_id, ReasonCode::kSuccess));
  }
  const QueueGateway::Outcome refused = offer_to_queue(publish, std::move(inbound), ack);
  if (refused.reason == ReasonCode::kSuccess) return;
  if (!mqtt::is_v5(version_) && refused.full && qos == QoS::kAtMostOnce) {
    ShardStats::add(shard_.stats().rejected_publishes);  // at most once: dropped, counted
    return;
  }
  if (!mqtt::is_v5(version_) && refused.full) {
    // A 3.x publisher cannot be told the queue is full: its publish waits
    // for room (the shard tries it again), as for a full session queue.
    ShardStats::add(shard_.stats().refused_queue_full);
    auto held = std::make_unique<HeldPublish>(
        HeldPublish{nullptr,
                    qos,
                    packet_id,
                    {},
                    Clock::now(),
                    std::make_unique<mqtt::Publish>(std::move(publish)),
                    ack});
    rare().held_publish = std::move(held);
    shard_.hold_publisher(weak_self());
    return;
  }
  session_->release_inbound_qos2(packet_id);
  ShardStats::add(shard_.stats().rejected_publishes);
  // Otherwise 3.x cannot be told: the connection goes (docs/queues.md).
  if (!mqtt::is_v5(version_)) return disconnect_with(refused.reason);
  if (ack) deferred_acks().complete(*ack, refused.reason, refused.reason_string);
}

QueueGateway::Outcome ClientProtocol::offer_to_queue(mqtt::Publish& publish,
                                                     store::WriteBatch&& inbound,
                                                     std::optional<std::uint64_t> ack) {
  QueueGateway* queues = shard_.broker().queues();
  if (queues == nullptr) return {ReasonCode::kTopicNameInvalid, "no queues on this broker"};
  return queues->publish(
      shard_, session_->ref(), publish, std::move(inbound),
      [acks = std::weak_ptr<AckQueue>(acks_), ack, shard = &shard_, session_id = session_->id(),
       qos = publish.qos, packet_id = publish.packet_id](ReasonCode reason, std::string text) {
        const auto alive = acks.lock();
        // Refused after the fact (the queue's home in a cluster said no, or
        // did not answer): nothing was appended, so the same message sent
        // again under this id, by any client version, must be appended. Only
        // while this connection lasts: its PUBREC still waits here, so the
        // id cannot have been completed and used again meanwhile.
        if (alive && mqtt::is_error(reason) && qos == QoS::kExactlyOnce)
          release_refused_qos2(*shard, session_id, packet_id);
        if (ack && alive) alive->complete(*ack, reason, text);
      });
}

bool ClientProtocol::route_publish(HeldPublish& publish, bool retry) {
  bool refused = false;
  const MessageTrace* trace = publish.message->trace.get();
  const std::uint64_t route_start = trace != nullptr ? unix_nanos_now() : 0;
  std::size_t receivers = 0;
  shard_.publish(
      publish.message, std::move(publish.inbound),
      [&](Shard::Routed routed, store::WriteBatch&& batch) {
        if (routed.refused) {
          refused = true;
          publish.inbound = std::move(batch);  // the caller's own changes, for another try
          return;
        }
        receivers = routed.receivers;
        const ReasonCode reason = routed.receivers == 0 && !routed.captured && mqtt::is_v5(version_)
                                      ? ReasonCode::kNoMatchingSubscribers
                                      : ReasonCode::kSuccess;
        if (batch.empty() && !routed.remote)
          return acknowledge_publish(publish.qos, publish.packet_id, reason);
        std::function<void(bool)> stored = std::move(routed.captured);
        if (publish.message->trace) {
          stored = trace_store_commit(publish.message->trace, std::move(stored));
        }
        if (routed.remote) {
          return acknowledge_after_nodes(std::move(batch), publish.qos, publish.packet_id, reason,
                                         std::move(stored), std::move(routed.remote));
        }
        // The acknowledgement is a promise: it waits until the batch is stored.
        write_then_acknowledge(std::move(batch),
                               publish_ack(publish.qos, publish.packet_id, reason),
                               std::move(stored));
      },
      /*may_refuse=*/true);
  // A held publish is tried again at every turn of its worker: its failed
  // tries are one span, the first, not one each.
  if (trace != nullptr && (!retry || !refused)) {
    Span span = child_span(*trace, "sluice.route", SpanKind::kInternal, route_start);
    span.end_ns = unix_nanos_now();
    span.failed = refused;
    span.attributes = {{"sluice.receivers", std::to_string(receivers)}};
    trace->sink->record(std::move(span));
  }
  return !refused;
}

bool ClientProtocol::retry_held_publish(Clock::time_point now) {
  if (held_publish() == nullptr || closing_ || session_ == nullptr) return false;
  HeldPublish& held = *rare_->held_publish;
  // Tried once more before its time is up: room that came at the last moment counts.
  bool still_full = false;
  if (held.to_queue) {
    const QueueGateway::Outcome outcome =
        offer_to_queue(*held.to_queue, inbound_write(*held.to_queue), held.queue_ack);
    if (outcome.reason != ReasonCode::kSuccess && !outcome.full) {
      session_->release_inbound_qos2(held.packet_id);
      rare_->held_publish.reset();
      disconnect_with(outcome.reason);
      return false;
    }
    still_full = outcome.full;
  } else {
    still_full = !route_publish(held, /*retry=*/true);
  }
  if (still_full) {
    if (now - held.since <= std::chrono::seconds(shard_.limits().queue_full_timeout_s)) return true;
    // A resend after reconnecting must be routed, not taken for a duplicate.
    if (held.qos == QoS::kExactlyOnce) session_->release_inbound_qos2(held.packet_id);
    rare_->held_publish.reset();
    disconnect_with(ReasonCode::kQuotaExceeded, "queue full for too long");
    return false;
  }
  rare_->held_publish.reset();
  // Those that waited behind it, in order, until one is held in its turn
  // (it is then the shard's to retry again) or one ends the connection.
  while (rare_ && rare_->waiting && !rare_->waiting->publishes.empty() &&
         held_publish() == nullptr && !closing_ && session_ != nullptr) {
    mqtt::Publish next = std::move(rare_->waiting->publishes.front());
    rare_->waiting->publishes.pop_front();
    rare_->waiting->bytes -= waiting_cost(next);
    on_publish(std::move(next));
  }
  if (closing_ || session_ == nullptr) return false;
  if (held_publish() == nullptr) rare_->waiting.reset();
  if (!rare_->waiting || rare_->waiting->bytes <= shard_.limits().max_write_buffer_bytes) {
    link_.release_input();  // if it was held: the waiting ones are below the bound again
  }
  trim_rare();
  return false;
}

std::size_t ClientProtocol::waiting_cost(const mqtt::Publish& publish) {
  // What it holds in memory, not on the wire: an empty PUBLISH still costs
  // its Publish (properties and all).
  return sizeof(mqtt::Publish) + publish.topic.size() + publish.payload.size();
}

void ClientProtocol::wait_behind_held(mqtt::Publish&& publish) {
  // The client's acknowledgements and PINGREQs go on being read (they may be
  // what frees the room); its PUBLISHes wait, in order, up to a bound, and
  // past it the client is not read from at all.
  auto& waiting = rare().waiting;
  if (!waiting) waiting = std::make_unique<WaitingPublishes>();
  waiting->bytes += waiting_cost(publish);
  waiting->publishes.push_back(std::move(publish));
  if (waiting->bytes > shard_.limits().max_write_buffer_bytes) link_.hold_input();
}

void ClientProtocol::acknowledge_after_nodes(store::WriteBatch&& batch, QoS qos,
                                             std::uint16_t packet_id, ReasonCode reason,
                                             std::function<void(bool durable)> also,
                                             std::shared_ptr<RemoteAcks> remote) {
  const std::uint64_t id = deferred_acks().defer(*publish_ack(qos, packet_id, reason));
  remote->when_done([weak = std::weak_ptr<AckQueue>(acks_), id, qos, packet_id,
                     v5 = mqtt::is_v5(version_), shard = &shard_,
                     session_id = session_->id()](bool all_ok) {
    const auto acks = weak.lock();
    if (!all_ok && qos == QoS::kExactlyOnce && v5 && acks) {
      // A 5.0 client told 0x83 may reuse the id for a new message, which must
      // not be taken for a resend of this one, in memory or after a restart.
      // Only while this connection lasts: the id cannot have been completed
      // and reused meanwhile, since its PUBREC is still waiting here. (3.x
      // is disconnected and sends the same message again under the same id:
      // kept, so the nodes that had it do not get it twice.)
      release_refused_qos2(*shard, session_id, packet_id);
    }
    if (acks) acks->complete(id, all_ok);
  });
  remote->expect();  // this node's own write
  if (batch.empty()) {
    if (also) also(true);
    return remote->answer(true);
  }
  shard_.write_then(std::move(batch), [remote, also = std::move(also)](bool durable) {
    if (also) also(durable);
    remote->answer(durable);
  });
}

void ClientProtocol::write_then_acknowledge(store::WriteBatch&& batch,
                                            std::optional<mqtt::Packet> ack,
                                            std::function<void(bool durable)> also) {
  if (!ack) return shard_.write_then(std::move(batch), std::move(also));  // QoS 0: no promise
  const std::uint64_t id = deferred_acks().defer(std::move(*ack));
  shard_.write_then(std::move(batch), [weak = std::weak_ptr<AckQueue>(acks_), id,
                                       also = std::move(also)](bool durable) {
    if (also) also(durable);  // the captured appends become deliverable
    if (const auto acks = weak.lock()) acks->complete(id, durable);
  });
}

void ClientProtocol::on_pubrel(const mqtt::Pubrel& pubrel) {
  const bool known = session_->release_inbound_qos2(pubrel.packet_id);
  mqtt::Pubcomp pubcomp{
      pubrel.packet_id, known ? ReasonCode::kSuccess : ReasonCode::kPacketIdentifierNotFound, {}};
  if (!known || !session_->stored() || !shard_.has_store()) return send_ack(std::move(pubcomp));
  // Once PUBCOMP is sent the client may reuse the packet id: the stored id
  // must be gone by then, or a new message under it would look like a resend.
  write_then_acknowledge(std::move(store::WriteBatch().add(store::WriteBatch::DeleteInbound{
                             session_->client_id(), pubrel.packet_id})),
                         std::move(pubcomp));
}

// ---- SUBSCRIBE, UNSUBSCRIBE -------------------------------------------------

void ClientProtocol::on_subscribe(mqtt::Subscribe&& subscribe) {
  const config::Config& config = shard_.config();
  const bool v5 = mqtt::is_v5(version_);
  const std::uint32_t identifier = subscribe.properties.subscription_identifiers.empty()
                                       ? 0
                                       : subscribe.properties.subscription_identifiers[0];
  if (identifier != 0 && !config.mqtt.subscription_identifiers) {
    return disconnect_with(ReasonCode::kSubscriptionIdentifiersNotSupported);
  }
  mqtt::Suback suback;
  suback.packet_id = subscribe.packet_id;
  struct RetainedToSend {
    std::string filter;
    mqtt::SubscriptionOptions options;
  };
  std::vector<RetainedToSend> retained;
  store::WriteBatch batch;  // for a stored session

  for (mqtt::Subscription& subscription : subscribe.subscriptions) {
    const auto shared = mqtt::parse_shared_filter(subscription.filter);
    const std::string_view matched_filter = shared ? shared->filter : subscription.filter;
    ReasonCode refusal = ReasonCode::kSuccess;
    if (shared && !config.mqtt.shared_subscriptions) {
      refusal = ReasonCode::kSharedSubscriptionsNotSupported;
    } else if (acl_ && !acl_->may_subscribe(matched_filter)) {
      refusal = ReasonCode::kNotAuthorized;
      ShardStats::add(shard_.stats().authz_denied);
      if (shard_.broker().wants(EventKind::kAuthzDenied)) {
        Event e = event(EventKind::kAuthzDenied, client_id());
        e.topic = subscription.filter;
        e.reason = "subscribe";
        emit(std::move(e));
      }
    } else if (!within_rate(rates_ ? &rates_->subscriptions : nullptr)) {
      ShardStats::add(shard_.stats().rejected_subscriptions);
      refusal = ReasonCode::kQuotaExceeded;
    } else if (mqtt::has_wildcard(matched_filter) && !config.mqtt.wildcard_subscriptions) {
      refusal = ReasonCode::kWildcardSubscriptionsNotSupported;
    } else if (mqtt::topic_levels(matched_filter) > shard_.limits().max_topic_levels) {
      refusal = ReasonCode::kTopicFilterInvalid;
    } else if (session_->subscriptions().size() >= shard_.limits().max_subscriptions_per_client &&
               !session_->subscriptions().contains(subscription.filter)) {
      refusal = ReasonCode::kQuotaExceeded;
    }
    if (refusal != ReasonCode::kSuccess) {
      suback.reasons.push_back(v5 ? refusal : ReasonCode::kUnspecifiedError);
      continue;
    }
    mqtt::SubscriptionOptions options = subscription.options;
    options.max_qos = std::min(options.max_qos, static_cast<QoS>(config.mqtt.max_qos));
    if (!v5) options = mqtt::SubscriptionOptions{options.max_qos};
    if (QueueGateway::addresses(matched_filter)) {
      std::string refusal_reason;
      const ReasonCode granted =
          subscribe_to_queue(subscription.filter, matched_filter, shared ? shared->group : "",
                             subscribe.properties, options, batch, refusal_reason);
      suback.reasons.push_back(v5 || !mqtt::is_error(granted) ? granted
                                                              : ReasonCode::kUnspecifiedError);
      // One Reason String for the SUBACK: the first refusal that has one.
      if (v5 && !refusal_reason.empty() && !suback.properties.reason_string)
        suback.properties.reason_string = std::move(refusal_reason);
      if (!mqtt::is_error(granted) && shard_.broker().wants(EventKind::kSubscriptionCreated)) {
        Event e = event(EventKind::kSubscriptionCreated, client_id());
        e.topic = subscription.filter;
        e.qos = static_cast<int>(granted);
        emit(std::move(e));
      }
      continue;
    }
    const bool is_new = shard_.broker().index().subscribe(
        subscription.filter, {session_->ref(), options, identifier}, session_->tag());
    session_->subscriptions().insert_or_assign(subscription.filter,
                                               SubscriptionRecord{options, identifier});
    if (session_->stored()) {
      batch.add(store::WriteBatch::PutSubscription{
          {session_->client_id(), subscription.filter, options_byte(options), identifier, {}}});
    }
    suback.reasons.push_back(static_cast<ReasonCode>(options.max_qos));
    if (shard_.broker().wants(EventKind::kSubscriptionCreated)) {
      Event e = event(EventKind::kSubscriptionCreated, client_id());
      e.topic = subscription.filter;
      e.qos = static_cast<int>(options.max_qos);
      emit(std::move(e));
    }
    // [MQTT-3.3.1-9..11] retained messages by Retain Handling; none for shared [MQTT-4.8.2].
    const bool send =
        !shared &&
        (options.retain_handling == mqtt::RetainHandling::kSendOnSubscribe ||
         (options.retain_handling == mqtt::RetainHandling::kSendOnNewSubscribe && is_new));
    if (send) retained.push_back({subscription.filter, options});
  }
  if (batch.empty()) {
    send_ack(std::move(suback));
    for (const RetainedToSend& r : retained)
      send_retained(r.filter, r.options, identifier);
    return;
  }
  // A stored session's subscription is acknowledged once it is durable, and
  // its retained messages follow the SUBACK.
  const std::uint64_t ack = deferred_acks().defer(std::move(suback));
  shard_.write_then(std::move(batch), [this, weak = std::weak_ptr<AckQueue>(acks_), ack,
                                       retained = std::move(retained), identifier](bool durable) {
    const auto acks = weak.lock();  // alive: so is this protocol, on this same thread
    if (!acks) return;
    acks->complete(ack, durable);
    if (!durable || session_ == nullptr) return;
    for (const RetainedToSend& r : retained)
      send_retained(r.filter, r.options, identifier);
  });
}

ReasonCode ClientProtocol::subscribe_to_queue(const std::string& filter, std::string_view address,
                                              std::string_view share_group,
                                              const mqtt::Properties& properties,
                                              mqtt::SubscriptionOptions options,
                                              store::WriteBatch& batch,
                                              std::string& refusal_reason) {
  QueueGateway* queues = shard_.broker().queues();
  if (queues == nullptr) return ReasonCode::kTopicFilterInvalid;
  // "$queue/<name>" takes every message of the queue, delivered on that one
  // topic: the client must be allowed to read all of the queue's subtopics,
  // or it would read through the queue what a rule denies it.
  const bool whole_queue = address.find('/', address.find('/') + 1) == std::string_view::npos;
  if (whole_queue && acl_ && !acl_->may_subscribe(std::string(address) + "/#")) {
    ShardStats::add(shard_.stats().authz_denied);
    return ReasonCode::kNotAuthorized;
  }
  QueueGateway::ConsumerSpec consumer;
  consumer.session = session_->ref();
  consumer.filter = filter;
  consumer.address = address;
  consumer.share_group = share_group;
  consumer.properties = &properties;
  consumer.max_qos = options.max_qos;
  consumer.v5 = mqtt::is_v5(version_);
  consumer.receive_maximum = session_->limits().receive_maximum;
  consumer.refusal_reason = &refusal_reason;
  const ReasonCode granted = queues->subscribe(shard_, consumer);
  if (mqtt::is_error(granted)) return granted;
  // Kept with the session (so UNSUBSCRIBE and a resumed session find it);
  // the queue layer holds the consumer. A stored session's is stored with
  // its properties, to be made again after a restart (docs/queues.md).
  const mqtt::SubscriptionOptions granted_options{static_cast<QoS>(granted)};
  session_->subscriptions().insert_or_assign(filter, SubscriptionRecord{granted_options, 0});
  session_->set_has_queue_subscriptions();
  if (session_->stored()) {
    batch.add(store::WriteBatch::PutSubscription{{session_->client_id(), filter,
                                                  options_byte(granted_options), 0,
                                                  queue_subscription_properties(properties)}});
  }
  return granted;
}

void ClientProtocol::send_retained(const std::string& filter,
                                   const mqtt::SubscriptionOptions& options,
                                   std::uint32_t identifier) {
  shard_.broker().retained().for_each_match(filter, Clock::now(), [&](const MessagePtr& message) {
    Delivery delivery;
    delivery.message = message;
    delivery.qos = std::min(message->qos, options.max_qos);
    delivery.retain = true;  // [MQTT-3.3.1-8] a retained message sent on subscribe keeps RETAIN
    if (identifier != 0) delivery.identifiers.push_back(identifier);
    session_->deliver(std::move(delivery));
  });
}

void ClientProtocol::announce_removed(const std::string& filter) const {
  Event e = event(EventKind::kSubscriptionRemoved, client_id());
  e.topic = filter;
  emit(std::move(e));
}

void ClientProtocol::on_unsubscribe(const mqtt::Unsubscribe& unsubscribe) {
  mqtt::Unsuback unsuback;
  unsuback.packet_id = unsubscribe.packet_id;
  store::WriteBatch batch;
  const bool announce = shard_.broker().wants(EventKind::kSubscriptionRemoved);
  for (const std::string& filter : unsubscribe.filters) {
    const auto shared = mqtt::parse_shared_filter(filter);
    if (QueueGateway* queues = shard_.broker().queues();
        queues != nullptr && QueueGateway::addresses(shared ? shared->filter : filter)) {
      const bool existed = queues->unsubscribe(shard_, session_->ref(), filter);
      if (existed && announce) announce_removed(filter);
      session_->subscriptions().erase(filter);
      if (existed && session_->stored()) {
        batch.add(store::WriteBatch::DeleteSubscription{session_->client_id(), filter});
      }
      if (mqtt::is_v5(version_)) {
        unsuback.reasons.push_back(existed ? ReasonCode::kSuccess
                                           : ReasonCode::kNoSubscriptionExisted);
      }
      continue;
    }
    const bool existed = shard_.broker().index().unsubscribe(filter, session_->ref());
    if (existed && announce) announce_removed(filter);
    session_->subscriptions().erase(filter);
    if (existed && session_->stored()) {
      batch.add(store::WriteBatch::DeleteSubscription{session_->client_id(), filter});
    }
    if (mqtt::is_v5(version_)) {
      unsuback.reasons.push_back(existed ? ReasonCode::kSuccess
                                         : ReasonCode::kNoSubscriptionExisted);
    }
  }
  if (batch.empty()) return send_ack(std::move(unsuback));
  const std::uint64_t ack = deferred_acks().defer(std::move(unsuback));
  shard_.write_then(std::move(batch), [weak = std::weak_ptr<AckQueue>(acks_), ack](bool durable) {
    if (const auto acks = weak.lock()) acks->complete(ack, durable);
  });
}

// ---- DISCONNECT -------------------------------------------------------

void ClientProtocol::on_disconnect(const mqtt::Disconnect& disconnect) {
  if (const auto& expiry = disconnect.properties.session_expiry_interval) {
    if (connect_expiry_s_ == 0 && *expiry != 0) {  // §3.14.2.2.2
      return disconnect_with(ReasonCode::kProtocolError, "Session Expiry Interval was 0");
    }
    session_->set_expiry_s(std::min(*expiry, shard_.config().sessions.max_session_expiry_s));
  }
  // [MQTT-3.14.4-3] a normal disconnection discards the will; 0x04 asks for it.
  leave_session(disconnect.reason == ReasonCode::kDisconnectWithWillMessage);
  close();
}

}  // namespace sluice::broker
