// The YAML reader. Each section is read by a `Section`, which remembers the
// keys it was asked for so that any other key in the file is reported as
// unknown. Errors are thrown inside this file only, as a ConfigError at the
// top: reading configuration is not a hot path, and it keeps each reader short.
#include "config/config_loader.hpp"

#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cctype>
#include <charconv>
#include <fstream>
#include <limits>
#include <optional>
#include <set>
#include <sstream>

#include "config/listen_address.hpp"

namespace sluice::config {
namespace {

struct Failure {
  std::string message;
};

class Section {
 public:
  Section(const YAML::Node& node, std::string path, std::string_view source)
      : node_(node.IsNull() ? YAML::Node(YAML::NodeType::Undefined) : node),
        path_(std::move(path)),
        source_(source) {
    if (node_.IsDefined() && !node_.IsMap()) fail(node_, "a mapping of keys to values");
  }

  template <class Int>
  void integer(const char* key, Int& out, std::int64_t min, std::int64_t max) {
    const YAML::Node value = take(key);
    if (!value) return;
    std::int64_t parsed = 0;
    const std::string text = value.IsScalar() ? value.Scalar() : "";
    const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), parsed);
    if (!value.IsScalar() || ec != std::errc() || end != text.data() + text.size() ||
        parsed < min || parsed > max) {
      fail(value, key, "an integer from " + std::to_string(min) + " to " + std::to_string(max));
    }
    out = static_cast<Int>(parsed);
  }

  void number(const char* key, double& out, double min, double max) {
    const YAML::Node value = take(key);
    if (!value) return;
    double parsed = 0;
    const std::string text = value.IsScalar() ? value.Scalar() : "";
    const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), parsed);
    if (!value.IsScalar() || ec != std::errc() || end != text.data() + text.size() ||
        !(parsed >= min && parsed <= max)) {
      fail(value, key, "a number from " + format_number(min) + " to " + format_number(max));
    }
    out = parsed;
  }

  // A duration such as "500ms", "30s", "2m", "1h" or "1d", in milliseconds.
  void duration_ms(const char* key, std::uint32_t& out, std::uint64_t min, std::uint64_t max) {
    const YAML::Node value = take(key);
    if (!value) return;
    const auto parsed = value.IsScalar() ? parse_duration_ms(value.Scalar()) : std::nullopt;
    if (!parsed || *parsed < min || *parsed > max) {
      fail(value, key,
           "a duration such as 500ms, 30s, 2m, 1h or 1d, from " + show_ms(min) + " to " +
               show_ms(max));
    }
    out = static_cast<std::uint32_t>(*parsed);
  }

  void durations_ms(const char* key, std::vector<std::uint32_t>& out, std::uint64_t min,
                    std::uint64_t max) {
    const YAML::Node value = take(key);
    if (!value) return;
    const std::string allowed =
        "a non-empty list of durations such as 500ms, 30s or 2m, each from " + show_ms(min) +
        " to " + show_ms(max);
    if (!value.IsSequence() || value.size() == 0) fail(value, key, allowed);
    out.clear();
    for (const auto& item : value) {
      const auto parsed = item.IsScalar() ? parse_duration_ms(item.Scalar()) : std::nullopt;
      if (!parsed || *parsed < min || *parsed > max) fail(item, key, allowed);
      out.push_back(static_cast<std::uint32_t>(*parsed));
    }
  }

  void boolean(const char* key, bool& out) {
    const YAML::Node value = take(key);
    if (!value) return;
    if (value.IsScalar() && (value.Scalar() == "true" || value.Scalar() == "false")) {
      out = value.Scalar() == "true";
      return;
    }
    fail(value, key, "true or false");
  }

  void string(const char* key, std::string& out) {
    const YAML::Node value = take(key);
    if (!value) return;
    if (!value.IsScalar()) fail(value, key, "a string");
    out = value.Scalar();
  }

  void strings(const char* key, std::vector<std::string>& out) {
    const YAML::Node value = take(key);
    if (!value) return;
    if (!value.IsSequence()) fail(value, key, "a list of strings");
    out.clear();
    for (const auto& item : value) {
      if (!item.IsScalar()) fail(item, key, "a list of strings");
      out.push_back(item.Scalar());
    }
  }

  void choice(const char* key, std::string& out, std::initializer_list<const char*> allowed) {
    const YAML::Node value = take(key);
    if (!value) return;
    std::string list;
    for (const char* option : allowed) {
      if (value.IsScalar() && value.Scalar() == option) {
        out = option;
        return;
      }
      list += list.empty() ? option : std::string(", ") + option;
    }
    fail(value, key, "one of: " + list);
  }

  // A sub-section, or a null node when the key is absent.
  YAML::Node child(const char* key) { return take(key); }

  std::string child_path(const char* key) const { return path_.empty() ? key : path_ + "." + key; }
  std::string_view source() const { return source_; }

  // Reports the first key that nobody asked for.
  void finish() const {
    if (!node_.IsDefined()) return;
    for (const auto& entry : node_) {
      const std::string key = entry.first.Scalar();
      if (!known_.contains(key)) {
        throw Failure{where(entry.first) + "unknown key '" + child_path(key.c_str()) + "'"};
      }
    }
  }

  [[noreturn]] void fail(const YAML::Node& at, const char* key, const std::string& allowed) const {
    const std::string got = at.IsScalar() ? "'" + at.Scalar() + "'" : "a " + kind(at);
    throw Failure{where(at) + "key '" + child_path(key) + "': expected " + allowed + ", got " +
                  got};
  }

 private:
  [[noreturn]] void fail(const YAML::Node& at, const std::string& allowed) const {
    throw Failure{where(at) + "'" + (path_.empty() ? "(top level)" : path_) + "': expected " +
                  allowed};
  }

  static std::optional<std::uint64_t> parse_duration_ms(const std::string& text) {
    std::uint64_t number = 0;
    const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), number);
    if (ec != std::errc() || end == text.data()) return std::nullopt;
    const std::string_view unit(end, static_cast<std::size_t>(text.data() + text.size() - end));
    std::uint64_t scale = 0;
    if (unit == "ms") scale = 1;
    if (unit == "s") scale = 1'000;
    if (unit == "m") scale = 60'000;
    if (unit == "h") scale = 3'600'000;
    if (unit == "d") scale = 86'400'000;
    if (scale == 0 || number > std::numeric_limits<std::uint32_t>::max() / scale)
      return std::nullopt;
    return number * scale;
  }

  static std::string show_ms(std::uint64_t ms) {
    if (ms != 0 && ms % 86'400'000 == 0) return std::to_string(ms / 86'400'000) + "d";
    if (ms != 0 && ms % 3'600'000 == 0) return std::to_string(ms / 3'600'000) + "h";
    if (ms != 0 && ms % 60'000 == 0) return std::to_string(ms / 60'000) + "m";
    if (ms != 0 && ms % 1'000 == 0) return std::to_string(ms / 1'000) + "s";
    return std::to_string(ms) + "ms";
  }

  static std::string format_number(double value) {
    std::ostringstream out;
    out << value;
    return out.str();
  }

  static std::string kind(const YAML::Node& node) {
    if (node.IsMap()) return "mapping";
    if (node.IsSequence()) return "list";
    return "null value";
  }

  std::string where(const YAML::Node& at) const {
    return std::string(source_) + ":" + std::to_string(at.Mark().line + 1) + ": ";
  }

  YAML::Node take(const char* key) {
    known_.insert(key);
    if (!node_.IsDefined()) return YAML::Node(YAML::NodeType::Undefined);
    const YAML::Node& map = node_;  // const: a lookup must not add the key
    const YAML::Node value = map[key];
    return value.IsDefined() && !value.IsNull() ? value : YAML::Node(YAML::NodeType::Undefined);
  }

  YAML::Node node_;
  std::string path_;
  std::string_view source_;
  std::set<std::string> known_;
};

