// The broker's configuration: one struct per section of the YAML file, each
// field with its default and a one-line comment. examples/sluice.yaml shows
// the same keys with the same defaults.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace sluice::config {

struct TlsConfig {
  std::string cert_file;             // PEM: the server's certificate (chain)
  std::string key_file;              // PEM: its private key
  std::string ca_file;               // PEM: CAs that client certificates must chain to
  std::string client_auth = "none";  // none, optional or require (mutual TLS)
  std::string min_version = "1.2";   // 1.2 or 1.3
  std::string ciphers;               // OpenSSL cipher list for TLS 1.2; empty: OpenSSL's default
  bool use_identity_as_username = false;  // the client certificate's subject CN is the username
  bool operator==(const TlsConfig&) const = default;
};

struct WebSocketConfig {
  std::string path = "/mqtt";
  // Origins a browser may connect from: exact ("https://app.example.com") or
  // "*.example.com". Requests without Origin (not from a browser) are let in.
  std::vector<std::string> allowed_origins;
  bool operator==(const WebSocketConfig&) const = default;
};

// Token buckets; a rate of 0 is no limit. A burst of 0 means one second's worth.
struct RateLimitConfig {
  double connections_per_s_per_ip = 0;  // new connections from one source address
  std::uint32_t connection_burst = 0;
  double publishes_per_s = 0;  // per client; over it, PUBLISH is dropped (5.0: PUBACK 0x96)
  std::uint32_t publish_burst = 0;
  double subscriptions_per_s = 0;  // per client, per topic filter; over it, SUBACK 0x97
  std::uint32_t subscription_burst = 0;

  bool operator==(const RateLimitConfig&) const = default;
};

struct ListenerConfig {
  std::string host = "127.0.0.1";
  std::uint16_t port = 1883;
  std::string transport = "tcp";  // tcp, tls, ws or wss
  TlsConfig tls;                  // for tls and wss
  WebSocketConfig websocket;      // for ws and wss
  // This listener's own rate limits, in place of the global ones.
  std::optional<RateLimitConfig> rate_limits;
  bool operator==(const ListenerConfig&) const = default;
};

enum class SharedStrategy { kRoundRobin, kRandom, kSticky, kHashClientId };

// What happens to a QoS 1/2 message for a session whose queue already holds
// max_queued_messages.
enum class QueueFullPolicy {
  kDropNewest,     // the new message is dropped (counted per client)
  kDropOldest,     // the oldest queued one is dropped to make room
  kRefusePublish,  // the publisher is refused: 5.0 PUBACK/PUBREC 0x97, routed nowhere; 3.x
                   // waits unacknowledged until there is room (queue_full_timeout_s, then
                   // closed), its next PUBLISHes behind it
};

struct LimitsConfig {
  std::uint32_t max_connections = 100'000;  // further clients are refused (CONNACK 0x89 / 3)
  std::uint32_t max_sessions = 1'000'000;   // online and offline; a new one beyond: 0x97 / 3
  std::uint32_t max_subscriptions_per_client = 10'000;  // more: SUBACK 0x97 (0x80 on 3.x)
  std::uint32_t max_packet_bytes = 1'048'576;           // larger packets: DISCONNECT 0x95
  std::uint16_t receive_maximum = 1024;        // inbound QoS 1/2 in flight per client (0x93 above)
  std::uint16_t max_inflight_messages = 1024;  // outbound QoS 1/2 in flight per client
  std::uint32_t max_queued_messages = 10'000;  // per session, beyond in flight (queue_full_policy)
  QueueFullPolicy queue_full_policy = QueueFullPolicy::kDropNewest;
  std::uint32_t queue_full_timeout_s = 30;  // refuse_publish: how long a 3.x publisher is held
  std::uint32_t max_topic_levels = 64;      // levels in a topic name or filter
  std::uint32_t max_retained_messages = 1'000'000;   // new retained topics refused beyond
  std::uint32_t max_write_buffer_bytes = 1'048'576;  // unsent bytes per client before QoS 0 drops
  std::uint16_t topic_alias_maximum = 64;            // aliases a client may use towards the broker
  std::uint16_t max_keepalive_s = 0;                 // 0: no cap; else Server Keep Alive above it
  std::uint32_t connect_timeout_s = 10;              // time to send CONNECT after connecting

