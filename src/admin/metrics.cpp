#include "admin/metrics.hpp"

#include <dirent.h>
#include <sys/resource.h>
#include <unistd.h>

#include <chrono>
#include <fstream>
#include <sstream>

#include "admin/admin_api.hpp"
#include "admin/otlp_exporter.hpp"
#include "admin/prometheus_text.hpp"
#include "admin/webhooks.hpp"
#include "broker/broker.hpp"
#include "broker/shard.hpp"
#include "queue/queue_service.hpp"
#include "store/journal.hpp"

namespace sluice::admin {
namespace {

using broker::ShardStats;

std::uint64_t read(const ShardStats::Counter& counter) {
  return counter.load(std::memory_order_relaxed);
}

// Every worker's value of one counter, summed.
template <class Pick>
std::uint64_t sum(broker::Broker& broker, Pick pick) {
  std::uint64_t total = 0;
  for (std::uint32_t i = 0; i < broker.shard_count(); ++i)
    total += read(pick(broker.shard(i).stats()));
  return total;
}

void broker_metrics(PrometheusText& out, broker::Broker& broker) {
  const auto uptime = std::chrono::duration<double>(broker::Clock::now() - broker.started_at());
  out.family("sluice_build_info", "gauge", "The running version (always 1).");
  out.sample("sluice_build_info", std::uint64_t{1}, {{"version", broker.version()}});
  out.single("sluice_uptime_seconds", "gauge", "Seconds since the broker started.", uptime.count());
  out.single("sluice_workers", "gauge", "Worker threads.",
             static_cast<double>(broker.shard_count()));

  const std::uint64_t online = sum(
      broker, [](auto& s) -> auto& { return s.clients_connected; });
  out.single("sluice_connections", "gauge", "Connected MQTT clients (CONNACK sent).",
             static_cast<double>(online));
  const std::uint64_t sessions = broker.sessions().load(std::memory_order_relaxed);
  out.family("sluice_sessions", "gauge", "Sessions, by whether their client is connected.");
  out.sample("sluice_sessions", online, {{"state", "online"}});
  out.sample("sluice_sessions", sessions > online ? sessions - online : 0, {{"state", "offline"}});
  out.single("sluice_subscriptions", "gauge", "Subscriptions in the subscription index.",
             static_cast<double>(broker.index().size()));
  out.single("sluice_retained_messages", "gauge", "Retained messages.",
             static_cast<double>(broker.retained().size()));

  out.family("sluice_connections_total", "counter",
             "Clients that connected (CONNACK sent), by protocol.");
  const char* protocols[] = {"3.1", "3.1.1", "5.0"};
  for (int v = 0; v < 3; ++v) {
    out.sample("sluice_connections_total",
               sum(
                   broker, [v](auto& s) -> auto& { return s.connections_by_protocol[v]; }),
               {{"protocol", protocols[v]}});
  }
  out.family("sluice_messages_received_total", "counter", "PUBLISH packets from clients, by QoS.");
  const char* qos_names[] = {"0", "1", "2"};
  for (int q = 0; q < 3; ++q) {
    out.sample("sluice_messages_received_total",
               sum(
                   broker, [q](auto& s) -> auto& { return s.messages_received_by_qos[q]; }),
               {{"qos", qos_names[q]}});
  }
  out.family("sluice_messages_sent_total", "counter", "PUBLISH packets to clients, by QoS.");
  for (int q = 0; q < 3; ++q) {
    out.sample("sluice_messages_sent_total",
               sum(
                   broker, [q](auto& s) -> auto& { return s.messages_sent_by_qos[q]; }),
               {{"qos", qos_names[q]}});
  }
  out.family("sluice_authentication_failures_total", "counter",
             "Connections refused for their credentials, and failed re-authentications.");
  out.sample("sluice_authentication_failures_total",
             sum(
                 broker, [](auto& s) -> auto& { return s.auth_failures; }));
  out.family("sluice_authorization_denials_total", "counter",
             "Publishes and subscriptions the ACL refused.");
  out.sample("sluice_authorization_denials_total",
             sum(
                 broker, [](auto& s) -> auto& { return s.authz_denied; }));
  out.family("sluice_received_bytes_total", "counter", "Bytes read from clients.");
  out.sample("sluice_received_bytes_total",
             sum(
                 broker, [](auto& s) -> auto& { return s.bytes_received; }));
  out.family("sluice_sent_bytes_total", "counter", "Bytes written to clients.");
  out.sample("sluice_sent_bytes_total", sum(
                                            broker, [](auto& s) -> auto& { return s.bytes_sent; }));

  out.family("sluice_messages_dropped_total", "counter",
             "Messages dropped on their way to a client, by reason.");
  const std::pair<const char*, ShardStats::Counter ShardStats::*> drops[] = {
      {"queue_full", &ShardStats::dropped_queue_full},
      {"slow_client", &ShardStats::dropped_slow_client},
      {"too_large", &ShardStats::dropped_too_large},
      {"expired", &ShardStats::dropped_expired},
      {"offline_qos0", &ShardStats::dropped_offline_qos0},
      {"not_authorized", &ShardStats::dropped_not_authorized},
      {"no_target", &ShardStats::dropped_no_target},
  };
  for (const auto& [reason, member] : drops) {
    out.sample("sluice_messages_dropped_total",
               sum(
                   broker, [member = member](auto& s) -> auto& { return s.*member; }),
               {{"reason", reason}});
  }
  out.family("sluice_publishes_refused_total", "counter",
             "Publishes refused because a subscriber's queue was full (refuse_publish).");
  out.sample("sluice_publishes_refused_total",
             sum(
                 broker, [](auto& s) -> auto& { return s.refused_queue_full; }));
  out.family("sluice_rate_limited_total", "counter", "Refusals by the rate limits, by kind.");
  out.sample("sluice_rate_limited_total",
             sum(
                 broker, [](auto& s) -> auto& { return s.rejected_connections; }),
             {{"kind", "connection"}});
  out.sample("sluice_rate_limited_total",
             sum(
                 broker, [](auto& s) -> auto& { return s.rejected_publishes; }),
             {{"kind", "publish"}});
  out.sample("sluice_rate_limited_total",
             sum(
                 broker, [](auto& s) -> auto& { return s.rejected_subscriptions; }),
             {{"kind", "subscription"}});

  if (const store::Journal* journal = broker.journal()) {
    const store::JournalHealth health = journal->health();
    out.single("sluice_store_healthy", "gauge", "1 while the store's last write succeeded, else 0.",
               health.healthy ? 1.0 : 0.0);
    out.family("sluice_store_failures_total", "counter", "Failed store writes or fsyncs.");
    out.sample("sluice_store_failures_total", static_cast<std::uint64_t>(health.failures));
    out.single("sluice_store_lost_writes", "gauge",
               "Acknowledged writes the store had lost, found at start-up.",
               static_cast<double>(broker.store_lost_writes()));
    const store::JournalStats stats = journal->stats();
    out.family("sluice_store_fsyncs_total", "counter", "fsyncs of the store's write-ahead log.");
    out.sample("sluice_store_fsyncs_total", stats.syncs);
    if (stats.commit_seconds != nullptr) {
      const auto h = stats.commit_seconds->snapshot();
      out.family("sluice_store_commit_seconds", "histogram",
                 "Time of each store write (a group commit), its fsync included.");
      out.histogram("sluice_store_commit_seconds", h.bounds, h.counts, h.sum);
    }
    if (stats.batch_size != nullptr) {
      const auto h = stats.batch_size->snapshot();
      out.family("sluice_store_commit_batches", "histogram",
                 "Batches (publishes, settlements...) merged into each store write.");
      out.histogram("sluice_store_commit_batches", h.bounds, h.counts, h.sum);
    }
  }
  out.family("sluice_worker_loop_lag_seconds", "histogram",
             "How late each worker's one-second tick ran: how long its loop was busy.");
  for (std::uint32_t i = 0; i < broker.shard_count(); ++i) {
    const auto h = broker.shard(i).stats().loop_lag_seconds.snapshot();
    const std::string worker = std::to_string(i);
    out.histogram("sluice_worker_loop_lag_seconds", h.bounds, h.counts, h.sum, {"worker", worker});
  }
}

void queue_metrics(PrometheusText& out, const queue::QueueService& queues) {
  const std::vector<queue::QueueStats> all = queues.stats();
  out.family("sluice_queue_depth_messages", "gauge", "Messages a queue's log holds.");
  for (const auto& q : all)
    out.sample("sluice_queue_depth_messages", q.depth, {{"queue", q.name}});
  out.family("sluice_queue_size_bytes", "gauge",
             "Bytes a queue's messages take (queues with a byte limit).");
  for (const auto& q : all)
    if (q.bytes) out.sample("sluice_queue_size_bytes", *q.bytes, {{"queue", q.name}});
  out.family("sluice_queue_oldest_age_seconds", "gauge", "Age of a queue's oldest message.");
  for (const auto& q : all) {
    out.sample("sluice_queue_oldest_age_seconds", static_cast<double>(q.oldest_age_ms) / 1000.0,
               {{"queue", q.name}});
  }
  out.family("sluice_queue_messages_total", "counter",
             "What happened to a queue's messages, by event.");
  for (const auto& q : all) {
    for (const auto& [event, value] : q.counters.named())
      out.sample("sluice_queue_messages_total", value, {{"queue", q.name}, {"event", event}});
  }
  using Group = queue::QueueStats::GroupStats;
  const struct {
    const char* name;
    const char* help;
    std::uint64_t (*value)(const Group&);
  } per_group[] = {
      {"sluice_queue_group_pending_messages",
       "Messages a group has not settled (for a stream, its lag).",
       [](const Group& g) { return g.pending; }},
      {"sluice_queue_group_leased_messages", "Messages leased to a group's consumers.",
       [](const Group& g) { return g.leased; }},
      {"sluice_queue_group_redeliveries_waiting",
       "Messages waiting to be offered again after a failure.",
       [](const Group& g) { return g.waiting; }},
      {"sluice_queue_group_consumers", "A group's consumers.",
       [](const Group& g) { return static_cast<std::uint64_t>(g.consumers); }},
  };
  for (const auto& gauge : per_group) {
    out.family(gauge.name, "gauge", gauge.help);
    for (const auto& q : all)
      for (const auto& g : q.groups)
        out.sample(gauge.name, gauge.value(g), {{"queue", q.name}, {"group", g.name}});
  }
}

void process_metrics(PrometheusText& out) {
  const ProcessStats p = read_process_stats();
  out.family("sluice_process_cpu_seconds_total", "counter", "CPU time used, user and system.");
  out.sample("sluice_process_cpu_seconds_total", p.cpu_seconds);
  out.single("sluice_process_resident_memory_bytes", "gauge", "Resident memory.",
             static_cast<double>(p.resident_bytes));
  out.single("sluice_process_open_fds", "gauge", "Open file descriptors.",
             static_cast<double>(p.open_fds));
  out.single("sluice_process_max_fds", "gauge", "The file descriptor limit.",
             static_cast<double>(p.max_fds));
  out.single("sluice_process_start_time_seconds", "gauge", "When the process started (Unix time).",
             p.start_time_seconds);
}

void admin_metrics(PrometheusText& out, const AdminCounters& admin) {
  out.family("sluice_admin_requests_total", "counter", "Requests to the admin server.");
  out.sample("sluice_admin_requests_total", admin.requests.load());
  out.family("sluice_admin_unauthorized_total", "counter",
             "Admin requests refused for a missing or wrong token (401).");
  out.sample("sluice_admin_unauthorized_total", admin.unauthorized.load());
  out.family("sluice_admin_forbidden_total", "counter",
             "Admin requests refused for the token's role (403).");
  out.sample("sluice_admin_forbidden_total", admin.forbidden.load());
  out.family(
      "sluice_config_reloads_total", "counter",
      "Configuration reloads (SIGHUP, POST /api/v1/config/reload, TLS files changed), by result.");
  out.sample("sluice_config_reloads_total", admin.reloads.load(), {{"result", "applied"}});
  out.sample("sluice_config_reloads_total", admin.reload_failures.load(), {{"result", "failed"}});
}

}  // namespace

ProcessStats read_process_stats() {
  ProcessStats p;
  rusage usage{};
  if (getrusage(RUSAGE_SELF, &usage) == 0) {
    p.cpu_seconds = static_cast<double>(usage.ru_utime.tv_sec + usage.ru_stime.tv_sec) +
                    static_cast<double>(usage.ru_utime.tv_usec + usage.ru_stime.tv_usec) / 1e6;
  }
  const long page = sysconf(_SC_PAGESIZE);
  std::ifstream statm("/proc/self/statm");
  std::uint64_t size = 0, resident = 0;
  if (statm >> size >> resident) p.resident_bytes = resident * static_cast<std::uint64_t>(page);
  if (DIR* fds = opendir("/proc/self/fd")) {
    while (const dirent* entry = readdir(fds))
      if (entry->d_name[0] != '.') ++p.open_fds;
    closedir(fds);
    if (p.open_fds > 0) --p.open_fds;  // the directory's own descriptor
  }
  rlimit limit{};
  if (getrlimit(RLIMIT_NOFILE, &limit) == 0) p.max_fds = limit.rlim_cur;
  // Field 22 of /proc/self/stat: start time in clock ticks after boot.
  std::ifstream stat("/proc/self/stat");
  std::string line;
  std::getline(stat, line);
  const std::size_t after_name = line.rfind(')');
  std::ifstream uptime_file("/proc/uptime");
  double uptime = 0;
  if (after_name != std::string::npos && (uptime_file >> uptime)) {
    std::istringstream fields(line.substr(after_name + 2));
    std::string field;
    for (int i = 3; i <= 22 && (fields >> field); ++i) {
    }
    const double ticks = std::stod(field.empty() ? "0" : field);
    const double since_boot = ticks / static_cast<double>(sysconf(_SC_CLK_TCK));
    const double now =
        std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
    p.start_time_seconds = now - uptime + since_boot;
  }
  return p;
}

static void webhook_metrics(PrometheusText& out, const Webhooks& webhooks) {
  const auto all = webhooks.stats();
  out.family("sluice_webhook_events_total", "counter",
             "Events for each webhook, by what became of them.");
  for (const auto& w : all) {
    out.sample("sluice_webhook_events_total", w.delivered,
               {{"webhook", w.name}, {"result", "delivered"}});
    out.sample("sluice_webhook_events_total", w.failed,
               {{"webhook", w.name}, {"result", "failed"}});
    out.sample("sluice_webhook_events_total", w.dropped,
               {{"webhook", w.name}, {"result", "dropped"}});
  }
  out.family("sluice_webhook_queued_events", "gauge", "Events waiting for each webhook.");
  for (const auto& w : all)
    out.sample("sluice_webhook_queued_events", w.queued, {{"webhook", w.name}});
}

static void trace_metrics(PrometheusText& out, const OtlpExporter& tracer) {
  const OtlpExporter::Stats stats = tracer.stats();
  out.family("sluice_trace_spans_total", "counter",
             "Spans of traced messages, by what became of them.");
  out.sample("sluice_trace_spans_total", stats.exported, {{"result", "exported"}});
  out.sample("sluice_trace_spans_total", stats.dropped, {{"result", "dropped"}});
  out.single("sluice_trace_queued_spans", "gauge", "Spans waiting to be exported.",
             static_cast<double>(stats.queued));
}

static void listener_metrics(PrometheusText& out,
                             const std::vector<broker::ListenerConnections>& listeners) {
  out.family("sluice_listener_connections", "gauge",
             "Open TCP connections, by listener (a CONNECT not yet read included).");
  for (const auto& l : listeners) {
    out.sample("sluice_listener_connections", l.open,
               {{"listener", l.listener}, {"transport", l.transport}});
  }
  out.family("sluice_listener_connections_total", "counter",
             "TCP connections accepted, by listener.");
  for (const auto& l : listeners) {
    out.sample("sluice_listener_connections_total", l.accepted,
               {{"listener", l.listener}, {"transport", l.transport}});
  }
}

void replica_metrics(PrometheusText& out, const std::vector<broker::ReplicaGroupView>& groups) {
  const auto each = [&](const char* name, const char* type, const char* help, auto value) {
    out.family(name, type, help);
    for (const broker::ReplicaGroupView& group : groups)
      if (group.member_here)
        out.sample(name, static_cast<double>(value(group)), {{"queue", group.queue}});
  };
  each("sluice_raft_leader", "gauge",
       "1 while this node leads the queue's Raft group and serves it.",
       [](const auto& g) { return g.leading_here ? 1 : 0; });
  each("sluice_raft_term", "gauge",
       "The queue's Raft group's current term, as this member knows it.",
       [](const auto& g) { return g.term; });
  each("sluice_raft_commit_index", "gauge",
       "The last entry of the group this member knows committed.",
       [](const auto& g) { return g.commit_index; });
  each("sluice_raft_applied_index", "gauge", "The last entry this member applied to its store.",
       [](const auto& g) { return g.last_applied; });
  each("sluice_raft_last_index", "gauge", "The last entry in this member's log.",
       [](const auto& g) { return g.last_index; });
  each("sluice_raft_leaderships_total", "counter",
       "Times this node began leading the queue's group.",
       [](const auto& g) { return g.leaderships; });
  each("sluice_raft_elections_total", "counter",
       "Elections this member started (a new term it asked the others for).",
       [](const auto& g) { return g.elections; });
  each("sluice_raft_snapshot_index", "gauge", "The last entry this member's snapshot covers.",
       [](const auto& g) { return g.snapshot_index; });
  each("sluice_raft_snapshot_bytes", "gauge",
       "The size of the last snapshot this member took or installed.",
       [](const auto& g) { return g.snapshot_bytes; });
  // The leader alone knows how far each follower is.
  out.family("sluice_raft_in_sync_replicas", "gauge",
             "Members holding what was committed one in-sync window ago, the leader included "
             "(on the leader).");
  for (const broker::ReplicaGroupView& group : groups)
    if (group.in_sync > 0)
      out.sample("sluice_raft_in_sync_replicas", static_cast<std::uint64_t>(group.in_sync),
                 {{"queue", group.queue}});
  out.family("sluice_raft_replica_lag", "gauge",
             "Entries of the leader's log a follower does not hold yet (on the leader).");
  for (const broker::ReplicaGroupView& group : groups)
    for (const broker::ReplicaGroupView::Follower& follower : group.followers)
      out.sample("sluice_raft_replica_lag", follower.lag,
                 {{"queue", group.queue}, {"replica", follower.node}});
}

void cluster_metrics(PrometheusText& out, const broker::ClusterView& cluster) {
  out.single("sluice_cluster_joined", "gauge", "1 while this node holds its membership lease.",
             cluster.joined ? 1.0 : 0.0);
  out.single("sluice_cluster_lease_losses_total", "counter",
             "Times this node lost its membership lease.",
             static_cast<double>(cluster.lease_losses));
  out.single("sluice_cluster_sessions_owned", "gauge",
             "Session keys this node holds in etcd (the sessions it owns).",
             static_cast<double>(cluster.sessions_owned));
  out.single("sluice_cluster_session_takeovers_total", "counter",
             "Sessions other nodes handed over to this one.",
             static_cast<double>(cluster.takeovers));
  out.single("sluice_cluster_ownership_conflicts_total", "counter",
             "Claims of a session that found its key changed by another node first.",
             static_cast<double>(cluster.ownership_conflicts));
  out.single("sluice_cluster_routes", "gauge", "Filters this node announced to the others.",
             static_cast<double>(cluster.local_routes));
  out.single("sluice_cluster_received_messages_total", "counter",
             "Messages other nodes forwarded to this one.", static_cast<double>(cluster.received));
  out.family("sluice_cluster_node_up", "gauge", "1 while the node's membership key is in etcd.");
  for (const auto& node : cluster.nodes)
    out.sample("sluice_cluster_node_up", node.up ? 1.0 : 0.0, {{"node", node.id}});
  out.family("sluice_cluster_forwarded_messages_total", "counter",
             "Messages forwarded to another node and confirmed by it.");
  for (const auto& node : cluster.nodes)
    if (!node.this_node)
      out.sample("sluice_cluster_forwarded_messages_total", node.forwarded, {{"node", node.id}});
  if (!cluster.replicas.empty()) replica_metrics(out, cluster.replicas);
  out.family("sluice_cluster_forward_failures_total", "counter",
             "Messages forwarded to another node that it did not confirm.");
  for (const auto& node : cluster.nodes)
    if (!node.this_node)
      out.sample("sluice_cluster_forward_failures_total", node.forward_failures,
                 {{"node", node.id}});
}

std::string render_metrics(broker::Broker& broker, const queue::QueueService* queues,
                           const AdminCounters& admin, const SessionTotals& sessions,
                           const MetricsSources& sources) {
  PrometheusText out;
  broker_metrics(out, broker);
  out.single("sluice_inflight_messages", "gauge",
             "QoS 1/2 messages sent to clients and not yet acknowledged.",
             static_cast<double>(sessions.inflight));
  out.single("sluice_queued_messages", "gauge",
             "Messages waiting in sessions' queues (online and offline).",
             static_cast<double>(sessions.queued));
  if (queues != nullptr) queue_metrics(out, *queues);
  process_metrics(out);
  admin_metrics(out, admin);
  if (!sources.listeners.empty()) listener_metrics(out, sources.listeners);
  if (sources.webhooks != nullptr) webhook_metrics(out, *sources.webhooks);
  if (sources.tracer != nullptr) trace_metrics(out, *sources.tracer);
  if (sources.cluster) cluster_metrics(out, *sources.cluster);
  return out.take();
}

}  // namespace sluice::admin