void read_rate_limits(const YAML::Node& node, const std::string& path, RateLimitConfig& c,
                      std::string_view source) {
  Section s(node, path, source);
  constexpr std::int64_t kMax = 1'000'000'000;
  s.number("connections_per_s_per_ip", c.connections_per_s_per_ip, 0, 1e9);
  s.integer("connection_burst", c.connection_burst, 0, kMax);
  s.number("publishes_per_s", c.publishes_per_s, 0, 1e9);
  s.integer("publish_burst", c.publish_burst, 0, kMax);
  s.number("subscriptions_per_s", c.subscriptions_per_s, 0, 1e9);
  s.integer("subscription_burst", c.subscription_burst, 0, kMax);
  s.finish();
}

void read_tls(const YAML::Node& node, const std::string& path, TlsConfig& t,
              std::string_view source) {
  Section ts(node, path, source);
  ts.string("cert_file", t.cert_file);
  ts.string("key_file", t.key_file);
  ts.string("ca_file", t.ca_file);
  ts.choice("client_auth", t.client_auth, {"none", "optional", "require"});
  ts.choice("min_version", t.min_version, {"1.2", "1.3"});
  ts.string("ciphers", t.ciphers);
  ts.boolean("use_identity_as_username", t.use_identity_as_username);
  ts.finish();
}

std::vector<ListenerConfig> read_listeners(const YAML::Node& node, std::string_view source) {
  if (!node.IsSequence()) {
    throw Failure{std::string(source) + ":" + std::to_string(node.Mark().line + 1) +
                  ": key 'listeners': expected a list of {host, port}"};
  }
  std::vector<ListenerConfig> listeners;
  for (std::size_t i = 0; i < node.size(); ++i) {
    ListenerConfig listener;
    Section s(node[i], "listeners[" + std::to_string(i) + "]", source);
    s.string("host", listener.host);
    s.integer("port", listener.port, 0, 65535);
    s.choice("transport", listener.transport, {"tcp", "tls", "ws", "wss"});
    if (YAML::Node limits = s.child("rate_limits")) {
      listener.rate_limits.emplace();
      read_rate_limits(limits, s.child_path("rate_limits"), *listener.rate_limits, source);
    }
    if (YAML::Node websocket = s.child("websocket")) {
      Section ws(websocket, s.child_path("websocket"), source);
      ws.string("path", listener.websocket.path);
      ws.strings("allowed_origins", listener.websocket.allowed_origins);
      ws.finish();
      if (!listener.websocket.path.starts_with("/")) {
        throw Failure{std::string(source) + ":" + std::to_string(websocket.Mark().line + 1) +
                      ": key 'listeners[" + std::to_string(i) +
                      "].websocket.path': expected a path starting with '/'"};
      }
    }
    if (YAML::Node tls = s.child("tls")) read_tls(tls, s.child_path("tls"), listener.tls, source);
    s.finish();
    const bool encrypted = listener.transport == "tls" || listener.transport == "wss";
    if (encrypted && (listener.tls.cert_file.empty() || listener.tls.key_file.empty())) {
      throw Failure{std::string(source) + ":" + std::to_string(node[i].Mark().line + 1) +
                    ": key 'listeners[" + std::to_string(i) +
                    "].tls': a tls or wss listener needs cert_file and key_file"};
    }
    if (listener.tls.client_auth != "none" && listener.tls.ca_file.empty()) {
      throw Failure{std::string(source) + ":" + std::to_string(node[i].Mark().line + 1) +
                    ": key 'listeners[" + std::to_string(i) +
                    "].tls.client_auth': checking client certificates needs tls.ca_file"};
    }
    listeners.push_back(listener);
  }
  if (listeners.empty()) {
    throw Failure{std::string(source) + ":" + std::to_string(node.Mark().line + 1) +
                  ": key 'listeners': expected at least one listener"};
  }
  return listeners;
}

