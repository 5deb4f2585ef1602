// GET /metrics: the broker's numbers in Prometheus' text format, with
// names `sluice_*` and units in the name (docs/admin.md lists them). Each
// worker keeps its own counters (broker/stats.hpp, relaxed atomics written
// by that worker only); they are summed here, when scraped, so nothing on
// the per-message path is shared.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "broker/cluster_view.hpp"
#include "broker/stats.hpp"

namespace sluice::broker {
class Broker;
}
namespace sluice::queue {
class QueueService;
}

namespace sluice::admin {

struct AdminCounters;

// What the workers answer for their own sessions when scraped.
struct SessionTotals {
  std::uint64_t inflight = 0;  // QoS 1/2 messages sent and not yet acknowledged
  std::uint64_t queued = 0;    // waiting behind them (online and offline sessions)
};

class Webhooks;
class OtlpExporter;

// What is counted outside the broker, where there is any.
struct MetricsSources {
  const Webhooks* webhooks = nullptr;  // none configured
  const OtlpExporter* tracer = nullptr;
  std::vector<broker::ListenerConnections> listeners;
  std::optional<broker::ClusterView> cluster;  // set when the cluster is enabled
};

std::string render_metrics(broker::Broker& broker, const queue::QueueService* queues,
                           const AdminCounters& admin, const SessionTotals& sessions,
                           const MetricsSources& sources);

// What /proc says of this process.
struct ProcessStats {
  double cpu_seconds = 0;
  std::uint64_t resident_bytes = 0;
  std::uint64_t open_fds = 0;
  std::uint64_t max_fds = 0;
  double start_time_seconds = 0;  // Unix time
};
ProcessStats read_process_stats();

}  // namespace sluice::admin
