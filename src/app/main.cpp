// The `sluice` executable: reads the command line and the configuration,
// starts the broker's workers and listeners, and waits for SIGINT or SIGTERM
// to shut down cleanly.
#include <signal.h>
#include <spdlog/spdlog.h>
#include <termios.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <cstdio>
#include <future>
#include <iostream>
#include <thread>

#include "admin/admin_api.hpp"
#include "admin/http_server.hpp"
#include "admin/shard_query.hpp"
#include "admin/tokens.hpp"
#include "app/logging.hpp"
#include "app/observers.hpp"
#include "app/reload.hpp"
#include "app/version.hpp"
#include "auth/authenticator.hpp"
#include "broker/broker.hpp"
#include "broker/persistence.hpp"
#include "cluster/cluster.hpp"
#include "config/config_loader.hpp"
#include "config/listen_address.hpp"
#include "net/server.hpp"
#include "queue/queue_service.hpp"
#include "store/committer.hpp"
#include "store/store.hpp"

namespace {

using sluice::config::Config;

struct Options {
  std::string config_file;
  std::vector<std::string> listen;
  std::vector<std::string> admin_listen;
  std::optional<std::uint32_t> workers;
  std::string log_level;
  std::string storage_dir;
  bool storage_recover = false;
};

// The configuration: the file's (or the defaults), then the command line over
// it; at start-up and at each reload.
std::optional<Config> make_config(const Options& options, std::string& error) {
  Config config;
  if (!options.config_file.empty()) {
    auto loaded = sluice::config::load_config_file(options.config_file);
    if (auto* failed = std::get_if<sluice::config::ConfigError>(&loaded)) {
      error = failed->message;
      return std::nullopt;
    }
    config = std::get<Config>(std::move(loaded));
  }
  if (!options.listen.empty()) {
    config.listeners.clear();
    for (const std::string& text : options.listen) {
      const auto listener = sluice::config::parse_listen_address(text);
      if (!listener) {
        error = "--listen " + text + ": expected HOST:PORT, e.g. 127.0.0.1:1883";
        return std::nullopt;
      }
      config.listeners.push_back(*listener);
    }
  }
  if (!options.admin_listen.empty()) {
    config.admin.listeners.clear();
    for (const std::string& text : options.admin_listen) {
      if (text == "off") continue;
      const auto listener = sluice::config::parse_listen_address(text);
      if (!listener) {
        error = "--admin-listen " + text + ": expected HOST:PORT (e.g. 127.0.0.1:9883) or off";
        return std::nullopt;
      }
      sluice::config::AdminListenerConfig admin;
      admin.host = listener->host;
      admin.port = listener->port;
      config.admin.listeners.push_back(admin);
    }
  }
  if (options.workers) config.workers = *options.workers;
  if (!options.log_level.empty()) config.log_level = options.log_level;
  if (!options.storage_dir.empty()) config.storage.dir = options.storage_dir;
  if (options.storage_recover) config.storage.recover = true;
  if (config.workers == 0) config.workers = std::max(1u, std::thread::hardware_concurrency());
  return config;
}

// Opens the store when a directory is configured and loads what it holds. A
// store that cannot be opened, or lost what it had acknowledged, stops
// start-up (unless storage.recover): it is never emptied to go on.
// Stored sessions' queue subscriptions come back in `queue_subscriptions`,
// to be made once the queue layer has recovered.
bool open_storage(const sluice::config::StorageConfig& storage, sluice::broker::Broker& broker,
                  std::unique_ptr<sluice::store::Store>& store,
                  std::unique_ptr<sluice::store::Committer>& committer,
                  std::vector<sluice::store::SubscriptionRecord>& queue_subscriptions) {
  if (storage.dir.empty() || storage.engine == "memory") {
    spdlog::info("event=storage engine=memory");
    return true;
  }
  sluice::store::OpenReport report;
  const sluice::store::Status opened = sluice::store::open_rocksdb_store(
      storage.dir, sluice::store::OpenOptions{storage.recover}, store, report);
  if (!opened.ok) {
    spdlog::error("event=storage_failed error=\"{}\"", opened.message);
    return false;
  }
  if (report.repaired || report.lost_writes != 0) {
    spdlog::warn(
        "event=storage_recovered dir={} repaired_manifest={} lost_writes={} note=\"the store had "
        "lost acknowledged writes; sluice starts from what is readable\"",
        storage.dir, report.repaired, report.lost_writes);
  }
  if (report.unchecked) {
    spdlog::warn(
        "event=storage_unchecked dir={} note=\"no durable mark (made by an older sluice, or "
        "removed): lost writes cannot be detected this once\"",
        storage.dir);
  }
  if (report.format_found != 0 && report.format_found < 2) {
    spdlog::info("event=storage_migrated dir={} from_format={} to_format=2", storage.dir,
                 report.format_found);
  }
  broker.set_store_lost_writes(report.lost_writes);
  sluice::broker::LoadCounts counts;
  const sluice::store::Status loaded =
      sluice::broker::load_state(*store, broker, counts, queue_subscriptions);
  if (!loaded.ok) {
    spdlog::error("event=storage_failed dir={} error=\"{}\"", storage.dir, loaded.message);
    return false;
  }
  const auto durability = storage.durability == "sync"    ? sluice::store::Durability::kSync
                          : storage.durability == "batch" ? sluice::store::Durability::kBatch
                                                          : sluice::store::Durability::kNone;
  committer = std::make_unique<sluice::store::Committer>(
      *store, durability, std::chrono::milliseconds(storage.batch_ms));
  broker.set_journal(committer.get());
  spdlog::info(
      "event=storage engine=rocksdb dir={} durability={} sessions_loaded={} "
      "subscriptions_loaded={} outbound_loaded={} inbound_loaded={} messages_loaded={} "
      "retained_loaded={} removed={}",
      storage.dir, storage.durability, counts.sessions, counts.subscriptions, counts.outbound,
      counts.inbound, counts.messages, counts.retained, counts.removed);
  if (counts.sessions > broker.config().limits.max_sessions) {
    spdlog::warn(
        "event=over_max_sessions sessions_loaded={} max_sessions={} note=\"every stored session "
        "was kept; new sessions are refused until fewer than max_sessions exist\"",
        counts.sessions, broker.config().limits.max_sessions);
  }
  return true;
}

// Makes the stored sessions' queue subscriptions again; those whose queue
// is gone are logged and their records deleted.
bool restore_queue_subscriptions(sluice::broker::Broker& broker,
                                 std::vector<sluice::store::SubscriptionRecord>&& records,
                                 sluice::store::Store& store) {
  if (records.empty()) return true;
  sluice::store::WriteBatch cleanup;
  const auto restored =
      sluice::broker::restore_queue_subscriptions(broker, std::move(records), cleanup);
  for (const auto& dropped : restored.dropped) {
    spdlog::warn(
        "event=queue_subscription_dropped client_id=\"{}\" filter=\"{}\" reason=0x{:02X} "
        "note=\"a stored session's queue subscription could not be made again; was its queue "
        "removed from the config?\"",
        dropped.client_id, dropped.filter, static_cast<unsigned>(dropped.reason));
  }
  spdlog::info("event=queue_subscriptions_restored count={} dropped={}", restored.made,
               restored.dropped.size());
  if (cleanup.empty()) return true;
  if (const sluice::store::Status written = store.write(cleanup, true); !written.ok) {
    spdlog::error("event=storage_failed error=\"{}\"", written.message);
    return false;
  }
  return true;
}

// The admin server's tokens; a listener off loopback without any stops
// start-up, as an MQTT listener without authentication does.
std::optional<sluice::admin::TokenTable> load_admin_tokens(
    const sluice::config::AdminConfig& admin) {
  std::string error;
  auto tokens = sluice::admin::TokenTable::load(admin, error);
  if (!tokens) {
    spdlog::error("event=start_failed error=\"{}\"", error);
    return std::nullopt;
  }
  for (const auto& listener : admin.listeners) {
    if (!sluice::config::is_loopback_host(listener.host) && tokens->empty()) {
      spdlog::error(
          "event=start_failed error=\"admin listener {}:{} is reachable from the network and no "
          "admin token is configured\" fix=\"make one with: sluice token NAME ROLE, and add it "
          "to admin.tokens or admin.token_file\"",
          listener.host, listener.port);
      return std::nullopt;
    }
  }
  return tokens;
}

// `sluice token NAME ROLE [--file FILE]`: a new admin token. The secret is
// printed once; only its SHA-256 is kept (in FILE, when given).
int run_token(const std::string& name, const std::string& role, const std::string& file) {
  if (name.empty() || name.find_first_of(" \t\n#") != std::string::npos) {
    std::fprintf(stderr, "sluice token: NAME must be one word, without '#'\n");
    return 1;
  }
  const std::string secret = sluice::admin::make_secret();
  const std::string digest = sluice::admin::sha256_hex(secret);
  if (!file.empty()) {
    std::string error;
    sluice::config::AdminConfig check;
    check.token_file = file;
    if (access(file.c_str(), F_OK) == 0 && !sluice::admin::TokenTable::load(check, error)) {
      std::fprintf(stderr, "sluice token: %s\n", error.c_str());
      return 1;
    }
    std::FILE* out = std::fopen(file.c_str(), "a");
    if (out == nullptr) {
      std::fprintf(stderr, "sluice token: %s: cannot write\n", file.c_str());
      return 1;
    }
    std::fprintf(out, "%s %s %s\n", name.c_str(), role.c_str(), digest.c_str());
    std::fclose(out);
    // Named twice now? Say so rather than leave a file start-up refuses.
    if (!sluice::admin::TokenTable::load(check, error)) {
      std::fprintf(stderr, "sluice token: %s\n", error.c_str());
      return 1;
    }
  }
  std::printf("token: %s\n", secret.c_str());
  std::printf("(shown once; sluice keeps only its SHA-256)\n");
  if (file.empty()) {
    std::printf("for admin.tokens in the config:\n  - {name: %s, role: %s, token_sha256: %s}\n",
                name.c_str(), role.c_str(), digest.c_str());
  } else {
    std::printf("added to %s\n", file.c_str());
  }
  return 0;
}

// QoS 1/2 messages in flight to connected clients, summed over the
// workers (each counts its own); nullopt if they did not answer in time.
std::optional<std::size_t> outbound_in_flight(sluice::broker::Broker& broker) {
  auto answer = std::make_shared<std::promise<std::size_t>>();
  std::future<std::size_t> total = answer->get_future();
  sluice::admin::ask_every_shard<std::size_t>(
      broker,
      [](sluice::broker::Shard& shard) {
        std::size_t count = 0;
        shard.for_each_session([&](const sluice::broker::Session& session) {
          if (session.online()) count += session.inflight();
        });
        return count;
      },
      [answer](std::vector<std::size_t>&& parts) {
        std::size_t sum = 0;
        for (const std::size_t part : parts)
          sum += part;
        answer->set_value(sum);
      });
  if (total.wait_for(std::chrono::seconds(1)) != std::future_status::ready) return std::nullopt;
  return total.get();
}

// The graceful part of a shutdown: with the listeners closed, connected
// clients get up to `timeout` to acknowledge what is in flight to them.
// A second stop signal ends the wait at once.
void drain(sluice::broker::Broker& broker, const sigset_t& stop_signals,
           std::chrono::seconds timeout) {
  const auto started = std::chrono::steady_clock::now();
  const auto deadline = started + timeout;
  std::optional<std::size_t> left = outbound_in_flight(broker);
  spdlog::info("event=draining in_flight={} timeout_s={}", left.value_or(0), timeout.count());
  while (left.value_or(1) > 0 && std::chrono::steady_clock::now() < deadline) {
    const timespec pause{0, 50'000'000};
    if (sigtimedwait(&stop_signals, nullptr, &pause) > 0) {
      spdlog::warn("event=drain_interrupted in_flight={} note=\"a second signal: stopping now\"",
                   left.value_or(0));
      return;
    }
    left = outbound_in_flight(broker);
  }
  const auto waited = std::chrono::duration_cast<std::chrono::milliseconds>(
      std::chrono::steady_clock::now() - started);
  if (left.value_or(1) == 0) {
    spdlog::info("event=drained waited_ms={}", waited.count());
  } else {
    spdlog::warn(
        "event=drain_timeout in_flight={} waited_ms={} note=\"unacknowledged messages stay with "
        "their sessions\"",
        left.value_or(0), waited.count());
  }
}

// Who may connect. A listener off loopback without a password file stops
// start-up unless development_mode says anonymous clients are wanted there.
bool load_auth(const Config& config, std::unique_ptr<sluice::auth::Authenticator>& auth) {
  // Client certificates required by TLS authenticate clients as well.
  const auto open =
      std::find_if(config.listeners.begin(), config.listeners.end(), [](const auto& l) {
        const bool encrypted = l.transport == "tls" || l.transport == "wss";
        const bool certificates = encrypted && l.tls.client_auth == "require";
        return !sluice::config::is_loopback_host(l.host) && !certificates;
      });
  if (open != config.listeners.end() && config.auth.password_file.empty()) {
    if (!config.auth.development_mode) {
      spdlog::error(
          "event=start_failed error=\"listener {}:{} is reachable from the network and no "
          "authentication is configured\" fix=\"set auth.password_file (make one with: sluice "
          "passwd FILE USER), or set auth.development_mode: true to accept anonymous clients "
          "there anyway\"",
          open->host, open->port);
      return false;
    }
    spdlog::warn(
        "event=development_mode note=\"anonymous clients are accepted on {}:{}, which is "
        "reachable from the network\"",
        open->host, open->port);
  }
  // A verified certificate's name is an identity where a listener takes it as the username.
  const bool certificate_identities =
      std::any_of(config.listeners.begin(), config.listeners.end(),
                  [](const auto& l) { return l.tls.use_identity_as_username; });
  if (config.auth.password_file.empty() && config.auth.acl_file.empty() &&
      config.auth.scram_file.empty() && !certificate_identities) {
    return true;
  }
  std::string error;
  auth = sluice::auth::Authenticator::load(config.auth, certificate_identities, error);
  if (!auth) {
    spdlog::error("event=start_failed error=\"{}\"", error);
    return false;
  }
  const bool sources = !config.auth.password_file.empty() || !config.auth.scram_file.empty() ||
                       certificate_identities;
  spdlog::info(
      "event=auth password_file=\"{}\" acl_file=\"{}\" scram_file=\"{}\" "
      "certificate_identities={} allow_anonymous={}",
      config.auth.password_file, config.auth.acl_file, config.auth.scram_file,
      certificate_identities, !sources || config.auth.allow_anonymous);
  if (auth->has_unreachable_user_rules()) {
    spdlog::warn(
        "event=acl_user_rules_unused note=\"the ACL file has rules for named users, but no "
        "password file, SCRAM file or certificate identity can verify a name: every client is "
        "anonymous, and only the anonymous rules and %c patterns apply\"");
  }
  return true;
}

// The new password for `sluice passwd`: asked twice on a terminal (without
// echo), else the first line of standard input.
std::optional<std::string> read_new_password() {
  std::string password;
  if (isatty(STDIN_FILENO) == 0) {
    if (!std::getline(std::cin, password)) return std::nullopt;
    if (!password.empty() && password.back() == '\r') password.pop_back();
    return password;
  }
  termios saved{};
  tcgetattr(STDIN_FILENO, &saved);
  termios quiet = saved;
  quiet.c_lflag &= ~static_cast<tcflag_t>(ECHO);
  tcsetattr(STDIN_FILENO, TCSANOW, &quiet);
  std::string again;
  std::fprintf(stderr, "Password: ");
  std::getline(std::cin, password);
  std::fprintf(stderr, "\nReenter password: ");
  std::getline(std::cin, again);
  std::fprintf(stderr, "\n");
  tcsetattr(STDIN_FILENO, TCSANOW, &saved);
  if (password != again) {
    std::fprintf(stderr, "sluice passwd: the passwords do not match\n");
    return std::nullopt;
  }
  return password;
}

int run_passwd(const std::string& file, const std::string& user, bool scram) {
  const auto password = read_new_password();
  if (!password) return 1;
  if (password->empty()) {
    std::fprintf(stderr, "sluice passwd: the password is empty\n");
    return 1;
  }
  if (const auto error = sluice::auth::set_password(file, user, *password, scram)) {
    std::fprintf(stderr, "sluice passwd: %s\n", error->c_str());
    return 1;
  }
  return 0;
}

int run(const Config& config, const Options& options) {
  const bool from_file = !options.config_file.empty();
  if (const auto failed = sluice::app::set_up_logging(config.log, config.log_level)) {
    std::fprintf(stderr, "sluice: %s\n", failed->c_str());
    return 1;
  }

  // Block the stop signals before any thread starts, so that every thread
  // inherits the mask and only the sigwait below receives them.
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGINT);
  sigaddset(&stop_signals, SIGTERM);
  sigset_t handled = stop_signals;  // and SIGHUP: reload
  sigaddset(&handled, SIGHUP);
  pthread_sigmask(SIG_BLOCK, &handled, nullptr);
  signal(SIGPIPE, SIG_IGN);