void read_limits(Section parent, const YAML::Node& node, LimitsConfig& l, std::string_view source) {
  Section s(node, parent.child_path("limits"), source);
  constexpr std::int64_t kU32 = std::numeric_limits<std::uint32_t>::max();
  s.integer("max_connections", l.max_connections, 1, kU32);
  s.integer("max_sessions", l.max_sessions, 1, kU32);
  s.integer("max_subscriptions_per_client", l.max_subscriptions_per_client, 1, kU32);
  s.integer("max_packet_bytes", l.max_packet_bytes, 64, 268'435'455);
  s.integer("receive_maximum", l.receive_maximum, 1, 65535);
  s.integer("max_inflight_messages", l.max_inflight_messages, 1, 65535);
  s.integer("max_queued_messages", l.max_queued_messages, 0, kU32);
  std::string policy = to_string(l.queue_full_policy);
  s.choice("queue_full_policy", policy, {"drop_newest", "drop_oldest", "refuse_publish"});
  for (auto candidate : {QueueFullPolicy::kDropNewest, QueueFullPolicy::kDropOldest,
                         QueueFullPolicy::kRefusePublish}) {
    if (policy == to_string(candidate)) l.queue_full_policy = candidate;
  }
  s.integer("queue_full_timeout_s", l.queue_full_timeout_s, 1, 3600);
  if (l.queue_full_policy == QueueFullPolicy::kRefusePublish && l.max_queued_messages == 0) {
    s.fail(node["queue_full_policy"], "queue_full_policy",
           "drop_newest or drop_oldest with max_queued_messages 0 (refuse_publish would refuse "
           "every QoS 1/2 message)");
  }
  s.integer("max_topic_levels", l.max_topic_levels, 1, 65535);
  s.integer("max_retained_messages", l.max_retained_messages, 0, kU32);
  s.integer("max_write_buffer_bytes", l.max_write_buffer_bytes, 4096, kU32);
  s.integer("topic_alias_maximum", l.topic_alias_maximum, 0, 65535);
  s.integer("max_keepalive_s", l.max_keepalive_s, 0, 65535);
  s.integer("connect_timeout_s", l.connect_timeout_s, 1, 3600);
  s.finish();
}

void read_sessions(const YAML::Node& node, SessionConfig& c, std::string_view source) {
  Section s(node, "sessions", source);
  s.integer("max_session_expiry_s", c.max_session_expiry_s, 0, 0xFFFFFFFF);
  s.boolean("queue_qos0_offline", c.queue_qos0_offline);
  std::string strategy = to_string(c.shared_subscription_strategy);
  s.choice("shared_subscription_strategy", strategy,
           {"round_robin", "random", "sticky", "hash_client_id"});
  for (auto candidate : {SharedStrategy::kRoundRobin, SharedStrategy::kRandom,
                         SharedStrategy::kSticky, SharedStrategy::kHashClientId}) {
    if (strategy == to_string(candidate)) c.shared_subscription_strategy = candidate;
  }
  s.string("response_information", c.response_information);
  s.finish();
}

void read_mqtt(const YAML::Node& node, MqttConfig& c, std::string_view source) {
  Section s(node, "mqtt", source);
  s.integer("max_qos", c.max_qos, 0, 2);
  s.boolean("retain_available", c.retain_available);
  s.boolean("wildcard_subscriptions", c.wildcard_subscriptions);
  s.boolean("subscription_identifiers", c.subscription_identifiers);
  s.boolean("shared_subscriptions", c.shared_subscriptions);
  s.finish();
}

