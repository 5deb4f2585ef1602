// The YAML configuration: defaults, every section, and errors that name the key and line.
#include "config/config_loader.hpp"

#include <gtest/gtest.h>

#include "config/listen_address.hpp"

namespace sluice::config {
namespace {

Config parse_ok(std::string_view yaml) {
  auto result = parse_config(yaml, "test.yaml");
  if (auto* error = std::get_if<ConfigError>(&result)) ADD_FAILURE() << error->message;
  if (auto* config = std::get_if<Config>(&result)) return std::move(*config);
  return Config{};
}

std::string parse_error(std::string_view yaml) {
  auto result = parse_config(yaml, "test.yaml");
  if (auto* error = std::get_if<ConfigError>(&result)) return error->message;
  ADD_FAILURE() << "expected an error for: " << yaml;
  return {};
}

TEST(ConfigLoader, EmptyFileGivesTheDefaults) {
  const Config config = parse_ok("");
  ASSERT_EQ(config.listeners.size(), 1u);
  EXPECT_EQ(config.listeners[0].host, "127.0.0.1");
  EXPECT_EQ(config.listeners[0].port, 1883);
  EXPECT_EQ(config.limits.max_packet_bytes, 1'048'576u);
  EXPECT_EQ(config.sessions.shared_subscription_strategy, SharedStrategy::kRoundRobin);
}

TEST(ConfigLoader, TheDocumentedExampleHoldsExactlyTheDefaults) {
  auto result = load_config_file(SLUICE_SOURCE_DIR "/examples/sluice.yaml");
  ASSERT_TRUE(std::holds_alternative<Config>(result)) << std::get<ConfigError>(result).message;
  EXPECT_TRUE(std::get<Config>(result) == Config{});
}

TEST(ConfigLoader, ReadsEverySection) {
  const Config config = parse_ok(R"(
listeners:
  - host: 0.0.0.0
    port: 1884
  - host: "::1"
    port: 1885
workers: 4
sys_interval_s: 5
log_level: debug
limits:
  max_connections: 10
  max_queued_messages: 7
sessions:
  queue_qos0_offline: true
  shared_subscription_strategy: sticky
mqtt:
  max_qos: 1
  retain_available: false
)");
  ASSERT_EQ(config.listeners.size(), 2u);
  EXPECT_EQ(config.listeners[1].host, "::1");
  EXPECT_EQ(config.listeners[1].port, 1885);
  EXPECT_EQ(config.workers, 4u);
  EXPECT_EQ(config.log_level, "debug");
  EXPECT_EQ(config.limits.max_connections, 10u);
  EXPECT_EQ(config.limits.max_queued_messages, 7u);
  EXPECT_TRUE(config.sessions.queue_qos0_offline);
  EXPECT_EQ(config.sessions.shared_subscription_strategy, SharedStrategy::kSticky);
  EXPECT_EQ(config.mqtt.max_qos, 1);
  EXPECT_FALSE(config.mqtt.retain_available);
}

TEST(ConfigLoader, ErrorsNameFileLineKeyAndWhatIsAllowed) {
  EXPECT_EQ(parse_error("limits:\n  max_inflight_messages: 0\n"),
            "test.yaml:2: key 'limits.max_inflight_messages': expected an integer from 1 to 65535, "
            "got '0'");
  EXPECT_EQ(parse_error("sessions:\n  bogus: 1\n"), "test.yaml:2: unknown key 'sessions.bogus'");
  EXPECT_EQ(parse_error("mqtt:\n  max_qos: 3\n"),
            "test.yaml:2: key 'mqtt.max_qos': expected an integer from 0 to 2, got '3'");
  EXPECT_EQ(parse_error("listeners: []\n"),
            "test.yaml:1: key 'listeners': expected at least one listener");
  EXPECT_NE(parse_error("limits: [1\n").find("not valid YAML"), std::string::npos);
  EXPECT_EQ(parse_error("limits: 5\n"),
            "test.yaml:1: 'limits': expected a mapping of keys to values");
}

TEST(ConfigLoader, TracingIsReadAndItsErrorsNameTheKey) {
  const Config config = parse_ok(
      "tracing:\n  otlp_endpoint: http://127.0.0.1:4318/v1/traces\n  sample_ratio: 0.25\n"
      "  batch_size: 100\n");
  EXPECT_EQ(config.tracing.otlp_endpoint, "http://127.0.0.1:4318/v1/traces");
  EXPECT_DOUBLE_EQ(config.tracing.sample_ratio, 0.25);
  EXPECT_EQ(config.tracing.batch_size, 100u);
  EXPECT_TRUE(parse_ok("workers: 1\n").tracing.otlp_endpoint.empty());  // off unless named
  EXPECT_NE(parse_error("tracing:\n  sample_ratio: 1.5\n")
                .find("test.yaml:2: key 'tracing.sample_ratio'"),
            std::string::npos);
  EXPECT_EQ(parse_error("tracing:\n  otlp_endpoint: https://collector/v1/traces\n"),
            "test.yaml:2: key 'tracing.otlp_endpoint': expected http://host[:port]/path (https is "
            "not supported yet), got 'https://collector/v1/traces'");
}

TEST(ConfigLoader, QueuesTakeTheDefaultsAndOverrideWhatTheyName) {
  const Config config = parse_ok(R"(
queues_auto_create: true
queue_defaults:
  max_deliveries: 3
  redelivery_backoff: [250ms, 2s, 1m]
queues:
  - name: orders
    partitions: 4
    lease_timeout: 1h
  - {name: audit.log-2, dead_letter: none, ordering: key,
     retention: {max_age: 7d, max_messages: 1000, respect_pending: false}}
  - {name: prices, kind: stream, cleanup: "compact,delete", min_compaction_lag: 1m,
     delete_retention: 1h, max_depth_bytes: 4096, retention: {max_bytes: 1000000}}
)");
  EXPECT_TRUE(config.queues_auto_create);
  ASSERT_EQ(config.queues.size(), 3u);
  const QueueConfig& orders = config.queues[0];
  EXPECT_EQ(orders.kind, QueueKind::kQueue);
  const QueueConfig& prices = config.queues[2];
  EXPECT_EQ(prices.kind, QueueKind::kStream);
  EXPECT_EQ(prices.options.cleanup, "compact,delete");
  EXPECT_EQ(prices.options.min_compaction_lag_ms, 60'000u);
  EXPECT_EQ(prices.options.delete_retention_ms, 3'600'000u);
  EXPECT_EQ(prices.options.max_depth_bytes, 4096u);
  EXPECT_EQ(prices.options.retention_max_bytes, 1'000'000u);
  EXPECT_EQ(orders.name, "orders");
  EXPECT_EQ(orders.options.partitions, 4u);
  EXPECT_EQ(orders.options.lease_timeout_ms, 3'600'000u);
  EXPECT_EQ(orders.options.max_deliveries, 3u);  // from queue_defaults
  EXPECT_EQ(orders.options.redelivery_backoff_ms, (std::vector<std::uint32_t>{250, 2'000, 60'000}));
  EXPECT_EQ(config.queues[1].options.dead_letter, "none");
  EXPECT_EQ(config.queues[1].options.partitions, 1u);
  EXPECT_EQ(config.queues[1].options.ordering, "key");
  EXPECT_EQ(config.queues[1].options.retention_max_age_ms, 7u * 86'400'000u);
  EXPECT_EQ(config.queues[1].options.retention_max_messages, 1000u);
  EXPECT_FALSE(config.queues[1].options.respect_pending);
}

TEST(ConfigLoader, BadQueuesNameTheKeyAndLine) {
  EXPECT_EQ(parse_error("queues:\n  - name: a/b\n"),
            "test.yaml:2: key 'queues[0].name': expected 1 to 200 of A-Z a-z 0-9 _ . -, got 'a/b'");
  EXPECT_EQ(parse_error("queues:\n  - name: a\n  - name: a\n"),
            "test.yaml:3: key 'queues[1].name': queue 'a' is declared twice");
  EXPECT_EQ(parse_error("queues:\n  - name: a\n    lease_timeout: 30\n"),
            "test.yaml:3: key 'queues[0].lease_timeout': expected a duration such as 500ms, 30s, "
            "2m, 1h or 1d, from 100ms to 1d, got '30'");
  EXPECT_EQ(parse_error("queue_defaults:\n  redelivery_backoff: []\n"),
            "test.yaml:2: key 'queue_defaults.redelivery_backoff': expected a non-empty list of "
            "durations such as 500ms, 30s or 2m, each from 0ms to 1d, got a list");
  EXPECT_EQ(parse_error("queues:\n  - name: a\n    kind: log\n"),
            "test.yaml:3: key 'queues[0].kind': expected one of: queue, stream, got 'log'");
  EXPECT_EQ(parse_error("queues:\n  - name: a\n    cleanup: compact\n"),
            "test.yaml:3: key 'queues[0].cleanup': expected delete on a work queue (compaction "
            "is for streams: kind: stream), got 'compact'");
  EXPECT_EQ(parse_error("queues:\n  - name: a\n    kind: stream\n    cleanup: squash\n"),
            "test.yaml:4: key 'queues[0].cleanup': expected one of: delete, compact, "
            "compact,delete, got 'squash'");
  EXPECT_EQ(parse_error("queues:\n  - name: a\n    retention: 1\n"),
            "test.yaml:3: 'queues[0].retention': expected a mapping of keys to values");
  EXPECT_EQ(parse_error("queues:\n  - name: a\n    compaction: 1\n"),
            "test.yaml:3: unknown key 'queues[0].compaction'");
  EXPECT_EQ(parse_error("queues:\n  - name: a\n    overflow: block\n"),
            "test.yaml:3: key 'queues[0].overflow': expected one of: reject_publish, "
            "drop_oldest, dead_letter, got 'block'");
}

TEST(ConfigLoader, RaftTimingIsReadAndChecked) {
  const std::string cluster =
      "storage: {dir: /tmp/x}\n"
      "cluster:\n  enabled: true\n  node_id: a\n  insecure: true\n"
      "  etcd: {endpoints: [x:1]}\n";
  const Config defaults = parse_ok(cluster);
  EXPECT_EQ(defaults.cluster.raft.election_timeout_ms, 250u);
  EXPECT_EQ(defaults.cluster.raft.heartbeat_ms, 40u);
  EXPECT_EQ(defaults.cluster.raft.link_stuck_ms, 2000u);
  EXPECT_EQ(defaults.cluster.raft.snapshot_entries, 8192u);
  EXPECT_EQ(defaults.cluster.raft.snapshot_trailing, 1024u);
  const Config wide =
      parse_ok(cluster +
               "  raft: {election_timeout_ms: 2000, heartbeat_ms: 200, "
               "link_stuck_ms: 15000, snapshot_entries: 64, snapshot_trailing: 8}\n");
  EXPECT_EQ(wide.cluster.raft.snapshot_entries, 64u);
  EXPECT_EQ(wide.cluster.raft.snapshot_trailing, 8u);
  EXPECT_EQ(wide.cluster.raft.election_timeout_ms, 2000u);
  EXPECT_EQ(wide.cluster.raft.heartbeat_ms, 200u);
  EXPECT_EQ(wide.cluster.raft.link_stuck_ms, 15000u);
  EXPECT_EQ(parse_error(cluster + "  raft:\n    election_timeout_ms: 300\n    heartbeat_ms: 200\n"),
            "test.yaml:9: key 'cluster.raft.heartbeat_ms': expected at most half of "
            "election_timeout_ms (300), got 200");
  EXPECT_NE(parse_error(cluster + "  raft: {link_stuck_ms: 10}\n")
                .find("key 'cluster.raft.link_stuck_ms'"),
            std::string::npos);
  EXPECT_NE(parse_error(cluster + "  raft: {elections: 10}\n").find("cluster.raft.elections"),
            std::string::npos);
}

TEST(ConfigLoader, ReplicationIsReadAndChecked) {
  const std::string cluster =
      "storage: {dir: /tmp/x}\n"
      "cluster: {enabled: true, node_id: a, insecure: true, etcd: {endpoints: [x:1]}}\n";
  const Config config =
      parse_ok(cluster + "queues:\n  - {name: jobs, replication: {factor: 3}}\n  - {name: solo}\n");
  EXPECT_EQ(config.queues[0].replication.factor, 3u);
  EXPECT_EQ(config.queues[0].replication.mode, "sync");
  EXPECT_EQ(config.queues[0].replication.min_in_sync, 2u);  // a quorum of three
  EXPECT_EQ(config.queues[1].replication.factor, 1u);

  EXPECT_EQ(parse_error("queues:\n  - name: jobs\n    replication: {factor: 3}\n"),
            "test.yaml:3: key 'queues[0].replication.factor': 1 without a cluster "
            "(cluster.enabled: false)");
  EXPECT_EQ(parse_error(cluster + "queues:\n  - name: jobs\n    replication: {factor: 6}\n"),
            "test.yaml:5: key 'queues[0].replication.factor': expected an integer from 1 to 5, "
            "got '6'");
  EXPECT_EQ(parse_error(cluster + "queues:\n  - name: jobs\n    replication:\n"
                                  "      factor: 3\n      min_in_sync: 3\n"),
            "test.yaml:7: key 'queues[0].replication.min_in_sync': at most 2 with factor 3 (a "
            "write commits on a Raft quorum; waiting for more replicas than that is not built)");
  EXPECT_NE(parse_error(cluster + "queues:\n  - {name: jobs, replication: {mode: async}}\n")
                .find("key 'queues[0].replication.mode': sync (async replication is not built"),
            std::string::npos);
  EXPECT_NE(parse_error(cluster + "queues:\n  - {name: jobs, dead_letter: failed, "
                                  "replication: {factor: 3}}\n")
                .find("a replicated queue keeps them in its own <name>.dlq"),
            std::string::npos);
  EXPECT_NE(parse_error(cluster + "queues:\n  - {name: jobs, capture: [a/#], "
                                  "replication: {factor: 2}}\n")
                .find("with capture filters"),
            std::string::npos);
  // Its own dead-letter queue may be named; no other queue's dead letters go into its group.
  EXPECT_EQ(parse_ok(cluster + "queues:\n  - {name: jobs, dead_letter: jobs.dlq, "
                               "replication: {factor: 3}}\n")
                .queues[0]
                .options.dead_letter,
            "jobs.dlq");
  EXPECT_NE(
      parse_error(cluster + "queues:\n  - {name: jobs, replication: {factor: 3}}\n"
                            "  - {name: other, dead_letter: jobs.dlq}\n")
          .find("key 'queues[1].dead_letter': 'jobs.dlq' is kept by a replicated queue's group"),
      std::string::npos);
  EXPECT_NE(parse_error(cluster + "queues:\n  - {name: jobs, replication: {factor: 3}}\n"
                                  "  - {name: jobs.dlq}\n")
                .find("key 'queues[1].name': 'jobs.dlq' is a replicated queue's dead-letter queue"),
            std::string::npos);
  EXPECT_NE(parse_error(cluster + "queue_defaults: {dead_letter: jobs.dlq}\n"
                                  "queues:\n  - {name: jobs, replication: {factor: 3}}\n")
                .find("key 'queue_defaults.dead_letter': 'jobs.dlq' is kept by a replicated"),
            std::string::npos);
  // Not through the admin API: a queue made there is not replicated.
  auto made = parse_queue(R"({"name": "jobs", "replication": {"factor": 3}})", {}, "body");
  ASSERT_TRUE(std::holds_alternative<ConfigError>(made));
  EXPECT_EQ(std::get<ConfigError>(made).message, "body:1: unknown key 'replication'");
}

TEST(ListenAddress, ParsesHostAndPort) {
  const auto v4 = parse_listen_address("127.0.0.1:1883");
  ASSERT_TRUE(v4);
  EXPECT_EQ(v4->host, "127.0.0.1");
  EXPECT_EQ(v4->port, 1883);
  EXPECT_EQ(v4->transport, "tcp");
  const auto v6 = parse_listen_address("[::1]:8883");
  ASSERT_TRUE(v6);
  EXPECT_EQ(v6->host, "::1");
  EXPECT_EQ(v6->port, 8883);
  EXPECT_FALSE(parse_listen_address("127.0.0.1"));
  EXPECT_FALSE(parse_listen_address("host:99999"));
  EXPECT_FALSE(parse_listen_address(":1883"));
}

TEST(ConfigLoader, QueueOptionsWrittenAsTextReadBackTheSame) {
  // Every option away from its default, so that a key the writer forgets shows.
  QueueOptions options;
  options.partitions = 3;
  options.lease_timeout_ms = 1234;
  options.redelivery_backoff_ms = {0, 7, 90'000};
  options.max_deliveries = 9;
  options.dead_letter = "elsewhere";
  options.prefetch = 11;
  options.allow_at_most_once = true;
  options.ordering = "key";
  options.dedup_window_ms = 0;
  options.retention_max_age_ms = 4'000'000'000u;
  options.retention_max_messages = 5;
  options.retention_max_bytes = 1ull << 40;
  options.respect_pending = false;
  options.max_depth = 6;
  options.max_depth_bytes = 7;
  options.overflow = "dead_letter";
  options.key_level = 2;
  options.cleanup = "compact,delete";
  options.min_compaction_lag_ms = 8;
  options.delete_retention_ms = 9;
  QueueOptions read;
  ASSERT_FALSE(parse_queue_options(queue_options_yaml(options), read, "record"));
  EXPECT_EQ(read, options);
}

TEST(ConfigLoader, AQueueOfTheAdminApiIsReadWithTheFilesRules) {
  QueueOptions defaults;
  defaults.max_deliveries = 4;
  auto made = parse_queue(R"({"name": "jobs", "kind": "stream", "prefetch": 5})", defaults, "body");
  ASSERT_TRUE(std::holds_alternative<QueueConfig>(made));
  const QueueConfig& queue = std::get<QueueConfig>(made);
  EXPECT_EQ(queue.kind, QueueKind::kStream);
  EXPECT_EQ(queue.options.prefetch, 5u);
  EXPECT_EQ(queue.options.max_deliveries, 4u);  // from the defaults
  const auto error_of = [&](std::string_view text) {
    auto result = parse_queue(text, defaults, "body");
    return std::holds_alternative<ConfigError>(result) ? std::get<ConfigError>(result).message
                                                       : std::string("(none)");
  };
  EXPECT_EQ(error_of(R"({"name": "jobs", "capture": ["a/#"]})"), "body:1: unknown key 'capture'");
  EXPECT_NE(error_of(R"({"name": "a b"})").find("key 'name'"), std::string::npos);
  EXPECT_NE(error_of(R"({"name": "q", "cleanup": "compact"})").find("work queue"),
            std::string::npos);

  // An update changes what it names and nothing else; an error changes nothing.
  QueueOptions options = defaults;
  EXPECT_FALSE(parse_queue_options(R"({"max_deliveries": 8})", options, "body"));
  EXPECT_EQ(options.max_deliveries, 8u);
  EXPECT_EQ(options.prefetch, defaults.prefetch);
  const auto failed = parse_queue_options(R"({"prefetch": 2, "kind": "queue"})", options, "body");
  ASSERT_TRUE(failed);
  EXPECT_NE(failed->message.find("key 'kind': cannot change"), std::string::npos);
  EXPECT_EQ(options.prefetch, defaults.prefetch);
}

TEST(ConfigLoader, ClusterIsReadAndChecked) {
  const Config config = parse_ok(
      "storage: {dir: /tmp/x}\n"
      "cluster:\n"
      "  enabled: true\n"
      "  node_id: n1\n"
      "  listen: 127.0.0.1:7001\n"
      "  insecure: true\n"
      "  etcd: {managed: true, client_listen: 127.0.0.1:7101, peer_listen: 127.0.0.1:7201}\n");
  EXPECT_TRUE(config.cluster.enabled);
  EXPECT_EQ(config.cluster.advertise, "127.0.0.1:7001");  // defaults to listen
  EXPECT_EQ(config.cluster.etcd.name, "n1");              // defaults to node_id
  EXPECT_EQ(config.cluster.etcd.endpoints, std::vector<std::string>{"127.0.0.1:7101"});

  const Config external = parse_ok(
      "cluster: {enabled: true, node_id: a, insecure: true,"
      " etcd: {endpoints: ['http://10.0.0.1:2379', '10.0.0.2:2379']}}\n");
  EXPECT_EQ(external.cluster.etcd.endpoints,
            (std::vector<std::string>{"10.0.0.1:2379", "10.0.0.2:2379"}));

  // Off, nothing is asked for.
  EXPECT_FALSE(parse_ok("cluster: {enabled: false}\n").cluster.enabled);

  EXPECT_EQ(parse_error("cluster:\n  enabled: true\n  insecure: true\n"
                        "  etcd: {endpoints: [127.0.0.1:2379]}\n"),
            "test.yaml:2: key 'cluster.node_id': expected 1 to 64 of A-Z a-z 0-9 _ . -, got ''");
  EXPECT_NE(parse_error("cluster: {enabled: true, node_id: 'a/b', insecure: true,"
                        " etcd: {endpoints: [x:1]}}\n")
                .find("key 'cluster.node_id'"),
            std::string::npos);
  EXPECT_NE(parse_error("cluster: {enabled: true, node_id: a, etcd: {endpoints: [x:1]}}\n")
                .find("key 'cluster.insecure': nodes talk over mutual TLS"),
            std::string::npos);
  EXPECT_NE(parse_error("cluster: {enabled: true, node_id: a, cert_file: c.pem, "
                        "etcd: {endpoints: [x:1]}}\n")
                .find("needs cert_file, key_file and ca_file"),
            std::string::npos);
  EXPECT_NE(parse_error("cluster: {enabled: true, node_id: a, insecure: true}\n")
                .find("key 'cluster.etcd': expected endpoints"),
            std::string::npos);
  // A silent node is waited for until it must have let go of its sessions.
  EXPECT_NE(parse_error("cluster: {enabled: true, node_id: a, insecure: true, lease_ttl_s: 10, "
                        "session_takeover_timeout_ms: 7000, etcd: {endpoints: [x:1]}}\n")
                .find("key 'cluster.session_takeover_timeout_ms': expected at least "
                      "lease_ttl_s * 1000 + 2000 (12000)"),
            std::string::npos);
  EXPECT_NE(parse_error("cluster: {enabled: true, node_id: a, insecure: true, "
                        "etcd: {managed: true}}\n")
                .find("under storage.dir, which is empty"),
            std::string::npos);
  EXPECT_NE(parse_error("cluster: {enabled: true, node_id: a, insecure: true, listen: nope, "
                        "etcd: {endpoints: [x:1]}}\n")
                .find("key 'cluster.listen': expected HOST:PORT, got 'nope'"),
            std::string::npos);
  EXPECT_NE(parse_error("cluster: {enabled: true, node_id: a, insecure: true, "
                        "etcd: {endpoints: ['http://']}}\n")
                .find("endpoints: expected HOST:PORT"),
            std::string::npos);
  EXPECT_NE(parse_error("cluster: {enabled: true, node_id: a, insecure: true, "
                        "listen: '0.0.0.0:7000', etcd: {endpoints: [x:1]}}\n")
                .find("key 'cluster.listen': expected the HOST:PORT other nodes dial"),
            std::string::npos);
  EXPECT_EQ(parse_ok("cluster: {enabled: true, node_id: a, insecure: true, listen: "
                     "'0.0.0.0:7000', advertise: '10.0.0.5:7000', etcd: {endpoints: [x:1]}}\n")
                .cluster.advertise,
            "10.0.0.5:7000");
  EXPECT_NE(parse_error("cluster: {enabled: true, bogus: 1}\n").find("bogus"), std::string::npos);
}

}  // namespace
}  // namespace sluice::config