  std::unique_ptr<sluice::auth::Authenticator> auth;
  if (!load_auth(config, auth)) return 1;
  auto admin_tokens = load_admin_tokens(config.admin);
  if (!admin_tokens) return 1;
  sluice::broker::Broker broker(config, config.workers, sluice::app::kVersion);
  if (auth) broker.set_auth(auth.get());
  // Before the stored sessions come back, so that their filters are
  // announced too; it outlives the workers, which forward through it.
  std::optional<sluice::cluster::Cluster> cluster;
  if (config.cluster.enabled) {
    cluster.emplace(broker, config, sluice::app::kVersion);
    cluster->attach();
  }
  std::unique_ptr<sluice::store::Store> store;
  std::unique_ptr<sluice::store::Committer> committer;
  std::vector<sluice::store::SubscriptionRecord> queue_subscriptions;
  if (!open_storage(config.storage, broker, store, committer, queue_subscriptions)) return 1;
  // Before the server, so that it outlives the workers that call it.
  sluice::queue::QueueService queues(broker, store.get());
  if (const sluice::store::Status recovered = queues.recover(); !recovered.ok) {
    spdlog::error("event=start_failed error=\"{}\"", recovered.message);
    return 1;
  }
  broker.set_queues(&queues);
  if (store && !restore_queue_subscriptions(broker, std::move(queue_subscriptions), *store))
    return 1;
  // Before the server: its workers may still hold the admin server's
  // requests when they stop, so the admin server is destroyed after them.
  sluice::admin::AdminApi admin_api(broker, &queues, std::move(*admin_tokens));
  // Before the server too: workers emit events and spans into them until
  // they stop.
  sluice::app::Observers observers(broker, admin_api, sluice::app::kVersion);
  if (const auto failed = observers.start(config)) {
    spdlog::error("event=start_failed error=\"{}\"", *failed);
    return 1;
  }
  sluice::admin::HttpServer admin_server(admin_api);
  admin_api.set_executor(
      [&admin_server](std::function<void()> task) { admin_server.post(std::move(task)); });
  // Made before the cluster starts: it is the workers' mailbox, which
  // publishes forwarded from other nodes are posted to (they wait there
  // until the workers run).
  sluice::net::Server server(broker);
  // Whatever way main leaves from here, the cluster stops before the server
  // (the mailbox its gRPC server posts to) is destroyed.
  struct StopCluster {
    std::optional<sluice::cluster::Cluster>& cluster;
    ~StopCluster() {
      if (cluster) cluster->stop();
    }
  } stop_cluster{cluster};
  if (cluster) {
    admin_api.set_cluster_view([&cluster] { return cluster->view(); });
    // Before the listeners: a node takes clients once it knows the others' filters.
    if (const auto failed = cluster->start(store.get())) {
      spdlog::error("event=start_failed error=\"{}\"", *failed);
      return 1;
    }
  }
  if (const auto error = server.start(config.listeners)) {
    spdlog::error("event=start_failed error=\"{}\"", *error);
    return 1;
  }
  // The workers run: what other nodes forward can be routed from now on.
  if (cluster) cluster->accept_forwards();
  admin_api.set_listener_connections([&server] { return server.listener_connections(); });
  const auto ports = server.bound_ports();
  for (std::size_t i = 0; i < config.listeners.size(); ++i) {
    const auto& listener = config.listeners[i];
    spdlog::info("event=listening address={}:{} transport={}", listener.host, ports[i],
                 listener.transport);
    const bool websocket = listener.transport == "ws" || listener.transport == "wss";
    if (websocket && listener.websocket.allowed_origins.empty()) {
      spdlog::warn(
          "event=websocket_any_origin address={}:{} note=\"websocket.allowed_origins is empty: "
          "pages from any site may connect through their visitors' browsers\"",
          listener.host, ports[i]);
    }
  }
  const bool local_only =
      std::all_of(config.listeners.begin(), config.listeners.end(),
                  [](const auto& l) { return sluice::config::is_loopback_host(l.host); });
  if (!from_file && local_only) {
    spdlog::info(
        "event=local_only_mode note=\"no configuration file: listening on loopback only, "
        "anonymous clients allowed, state kept {}\"",
        config.storage.dir.empty() ? std::string("in memory") : "in " + config.storage.dir);
  }
  sluice::app::Reloader reloader(
      [&options](std::string& error) { return make_config(options, error); }, config, broker,
      auth.get(), server, admin_api);
  reloader.set_observers(&observers);
  admin_api.set_config_source([&reloader] { return reloader.running(); });
  if (from_file) admin_api.set_reload([&reloader] { return reloader.reload(); });
  if (const auto error = admin_server.start(config.admin.listeners)) {
    spdlog::error("event=start_failed error=\"{}\"", *error);
    server.stop();
    return 1;
  }
  const auto admin_ports = admin_server.bound_ports();
  for (std::size_t i = 0; i < config.admin.listeners.size(); ++i) {
    const auto& listener = config.admin.listeners[i];
    spdlog::info("event=admin_listening address={}:{} transport={}", listener.host, admin_ports[i],
                 listener.transport);
  }
  admin_server.every(std::chrono::seconds(1), [&admin_api] { admin_api.sample(); });
  spdlog::info("event=started version={} workers={}", sluice::app::kVersion, config.workers);

