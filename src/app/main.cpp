// The `sluice` executable: reads the command line and the configuration,
// starts the broker's workers and listeners, and waits for SIGINT or SIGTERM
// to shut down cleanly.
#include <signal.h>
#include <spdlog/spdlog.h>

#include <CLI/CLI.hpp>
#include <cstdio>
#include <thread>

#include "app/version.hpp"
#include "broker/broker.hpp"
#include "broker/persistence.hpp"
#include "config/config_loader.hpp"
#include "config/listen_address.hpp"
#include "net/server.hpp"
#include "store/committer.hpp"
#include "store/store.hpp"

namespace {

using sluice::config::Config;

struct Options {
  std::string config_file;
  std::vector<std::string> listen;
  std::optional<std::uint32_t> workers;
  std::string log_level;
  std::string storage_dir;
};

// The configuration: the file's (or the defaults), then the command line over it.
std::optional<Config> make_config(const Options& options) {
  Config config;
  if (!options.config_file.empty()) {
    auto loaded = sluice::config::load_config_file(options.config_file);
    if (auto* error = std::get_if<sluice::config::ConfigError>(&loaded)) {
      std::fprintf(stderr, "sluice: %s\n", error->message.c_str());
      return std::nullopt;
    }
    config = std::get<Config>(std::move(loaded));
  }
  if (!options.listen.empty()) {
    config.listeners.clear();
    for (const std::string& text : options.listen) {
      const auto listener = sluice::config::parse_listen_address(text);
      if (!listener) {
        std::fprintf(stderr, "sluice: --listen %s: expected HOST:PORT, e.g. 127.0.0.1:1883\n",
                     text.c_str());
        return std::nullopt;
      }
      config.listeners.push_back(*listener);
    }
  }
  if (options.workers) config.workers = *options.workers;
  if (!options.log_level.empty()) config.log_level = options.log_level;
  if (!options.storage_dir.empty()) config.storage.dir = options.storage_dir;
  if (config.workers == 0) config.workers = std::max(1u, std::thread::hardware_concurrency());
  return config;
}

bool is_loopback(const std::string& host) {
  return host == "localhost" || host == "::1" || host.starts_with("127.");
}

// Opens the store when a directory is configured and loads what it holds. A
// store that cannot be opened stops start-up: it is never emptied to go on.
bool open_storage(const sluice::config::StorageConfig& storage, sluice::broker::Broker& broker,
                  std::unique_ptr<sluice::store::Store>& store,
                  std::unique_ptr<sluice::store::Committer>& committer) {
  if (storage.dir.empty() || storage.engine == "memory") {
    spdlog::info("event=storage engine=memory");
    return true;
  }
  const sluice::store::Status opened = sluice::store::open_rocksdb_store(storage.dir, store);
  if (!opened.ok) {
    spdlog::error("event=storage_failed error=\"{}\"", opened.message);
    return false;
  }
  sluice::broker::LoadCounts counts;
  const sluice::store::Status loaded = sluice::broker::load_state(*store, broker, counts);
  if (!loaded.ok) {
    spdlog::error("event=storage_failed dir={} error=\"{}\"", storage.dir, loaded.message);
    return false;
  }
  const auto durability = storage.durability == "sync"    ? sluice::store::Durability::kSync
                          : storage.durability == "batch" ? sluice::store::Durability::kBatch
                                                          : sluice::store::Durability::kNone;
  committer = std::make_unique<sluice::store::Committer>(
      *store, durability, std::chrono::milliseconds(storage.batch_ms));
  broker.set_committer(committer.get());
  spdlog::info(
      "event=storage engine=rocksdb dir={} durability={} sessions_loaded={} "
      "subscriptions_loaded={} outbound_loaded={} inbound_loaded={} messages_loaded={} "
      "retained_loaded={} removed={}",
      storage.dir, storage.durability, counts.sessions, counts.subscriptions, counts.outbound,
      counts.inbound, counts.messages, counts.retained, counts.removed);
  return true;
}

int run(const Config& config, bool from_file) {
  spdlog::set_level(spdlog::level::from_str(config.log_level));
  spdlog::set_pattern("%Y-%m-%dT%H:%M:%S.%e %l %v");

  // Block the stop signals before any thread starts, so that every thread
  // inherits the mask and only the sigwait below receives them.
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGINT);
  sigaddset(&stop_signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);
  signal(SIGPIPE, SIG_IGN);

  sluice::broker::Broker broker(config, config.workers, sluice::app::kVersion);
  std::unique_ptr<sluice::store::Store> store;
  std::unique_ptr<sluice::store::Committer> committer;
  if (!open_storage(config.storage, broker, store, committer)) return 1;
  sluice::net::Server server(broker);
  if (const auto error = server.start(config.listeners)) {
    spdlog::error("event=start_failed error=\"{}\"", *error);
    return 1;
  }
  const auto ports = server.bound_ports();
  for (std::size_t i = 0; i < config.listeners.size(); ++i) {
    spdlog::info("event=listening address={}:{} transport=tcp", config.listeners[i].host, ports[i]);
  }
  const bool local_only = std::all_of(config.listeners.begin(), config.listeners.end(),
                                      [](const auto& l) { return is_loopback(l.host); });
  if (!from_file && local_only) {
    spdlog::info(
        "event=local_only_mode note=\"no configuration file: listening on loopback only, "
        "anonymous clients allowed, state kept {}\"",
        config.storage.dir.empty() ? std::string("in memory") : "in " + config.storage.dir);
  }
  spdlog::info("event=started version={} workers={}", sluice::app::kVersion, config.workers);

  int signal_number = 0;
  sigwait(&stop_signals, &signal_number);
  spdlog::info("event=stopping signal={}", signal_number == SIGINT ? "SIGINT" : "SIGTERM");
  server.stop();
  committer.reset();  // writes what is still pending before the store closes
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
  app.add_option("-w,--workers", options.workers, "worker threads (default: one per core)")
      ->check(CLI::Range(1, 1024));
  app.add_option("--log-level", options.log_level, "trace, debug, info, warn, error or off")
      ->check(CLI::IsMember({"trace", "debug", "info", "warn", "error", "off"}));
  app.add_option("--storage-dir", options.storage_dir,
                 "directory of the RocksDB store (replaces storage.dir; `make run` uses ./data)");
  app.set_version_flag("-V,--version", std::string("sluice ") + sluice::app::kVersion);
  CLI11_PARSE(app, argc, argv);

  const auto config = make_config(options);
  if (!config) return 2;
  return run(*config, !options.config_file.empty());
}
