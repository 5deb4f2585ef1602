// The MQTT conversation with one connected client: CONNECT handling, each
// packet's rules, and what happens when the connection ends. One per network
// connection, created by the net layer and called on its worker's thread; it
// binds the connection to a Session of its shard, which outlives it.
#pragma once

#include <cstdint>
#include <deque>
#include <memory>
#include <optional>
#include <string>
#include <unordered_map>

#include "auth/acl_file.hpp"
#include "auth/scram.hpp"
#include "auth/token_bucket.hpp"
#include "broker/ack_queue.hpp"
#include "broker/client_link.hpp"
#include "broker/events.hpp"
#include "broker/on_demand.hpp"
#include "broker/queue_gateway.hpp"
#include "broker/remote_acks.hpp"
#include "broker/session.hpp"
#include "broker/session_directory.hpp"
#include "mqtt/decode_error.hpp"
#include "mqtt/packets.hpp"
#include "store/write_batch.hpp"

namespace sluice::auth {
class Authenticator;
}

namespace sluice::broker {

class Shard;

class ClientProtocol {
 public:
  ClientProtocol(Shard& shard, ClientLink& link);
  ~ClientProtocol();
  ClientProtocol(const ClientProtocol&) = delete;
  ClientProtocol& operator=(const ClientProtocol&) = delete;

  // The first packet. The net layer decodes it (to find the shard that owns
  // the client id) and hands it here on that shard. What follows it waits
  // (ClientLink::hold_input) until the CONNACK is sent: checking a password
  // and storing a new session's record happen off this thread.
  void on_connect(mqtt::Connect&& connect);
  // Any later packet.
  void on_packet(mqtt::Packet&& packet);
  // The same for the packets every message brings, decoded without a Packet
  // (see Connection::process): a PUBLISH, and a PUBACK, PUBREC or PUBCOMP
  // with reason Success and no properties.
  void on_publish_packet(mqtt::Publish&& publish);
  void on_plain_ack(mqtt::PacketType type, std::uint16_t packet_id);
  // The decoder refused the input. `connect_version` is set when the refused
  // packet was the CONNECT: it says which CONNACK form the client reads.
  void on_decode_error(const mqtt::DecodeError& error,
                       std::optional<mqtt::ProtocolVersion> connect_version);
  // The socket closed or failed without a DISCONNECT.
  void on_connection_lost();
  // Nothing arrived within 1.5 times the keep alive [MQTT-3.1.2-22].
  void on_keep_alive_expired();
  // The broker is stopping: DISCONNECT 0x8B on MQTT 5, then close.
  void on_server_shutdown();
  // Another connection with the same client id took the session [MQTT-3.1.4-3].
  void on_taken_over();
  // An operator disconnects the client (admin API): DISCONNECT 0x98 on MQTT
  // 5, then close; its will goes out, as for any end it did not ask for.
  void on_administrative_disconnect();
  // This node lost its place in the cluster (its etcd lease) and can no
  // longer prove it owns the session: DISCONNECT 0x89 on MQTT 5, then close.
  void on_cluster_unavailable();
  // A replicated queue this client consumes is no longer served by this
  // node (its Raft group is led elsewhere now): DISCONNECT 0x9C (use
  // another server) on MQTT 5 with `why`, then close.
  void on_queue_moved(const std::string& why);
  // The net layer refuses this connection (its address connects too often):
  // CONNACK 0x9F (3.x: 3, server unavailable), then close.
  void refuse_over_connection_rate(mqtt::ProtocolVersion version);
  // The client presented a verified certificate with this name, and the
  // listener takes it as the username: no password is asked for, and the
  // ACL and session ownership go by this name.
  void set_certificate_identity(std::string name) {
    identity_ = std::make_unique<std::string>(std::move(name));
  }
  // Rate limits of the listener the client came through, in place of the
  // global ones (set before on_connect).
  void set_rate_limits(const config::RateLimitConfig* limits) { listener_rate_limits_ = limits; }
  // The socket caught up: queued messages may follow.
  void on_writable();
  // A 3.x publisher held for a full queue: tries its message again. False
  // once it is no longer held (routed, timed out, or gone).
  bool retry_held_publish(Clock::time_point now);