  int signal_number = 0;
  while (true) {
    // Every two seconds, whether a TLS listener's files changed on disk.
    const timespec poll{2, 0};
    signal_number = sigtimedwait(&handled, nullptr, &poll);
    if (signal_number == SIGINT || signal_number == SIGTERM) break;
    if (signal_number == SIGHUP) {
      spdlog::info("event=config_reload_requested by=SIGHUP");
      reloader.reload();
    } else if (reloader.tls_files_changed()) {
      reloader.reload_tls();
    }
  }
  spdlog::info("event=stopping signal={}", signal_number == SIGINT ? "SIGINT" : "SIGTERM");
  // In this order: nothing runs on the workers any more; the password
  // checks still running finish (their callbacks post to the stopped
  // workers, as do the store's); everything handed to the store is written;
  // and what the server's own teardown still writes finds no journal rather
  // than a destroyed one.
  admin_api.set_draining();  // /ready answers 503 from now on
  reloader.close();          // nothing is put in place while it all stops
  server.stop_accepting();
  drain(broker, stop_signals, std::chrono::seconds(config.shutdown.timeout_s));
  if (cluster) cluster->leave();  // the others stop forwarding here
  server.stop();
  if (cluster) cluster->stop();
  // The last events (the clients' disconnections) and spans get a moment
  // to go out: one grace for both, not one after the other.
  observers.stop(std::chrono::seconds(2));
  admin_server.stop();
  if (auth) auth->stop();
  committer.reset();
  broker.set_journal(nullptr);
  spdlog::info("event=stopped");
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"Sluice: an MQTT broker and durable message queue."};
  Options options;
  app.add_option("-c,--config", options.config_file, "YAML configuration file")
      ->check(CLI::ExistingFile);
  app.add_option("-l,--listen", options.listen,
                 "HOST:PORT of a plain TCP listener (repeatable); replaces the configured ones");
  app.add_option("--admin-listen", options.admin_listen,
                 "HOST:PORT of a plain HTTP admin listener (repeatable), or off; replaces "
                 "admin.listeners (default 127.0.0.1:9883)");
  app.add_option("-w,--workers", options.workers, "worker threads (default: one per core)")
      ->check(CLI::Range(1, 1024));
  app.add_option("--log-level", options.log_level, "trace, debug, info, warn, error or off")
      ->check(CLI::IsMember({"trace", "debug", "info", "warn", "error", "off"}));
  app.add_option("--storage-dir", options.storage_dir,
                 "directory of the RocksDB store (replaces storage.dir; `make run` uses ./data)");
  app.add_flag("--storage-recover", options.storage_recover,
               "start from what the store can still read when it lost acknowledged writes or "
               "is damaged (sets storage.recover); what is missing is logged and counted");
  app.set_version_flag("-V,--version", std::string("sluice ") + sluice::app::kVersion);
  std::string passwd_file, passwd_user;
  CLI::App* passwd = app.add_subcommand(
      "passwd",
      "set USER's password in FILE (Mosquitto's format; the file is created if missing). The "
      "password is asked on a terminal, or read from the first line of standard input");
  passwd->add_option("file", passwd_file, "password file")->required();
  passwd->add_option("user", passwd_user, "username")->required();
  bool passwd_scram = false;
  passwd->add_flag("--scram", passwd_scram,
                   "write SCRAM-SHA-256 keys (for auth.scram_file) instead of a password hash");
  std::string token_name, token_role, token_file;
  CLI::App* token = app.add_subcommand(
      "token",
      "make an admin API token for NAME with ROLE (viewer, operator or admin): prints the secret "
      "once, and the line for admin.tokens (or adds NAME ROLE SHA256 to --file)");
  token->add_option("name", token_name, "the token's name")->required();
  token->add_option("role", token_role, "viewer, operator or admin")
      ->required()
      ->check(CLI::IsMember({"viewer", "operator", "admin"}));
  token->add_option("--file", token_file, "an admin.token_file to add it to");
  CLI11_PARSE(app, argc, argv);
  if (*passwd) return run_passwd(passwd_file, passwd_user, passwd_scram);
  if (*token) return run_token(token_name, token_role, token_file);

  std::string error;
  const auto config = make_config(options, error);
  if (!config) {
    std::fprintf(stderr, "sluice: %s\n", error.c_str());
    return 2;
  }
  return run(*config, options);
}