void read_storage(const YAML::Node& node, StorageConfig& c, std::string_view source) {
  Section s(node, "storage", source);
  s.string("dir", c.dir);
  s.choice("engine", c.engine, {"rocksdb", "memory"});
  s.choice("durability", c.durability, {"sync", "batch", "none"});
  s.integer("batch_ms", c.batch_ms, 1, 60'000);
  s.boolean("recover", c.recover);
  s.finish();
}

void read_auth(const YAML::Node& node, AuthConfig& c, std::string_view source) {
  Section s(node, "auth", source);
  s.string("password_file", c.password_file);
  s.string("acl_file", c.acl_file);
  s.string("scram_file", c.scram_file);
  s.boolean("allow_anonymous", c.allow_anonymous);
  s.boolean("development_mode", c.development_mode);
  s.finish();
}

void read_queue_options(Section& s, QueueOptions& o) {
  constexpr std::int64_t kU32 = std::numeric_limits<std::uint32_t>::max();
  s.integer("partitions", o.partitions, 1, 1024);
  s.duration_ms("lease_timeout", o.lease_timeout_ms, 100, 86'400'000);
  s.durations_ms("redelivery_backoff", o.redelivery_backoff_ms, 0, 86'400'000);
  s.integer("max_deliveries", o.max_deliveries, 1, kU32);
  s.string("dead_letter", o.dead_letter);
  s.integer("prefetch", o.prefetch, 1, 65535);
  s.boolean("allow_at_most_once", o.allow_at_most_once);
  s.integer("key_level", o.key_level, 0, 65535);
  s.choice("ordering", o.ordering, {"none", "partition", "key"});
  s.duration_ms("dedup_window", o.dedup_window_ms, 0, 86'400'000);
  if (YAML::Node retention = s.child("retention")) {
    Section r(retention, s.child_path("retention"), s.source());
    r.duration_ms("max_age", o.retention_max_age_ms, 0, 0xFFFFFFFFu);
    r.integer("max_messages", o.retention_max_messages, 0,
              std::numeric_limits<std::int64_t>::max());
    r.integer("max_bytes", o.retention_max_bytes, 0, std::numeric_limits<std::int64_t>::max());
    r.boolean("respect_pending", o.respect_pending);
    r.finish();
  }
  s.integer("max_depth", o.max_depth, 0, std::numeric_limits<std::int64_t>::max());
  s.integer("max_depth_bytes", o.max_depth_bytes, 0, std::numeric_limits<std::int64_t>::max());
  s.choice("overflow", o.overflow, {"reject_publish", "drop_oldest", "dead_letter"});
  s.choice("cleanup", o.cleanup, {"delete", "compact", "compact,delete"});
  s.duration_ms("min_compaction_lag", o.min_compaction_lag_ms, 0, 0xFFFFFFFFu);
  s.duration_ms("delete_retention", o.delete_retention_ms, 0, 0xFFFFFFFFu);
}

// A queue's `replication:` (file-declared queues only). What needs the
// cluster section is checked once it is read (check_replication).
void read_replication(const YAML::Node& node, const std::string& path, QueueConfig& queue,
                      std::string_view source) {
  QueueReplication& r = queue.replication;
  r.line = node.Mark().line + 1;
  Section s(node, path, source);
  s.integer("factor", r.factor, 1, 5);
  s.choice("mode", r.mode, {"sync", "async"});
  r.min_in_sync = 0;
  s.integer("min_in_sync", r.min_in_sync, 1, 5);
  s.finish();
  const auto fail = [&](const char* key, const std::string& what) {
    const YAML::Node at = node.IsMap() && node[key] ? node[key] : node;
    throw Failure{std::string(source) + ":" + std::to_string(at.Mark().line + 1) + ": key '" +
                  path + "." + key + "': " + what};
  };
  const std::uint32_t quorum = r.factor / 2 + 1;
  if (r.min_in_sync == 0) r.min_in_sync = quorum;
  if (r.min_in_sync > quorum) {
    fail("min_in_sync", "at most " + std::to_string(quorum) + " with factor " +
                            std::to_string(r.factor) +
                            " (a write commits on a Raft quorum; waiting for more replicas than "
                            "that is not built)");
  }
  if (r.mode == "async") {
    fail("mode",
         "sync (async replication is not built yet: a publish is acknowledged once a "
         "quorum has it)");
  }
  const std::string dead_letter = dead_letter_name(queue.name, queue.options);
  if (r.factor > 1 && !dead_letter.empty() && dead_letter != queue.name + ".dlq") {
    fail("factor", "1 for a queue whose dead letters go to another queue ('" +
                       queue.options.dead_letter +
                       "'): a replicated queue keeps them in its own <name>.dlq, or none");
  }
  if (r.factor > 1 && !queue.capture.empty())
    fail("factor", "1 for a queue with capture filters (not replicated yet)");
}

// Replicated queues need a cluster to replicate in, and a disk for the
// Raft logs.
void check_replication(const Config& config, std::string_view source) {
  // Every write of a replicated queue's keys goes through its group: no
  // other queue may move dead letters into it (the move would be two writes
  // in two logs), nor be declared as its dead-letter queue.
  std::set<std::string> replicated;
  for (std::size_t i = 0; i < config.queues.size(); ++i) {
    const QueueConfig& queue = config.queues[i];
    const QueueReplication& r = queue.replication;
    if (r.factor <= 1) continue;
    const std::string at = std::string(source) + ":" + std::to_string(r.line) + ": key 'queues[" +
                           std::to_string(i) + "].replication.factor': ";
    if (!config.cluster.enabled) throw Failure{at + "1 without a cluster (cluster.enabled: false)"};
    if (config.storage.dir.empty() || config.storage.engine != "rocksdb")
      throw Failure{at + "1 without storage.dir (the replicas' Raft logs are kept there)"};
    replicated.insert(queue.name);
    if (const std::string dead_letter = dead_letter_name(queue.name, queue.options);
        !dead_letter.empty())
      replicated.insert(dead_letter);
  }
  if (replicated.empty()) return;
  for (std::size_t i = 0; i < config.queues.size(); ++i) {
    const QueueConfig& queue = config.queues[i];
    if (queue.replication.factor > 1) continue;
    const std::string at = std::string(source) + ": key 'queues[" + std::to_string(i) + "]";
    if (replicated.contains(queue.name)) {
      throw Failure{at + ".name': '" + queue.name +
                    "' is a replicated queue's dead-letter queue, which that queue declares"};
    }
    if (const std::string dead_letter = dead_letter_name(queue.name, queue.options);
        replicated.contains(dead_letter)) {
      throw Failure{at + ".dead_letter': '" + dead_letter +
                    "' is kept by a replicated queue's group: dead letters of another queue "
                    "cannot move into it"};
    }
  }
  const std::string& defaults = config.queue_defaults.dead_letter;
  if (defaults != "none" && !defaults.empty() && replicated.contains(defaults)) {
    throw Failure{std::string(source) + ": key 'queue_defaults.dead_letter': '" + defaults +
                  "' is kept by a replicated queue's group: dead letters of other queues cannot "
                  "move into it"};
  }
}

bool valid_queue_name(std::string_view name) {
  if (name.empty() || name.size() > 200) return false;
  for (const char c : name) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                    c == '_' || c == '.' || c == '-';
    if (!ok) return false;
  }
  return true;
}

