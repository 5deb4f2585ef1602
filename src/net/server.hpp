// The network side of the broker: worker threads, and the listeners that
// accept connections and spread them over the workers. Asio stays behind
// this header, so the application does not compile it.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "broker/broker.hpp"
#include "broker/stats.hpp"
#include "config/config.hpp"

namespace sluice::net {

class Worker;
class TlsContext;

class Server {
 public:
  explicit Server(broker::Broker& broker);
  ~Server();
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  // Binds every listener and starts the workers; an error message when a
  // listener cannot be bound.
  std::optional<std::string> start(const std::vector<config::ListenerConfig>& listeners);

  // Closes the listeners: connections already made go on. Safe to call from
  // any thread, more than once.
  void stop_accepting();
  // Stops accepting, says goodbye to clients and joins the workers. Safe to
  // call from any thread, once.
  void stop();

  // Hot reload of TLS listeners' certificates and keys, in two steps (as
  // auth::Authenticator's): prepare_tls loads them again (`listeners` as the
  // server was started with, in order), or says which listener and file
  // failed; commit_tls puts them in place. New handshakes use them;
  // connections already up keep theirs.
  using PreparedTls = std::vector<std::shared_ptr<TlsContext>>;
  std::optional<std::string> prepare_tls(const std::vector<config::ListenerConfig>& listeners,
                                         PreparedTls& out) const;
  void commit_tls(PreparedTls prepared);

  // Rate limits from a reload (`listeners` as the server was started with,
  // in order, each with its own limits or `global`): new connections get
  // them; connected clients keep the buckets they were given at CONNECT.
  void set_rate_limits(const std::vector<config::ListenerConfig>& listeners,
                       const config::RateLimitConfig& global);
  // WebSocket settings (allowed origins, path) from a reload, the same way:
  // new connections' upgrades are checked against them.
  void set_websocket(const std::vector<config::ListenerConfig>& listeners);

  // The ports the listeners got (useful when port 0 was asked for).
  std::vector<std::uint16_t> bound_ports() const;
  // Each listener's connections; from any thread.
  std::vector<broker::ListenerConnections> listener_connections() const;

  Worker& worker(std::uint32_t index);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace sluice::net