  // The CONNACK went out: the client is connected.
  bool connected() const { return session_ != nullptr && acknowledged_; }
  // The keep alive in force, 0 for none; the net layer times it.
  std::uint16_t keep_alive_s() const { return keep_alive_s_; }
  const std::string& client_id() const;
  // What the client may read (each delivery is checked); nullptr: anything.
  const auth::ClientAcl* read_acl() const { return acl_.get(); }
  // The client's rights from now on, for everything it publishes, subscribes
  // to and is sent (what a reload of the ACL file will hand a connected client).
  void set_acl(std::unique_ptr<auth::ClientAcl> acl) { acl_ = std::move(acl); }
  // After a reload of the ACL file: this client's rules from `auth`'s new file.
  void reload_acl(const auth::Authenticator& auth);

 private:
  // ---- CONNECT, in its steps (client_protocol_connect.cpp) ----
  struct PendingConnect {
    mqtt::Connect connect;
    bool assigned = false;                    // its client id was made up here
    std::optional<std::string> server_final;  // SCRAM's proof, for the CONNACK
    bool owned_in_cluster = false;            // the session directory made this node its owner
  };
  // Refuses the CONNECT with `reason` (nearest 3.x return code on 3.x).
  void refuse_connect(mqtt::ProtocolVersion version, mqtt::ReasonCode reason,
                      const char* reason_string = nullptr);
  std::string assign_client_id() const;
  // 1. Who the client is: a certificate's name, SCRAM (start_enhanced_auth,
  //    on_auth), the password file (checked on the hash pool), or anonymous.
  void authenticate(std::unique_ptr<PendingConnect> pending);
  void start_enhanced_auth(std::unique_ptr<PendingConnect> pending);
  void on_password_checked(bool verified);
  // 2. What the identity may do, and what the CONNECT asks for (will, limits).
  void admit(std::unique_ptr<PendingConnect> pending);
  // 3. The session: resumed, taken over or made, if it belongs to this
  //    identity. A stored session's record is written before step 4.
  void claim(std::unique_ptr<PendingConnect> pending);
  //    In a cluster, first made this node's, handed over by the node that
  //    held it if another did (broker/session_directory.hpp).
  void claim_in_cluster(SessionDirectory& directory, std::unique_ptr<PendingConnect> pending);
  // True when the CONNECT goes on with the session; false when it was
  // refused (or the connection is closing).
  bool on_cluster_claim(SessionDirectory::Outcome&& outcome);
  void on_session_stored(bool durable, bool session_present);
  // 4. CONNACK, then the session is attached: in-flight messages are resent
  //    and queued ones follow; packets the client sent after CONNECT are read.
  void acknowledge(const PendingConnect& pending, bool session_present);
  // Re-authentication (AUTH 0x19, section 4.12.1) with the CONNECT's method.
  void on_reauthentication(const mqtt::Auth& auth);
  void on_auth(const mqtt::Auth& auth);
  // What a callback from another thread holds to find this protocol, if it
  // is still there when the callback runs on this thread.
  std::weak_ptr<ClientProtocol*> weak_self();

  // ---- the end of a connection ----
  // Sends DISCONNECT with `reason` on MQTT 5 and closes; the will goes out.
  void disconnect_with(mqtt::ReasonCode reason, const char* reason_string = nullptr);
  // Unbinds from the session: the will is armed (abnormal) or dropped.
  void leave_session(bool publish_will);
  void close();