// One queue declaration: an entry of `queues:`, or the body of the admin
// API's create (where `capture` is not allowed: filters are fixed at start).
QueueConfig read_queue(const YAML::Node& node, const std::string& path,
                       const QueueOptions& defaults, std::string_view source, bool allow_capture) {
  const auto at = [&](const YAML::Node& where) {
    return std::string(source) + ":" + std::to_string(where.Mark().line + 1) + ": ";
  };
  QueueConfig queue;
  queue.options = defaults;
  Section s(node, path, source);
  s.string("name", queue.name);
  std::string kind = "queue";
  s.choice("kind", kind, {"queue", "stream"});
  queue.kind = kind == "stream" ? QueueKind::kStream : QueueKind::kQueue;
  if (allow_capture) s.strings("capture", queue.capture);
  read_queue_options(s, queue.options);
  if (YAML::Node replication = allow_capture ? s.child("replication") : YAML::Node()) {
    read_replication(replication, s.child_path("replication"), queue, source);
  }
  if (queue.kind == QueueKind::kQueue && queue.options.cleanup != "delete" && node["cleanup"]) {
    s.fail(node["cleanup"], "cleanup",
           "delete on a work queue (compaction is for streams: kind: stream)");
  }
  s.finish();
  if (!valid_queue_name(queue.name)) {
    throw Failure{at(node) + "key '" + s.child_path("name") +
                  "': expected 1 to 200 of A-Z a-z 0-9 _ . -, got '" + queue.name + "'"};
  }
  const std::string& dlq = queue.options.dead_letter;
  if (!dlq.empty() && dlq != "none" && !valid_queue_name(dlq)) {
    throw Failure{at(node) + "key '" + s.child_path("dead_letter") +
                  "': expected none or a queue name (A-Z a-z 0-9 _ . -), got '" + dlq + "'"};
  }
  return queue;
}

std::vector<QueueConfig> read_queues(const YAML::Node& node, const QueueOptions& defaults,
                                     std::string_view source) {
  if (!node.IsSequence()) {
    throw Failure{std::string(source) + ":" + std::to_string(node.Mark().line + 1) +
                  ": key 'queues': expected a list of {name, ...}"};
  }
  std::vector<QueueConfig> queues;
  std::set<std::string> names;
  for (std::size_t i = 0; i < node.size(); ++i) {
    const std::string path = "queues[" + std::to_string(i) + "]";
    QueueConfig queue = read_queue(node[i], path, defaults, source, /*allow_capture=*/true);
    if (!names.insert(queue.name).second) {
      throw Failure{std::string(source) + ":" + std::to_string(node[i].Mark().line + 1) +
                    ": key '" + path + ".name': queue '" + queue.name + "' is declared twice"};
    }
    queues.push_back(std::move(queue));
  }
  return queues;
}

bool is_sha256_hex(const std::string& text) {
  return text.size() == 64 && std::all_of(text.begin(), text.end(), [](char c) {
           return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
         });
}

void read_admin(const YAML::Node& node, AdminConfig& c, std::string_view source) {
  Section s(node, "admin", source);
  const auto at = [&](const YAML::Node& n) {
    return std::string(source) + ":" + std::to_string(n.Mark().line + 1) + ": ";
  };
  if (YAML::Node listeners = s.child("listeners")) {
    if (!listeners.IsSequence()) {
      throw Failure{at(listeners) + "key 'admin.listeners': expected a list of {host, port}"};
    }
    c.listeners.clear();  // an empty list: no admin server
    for (std::size_t i = 0; i < listeners.size(); ++i) {
      AdminListenerConfig listener;
      const std::string path = "admin.listeners[" + std::to_string(i) + "]";
      Section ls(listeners[i], path, source);
      ls.string("host", listener.host);
      ls.integer("port", listener.port, 0, 65535);
      ls.choice("transport", listener.transport, {"http", "https"});
      if (YAML::Node tls = ls.child("tls")) read_tls(tls, path + ".tls", listener.tls, source);
      ls.finish();
      if (listener.transport == "https" &&
          (listener.tls.cert_file.empty() || listener.tls.key_file.empty())) {
        throw Failure{at(listeners[i]) + "key '" + path +
                      ".tls': an https listener needs cert_file and key_file"};
      }
      c.listeners.push_back(listener);
    }
  }
  if (YAML::Node tokens = s.child("tokens")) {
    if (!tokens.IsSequence()) {
      throw Failure{at(tokens) +
                    "key 'admin.tokens': expected a list of {name, token_sha256, role}"};
    }
    std::set<std::string> names;
    for (std::size_t i = 0; i < tokens.size(); ++i) {
      AdminTokenConfig token;
      const std::string path = "admin.tokens[" + std::to_string(i) + "]";
      Section ts(tokens[i], path, source);
      ts.string("name", token.name);
      ts.string("token_sha256", token.token_sha256);
      ts.choice("role", token.role, {"viewer", "operator", "admin"});
      ts.finish();
      if (token.name.empty()) throw Failure{at(tokens[i]) + "key '" + path + ".name': missing"};
      if (!is_sha256_hex(token.token_sha256)) {
        throw Failure{at(tokens[i]) + "key '" + path +
                      ".token_sha256': expected 64 lowercase hex digits (`sluice token NAME "
                      "ROLE` prints them)"};
      }
      if (token.role.empty()) throw Failure{at(tokens[i]) + "key '" + path + ".role': missing"};
      if (!names.insert(token.name).second) {
        throw Failure{at(tokens[i]) + "key '" + path + ".name': token '" + token.name +
                      "' is named twice"};
      }
      c.tokens.push_back(std::move(token));
    }
  }
  s.string("token_file", c.token_file);
  s.finish();
}