  bool operator==(const LimitsConfig&) const = default;
};

// The limits a reload may change, copied from `from` into `to`: each is read
// where it is used (a new connection, session or subscription, a publish, a
// write), and none is announced to clients. The others are announced in
// CONNACK (receive_maximum, max_packet_bytes, topic_alias_maximum) or shape
// state made at start (max_inflight_messages, queue_full_policy,
// max_retained_messages): they need a restart.
inline void copy_run_time_limits(const LimitsConfig& from, LimitsConfig& to) {
  to.max_connections = from.max_connections;
  to.max_sessions = from.max_sessions;
  to.max_subscriptions_per_client = from.max_subscriptions_per_client;
  to.max_queued_messages = from.max_queued_messages;
  to.queue_full_timeout_s = from.queue_full_timeout_s;
  to.max_topic_levels = from.max_topic_levels;
  to.max_write_buffer_bytes = from.max_write_buffer_bytes;
  to.max_keepalive_s = from.max_keepalive_s;
  to.connect_timeout_s = from.connect_timeout_s;
}

struct SessionConfig {
  std::uint32_t max_session_expiry_s = 0xFFFFFFFF;  // cap on what clients ask; 0xFFFFFFFF never
  bool queue_qos0_offline = false;  // keep QoS 0 messages for offline persistent sessions
  SharedStrategy shared_subscription_strategy = SharedStrategy::kRoundRobin;
  std::string response_information = "responses/";  // prefix given on Request Response Information

  bool operator==(const SessionConfig&) const = default;
};

struct MqttConfig {
  std::uint8_t max_qos = 2;  // higher QoS is downgraded on subscribe, refused on publish
  bool retain_available = true;
  bool wildcard_subscriptions = true;
  bool subscription_identifiers = true;
  bool shared_subscriptions = true;

  bool operator==(const MqttConfig&) const = default;
};

struct StorageConfig {
  // Where state is kept. Empty: in memory only. Set: RocksDB in that directory
  // (unless engine is "memory"): retained messages, persistent sessions with
  // their subscriptions, queues, in-flight state and wills.
  std::string dir;
  std::string engine = "rocksdb";   // rocksdb or memory
  std::string durability = "sync";  // sync, batch or none (see store/committer.hpp)
  std::uint32_t batch_ms = 10;      // fsync period under durability: batch
  // Start from what is readable when the store lost acknowledged writes or is
  // damaged, logging and counting what is missing (docs/persistence.md).
  // Without it such a store stops start-up.
  bool recover = false;

  bool operator==(const StorageConfig&) const = default;
};

struct AuthConfig {
  std::string password_file;  // Mosquitto's format ($7$ PBKDF2-SHA512); empty: none
  std::string acl_file;       // Mosquitto's format; empty: every client may do anything
  // SCRAM-SHA-256 keys (`sluice passwd --scram`), for MQTT 5 enhanced authentication.
  std::string scram_file;
  // Clients without a username. Allowed when no password file is set; with
  // one, only if this says so.
  bool allow_anonymous = false;
  // Lets anonymous clients in on listeners off loopback (with a warning at
  // start). Without it, such a listener needs a password file.
  bool development_mode = false;

  bool operator==(const AuthConfig&) const = default;
};

