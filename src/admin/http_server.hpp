// The admin server's HTTP/1.1 side: its listeners, on a thread of their own
// (never a worker's), reading requests and writing the handler's answers.
// Boost.Beast stays in http_server.cpp; the rest of admin/ sees plain
// requests and responses.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "config/config.hpp"

namespace sluice::admin {

struct HttpRequest {
  std::string method;  // "GET", "POST", ...
  std::string path;    // as sent, without the query
  // The path's segments, each percent-decoded: "/api/v1/clients/a%2Fb" is
  // {"api", "v1", "clients", "a/b"}.
  std::vector<std::string> segments;
  std::vector<std::pair<std::string, std::string>> query;  // decoded, in order
  std::string body;
  std::string authorization;  // the Authorization header, as sent
  std::string host;           // the Host header
  std::string origin;         // the Origin header: sent by browsers
  std::string peer;           // "address:port"
  bool peer_loopback = false;

  // The last value of query parameter `name`, if given.
  const std::string* parameter(std::string_view name) const;
};

struct HttpResponse {
  unsigned status = 200;
  std::string content_type = "application/json";
  std::string body;
  std::vector<std::pair<std::string, std::string>> headers;
};

// Called once per response, from any thread.
using Respond = std::function<void(HttpResponse&&)>;

class HttpHandler {
 public:
  virtual ~HttpHandler() = default;
  // On the server's thread. `respond` may be called later, from any thread.
  virtual void handle(HttpRequest&& request, Respond respond) = 0;
};

class HttpServer {
 public:
  explicit HttpServer(HttpHandler& handler);
  ~HttpServer();
  HttpServer(const HttpServer&) = delete;
  HttpServer& operator=(const HttpServer&) = delete;

  // Binds every listener and starts the server's thread; an error message
  // when a listener cannot be bound or its TLS files cannot be loaded.
  std::optional<std::string> start(const std::vector<config::AdminListenerConfig>& listeners);
  // Closes the listeners and connections and joins the thread. Once.
  void stop();
  std::vector<std::uint16_t> bound_ports() const;
  // Runs `task` on the server's thread.
  void post(std::function<void()> task);
  // Runs `task` on the server's thread every `period` until stop().
  void every(std::chrono::milliseconds period, std::function<void()> task);

  struct Impl;  // http_server.cpp's, where its connections see it

 private:
  std::unique_ptr<Impl> impl_;
};

// Decodes %XX (and '+' as a space, in a query) ; nullopt when malformed.
std::optional<std::string> percent_decode(std::string_view text, bool plus_is_space);

}  // namespace sluice::admin
