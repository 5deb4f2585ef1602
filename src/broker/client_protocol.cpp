// The rules of sections 3 and 4 of the MQTT specification that concern one
// client's connection, packet by packet.
#include "broker/client_protocol.hpp"

#include <random>

#include "auth/authenticator.hpp"
#include "broker/persistence.hpp"
#include "broker/shard.hpp"
#include "mqtt/topic.hpp"
#include "mqtt/utf8.hpp"

namespace sluice::broker {
namespace {

using mqtt::ProtocolVersion;
using mqtt::QoS;
using mqtt::ReasonCode;

constexpr std::uint32_t kNeverExpires = 0xFFFFFFFF;
constexpr std::size_t kMaxV31ClientIdBytes = 23;  // MQTT 3.1 section 3.1
constexpr std::string_view kScramMethod = "SCRAM-SHA-256";

}  // namespace

ClientProtocol::ClientProtocol(Shard& shard, ClientLink& link) : shard_(shard), link_(link) {}

ClientProtocol::~ClientProtocol() {
  if (acks_) acks_->detach();
  if (session_ != nullptr) leave_session(true);
  if (counted_) shard_.broker().connections().fetch_sub(1);
}

const std::string& ClientProtocol::client_id() const {
  static const std::string kNone;
  return session_ != nullptr ? session_->client_id() : kNone;
}

// ---- CONNECT ---------------------------------------------------------------

void ClientProtocol::refuse_connect(ProtocolVersion version, ReasonCode reason,
                                    const char* reason_string) {
  mqtt::Connack connack{false, reason, {}};
  if (reason_string != nullptr && mqtt::is_v5(version))
    connack.properties.reason_string = reason_string;
  link_.send(connack);
  close();
}

std::string ClientProtocol::assign_client_id() const {
  // An id that maps to this shard, so the session stays where the connection is.
  thread_local std::mt19937_64 generator{std::random_device{}()};
  static constexpr char kHex[] = "0123456789abcdef";
  while (true) {
    std::string id = "sluice-";
    std::uint64_t bits = generator();
    for (int i = 0; i < 16; ++i, bits >>= 4)
      id += kHex[bits & 0xF];
    if (shard_.broker().shard_for_client(id) == shard_.index()) return id;
  }
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

void ClientProtocol::refuse_over_connection_rate(mqtt::ProtocolVersion version) {
  ShardStats::add(shard_.stats().rejected_connections);
  refuse_connect(version, ReasonCode::kConnectionRateExceeded);
}

bool ClientProtocol::within_rate(std::optional<auth::TokenBucket>* bucket) {
  return bucket == nullptr || !*bucket || (*bucket)->take(Clock::now());
}

bool ClientProtocol::authenticate(const mqtt::Connect& connect) {
  const auth::Authenticator* auth = shard_.broker().auth();
  if (auth == nullptr) return true;
  const auto verdict = verified_username_ ? auth::Authenticator::Verdict::kAllowed
                                          : auth->check(connect.username, connect.password);
  switch (verdict) {
    case auth::Authenticator::Verdict::kAllowed:
      break;
    case auth::Authenticator::Verdict::kBadCredentials:
      refuse_connect(version_, ReasonCode::kBadUserNameOrPassword);
      return false;
    case auth::Authenticator::Verdict::kNotAuthorized:
      refuse_connect(version_, ReasonCode::kNotAuthorized, "a username is required");
      return false;
  }
  acl_ = auth->acl_for(connect.client_id, connect.username.value_or(""));
  return true;
}

void ClientProtocol::on_connect(mqtt::Connect&& connect) {
  if (connect_seen_) return disconnect_with(ReasonCode::kProtocolError, "second CONNECT");
  connect_seen_ = true;
  version_ = connect.version;
  const config::Config& config = shard_.config();
  const bool v5 = mqtt::is_v5(version_);

  if (shard_.broker().connections().fetch_add(1) >= config.limits.max_connections) {
    shard_.broker().connections().fetch_sub(1);
    return refuse_connect(version_, ReasonCode::kServerBusy, "too many connections");
  }
  counted_ = true;

  bool assigned = false;
  if (connect.client_id.empty()) {
    // [MQTT-3.1.3-8] (3.1.1): an empty id needs a clean session; 3.1 needs 1..23 bytes.
    if (version_ == ProtocolVersion::kV3_1 || (!v5 && !connect.clean_start)) {
      return refuse_connect(version_, ReasonCode::kClientIdentifierNotValid);
    }
    connect.client_id = assign_client_id();
    assigned = true;
  } else if (version_ == ProtocolVersion::kV3_1 &&
             connect.client_id.size() > kMaxV31ClientIdBytes) {
    return refuse_connect(version_, ReasonCode::kClientIdentifierNotValid);
  }
  if (connect.properties.authentication_method)
    return start_enhanced_auth(std::move(connect), assigned);
  continue_connect(std::move(connect), assigned, std::nullopt);
}

void ClientProtocol::start_enhanced_auth(mqtt::Connect&& connect, bool assigned) {
  const auth::Authenticator* authenticator = shard_.broker().auth();
  const auth::ScramUsers* users = authenticator ? authenticator->scram_users() : nullptr;
  if (users == nullptr || *connect.properties.authentication_method != kScramMethod) {
    return refuse_connect(version_, ReasonCode::kBadAuthenticationMethod);
  }
  scram_ = std::make_unique<auth::ScramExchange>(*users);
  const mqtt::Bytes& data = connect.properties.authentication_data.value_or(mqtt::Bytes{});
  const auto server_first =
      scram_->start({reinterpret_cast<const char*>(data.data()), data.size()});
  if (!server_first) return refuse_connect(version_, ReasonCode::kBadUserNameOrPassword);
  mqtt::Auth challenge{ReasonCode::kContinueAuthentication, {}};
  challenge.properties.authentication_method = std::string(kScramMethod);
  challenge.properties.authentication_data =
      mqtt::Bytes(server_first->begin(), server_first->end());
  link_.send(challenge);
  pending_connect_ = std::make_unique<PendingConnect>(PendingConnect{std::move(connect), assigned});
}

void ClientProtocol::continue_connect(mqtt::Connect&& connect, bool assigned,
                                      std::optional<std::string> server_final) {
  const config::Config& config = shard_.config();
  const bool v5 = mqtt::is_v5(version_);
  if (verified_username_) {  // the certificate (or SCRAM) names the user
    connect.username = *verified_username_;
    connect.password.reset();
  }
  if (!authenticate(connect)) return;
  const config::RateLimitConfig& rate =
      listener_rate_limits_ != nullptr ? *listener_rate_limits_ : config.rate_limits;
  if (rate.publishes_per_s > 0 || rate.subscriptions_per_s > 0) {
    rates_ = std::make_unique<RateLimits>();
    auto bucket = [&](double per_s, std::uint32_t burst, std::optional<auth::TokenBucket>& out) {
      if (per_s > 0) out.emplace(per_s, burst != 0 ? burst : per_s, Clock::now());
    };
    bucket(rate.publishes_per_s, rate.publish_burst, rates_->publishes);
    bucket(rate.subscriptions_per_s, rate.subscription_burst, rates_->subscriptions);
  }
  if (connect.will) {
    if (acl_ && !acl_->may_publish(connect.will->topic)) {
      return refuse_connect(version_, ReasonCode::kNotAuthorized, "the ACL denies the will topic");
    }
    if (static_cast<std::uint8_t>(connect.will->qos) > config.mqtt.max_qos) {
      return refuse_connect(version_, ReasonCode::kQoSNotSupported);  // [MQTT-3.2.2-12]
    }
    if (connect.will->retain && !config.mqtt.retain_available) {
      return refuse_connect(version_, ReasonCode::kRetainNotSupported);  // [MQTT-3.2.2-13]
    }
    if (mqtt::is_sys_topic(connect.will->topic)) {
      return refuse_connect(version_, ReasonCode::kNotAuthorized, "$SYS belongs to the broker");
    }
    if (mqtt::topic_levels(connect.will->topic) > config.limits.max_topic_levels) {
      return refuse_connect(version_, ReasonCode::kTopicNameInvalid,
                            "will topic has too many levels");
    }
  }

  // Session expiry: 5.0 asks for it; 3.x says clean session (ends now) or not (kept).
  const std::uint32_t asked_expiry = v5 ? connect.properties.session_expiry_interval.value_or(0)
                                        : (connect.clean_start ? 0 : kNeverExpires);
  const std::uint32_t expiry = std::min(asked_expiry, config.sessions.max_session_expiry_s);
  connect_expiry_s_ = expiry;

  keep_alive_s_ = connect.keep_alive_s;
  const std::uint16_t cap = config.limits.max_keepalive_s;
  const bool keep_alive_capped = v5 && cap != 0 && (keep_alive_s_ == 0 || keep_alive_s_ > cap);
  if (keep_alive_capped) keep_alive_s_ = cap;

  // Take over, resume or start the session.
  const Clock::time_point now = Clock::now();
  Session* session = shard_.find_session(connect.client_id);
  if (session != nullptr && session->owner() != nullptr) {
    session->owner()->on_taken_over();
    session = shard_.find_session(connect.client_id);  // it ends there if its expiry was 0
  }
  const auto expires = session != nullptr ? session->expires_at() : std::nullopt;
  const bool expired = expires && *expires <= now;  // not yet ended by a tick
  if (session != nullptr && (connect.clean_start || expired)) {
    shard_.publish_will(*session);  // a pending will goes out when its session ends
    shard_.end_session(*session);
    session = nullptr;
  }
  const bool session_present = session != nullptr;
  if (session == nullptr) session = shard_.create_session(connect.client_id);
  if (session == nullptr)
    return refuse_connect(version_, ReasonCode::kQuotaExceeded, "too many sessions");
  session->take_will();  // a delayed will is not sent once the client is back [MQTT-3.1.3-9]
  shard_.session_came_online(*session);
  session->set_expiry_s(expiry);
  session->set_will(std::move(connect.will));
  session_ = session;
  if (expiry != 0 && shard_.has_store()) {
    // Written before anything the client sends next can depend on it; the
    // CONNACK itself does not wait (see docs/persistence.md).
    shard_.write_then(std::move(store::WriteBatch().add(
                          store::WriteBatch::PutSession{session_record(*session, 0)})),
                      nullptr);
    session->set_stored(true);
  }

  mqtt::Connack connack;
  connack.session_present = session_present;
  if (v5) {
    mqtt::Properties& p = connack.properties;
    p.receive_maximum = config.limits.receive_maximum;
    p.maximum_packet_size = config.limits.max_packet_bytes;
    p.topic_alias_maximum = config.limits.topic_alias_maximum;
    if (config.mqtt.max_qos < 2) p.maximum_qos = config.mqtt.max_qos;
    p.retain_available = config.mqtt.retain_available ? 1 : 0;
    p.wildcard_subscription_available = config.mqtt.wildcard_subscriptions ? 1 : 0;
    p.subscription_identifier_available = config.mqtt.subscription_identifiers ? 1 : 0;
    p.shared_subscription_available = config.mqtt.shared_subscriptions ? 1 : 0;
    if (assigned) p.assigned_client_identifier = connect.client_id;
    if (server_final) {  // the server's proof that it holds the user's keys
      p.authentication_method = std::string(kScramMethod);
      p.authentication_data = mqtt::Bytes(server_final->begin(), server_final->end());
    }
    if (keep_alive_capped) p.server_keep_alive = keep_alive_s_;
    if (expiry != asked_expiry) p.session_expiry_interval = expiry;
    if (connect.properties.request_response_information.value_or(0) == 1) {
      p.response_information = config.sessions.response_information + connect.client_id;
    }
  }
  link_.send(connack);
  ShardStats::add(shard_.stats().clients_connected);

  ClientLimits limits;
  if (v5) {
    limits.receive_maximum = connect.properties.receive_maximum.value_or(65535);
    limits.maximum_packet_size =
        connect.properties.maximum_packet_size.value_or(limits.maximum_packet_size);
    limits.topic_alias_maximum = connect.properties.topic_alias_maximum.value_or(0);
  }
  session->attach(*this, link_, version_, limits);
}

// ---- the end of a connection ------------------------------------------------

void ClientProtocol::close() {
  closing_ = true;
  link_.close();
}

void ClientProtocol::disconnect_with(ReasonCode reason, const char* reason_string) {
  if (closing_) return;
  if (mqtt::is_v5(version_) && connect_seen_) {
    mqtt::Disconnect disconnect{reason, {}};
    if (reason_string != nullptr) disconnect.properties.reason_string = reason_string;
    link_.send(disconnect);
  }
  if (session_ != nullptr) leave_session(true);
  close();
}

void ClientProtocol::leave_session(bool publish_will) {
  Session& session = *session_;
  session_ = nullptr;
  ShardStats::sub(shard_.stats().clients_connected);
  const Clock::time_point now = Clock::now();
  if (!publish_will) session.take_will();
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
  if (session.stored()) {
    shard_.write_then(std::move(store::WriteBatch().add(
                          store::WriteBatch::PutSession{session_record(session, wall_clock_ms())})),
                      nullptr);
  }
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
  if (session_ != nullptr) leave_session(true);
  closing_ = true;
}

void ClientProtocol::on_keep_alive_expired() {
  disconnect_with(ReasonCode::kKeepAliveTimeout);
}

void ClientProtocol::on_server_shutdown() {
  if (closing_) return;
  if (mqtt::is_v5(version_) && session_ != nullptr) {
    link_.send(mqtt::Disconnect{ReasonCode::kServerShuttingDown, {}});
  }
  if (session_ != nullptr) leave_session(false);
  close();
}

void ClientProtocol::on_taken_over() {
  disconnect_with(ReasonCode::kSessionTakenOver);
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
  if (pending_connect_) {
    if (const auto* auth = std::get_if<mqtt::Auth>(&packet)) return on_auth(*auth);
  }
  if (!admit_packet()) return;
  std::visit(
      [&](auto& p) {
        using T = std::decay_t<decltype(p)>;
        if constexpr (std::is_same_v<T, mqtt::Publish>) {
          on_publish(std::move(p));
        } else if constexpr (std::is_same_v<T, mqtt::Puback>) {
          session_->on_puback(p.packet_id);
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
  if (pending_connect_) {  // between CONNECT and CONNACK only AUTH may come (section 4.12)
    refuse_connect(version_, ReasonCode::kProtocolError);
    return false;
  }
  if (session_ == nullptr) {  // [MQTT-3.1.0-1] CONNECT comes first
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
      return session_->on_puback(packet_id);
    case mqtt::PacketType::kPubrec:
      return on_pubrec(packet_id, ReasonCode::kSuccess);
    default:
      return session_->on_pubcomp(packet_id);
  }
}

void ClientProtocol::on_pubrec(std::uint16_t packet_id, ReasonCode reason) {
  if (!session_->on_pubrec(packet_id, reason)) {
    link_.send(mqtt::Pubrel{packet_id, ReasonCode::kPacketIdentifierNotFound, {}});
  } else if (!mqtt::is_error(reason)) {
    link_.send_plain_ack(mqtt::PacketType::kPubrel, packet_id);
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
  const config::Config& config = shard_.config();
  ShardStats::add(shard_.stats().messages_received);
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
  if (mqtt::topic_levels(publish.topic) > config.limits.max_topic_levels) {
    session_->release_inbound_qos2(publish.packet_id);
    if (!mqtt::is_v5(version_)) return disconnect_with(ReasonCode::kTopicNameInvalid);
    return acknowledge_publish(publish.qos, publish.packet_id, ReasonCode::kTopicNameInvalid);
  }
  if (mqtt::is_sys_topic(publish.topic) ||  // $SYS belongs to the broker
      (acl_ && !acl_->may_publish(publish.topic))) {
    // Dropped; 5.0 is told why, 3.x (no negative PUBACK) is acknowledged.
    session_->release_inbound_qos2(publish.packet_id);
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

  const QoS qos = publish.qos;
  const std::uint16_t packet_id = publish.packet_id;
  store::WriteBatch inbound;
  if (publish.qos == QoS::kExactlyOnce && session_->stored() && shard_.has_store()) {
    // Kept until PUBREL, so that a resend after a restart is not routed twice.
    inbound.add(store::WriteBatch::PutInbound{session_->client_id(), publish.packet_id});
  }
  const MessagePtr message =
      make_message(std::move(publish), session_->id(), session_->client_hash());
  shard_.publish(message, std::move(inbound),
                 [&](std::size_t receivers, store::WriteBatch&& batch) {
                   const ReasonCode reason = receivers == 0 && mqtt::is_v5(version_)
                                                 ? ReasonCode::kNoMatchingSubscribers
                                                 : ReasonCode::kSuccess;
                   if (batch.empty()) return acknowledge_publish(qos, packet_id, reason);
                   // The acknowledgement is a promise: it waits until the batch is stored.
                   write_then_acknowledge(std::move(batch), publish_ack(qos, packet_id, reason));
                 });
}

void ClientProtocol::write_then_acknowledge(store::WriteBatch&& batch,
                                            std::optional<mqtt::Packet> ack) {
  if (!ack) return shard_.write_then(std::move(batch), nullptr);  // QoS 0: nothing to promise
  const std::uint64_t id = deferred_acks().defer(std::move(*ack));
  shard_.write_then(std::move(batch), [weak = std::weak_ptr<AckQueue>(acks_), id](bool durable) {
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
    } else if (!within_rate(rates_ ? &rates_->subscriptions : nullptr)) {
      ShardStats::add(shard_.stats().rejected_subscriptions);
      refusal = ReasonCode::kQuotaExceeded;
    } else if (mqtt::has_wildcard(matched_filter) && !config.mqtt.wildcard_subscriptions) {
      refusal = ReasonCode::kWildcardSubscriptionsNotSupported;
    } else if (mqtt::topic_levels(matched_filter) > config.limits.max_topic_levels) {
      refusal = ReasonCode::kTopicFilterInvalid;
    } else if (session_->subscriptions().size() >= config.limits.max_subscriptions_per_client &&
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
    const bool is_new = shard_.broker().index().subscribe(
        subscription.filter, {session_->ref(), options, identifier}, session_->tag());
    session_->subscriptions().insert_or_assign(subscription.filter,
                                               SubscriptionRecord{options, identifier});
    if (session_->stored()) {
      batch.add(store::WriteBatch::PutSubscription{
          {session_->client_id(), subscription.filter, options_byte(options), identifier}});
    }
    suback.reasons.push_back(static_cast<ReasonCode>(options.max_qos));
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

void ClientProtocol::on_unsubscribe(const mqtt::Unsubscribe& unsubscribe) {
  mqtt::Unsuback unsuback;
  unsuback.packet_id = unsubscribe.packet_id;
  store::WriteBatch batch;
  for (const std::string& filter : unsubscribe.filters) {
    const bool existed = shard_.broker().index().unsubscribe(filter, session_->ref());
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

// ---- DISCONNECT, AUTH -------------------------------------------------------

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

void ClientProtocol::on_auth(const mqtt::Auth& auth) {
  if (!pending_connect_) {
    // Re-authentication is not offered; without a CONNECT method AUTH is
    // out of place altogether (section 4.12).
    return disconnect_with(ReasonCode::kProtocolError, "AUTH outside enhanced authentication");
  }
  const auto pending = std::move(pending_connect_);
  const bool same_method = auth.properties.authentication_method &&
                           *auth.properties.authentication_method == kScramMethod;
  if (auth.reason != ReasonCode::kContinueAuthentication || !same_method) {
    return refuse_connect(version_, ReasonCode::kProtocolError);  // [MQTT-4.12.0-5]
  }
  const mqtt::Bytes& data = auth.properties.authentication_data.value_or(mqtt::Bytes{});
  auto server_final = scram_->finish({reinterpret_cast<const char*>(data.data()), data.size()});
  if (!server_final) return refuse_connect(version_, ReasonCode::kBadUserNameOrPassword);
  set_certificate_identity(scram_->username());  // verified: the ACL applies to this name
  scram_.reset();
  continue_connect(std::move(pending->connect), pending->assigned, std::move(server_final));
}

}  // namespace sluice::broker