// Durable queues ($queue/<name>, docs/queues.md). What a queue does with
// its messages: `queue_defaults` holds them for every queue, and a queue's own
// entry overrides what it names.
struct QueueOptions {
  std::uint32_t partitions = 1;  // a message goes to hash(key) % partitions; order is per partition
  std::uint32_t lease_timeout_ms = 30'000;  // a delivery not settled by then is offered again
  // The wait before each redelivery after a failed attempt (nack, lease
  // expired, consumer gone); the last step repeats.
  std::vector<std::uint32_t> redelivery_backoff_ms = {1'000, 5'000, 30'000, 120'000};
  std::uint32_t max_deliveries = 5;  // failed attempts before the message is dead-lettered
  // Where dead letters go: empty is "<name>.dlq"; "none" discards them (counted).
  std::string dead_letter;
  std::uint32_t prefetch = 100;     // leased, unsettled messages per consumer (v5 may ask fewer)
  bool allow_at_most_once = false;  // QoS 0 consumers: settled as soon as written to them
  // none: any consumer, any order of settlement; partition: each partition
  // leased to one consumer of a group at a time; key: at most one message
  // per key in flight per group (per-key order with parallel consumers).
  std::string ordering = "none";
  // A message whose `msg-id` user property was seen within this window is
  // acknowledged and not stored again; 0: no deduplication.
  std::uint32_t dedup_window_ms = 120'000;
  // Retention per partition (0: no limit): messages older than max_age, or
  // beyond the newest max_messages, are deleted; while respect_pending, not
  // one a group has not settled.
  std::uint32_t retention_max_age_ms = 0;
  std::uint64_t retention_max_messages = 0;
  std::uint64_t retention_max_bytes = 0;  // payloads and properties, per partition
  bool respect_pending = true;
  // Unsettled messages a partition may hold (0: no limit), and what a
  // publish beyond it does: reject_publish (5.0: PUBACK 0x97; 3.x: the
  // connection is closed, the message unacknowledged), drop_oldest (the
  // oldest unsettled one goes), dead_letter (the oldest goes to the
  // dead-letter queue, reason overflow).
  std::uint64_t max_depth = 0;
  std::uint64_t max_depth_bytes = 0;  // the same, counting payload and property bytes
  std::string overflow = "reject_publish";
  // The key of a message without a `key` user property (3.x publishers):
  // this level of its subtopic (1 is the first); 0: the whole subtopic.
  std::uint32_t key_level = 0;
  // Streams: delete (retention only), compact (keep the newest message of
  // each key), or both ("compact,delete"). A compacted message is one older
  // than min_compaction_lag with a newer one of its key; a tombstone (an
  // empty payload with a key) is itself removed delete_retention after it
  // was appended.
  std::string cleanup = "delete";
  std::uint32_t min_compaction_lag_ms = 0;
  std::uint32_t delete_retention_ms = 86'400'000;

  bool operator==(const QueueOptions&) const = default;
};

// The queue that takes queue `name`'s dead letters: its dead_letter, or
// <name>.dlq when that is empty; empty for none.
inline std::string dead_letter_name(std::string_view name, const QueueOptions& options) {
  if (options.dead_letter == "none") return {};
  return options.dead_letter.empty() ? std::string(name) + ".dlq" : options.dead_letter;
}

enum class QueueKind { kQueue, kStream };

// A queue kept by a Raft group on `factor` nodes of the cluster
// (docs/replication.md); factor 1: on its home node's disk alone.
struct QueueReplication {
  std::uint32_t factor = 1;
  // sync: a publish is acknowledged once a quorum of the replicas, at least
  // min_in_sync of them, committed it. (async is not built yet.)
  std::string mode = "sync";
  std::uint32_t min_in_sync = 1;
  int line = 0;  // where it was declared, for errors found later (not compared)

  bool operator==(const QueueReplication& other) const {
    return factor == other.factor && mode == other.mode && min_in_sync == other.min_in_sync;
  }
};

struct QueueConfig {
  std::string name;  // [A-Za-z0-9_.-]{1,200}
  QueueKind kind = QueueKind::kQueue;
  QueueOptions options;
  // Topic filters whose ordinary publishes are appended too, in the write
  // their PUBACK waits for (they still reach their subscribers).
  std::vector<std::string> capture;
  // Only for queues the configuration file declares.
  QueueReplication replication;

  bool operator==(const QueueConfig&) const = default;
};

