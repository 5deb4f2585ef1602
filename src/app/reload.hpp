// Hot reload (issue 13, docs/admin.md): SIGHUP and POST /api/v1/config/reload
// read the configuration file again and apply, all or nothing, what can
// change while the broker runs: the log level, the password, ACL and SCRAM
// files' contents (connected clients get their new ACL at once), the TLS
// listeners' certificates and keys, the admin tokens, rate limits,
// WebSocket settings, webhooks and tracing. Whatever else
// changed is reported as needing a restart and left as it was. TLS files
// that change on disk are reloaded on their own (tls_files_changed).
#pragma once

#include <chrono>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>

#include "admin/admin_api.hpp"
#include "app/observers.hpp"
#include "config/config.hpp"

namespace sluice::auth {
class Authenticator;
}
namespace sluice::broker {
class Broker;
}
namespace sluice::net {
class Server;
}

namespace sluice::app {

class Reloader {
 public:
  // `load` reads the configuration as start-up did (the file, then the
  // command line over it), or says why it cannot. `auth` may be nullptr
  // (none configured).
  using Load = std::function<std::optional<config::Config>(std::string& error)>;
  Reloader(Load load, config::Config running, broker::Broker& broker, auth::Authenticator* auth,
           net::Server& server, admin::AdminApi& admin);

  // From any thread, one at a time.
  admin::ReloadOutcome reload();
  // From the start of shutdown: a reload from then on fails (the
  // observers are stopping, the workers too).
  void close();
  // The TLS listeners' files again, as they are named now (their files
  // changed on disk).
  admin::ReloadOutcome reload_tls();
  // Whether a TLS listener's certificate, key or CA file changed on disk
  // since it was last loaded.
  bool tls_files_changed();
  // The webhooks and tracing a reload may replace; nullptr: none (tests).
  void set_observers(Observers* observers) { observers_ = observers; }
  // The configuration in force, reloaded parts included (GET /api/v1/config):
  // a copy made when a reload ends, so a reload reading its files never
  // holds up the admin server.
  config::Config running() const;

 private:
  admin::ReloadOutcome finish(admin::ReloadOutcome outcome, const char* trigger);
  void remember_tls_files();
  void reissue_acls();
  void set_limits(const config::LimitsConfig& limits);

  std::mutex mutex_;
  bool closed_ = false;
  const Load load_;
  config::Config running_;  // what is in force, reloaded parts included
  broker::Broker& broker_;
  auth::Authenticator* auth_;
  net::Server& server_;
  admin::AdminApi& admin_;
  Observers* observers_ = nullptr;
  mutable std::mutex shown_mutex_;
  std::shared_ptr<const config::Config> shown_;  // running_, as the last reload left it
  // What a file looked like when it was loaded: a change of either is a change.
  struct FileMark {
    std::filesystem::file_time_type mtime{};
    std::uintmax_t size = 0;
    bool operator==(const FileMark&) const = default;
  };
  static FileMark mark_of(const std::string& path);
  std::map<std::string, FileMark> tls_files_;
  std::optional<std::chrono::steady_clock::time_point> tls_retry_at_;
};

}  // namespace sluice::app
