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
#include "config/config.hpp"

namespace sluice::net {

class Worker;

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

  // The ports the listeners got (useful when port 0 was asked for).
  std::vector<std::uint16_t> bound_ports() const;

  Worker& worker(std::uint32_t index);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace sluice::net