// An HTTP endpoint told of events (docs/admin.md, "Webhooks").
struct WebhookConfig {
  std::string name;                 // in metrics and logs; empty: the url
  std::string url;                  // http://host[:port]/path
  std::vector<std::string> events;  // event names; empty: every event
  std::vector<std::string> topics;  // message.published: only these filters; empty: "#"
  std::vector<std::pair<std::string, std::string>> headers;  // sent with every request
  std::string secret;                // set: X-Sluice-Signature, an HMAC-SHA256 of the body with it
  std::uint32_t timeout_ms = 5'000;  // per attempt
  std::uint32_t max_queue = 10'000;  // events waiting; beyond, new ones are dropped (counted)
  std::uint64_t max_queue_bytes = 64 * 1024 * 1024;  // and the bytes of their bodies
  std::uint32_t max_attempts = 5;                    // then the event is dropped (counted)
  bool operator==(const WebhookConfig&) const = default;
};

// Traces of messages, exported as OTLP over HTTP/JSON (docs/tracing.md).
struct TracingConfig {
  std::string otlp_endpoint;  // http://host[:port]/v1/traces; empty: no tracing
  double sample_ratio = 0;    // share of publishes without a traceparent that start a trace
  std::string service_name = "sluice";
  std::uint32_t batch_size = 512;           // spans in one request at most
  std::uint32_t flush_interval_ms = 1'000;  // a partial batch waits at most this long
  std::uint32_t max_queue = 20'000;         // spans waiting; beyond, new ones are dropped (counted)
  std::uint32_t timeout_ms = 2'000;         // per request
  bool operator==(const TracingConfig&) const = default;
};

// Where log lines go, and in what form (the same event names in both).
struct LogConfig {
  std::string format = "text";  // text (event=... key=value) or json (one object a line)
  std::string file;             // empty: standard output; else this file, rotated by size
  std::uint64_t max_file_bytes = 100 * 1024 * 1024;  // rotate beyond this
  std::uint32_t max_files = 5;                       // rotated files kept beside the live one
  bool operator==(const LogConfig&) const = default;
};

// How the broker stops on SIGTERM, SIGINT or POST /api/v1/shutdown.
struct ShutdownConfig {
  // How long QoS 1/2 messages in flight to connected clients get to be
  // acknowledged before the clients are disconnected.
  std::uint32_t timeout_s = 5;
  // Set: MQTT 5 clients are told 0x9D (Server moved) with this Server
  // Reference, instead of 0x8B (Server shutting down).
  std::string server_reference;
  bool operator==(const ShutdownConfig&) const = default;
};

// A bearer token of the admin API: only its SHA-256 is kept (`sluice token`
// makes one and prints the secret once).
struct AdminTokenConfig {
  std::string name;
  std::string token_sha256;  // 64 hex digits
  std::string role;          // viewer (GET), operator (plus operations), admin (all)
  bool operator==(const AdminTokenConfig&) const = default;
};

struct AdminListenerConfig {
  std::string host = "127.0.0.1";
  std::uint16_t port = 9883;
  std::string transport = "http";  // http or https
  TlsConfig tls;                   // for https: the same keys as an MQTT listener's
  bool operator==(const AdminListenerConfig&) const = default;
};

// The admin HTTP server: REST API, /metrics, /health, /ready (docs/admin.md).
struct AdminConfig {
  // Empty: no admin server. Off loopback, start-up needs tokens.
  std::vector<AdminListenerConfig> listeners = {AdminListenerConfig{}};
  std::vector<AdminTokenConfig> tokens;
  // Lines of "name role sha256", read at start-up, beside `tokens`.
  std::string token_file;
  bool operator==(const AdminConfig&) const = default;
};