  // ---- packets after CONNECT ----
  void on_publish(mqtt::Publish&& publish);
  // A client's message on its way: routed now, or held while queues are full.
  struct HeldPublish {
    MessagePtr message;
    mqtt::QoS qos;
    std::uint16_t packet_id;
    store::WriteBatch inbound;  // the publisher's own changes (its QoS 2 id)
    Clock::time_point since;
    // Or a 3.x publish to a queue at max_depth, with its deferred acknowledgement.
    std::unique_ptr<mqtt::Publish> to_queue;
    std::optional<std::uint64_t> queue_ack;
  };
  // Routes it and acknowledges (once stored); false when it was refused.
  bool route_publish(HeldPublish& publish, bool retry = false);
  // A PUBLISH to $queue/...: appended by the queue layer, acknowledged once durable.
  void publish_to_queue(mqtt::Publish&& publish, store::WriteBatch&& inbound);
  // Hands it to the queue layer, whose acknowledgement completes `ack`.
  QueueGateway::Outcome offer_to_queue(mqtt::Publish& publish, store::WriteBatch&& inbound,
                                       std::optional<std::uint64_t> ack);
  // The write that goes with a publish: its QoS 2 packet id, in a stored session.
  store::WriteBatch inbound_write(const mqtt::Publish& publish) const;
  // A SUBSCRIBE filter naming a queue: the session becomes one of its
  // consumers; a stored session's subscription is added to `batch`.
  // Returns the SUBACK reason; a refusal may say why in `refusal_reason`.
  mqtt::ReasonCode subscribe_to_queue(const std::string& filter, std::string_view address,
                                      std::string_view share_group,
                                      const mqtt::Properties& properties,
                                      mqtt::SubscriptionOptions options, store::WriteBatch& batch,
                                      std::string& refusal_reason);
  void wait_behind_held(mqtt::Publish&& publish);
  static std::size_t waiting_cost(const mqtt::Publish& publish);
  void on_subscribe(mqtt::Subscribe&& subscribe);
  void on_unsubscribe(const mqtt::Unsubscribe& unsubscribe);
  void on_disconnect(const mqtt::Disconnect& disconnect);
  void on_pubrel(const mqtt::Pubrel& pubrel);
  void on_pubrec(std::uint16_t packet_id, mqtt::ReasonCode reason);
  // The checks every packet but CONNECT and AUTH passes first: false when it
  // is not to be handled (the connection was refused or closed).
  bool admit_packet();

  // Resolves an inbound topic alias [MQTT-3.3.2-10..12]; false after disconnecting.
  bool resolve_topic_alias(mqtt::Publish& publish);
  // PUBACK/PUBREC for QoS 1/2 with `reason`. 3.x has no negative
  // acknowledgement: a refused message is acknowledged and dropped there.
  void acknowledge_publish(mqtt::QoS qos, std::uint16_t packet_id, mqtt::ReasonCode reason);
  // The PUBACK or PUBREC for `publish` (none for QoS 0).
  std::optional<mqtt::Packet> publish_ack(mqtt::QoS qos, std::uint16_t packet_id,
                                          mqtt::ReasonCode reason) const;
  // The acknowledgement of a QoS 1/2 message that also went to other nodes:
  // it goes once `batch` is stored and every node confirmed
  // (remote_acks.hpp); if any did not, it says so, and a QoS 2 packet id is
  // released so that the message sent again is not taken for a duplicate.
  void acknowledge_after_nodes(store::WriteBatch&& batch, mqtt::QoS qos, std::uint16_t packet_id,
                               mqtt::ReasonCode reason, std::function<void(bool durable)> also,
                               std::shared_ptr<RemoteAcks> remote);
  // Hands `batch` to the store; `ack`, if any, goes once it is durable.
  // `also`, if set, runs too once the batch is durable (queues' captured appends).
  void write_then_acknowledge(store::WriteBatch&& batch, std::optional<mqtt::Packet> ack,
                              std::function<void(bool durable)> also = nullptr);
  void send_retained(const std::string& filter, const mqtt::SubscriptionOptions& options,
                     std::uint32_t identifier);

