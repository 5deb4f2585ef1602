// The admin server's answers: /health, /ready, /metrics and the REST API
// under /api/v1 (docs/admin.md), behind the bearer tokens. Runs on the
// admin server's thread; what belongs to the workers is asked of each
// worker in turn (shard_query.hpp), so no worker ever waits for it.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "admin/http_server.hpp"
#include "admin/tokens.hpp"
#include "broker/cluster_view.hpp"
#include "broker/stats.hpp"
#include "config/config.hpp"

namespace sluice::broker {
class Broker;
}
namespace sluice::queue {
class QueueService;
}

namespace sluice::admin {

class Webhooks;
class OtlpExporter;

// What the admin API counts about itself (and /metrics shows).
struct AdminCounters {
  std::atomic<std::uint64_t> requests{0};
  std::atomic<std::uint64_t> unauthorized{0};  // 401: no token, or a wrong one
  std::atomic<std::uint64_t> forbidden{0};     // 403: a token whose role may not
  std::atomic<std::uint64_t> reloads{0};       // configuration reloads applied
  std::atomic<std::uint64_t> reload_failures{0};
};

// What a configuration reload did (app/reload.cpp makes it).
struct ReloadOutcome {
  bool ok = false;
  std::string error;                       // why nothing changed, when !ok
  std::vector<std::string> applied;        // what changed and is in force
  std::vector<std::string> needs_restart;  // what changed and was left as it was
};

class AdminApi final : public HttpHandler {
 public:
  // `queues` may be nullptr (no queue layer).
  AdminApi(broker::Broker& broker, queue::QueueService* queues, TokenTable tokens);
  ~AdminApi() override;

  void handle(HttpRequest&& request, Respond respond) override;

  // Where work that must not run on a worker goes (the admin server's
  // thread); until set, it runs where it is.
  void set_executor(std::function<void(std::function<void()>)> post);

  // For /metrics; from any thread (a reload replaces them; the replaced
  // ones must outlive this).
  void set_webhooks(const Webhooks* webhooks);
  void set_tracer(const OtlpExporter* tracer);
  // Each MQTT listener's connections, read at scrape time from any thread.
  void set_listener_connections(std::function<std::vector<broker::ListenerConnections>()> read);
  // What the cluster shows (cluster/nodes, cluster/status, metrics), from
  // any thread; until set, this node alone.
  void set_cluster_view(std::function<broker::ClusterView()> view);
  // POST /api/v1/config/reload calls it (on the admin thread); until set,
  // the endpoint answers that there is nothing to reload.
  void set_reload(std::function<ReloadOutcome()> reload);
  // What GET /api/v1/config shows (the configuration in force, reloads
  // included); until set, the one the broker started with.
  void set_config_source(std::function<config::Config()> source);
  // New tokens, from a reload; from any thread.
  void set_tokens(TokenTable tokens);
  AdminCounters& counters();

  // Once a second, on the server's thread: the message rates of the overview.
  void sample();
  // From the start of a graceful shutdown: /ready answers 503.
  void set_draining() { draining_.store(true); }

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
  std::atomic<bool> draining_{false};
};

}  // namespace sluice::admin