// The cluster (docs/cluster.md): membership and ownership in etcd, gRPC
// between nodes. Off by default: a single node needs none of it.
struct ClusterEtcdConfig {
  // client URLs of an existing etcd cluster (http://host:port or host:port)
  std::vector<std::string> endpoints;
  // Start a local etcd member as a child process (Debian's etcd-server), data
  // in <storage.dir>/etcd, and stop it on shutdown.
  bool managed = false;
  std::string name;                              // the managed member's name; empty: the node_id
  std::string client_listen = "127.0.0.1:2379";  // the managed member's client address
  std::string peer_listen = "127.0.0.1:2380";    // and its peer address
  // The managed members, "name=http://host:peer_port,..." (etcd's
  // --initial-cluster); empty: this member alone.
  std::string initial_cluster;
  std::string cluster_token = "sluice";  // etcd's --initial-cluster-token
  std::string binary = "etcd";           // the etcd program, found on PATH
  std::string cert_file;                 // client TLS to etcd: this node's certificate and key,
  std::string key_file;                  //   and the CA that etcd's certificate chains to
  std::string ca_file;                   //   (all empty: plain text, loopback only)
  std::uint32_t dial_timeout_ms = 5000;
  bool operator==(const ClusterEtcdConfig&) const = default;
};

// The Raft groups of replicated queues (docs/replication.md). Failover takes
// about one election timeout; a machine that starves its nodes (the
// sanitizers, an overloaded host) needs wider ones, or elections churn.
struct ClusterRaftConfig {
  std::uint32_t election_timeout_ms = 250;
  std::uint32_t heartbeat_ms = 40;  // at most half the election timeout
  // A node-to-node Raft stream with writes queued and none finished for this
  // long is taken for stuck and redialled.
  std::uint32_t link_stuck_ms = 2000;
  // A member snapshots its queue after this many entries and keeps this many
  // behind the snapshot: a follower a little behind catches up from the log,
  // one further behind from the snapshot. Disk per group stays bounded.
  std::uint32_t snapshot_entries = 8192;
  std::uint32_t snapshot_trailing = 1024;
  bool operator==(const ClusterRaftConfig&) const = default;
};

struct ClusterConfig {
  bool enabled = false;
  std::string node_id;                    // unique in the cluster: [A-Za-z0-9_.-]{1,64}
  std::string listen = "127.0.0.1:7946";  // this node's gRPC server
  std::string advertise;                  // what other nodes dial; empty: `listen`
  // Mutual TLS between nodes: this node's certificate and key, and the CA
  // every node's certificate must chain to.
  std::string cert_file;
  std::string key_file;
  std::string ca_file;
  bool insecure = false;  // gRPC between nodes in clear text (a warning is logged)
  // The membership lease: a node that cannot renew it for this long is taken
  // for dead by the others, and stops taking connections itself.
  std::uint32_t lease_ttl_s = 5;
  // At least lease_ttl_s * 1000 + 2000 (config_loader says why).
  std::uint32_t session_takeover_timeout_ms = 7000;
  std::uint32_t forward_batch = 512;        // messages per forward call at most
  std::uint32_t forward_timeout_ms = 5000;  // a forward not confirmed by then failed
  // A $share group with members on several nodes: an online member on the
  // publisher's node first (false: the strategy picks among all of them).
  bool shared_prefer_local = false;
  ClusterEtcdConfig etcd;
  ClusterRaftConfig raft;
  bool operator==(const ClusterConfig&) const = default;
};

struct Config {
  std::vector<ListenerConfig> listeners = {ListenerConfig{}};
  std::uint32_t workers = 0;          // worker threads; 0: one per core
  std::uint32_t sys_interval_s = 10;  // $SYS topics refresh period; 0: off
  std::string log_level = "info";     // trace, debug, info, warn, error, off
  LimitsConfig limits;
  SessionConfig sessions;
  MqttConfig mqtt;
  StorageConfig storage;
  AuthConfig auth;
  RateLimitConfig rate_limits;
  std::vector<QueueConfig> queues;
  QueueOptions queue_defaults;
  // Whether the first publish or subscribe to an unknown queue name creates
  // it with queue_defaults; otherwise it is refused (0x90 / SUBACK 0x8F).
  bool queues_auto_create = false;
  AdminConfig admin;
  ShutdownConfig shutdown;
  LogConfig log;
  std::vector<WebhookConfig> webhooks;
  TracingConfig tracing;
  ClusterConfig cluster;

  bool operator==(const Config&) const = default;
};

const char* to_string(SharedStrategy strategy);
const char* to_string(QueueFullPolicy policy);

}  // namespace sluice::config