  Shard& shard_;
  ClientLink& link_;
  Session* session_ = nullptr;
  mqtt::ProtocolVersion version_ = mqtt::ProtocolVersion::kV3_1_1;
  bool connect_seen_ = false;
  bool acknowledged_ = false;  // the CONNACK was sent
  bool closing_ = false;
  bool counted_ = false;        // counted in the broker's connections
  bool enhanced_auth_ = false;  // authenticated with SCRAM: it may re-authenticate
  std::uint16_t keep_alive_s_ = 0;
  std::uint32_t connect_expiry_s_ = 0;  // Session Expiry Interval from CONNECT
  OnDemand<std::unordered_map<std::uint16_t, std::string>> inbound_aliases_;
  // Sends a PUBACK/PUBREC/PUBCOMP/SUBACK/UNSUBACK behind any still waiting.
  void send_ack(mqtt::Packet&& packet);
  // The same for a PUBACK/PUBREC/PUBCOMP with reason Success and no properties.
  void send_plain_ack(mqtt::PacketType type, std::uint16_t packet_id);
  AckQueue& deferred_acks();
  // Shared with the store's callbacks, which may outlive this connection;
  // made the first time an acknowledgement waits for the store.
  std::shared_ptr<AckQueue> acks_;
  // What this client may publish, subscribe to and read; nullptr: anything.
  std::unique_ptr<auth::ClientAcl> acl_;
  // Its rate limits; nullptr when none is configured (most brokers).
  struct RateLimits {
    std::optional<auth::TokenBucket> publishes;
    std::optional<auth::TokenBucket> subscriptions;
  };
  std::unique_ptr<RateLimits> rates_;
  const config::RateLimitConfig* listener_rate_limits_ = nullptr;
  // The verified username (password file, SCRAM or certificate); nullptr:
  // anonymous. Rare enough not to be kept inline.
  std::unique_ptr<std::string> identity_;
  struct WaitingPublishes {
    std::deque<mqtt::Publish> publishes;  // behind the held one, not yet looked at
    std::size_t bytes = 0;
  };
  // What a connection holds only while something waits: its CONNECT (on
  // SCRAM, the password check, the store), a SCRAM exchange, a message held
  // for a full queue, and what callbacks from other threads find it by.
  // Apart, so that an idle connection pays one pointer for all of it.
  struct Rare {
    std::shared_ptr<ClientProtocol*> lifeline;  // for weak_self()
    std::unique_ptr<PendingConnect> pending_connect;
    std::unique_ptr<auth::ScramExchange> scram;
    std::unique_ptr<HeldPublish> held_publish;
    std::unique_ptr<WaitingPublishes> waiting;
    // The client's address, kept only while a webhook wants
    // client.disconnected (the socket may be gone by then) or
    // message.published (asked once, not per publish).
    std::string address;
    // The CONNECT's client id and username until the CONNACK, kept only
    // while a webhook wants client.auth_failed.
    std::unique_ptr<std::pair<std::string, std::string>> connecting;
  };
  std::unique_ptr<Rare> rare_;
  Rare& rare() {
    if (!rare_) rare_ = std::make_unique<Rare>();
    return *rare_;
  }
  PendingConnect* pending_connect() const { return rare_ ? rare_->pending_connect.get() : nullptr; }
  std::unique_ptr<PendingConnect> take_pending_connect() {
    return rare_ ? std::move(rare_->pending_connect) : nullptr;
  }
  HeldPublish* held_publish() const { return rare_ ? rare_->held_publish.get() : nullptr; }
  // Lets go of the rare state once nothing waits any more (callbacks still
  // on their way find the connection gone, and do nothing).
  void trim_rare() {
    if (rare_ && !rare_->pending_connect && !rare_->scram && !rare_->held_publish &&
        !rare_->waiting && rare_->address.empty() && !rare_->connecting) {
      rare_.reset();
    }
  }
  // An event about this client, for webhooks (whoever calls it asked
  // broker().wants(kind) first): client id, username, address, protocol.
  Event event(EventKind kind, std::string_view client_id) const;
  void emit(Event&& event) const;
  void announce_removed(const std::string& filter) const;
  // A client refused for its credentials: counted, and told to webhooks.
  void note_auth_failure(const char* why);
  // Takes a token from `bucket` if limited; false when the client is over its rate.
  static bool within_rate(std::optional<auth::TokenBucket>* bucket);
};

}  // namespace sluice::broker
