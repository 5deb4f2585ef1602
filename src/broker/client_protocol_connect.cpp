// CONNECT and AUTH: section 3.1, 3.2, 3.15 and 4.12 of the specification, in
// the steps a CONNECT goes through (admit the packet, authenticate, admit the
// client, claim the session, acknowledge). Two steps can wait on another
// thread: the password check (on the hash pool) and the write of a stored
// session's record (on the committer); the client's next packets are held
// back until the CONNACK is sent.
#include <random>

#include "auth/authenticator.hpp"
#include "broker/client_protocol.hpp"
#include "broker/persistence.hpp"
#include "broker/queue_gateway.hpp"
#include "broker/shard.hpp"
#include "mqtt/topic.hpp"

namespace sluice::broker {
namespace {

using mqtt::ProtocolVersion;
using mqtt::ReasonCode;

constexpr std::uint32_t kNeverExpires = 0xFFFFFFFF;
constexpr std::size_t kMaxV31ClientIdBytes = 23;  // MQTT 3.1 section 3.1
constexpr std::string_view kScramMethod = "SCRAM-SHA-256";

std::string_view as_text(const mqtt::Bytes& bytes) {
  return {reinterpret_cast<const char*>(bytes.data()), bytes.size()};
}

// The Authentication Data of a CONNECT or AUTH, empty when it has none.
std::string_view auth_data(const mqtt::Properties& properties) {
  const auto& data = properties.authentication_data;
  return data ? as_text(*data) : std::string_view();
}

mqtt::Auth auth_packet(ReasonCode reason, std::string_view data) {
  mqtt::Auth auth{reason, {}};
  auth.properties.authentication_method = std::string(kScramMethod);
  auth.properties.authentication_data = mqtt::Bytes(data.begin(), data.end());
  return auth;
}

}  // namespace

void ClientProtocol::refuse_connect(ProtocolVersion version, ReasonCode reason,
                                    const char* reason_string) {
  if (reason == ReasonCode::kBadUserNameOrPassword) note_auth_failure("bad_username_or_password");
  mqtt::Connack connack{false, reason, {}};
  if (reason_string != nullptr && mqtt::is_v5(version))
    connack.properties.reason_string = reason_string;
  link_.send(connack);
  close();
}

void ClientProtocol::refuse_over_connection_rate(mqtt::ProtocolVersion version) {
  ShardStats::add(shard_.stats().rejected_connections);
  refuse_connect(version, ReasonCode::kConnectionRateExceeded);
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

std::weak_ptr<ClientProtocol*> ClientProtocol::weak_self() {
  Rare& state = rare();
  if (!state.lifeline) state.lifeline = std::make_shared<ClientProtocol*>(this);
  return state.lifeline;
}

// ---- the packet ---------------------------------------------------------------

void ClientProtocol::on_connect(mqtt::Connect&& connect) {
  if (connect_seen_) return disconnect_with(ReasonCode::kProtocolError, "second CONNECT");
  connect_seen_ = true;
  version_ = connect.version;
  if (shard_.broker().wants(EventKind::kClientAuthFailed)) {
    // Who it claims to be, for a refusal told to webhooks (the CONNECT may
    // be gone by then).
    rare().connecting = std::make_unique<std::pair<std::string, std::string>>(
        connect.client_id, connect.username.value_or(""));
  }
  if (shard_.broker().connections().fetch_add(1) >= shard_.limits().max_connections) {
    shard_.broker().connections().fetch_sub(1);
    return refuse_connect(version_, ReasonCode::kServerBusy, "too many connections");
  }
  counted_ = true;

  auto pending = std::make_unique<PendingConnect>();
  if (connect.client_id.empty()) {
    // [MQTT-3.1.3-8] (3.1.1): an empty id needs a clean session; 3.1 needs 1..23 bytes.
    if (version_ == ProtocolVersion::kV3_1 || (!mqtt::is_v5(version_) && !connect.clean_start)) {
      return refuse_connect(version_, ReasonCode::kClientIdentifierNotValid);
    }
    connect.client_id = assign_client_id();
    pending->assigned = true;
  } else if (version_ == ProtocolVersion::kV3_1 &&
             connect.client_id.size() > kMaxV31ClientIdBytes) {
    return refuse_connect(version_, ReasonCode::kClientIdentifierNotValid);
  }
  pending->connect = std::move(connect);
  if (pending->connect.properties.authentication_method) {
    return start_enhanced_auth(std::move(pending));
  }
  authenticate(std::move(pending));
}

// ---- 1. authenticate ------------------------------------------------------------

void ClientProtocol::authenticate(std::unique_ptr<PendingConnect> pending) {
  const auth::Authenticator* auth = shard_.broker().auth();
  // A certificate's name is verified already; with nothing configured, every
  // client is anonymous whatever name it gives.
  if (identity_ || auth == nullptr) return admit(std::move(pending));
  const mqtt::Connect& connect = pending->connect;
  switch (auth->decide(connect.username)) {
    case auth::Authenticator::Decision::kAnonymous:
      return admit(std::move(pending));
    case auth::Authenticator::Decision::kRefuseNoCredentials:
      note_auth_failure("username_required");
      return refuse_connect(version_, ReasonCode::kNotAuthorized, "a username is required");
    case auth::Authenticator::Decision::kRefuseUnverifiable:
      return refuse_connect(version_, ReasonCode::kBadUserNameOrPassword,
                            "no password file: the username cannot be verified");
    case auth::Authenticator::Decision::kCheckPassword:
      break;
  }
  if (!connect.password) return refuse_connect(version_, ReasonCode::kBadUserNameOrPassword);
  // PBKDF2 takes about a millisecond: not on this worker's thread.
  std::string username = *connect.username;
  std::string password(as_text(*connect.password));
  rare().pending_connect = std::move(pending);
  link_.hold_input();
  Mailbox* mailbox = shard_.broker().mailbox();
  const auto weak = weak_self();
  const bool queued = auth->check_password_async(
      std::move(username), std::move(password),
      // Read on the pool's thread: whether the connection is still there is
      // all it may ask (a weak_ptr's expiry is safe to read from anywhere).
      [weak] { return !weak.expired(); },
      [mailbox, shard = shard_.index(), weak](bool verified) {
        mailbox->post_task(shard, [weak, verified] {
          if (const auto self = weak.lock()) (*self)->on_password_checked(verified);
        });
      });
  if (!queued) {
    take_pending_connect();
    refuse_connect(version_, ReasonCode::kServerBusy, "too many password checks waiting");
  }
}

void ClientProtocol::on_password_checked(bool verified) {
  std::unique_ptr<PendingConnect> pending = take_pending_connect();
  if (closing_ || !pending) return;
  if (!verified) return refuse_connect(version_, ReasonCode::kBadUserNameOrPassword);
  identity_ = std::make_unique<std::string>(*pending->connect.username);
  admit(std::move(pending));
}

void ClientProtocol::start_enhanced_auth(std::unique_ptr<PendingConnect> pending) {
  const auth::Authenticator* authenticator = shard_.broker().auth();
  auto users = authenticator ? authenticator->scram_users() : nullptr;
  if (users == nullptr || *pending->connect.properties.authentication_method != kScramMethod) {
    return refuse_connect(version_, ReasonCode::kBadAuthenticationMethod);
  }
  rare().scram = std::make_unique<auth::ScramExchange>(std::move(users));
  const auto server_first = rare().scram->start(auth_data(pending->connect.properties));
  if (!server_first) return refuse_connect(version_, ReasonCode::kBadUserNameOrPassword);
  link_.send(auth_packet(ReasonCode::kContinueAuthentication, *server_first));
  rare().pending_connect = std::move(pending);  // until the client's AUTH
}

void ClientProtocol::on_auth(const mqtt::Auth& auth) {
  if (pending_connect() == nullptr) return on_reauthentication(auth);
  std::unique_ptr<PendingConnect> pending = take_pending_connect();
  const bool same_method = auth.properties.authentication_method &&
                           *auth.properties.authentication_method == kScramMethod;
  if (!rare().scram || auth.reason != ReasonCode::kContinueAuthentication || !same_method) {
    return refuse_connect(version_, ReasonCode::kProtocolError);  // [MQTT-4.12.0-5]
  }
  auto server_final = rare().scram->finish(auth_data(auth.properties));
  if (!server_final) return refuse_connect(version_, ReasonCode::kBadUserNameOrPassword);
  identity_ = std::make_unique<std::string>(rare().scram->username());
  rare().scram.reset();
  enhanced_auth_ = true;
  pending->server_final = std::move(server_final);
  admit(std::move(pending));
}

void ClientProtocol::on_reauthentication(const mqtt::Auth& auth) {
  // [MQTT-4.12.1-1] only with the CONNECT's method; without one AUTH is out
  // of place altogether (section 4.12).
  const bool same_method = auth.properties.authentication_method &&
                           *auth.properties.authentication_method == kScramMethod;
  if (!enhanced_auth_ || !same_method) {
    return disconnect_with(ReasonCode::kProtocolError, "AUTH outside enhanced authentication");
  }
  const std::string_view data = auth_data(auth.properties);
  if (auth.reason == ReasonCode::kReAuthenticate && !(rare_ && rare_->scram)) {
    rare().scram = std::make_unique<auth::ScramExchange>(shard_.broker().auth()->scram_users());
    const auto server_first = rare().scram->start(data);
    if (!server_first) {
      note_auth_failure("reauthentication_failed");
      return disconnect_with(ReasonCode::kBadUserNameOrPassword, "re-authentication failed");
    }
    return link_.send(auth_packet(ReasonCode::kContinueAuthentication, *server_first));
  }
  if (auth.reason != ReasonCode::kContinueAuthentication || !(rare_ && rare_->scram)) {
    return disconnect_with(ReasonCode::kProtocolError, "AUTH out of sequence");
  }
  const auto server_final = rare().scram->finish(data);
  const std::unique_ptr<auth::ScramExchange> exchange = std::move(rare().scram);
  if (!server_final) {
    note_auth_failure("reauthentication_failed");
    return disconnect_with(ReasonCode::kBadUserNameOrPassword, "re-authentication failed");
  }
  // The connection's rights and its session go with the name it proved first.
  if (exchange->username() != *identity_) {
    return disconnect_with(ReasonCode::kNotAuthorized, "re-authenticated as another user");
  }
  link_.send(auth_packet(ReasonCode::kSuccess, *server_final));
  trim_rare();
}

// ---- 2. admit ----------------------------------------------------------------------

void ClientProtocol::admit(std::unique_ptr<PendingConnect> pending) {
  const config::Config& config = shard_.config();
  const bool v5 = mqtt::is_v5(version_);
  mqtt::Connect& connect = pending->connect;
  if (const auth::Authenticator* auth = shard_.broker().auth()) {
    acl_ = auth->acl_for(connect.client_id,
                         identity_ ? std::optional<std::string>(*identity_) : std::nullopt);
  }
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
    if (mqtt::topic_levels(connect.will->topic) > shard_.limits().max_topic_levels) {
      return refuse_connect(version_, ReasonCode::kTopicNameInvalid,
                            "will topic has too many levels");
    }
  }
  // Session expiry: 5.0 asks for it; 3.x says clean session (ends now) or not (kept).
  const std::uint32_t asked_expiry = v5 ? connect.properties.session_expiry_interval.value_or(0)
                                        : (connect.clean_start ? 0 : kNeverExpires);
  connect_expiry_s_ = std::min(asked_expiry, config.sessions.max_session_expiry_s);
  keep_alive_s_ = connect.keep_alive_s;
  const std::uint16_t cap = shard_.limits().max_keepalive_s;
  if (v5 && cap != 0 && (keep_alive_s_ == 0 || keep_alive_s_ > cap)) keep_alive_s_ = cap;
  claim(std::move(pending));
}

// ---- 3. claim ------------------------------------------------------------------------

void ClientProtocol::claim_in_cluster(SessionDirectory& directory,
                                      std::unique_ptr<PendingConnect> pending) {
  SessionDirectory::Request request;
  request.shard = shard_.index();
  request.client_id = pending->connect.client_id;
  if (identity_) request.identity = *identity_;
  request.clean_start = pending->connect.clean_start;
  request.stored = connect_expiry_s_ != 0 && shard_.has_store();
  rare().pending_connect = std::move(pending);
  link_.hold_input();
  std::string client_id = request.client_id;
  directory.claim(
      std::move(request), [weak = weak_self(), &shard = shard_, client_id = std::move(client_id),
                           expiry_s = connect_expiry_s_](auto&& outcome) {
        if (const auto self = weak.lock()) {
          if ((*self)->on_cluster_claim(std::move(outcome))) return;
        }
        // Nobody takes the session up now: one handed over here waits for its
        // client offline, its expiry counting from now (or ends, without one).
        Session* session = shard.find_session(client_id);
        if (session == nullptr || session->owner() != nullptr || session->offline_since()) return;
        if (expiry_s == 0) return shard.end_session(*session);
        session->set_expiry_s(expiry_s);
        shard.session_went_offline(*session, Clock::now());
      });
}

bool ClientProtocol::on_cluster_claim(SessionDirectory::Outcome&& outcome) {
  std::unique_ptr<PendingConnect> pending = take_pending_connect();
  if (closing_ || !pending) return false;
  const SessionDirectory* directory = shard_.broker().session_directory();
  if (outcome.owned && (directory == nullptr || !directory->serving())) {
    outcome = {false, ReasonCode::kServerUnavailable, "this node is not in the cluster now"};
  }
  if (!outcome.owned) {
    refuse_connect(version_, outcome.refusal, outcome.reason.c_str());
    return false;
  }
  pending->owned_in_cluster = true;
  claim(std::move(pending));
  return true;
}

void ClientProtocol::claim(std::unique_ptr<PendingConnect> pending) {
  if (SessionDirectory* directory = shard_.broker().session_directory();
      directory != nullptr && !pending->owned_in_cluster) {
    return claim_in_cluster(*directory, std::move(pending));
  }
  mqtt::Connect& connect = pending->connect;
  Session* session = shard_.find_session(connect.client_id);
  const Clock::time_point now = Clock::now();
  if (session != nullptr && session->owner() == nullptr) {
    const auto expires = session->expires_at();
    if (expires && *expires <= now) {  // expired, not yet ended by a tick: it is gone
      shard_.publish_will(*session);   // a pending will goes out when its session ends
      shard_.end_session(*session);
      session = nullptr;
    }
  }
  // Nobody resumes, takes over or discards the session of another identity:
  // it is refused and the session stays as it is.
  if (session != nullptr && !session->belongs_to(identity_.get())) {
    return refuse_connect(version_, ReasonCode::kNotAuthorized,
                          "the client id's session belongs to another user");
  }
  if (session != nullptr && session->owner() != nullptr) {
    session->owner()->on_taken_over();
    session = shard_.find_session(connect.client_id);  // it ends there if its expiry was 0
  }
  if (session != nullptr && connect.clean_start) {
    shard_.publish_will(*session);  // a pending will goes out when its session ends
    shard_.end_session(*session);
    session = nullptr;
  }
  const bool session_present = session != nullptr;
  if (session == nullptr) {
    session = shard_.create_session(connect.client_id);
    if (session != nullptr && shard_.broker().wants(EventKind::kSessionCreated)) {
      Event e = event(EventKind::kSessionCreated, connect.client_id);
      e.reason = "expiry_s=" + std::to_string(connect_expiry_s_);
      emit(std::move(e));
    }
  }
  if (session == nullptr)
    return refuse_connect(version_, ReasonCode::kQuotaExceeded, "too many sessions");
  session->take_will();  // a delayed will is not sent once the client is back [MQTT-3.1.3-9]
  session->set_handing_over(false);  // a takeover that never finished: it is this node's again
  shard_.session_came_online(*session);
  session->set_expiry_s(connect_expiry_s_);
  session->set_will(std::move(connect.will));
  // Where nothing verifies names, a session belongs to no one in particular.
  const auth::Authenticator* auth = shard_.broker().auth();
  const bool names_verified = identity_ || (auth != nullptr && auth->verifies_names());
  session->set_owner(!names_verified ? store::SessionOwner::kUnknown
                     : identity_     ? store::SessionOwner::kNamed
                                     : store::SessionOwner::kAnonymous,
                     identity_ ? std::make_unique<std::string>(*identity_) : nullptr);
  session->claim(*this);
  session_ = session;
  if (connect_expiry_s_ == 0 || !shard_.has_store()) return acknowledge(*pending, session_present);
  // A stored session's record is durable before the CONNACK: a client told
  // its session exists must find it after a crash, will and all.
  session->set_stored(true);
  rare().pending_connect = std::move(pending);
  link_.hold_input();
  shard_.write_then(session_records(*session, 0),
                    [weak = weak_self(), session_present](bool durable) {
                      if (const auto self = weak.lock())
                        (*self)->on_session_stored(durable, session_present);
                    });
}

void ClientProtocol::on_session_stored(bool durable, bool session_present) {
  const std::unique_ptr<PendingConnect> pending = take_pending_connect();
  if (closing_ || !pending || session_ == nullptr) return;
  if (!durable) {
    Session& session = *session_;
    leave_session(false);
    // A session made for this CONNECT goes with it: the client was told it
    // failed, and must not find it next time.
    if (!session_present) shard_.end_session(session);
    return refuse_connect(version_, ReasonCode::kUnspecifiedError,
                          "the session could not be stored");
  }
  acknowledge(*pending, session_present);
}

// ---- 4. acknowledge --------------------------------------------------------------------

void ClientProtocol::acknowledge(const PendingConnect& pending, bool session_present) {
  const config::Config& config = shard_.config();
  const mqtt::Connect& connect = pending.connect;
  mqtt::Connack connack;
  connack.session_present = session_present;
  ClientLimits limits;
  if (mqtt::is_v5(version_)) {
    mqtt::Properties& p = connack.properties;
    p.receive_maximum = config.limits.receive_maximum;
    p.maximum_packet_size = config.limits.max_packet_bytes;
    p.topic_alias_maximum = config.limits.topic_alias_maximum;
    if (config.mqtt.max_qos < 2) p.maximum_qos = config.mqtt.max_qos;
    p.retain_available = config.mqtt.retain_available ? 1 : 0;
    p.wildcard_subscription_available = config.mqtt.wildcard_subscriptions ? 1 : 0;
    p.subscription_identifier_available = config.mqtt.subscription_identifiers ? 1 : 0;
    p.shared_subscription_available = config.mqtt.shared_subscriptions ? 1 : 0;
    if (pending.assigned) p.assigned_client_identifier = connect.client_id;
    if (pending.server_final) {  // the server's proof that it holds the user's keys
      p.authentication_method = std::string(kScramMethod);
      p.authentication_data =
          mqtt::Bytes(pending.server_final->begin(), pending.server_final->end());
    }
    if (keep_alive_s_ != connect.keep_alive_s) p.server_keep_alive = keep_alive_s_;
    const std::uint32_t asked = connect.properties.session_expiry_interval.value_or(0);
    if (connect_expiry_s_ != asked) p.session_expiry_interval = connect_expiry_s_;
    if (connect.properties.request_response_information.value_or(0) == 1) {
      p.response_information = config.sessions.response_information + connect.client_id;
    }
    limits.receive_maximum = connect.properties.receive_maximum.value_or(65535);
    limits.maximum_packet_size =
        connect.properties.maximum_packet_size.value_or(limits.maximum_packet_size);
    limits.topic_alias_maximum = connect.properties.topic_alias_maximum.value_or(0);
  }
  link_.send(connack);
  acknowledged_ = true;
  ShardStats::add(shard_.stats().clients_connected);
  if (rare_) rare_->connecting.reset();
  if (shard_.broker().wants(EventKind::kClientDisconnected)) rare().address = link_.peer_address();
  if (shard_.broker().wants(EventKind::kClientConnected)) {
    Event e = event(EventKind::kClientConnected, session_->client_id());
    e.reason = session_present ? "session_present" : "new_session";
    emit(std::move(e));
  }
  ShardStats::add(
      shard_.stats().connections_by_protocol[version_ == mqtt::ProtocolVersion::kV3_1     ? 0
                                             : version_ == mqtt::ProtocolVersion::kV3_1_1 ? 1
                                                                                          : 2]);
  session_->attach(link_, version_, limits);
  if (session_present && session_->has_queue_subscriptions()) {
    if (QueueGateway* queues = shard_.broker().queues())
      queues->session_online(shard_, session_->ref(), mqtt::is_v5(version_),
                             limits.receive_maximum);
  }
  trim_rare();
  link_.release_input();
}

void ClientProtocol::reload_acl(const auth::Authenticator& auth) {
  if (session_ == nullptr) return;  // not admitted yet: admit() reads the new files
  acl_ = auth.acl_for(session_->client_id(),
                      identity_ ? std::optional<std::string>(*identity_) : std::nullopt);
}

void ClientProtocol::note_auth_failure(const char* why) {
  ShardStats::add(shard_.stats().auth_failures);
  if (!shard_.broker().wants(EventKind::kClientAuthFailed)) return;
  const auto* connecting = rare_ ? rare_->connecting.get() : nullptr;
  Event e = event(EventKind::kClientAuthFailed,
                  connecting != nullptr ? std::string_view(connecting->first) : client_id());
  if (connecting != nullptr && e.username.empty()) e.username = connecting->second;
  e.reason = why;
  emit(std::move(e));
}

}  // namespace sluice::broker