std::vector<WebhookConfig> read_webhooks(const YAML::Node& node, std::string_view source) {
  const auto at = [&](const YAML::Node& n) {
    return std::string(source) + ":" + std::to_string(n.Mark().line + 1) + ": ";
  };
  if (!node.IsSequence()) throw Failure{at(node) + "key 'webhooks': expected a list of {url, ...}"};
  static const std::set<std::string> kEvents = {
      "client.connected",  "client.disconnected", "client.auth_failed",   "session.created",
      "session.expired",   "session.taken_over",  "subscription.created", "subscription.removed",
      "message.published", "message.dropped",     "queue.dead_lettered",  "authz.denied"};
  std::vector<WebhookConfig> hooks;
  for (std::size_t i = 0; i < node.size(); ++i) {
    WebhookConfig hook;
    const std::string path = "webhooks[" + std::to_string(i) + "]";
    Section s(node[i], path, source);
    s.string("name", hook.name);
    s.string("url", hook.url);
    s.strings("events", hook.events);
    s.strings("topics", hook.topics);
    if (YAML::Node headers = s.child("headers")) {
      if (!headers.IsMap())
        throw Failure{at(headers) + "key '" + path + ".headers': expected a mapping"};
      for (const auto& entry : headers) {
        if (!entry.second.IsScalar())
          throw Failure{at(entry.second) + "key '" + path + ".headers': expected text values"};
        hook.headers.emplace_back(entry.first.Scalar(), entry.second.Scalar());
      }
    }
    s.string("secret", hook.secret);
    s.integer("timeout_ms", hook.timeout_ms, 1, 600'000);
    s.integer("max_queue", hook.max_queue, 1, 10'000'000);
    s.integer("max_queue_bytes", hook.max_queue_bytes, 1024,
              std::numeric_limits<std::int64_t>::max());
    s.integer("max_attempts", hook.max_attempts, 1, 100);
    s.finish();
    if (!hook.url.starts_with("http://")) {
      throw Failure{at(node[i]) + "key '" + path +
                    ".url': expected http://host[:port]/path (https is not supported yet), got '" +
                    hook.url + "'"};
    }
    for (const std::string& event : hook.events) {
      if (!kEvents.contains(event)) {
        throw Failure{at(node[i]) + "key '" + path + ".events': unknown event '" + event +
                      "' (one of client.connected, client.disconnected, client.auth_failed, "
                      "session.created, session.expired, session.taken_over, "
                      "subscription.created, subscription.removed, message.published, "
                      "message.dropped, queue.dead_lettered, authz.denied)"};
      }
    }
    if (hook.name.empty()) hook.name = hook.url;
    hooks.push_back(std::move(hook));
  }
  return hooks;
}

bool is_node_id(const std::string& id) {
  return !id.empty() && id.size() <= 64 && std::all_of(id.begin(), id.end(), [](char c) {
    return std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '.' || c == '-';
  });
}

void read_cluster(const YAML::Node& node, ClusterConfig& c, const StorageConfig& storage,
                  std::string_view source) {
  Section s(node, "cluster", source);
  const auto fail = [&](const char* key, const std::string& what) {
    const YAML::Node at = node && node.IsMap() && node[key] ? node[key] : node;
    const int line = at ? at.Mark().line + 1 : 1;
    throw Failure{std::string(source) + ":" + std::to_string(line) + ": key 'cluster." + key +
                  "': " + what};
  };
  s.boolean("enabled", c.enabled);
  s.string("node_id", c.node_id);
  s.string("listen", c.listen);
  s.string("advertise", c.advertise);
  s.string("cert_file", c.cert_file);
  s.string("key_file", c.key_file);
  s.string("ca_file", c.ca_file);
  s.boolean("insecure", c.insecure);
  s.integer("lease_ttl_s", c.lease_ttl_s, 2, 3600);
  s.integer("session_takeover_timeout_ms", c.session_takeover_timeout_ms, 100, 600'000);
  s.integer("forward_batch", c.forward_batch, 1, 100'000);
  s.integer("forward_timeout_ms", c.forward_timeout_ms, 100, 600'000);
  s.boolean("shared_prefer_local", c.shared_prefer_local);
  const YAML::Node etcd_node = s.child("etcd");
  {
    Section e(etcd_node, "cluster.etcd", source);
    ClusterEtcdConfig& etcd = c.etcd;
    e.strings("endpoints", etcd.endpoints);
    e.boolean("managed", etcd.managed);
    e.string("name", etcd.name);
    e.string("client_listen", etcd.client_listen);
    e.string("peer_listen", etcd.peer_listen);
    e.string("initial_cluster", etcd.initial_cluster);
    e.string("cluster_token", etcd.cluster_token);
    e.string("binary", etcd.binary);
    e.string("cert_file", etcd.cert_file);
    e.string("key_file", etcd.key_file);
    e.string("ca_file", etcd.ca_file);
    e.integer("dial_timeout_ms", etcd.dial_timeout_ms, 100, 600'000);
    e.finish();
  }
  const YAML::Node raft_node = s.child("raft");
  if (raft_node) {
    Section r(raft_node, "cluster.raft", source);
    r.integer("election_timeout_ms", c.raft.election_timeout_ms, 50, 60'000);
    r.integer("heartbeat_ms", c.raft.heartbeat_ms, 10, 30'000);
    r.integer("link_stuck_ms", c.raft.link_stuck_ms, 500, 600'000);
    r.integer("snapshot_entries", c.raft.snapshot_entries, 16, 100'000'000);
    // Not 0: libraft 0.15's disk layer takes a trailing of 0 for a snapshot
    // being installed and moves its write position back to the snapshot.
    r.integer("snapshot_trailing", c.raft.snapshot_trailing, 1, 100'000'000);
    r.finish();
    // A leader must be heard from more than once per election timeout, or
    // followers start elections against a leader that is fine.
    if (c.raft.heartbeat_ms * 2 > c.raft.election_timeout_ms) {
      const YAML::Node at = raft_node["heartbeat_ms"] ? raft_node["heartbeat_ms"] : raft_node;
      throw Failure{std::string(source) + ":" + std::to_string(at.Mark().line + 1) +
                    ": key 'cluster.raft.heartbeat_ms': expected at most half of "
                    "election_timeout_ms (" +
                    std::to_string(c.raft.election_timeout_ms) + "), got " +
                    std::to_string(c.raft.heartbeat_ms)};
    }
  }
  s.finish();
  if (!c.enabled) return;
  if (!is_node_id(c.node_id))
    fail("node_id", "expected 1 to 64 of A-Z a-z 0-9 _ . -, got '" + c.node_id + "'");
  // A node that does not answer a takeover may be cut off and still serving
  // until it finds its lease lost (two thirds of the lease, plus an etcd
  // election when its member was the leader): the session is taken from it
  // only after that.
  if (c.session_takeover_timeout_ms < c.lease_ttl_s * 1000 + 2000)
    fail("session_takeover_timeout_ms",
         "expected at least lease_ttl_s * 1000 + 2000 (" +
             std::to_string(c.lease_ttl_s * 1000 + 2000) +
             "): a node cut off may serve its sessions that long before it lets go, got " +
             std::to_string(c.session_takeover_timeout_ms));
  if (!parse_listen_address(c.listen)) fail("listen", "expected HOST:PORT, got '" + c.listen + "'");
  if (c.advertise.empty()) c.advertise = c.listen;
  const auto advertised = parse_listen_address(c.advertise);
  if (!advertised || advertised->port == 0 || advertised->host == "0.0.0.0" ||
      advertised->host == "::" || advertised->host.empty()) {
    fail(c.advertise == c.listen ? "listen" : "advertise",
         "expected the HOST:PORT other nodes dial (not a wildcard host or port 0), got '" +
             c.advertise + "'" + (c.advertise == c.listen ? "; set advertise" : ""));
  }
  const bool tls = !c.cert_file.empty() || !c.key_file.empty() || !c.ca_file.empty();
  if (tls && (c.cert_file.empty() || c.key_file.empty() || c.ca_file.empty()))
    fail("cert_file", "mutual TLS between nodes needs cert_file, key_file and ca_file");
  if (!tls && !c.insecure)
    fail("insecure",
         "nodes talk over mutual TLS (cert_file, key_file, ca_file); set insecure: true to "
         "allow clear text");
  ClusterEtcdConfig& etcd = c.etcd;
  if (etcd.endpoints.empty() && !etcd.managed)
    fail("etcd", "expected endpoints (an etcd cluster's client URLs) or managed: true");
  if (etcd.managed) {
    if (storage.dir.empty())
      fail("etcd", "managed: true keeps the etcd member's data under storage.dir, which is empty");
    if (etcd.name.empty()) etcd.name = c.node_id;
    if (!parse_listen_address(etcd.client_listen))
      fail("etcd", "client_listen: expected HOST:PORT, got '" + etcd.client_listen + "'");
    if (!parse_listen_address(etcd.peer_listen))
      fail("etcd", "peer_listen: expected HOST:PORT, got '" + etcd.peer_listen + "'");
    if (etcd.endpoints.empty()) etcd.endpoints = {etcd.client_listen};
  }
  const bool etcd_tls = !etcd.cert_file.empty() || !etcd.key_file.empty() || !etcd.ca_file.empty();
  if (etcd_tls && etcd.ca_file.empty())
    fail("etcd", "TLS to etcd needs ca_file (and cert_file and key_file for client certificates)");
  for (std::string& endpoint : etcd.endpoints) {
    std::string_view address = endpoint;
    for (const std::string_view scheme : {"http://", "https://"}) {
      if (address.starts_with(scheme)) address.remove_prefix(scheme.size());
    }
    if (!parse_listen_address(address))
      fail("etcd", "endpoints: expected HOST:PORT or http(s)://HOST:PORT, got '" + endpoint + "'");
    endpoint = std::string(address);
  }
}

Config read_config(const YAML::Node& root, std::string_view source) {
  Config config;
  Section top(root, "", source);
  if (YAML::Node listeners = top.child("listeners"))
    config.listeners = read_listeners(listeners, source);
  top.integer("workers", config.workers, 0, 1024);
  top.integer("sys_interval_s", config.sys_interval_s, 0, 86'400);
  top.choice("log_level", config.log_level, {"trace", "debug", "info", "warn", "error", "off"});
  read_limits(top, top.child("limits"), config.limits, source);
  read_sessions(top.child("sessions"), config.sessions, source);
  read_mqtt(top.child("mqtt"), config.mqtt, source);
  read_storage(top.child("storage"), config.storage, source);
  read_auth(top.child("auth"), config.auth, source);
  read_rate_limits(top.child("rate_limits"), "rate_limits", config.rate_limits, source);
  {
    Section defaults(top.child("queue_defaults"), "queue_defaults", source);
    read_queue_options(defaults, config.queue_defaults);
    defaults.finish();
  }
  if (YAML::Node queues = top.child("queues"))
    config.queues = read_queues(queues, config.queue_defaults, source);
  top.boolean("queues_auto_create", config.queues_auto_create);
  read_admin(top.child("admin"), config.admin, source);
  if (YAML::Node hooks = top.child("webhooks")) config.webhooks = read_webhooks(hooks, source);
  {
    Section s(top.child("log"), "log", source);
    s.choice("format", config.log.format, {"text", "json"});
    s.string("file", config.log.file);
    s.integer("max_file_bytes", config.log.max_file_bytes, 4096,
              std::numeric_limits<std::int64_t>::max());
    s.integer("max_files", config.log.max_files, 1, 1000);
    s.finish();
  }
  {
    const YAML::Node node = top.child("tracing");
    Section s(node, "tracing", source);
    TracingConfig& t = config.tracing;
    s.string("otlp_endpoint", t.otlp_endpoint);
    s.number("sample_ratio", t.sample_ratio, 0, 1);
    s.string("service_name", t.service_name);
    s.integer("batch_size", t.batch_size, 1, 100'000);
    s.integer("flush_interval_ms", t.flush_interval_ms, 10, 600'000);
    s.integer("max_queue", t.max_queue, 1, 10'000'000);
    s.integer("timeout_ms", t.timeout_ms, 1, 600'000);
    if (!t.otlp_endpoint.empty() && !t.otlp_endpoint.starts_with("http://")) {
      throw Failure{std::string(source) + ":" +
                    std::to_string(node["otlp_endpoint"].Mark().line + 1) + ": " +
                    "key 'tracing.otlp_endpoint': expected http://host[:port]/path (https is not "
                    "supported yet), got '" +
                    t.otlp_endpoint + "'"};
    }
    s.finish();
  }
  read_cluster(top.child("cluster"), config.cluster, config.storage, source);
  check_replication(config, source);
  {
    Section s(top.child("shutdown"), "shutdown", source);
    s.integer("timeout_s", config.shutdown.timeout_s, 0, 3600);
    s.string("server_reference", config.shutdown.server_reference);
    s.finish();
  }
  top.finish();
  return config;
}

}  // namespace

const char* to_string(QueueFullPolicy policy) {
  switch (policy) {
    case QueueFullPolicy::kDropNewest:
      return "drop_newest";
    case QueueFullPolicy::kDropOldest:
      return "drop_oldest";
    case QueueFullPolicy::kRefusePublish:
      return "refuse_publish";
  }
  return "drop_newest";
}

const char* to_string(SharedStrategy strategy) {
  switch (strategy) {
    case SharedStrategy::kRoundRobin:
      return "round_robin";
    case SharedStrategy::kRandom:
      return "random";
    case SharedStrategy::kSticky:
      return "sticky";
    case SharedStrategy::kHashClientId:
      return "hash_client_id";
  }
  return "round_robin";
}

LoadResult parse_config(std::string_view yaml, std::string_view source) {
  try {
    const YAML::Node root = YAML::Load(std::string(yaml));
    return read_config(root, source);
  } catch (const Failure& failure) {
    return ConfigError{failure.message};
  } catch (const YAML::Exception& e) {
    return ConfigError{std::string(source) + ":" + std::to_string(e.mark.line + 1) +
                       ": not valid YAML: " + e.msg};
  }
}

QueueResult parse_queue(std::string_view text, const QueueOptions& defaults,
                        std::string_view source) {
  try {
    const YAML::Node root = YAML::Load(std::string(text));
    return read_queue(root, "", defaults, source, /*allow_capture=*/false);
  } catch (const Failure& failure) {
    return ConfigError{failure.message};
  } catch (const YAML::Exception& e) {
    return ConfigError{std::string(source) + ":" + std::to_string(e.mark.line + 1) +
                       ": not valid YAML or JSON: " + e.msg};
  }
}

std::optional<ConfigError> parse_queue_options(std::string_view text, QueueOptions& options,
                                               std::string_view source) {
  try {
    const YAML::Node root = YAML::Load(std::string(text));
    for (const char* fixed : {"name", "kind", "capture"}) {
      if (root.IsMap() && root[fixed]) {
        return ConfigError{std::string(source) + ":" + std::to_string(root[fixed].Mark().line + 1) +
                           ": key '" + fixed +
                           "': cannot change (delete the queue and create it again)"};
      }
    }
    QueueOptions changed = options;
    Section s(root, "", source);
    read_queue_options(s, changed);
    s.finish();
    const std::string& dlq = changed.dead_letter;
    if (!dlq.empty() && dlq != "none" && !valid_queue_name(dlq)) {
      return ConfigError{std::string(source) +
                         ": key 'dead_letter': expected none or a queue name, got '" + dlq + "'"};
    }
    options = std::move(changed);
    return std::nullopt;
  } catch (const Failure& failure) {
    return ConfigError{failure.message};
  } catch (const YAML::Exception& e) {
    return ConfigError{std::string(source) + ":" + std::to_string(e.mark.line + 1) +
                       ": not valid YAML or JSON: " + e.msg};
  }
}

std::string queue_options_yaml(const QueueOptions& o) {
  const auto ms = [](std::uint64_t value) { return std::to_string(value) + "ms"; };
  const auto quoted = [](const std::string& text) { return "\"" + text + "\""; };
  std::string backoff;
  for (const std::uint32_t step : o.redelivery_backoff_ms)
    backoff += (backoff.empty() ? "" : ", ") + ms(step);
  const auto flag = [](bool value) { return value ? "true" : "false"; };
  return "{partitions: " + std::to_string(o.partitions) +
         ", lease_timeout: " + ms(o.lease_timeout_ms) + ", redelivery_backoff: [" + backoff +
         "], max_deliveries: " + std::to_string(o.max_deliveries) +
         ", dead_letter: " + quoted(o.dead_letter) + ", prefetch: " + std::to_string(o.prefetch) +
         ", allow_at_most_once: " + flag(o.allow_at_most_once) +
         ", key_level: " + std::to_string(o.key_level) + ", ordering: " + quoted(o.ordering) +
         ", dedup_window: " + ms(o.dedup_window_ms) +
         ", retention: {max_age: " + ms(o.retention_max_age_ms) +
         ", max_messages: " + std::to_string(o.retention_max_messages) +
         ", max_bytes: " + std::to_string(o.retention_max_bytes) +
         ", respect_pending: " + flag(o.respect_pending) +
         "}, max_depth: " + std::to_string(o.max_depth) +
         ", max_depth_bytes: " + std::to_string(o.max_depth_bytes) +
         ", overflow: " + quoted(o.overflow) + ", cleanup: " + quoted(o.cleanup) +
         ", min_compaction_lag: " + ms(o.min_compaction_lag_ms) +
         ", delete_retention: " + ms(o.delete_retention_ms) + "}";
}

LoadResult load_config_file(const std::string& path) {
  std::ifstream in(path);
  if (!in) return ConfigError{path + ": cannot open the configuration file"};
  std::stringstream text;
  text << in.rdbuf();
  return parse_config(text.str(), path);
}

}  // namespace sluice::config
