// Listeners and the worker threads. Each listener's acceptor runs on worker
// 0's loop and accepts each new socket straight into the next worker's
// io_context, round robin.
#include "net/server.hpp"

#include <spdlog/spdlog.h>

#include <atomic>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <map>
#include <mutex>
#include <thread>

#include "auth/token_bucket.hpp"
#include "net/connection.hpp"
#include "net/tls.hpp"
#include "net/websocket.hpp"
#include "net/worker.hpp"

namespace sluice::net {

namespace asio = boost::asio;
using asio::ip::tcp;

namespace {
// How long clients get to take their goodbye before the workers stop anyway.
constexpr auto kShutdownGrace = std::chrono::seconds(3);
// How long to wait before accepting again after accept failed.
constexpr auto kAcceptRetryDelay = std::chrono::milliseconds(100);
}  // namespace

struct Server::Impl : broker::Mailbox {
  struct Listener {
    tcp::acceptor acceptor;
    asio::steady_timer retry;         // after a failed accept
    std::shared_ptr<TlsContext> tls;  // for tls and wss
    // For ws and wss; a reload swaps it (set_websocket).
    std::atomic<const config::WebSocketConfig*> websocket{nullptr};
    // Its own, or the global ones; a reload swaps them (set_rate_limits).
    std::atomic<const config::RateLimitConfig*> rate_limits{nullptr};
    // Connection rate per source address (forgotten once their buckets
    // refill, or when the limits change), for `per_address_limits`.
    std::map<asio::ip::address, auth::TokenBucket> per_address;
    const config::RateLimitConfig* per_address_limits = nullptr;
    std::string name;       // host:port as bound
    std::string transport;  // as configured
    std::shared_ptr<ListenerCount> count = std::make_shared<ListenerCount>();
    explicit Listener(asio::io_context& context) : acceptor(context), retry(context) {}
  };

  broker::Broker& broker;
  // Every set of rate limits and WebSocket settings a reload made, kept for
  // the server's life: connections hold them by pointer, and reloads are few.
  // Declared before the workers: destroyed after their connections.
  std::mutex reloaded_mutex;
  std::vector<std::unique_ptr<const config::RateLimitConfig>> rate_limit_versions;
  std::vector<std::unique_ptr<const config::WebSocketConfig>> websocket_versions;
  std::vector<std::unique_ptr<Worker>> workers;
  std::vector<std::unique_ptr<Listener>> listeners;
  std::uint32_t next_worker = 0;
  std::atomic<bool> stopped{false};
  std::atomic<bool> not_accepting{false};
  static constexpr std::size_t kMaxTrackedAddresses = 10'000;

  explicit Impl(broker::Broker& b) : broker(b) {}

  void post(std::uint32_t shard, std::vector<broker::RemoteDelivery>&& deliveries) override {
    workers[shard]->post_deliveries(std::move(deliveries));
  }

  void post_task(std::uint32_t shard, std::function<void()> task) override {
    workers[shard]->post_task(std::move(task));
  }

  // Whether a new connection from `socket`'s address is over
  // rate_limits.connections_per_s_per_ip. Runs on the acceptors' thread only.
  bool over_connection_rate(Listener& listener, const config::RateLimitConfig& limits,
                            const Socket& socket) {
    auto& per_address = listener.per_address;
    if (listener.per_address_limits != &limits) {  // buckets of the old rates
      per_address.clear();
      listener.per_address_limits = &limits;
    }
    if (limits.connections_per_s_per_ip <= 0) return false;
    boost::system::error_code error;
    const auto peer = socket.remote_endpoint(error);
    if (error) return false;
    const auto now = broker::Clock::now();
    if (per_address.size() > kMaxTrackedAddresses) {
      std::erase_if(per_address, [&](auto& entry) { return entry.second.full(now); });
    }
    const double burst =
        limits.connection_burst != 0 ? limits.connection_burst : limits.connections_per_s_per_ip;
    auto [it, added] =
        per_address.try_emplace(peer.address(), limits.connections_per_s_per_ip, burst, now);
    return !it->second.take(now);
  }

  void accept(Listener& listener) {
    Worker& target = *workers[next_worker];
    next_worker = (next_worker + 1) % static_cast<std::uint32_t>(workers.size());
    listener.acceptor.async_accept(target.context(), [this, &listener, &target](
                                                         const boost::system::error_code& error,
                                                         Socket socket) {
      // Closed for a drain: what the kernel accepted meanwhile is closed too.
      if (error == asio::error::operation_aborted || not_accepting.load()) return;
      if (!error) {
        // Read once: a reload meanwhile must not judge with one and give another.
        const config::RateLimitConfig* rate_limits = listener.rate_limits.load();
        const bool over_rate = over_connection_rate(listener, *rate_limits, socket);
        listener.count->accepted.fetch_add(1, std::memory_order_relaxed);
        asio::post(target.context(),
                   [&target, over_rate, tls = listener.tls, websocket = listener.websocket.load(),
                    rate_limits, count = listener.count, socket = std::move(socket)]() mutable {
                     std::unique_ptr<TlsStream> stream;
                     if (tls) stream = std::make_unique<TlsStream>(tls, socket.native_handle());
                     std::unique_ptr<WebSocketSession> framing;
                     if (websocket != nullptr)
                       framing = std::make_unique<WebSocketSession>(*websocket);
                     auto connection = std::make_shared<Connection>(
                         target, std::move(socket), std::move(stream), std::move(framing));
                     connection->set_rate_limits(rate_limits);
                     connection->count_in(std::move(count));
                     // Refused only once its CONNECT is read, so that it is told why.
                     if (over_rate) connection->refuse_over_connection_rate();
                     if (target.add(connection)) connection->start();
                   });
        accept(listener);
        return;
      }
      // Out of descriptors, say: accepting again at once would only spin.
      spdlog::warn("event=accept_failed error=\"{}\"", error.message());
      listener.retry.expires_after(kAcceptRetryDelay);
      listener.retry.async_wait([this, &listener](const boost::system::error_code& timer_error) {
        if (!timer_error) accept(listener);
      });
    });
  }
};

Server::Server(broker::Broker& broker) : impl_(std::make_unique<Impl>(broker)) {
  for (std::uint32_t i = 0; i < broker.shard_count(); ++i) {
    impl_->workers.push_back(std::make_unique<Worker>(*this, broker, i));
  }
  broker.set_mailbox(impl_.get());
}

Server::~Server() {
  stop();
}

Worker& Server::worker(std::uint32_t index) {
  return *impl_->workers[index];
}

std::optional<std::string> Server::start(const std::vector<config::ListenerConfig>& listeners) {
  asio::io_context& context = impl_->workers[0]->context();
  for (const config::ListenerConfig& listener : listeners) {
    boost::system::error_code error;
    const auto address = asio::ip::make_address(listener.host, error);
    if (error) return "listener " + listener.host + ": not an IP address";
    const tcp::endpoint endpoint(address, listener.port);
    auto entry = std::make_unique<Impl::Listener>(context);
    entry->rate_limits =
        listener.rate_limits ? &*listener.rate_limits : &impl_->broker.config().rate_limits;
    if (listener.transport == "ws" || listener.transport == "wss") {
      entry->websocket = &listener.websocket;
    }
    if (listener.transport == "tls" || listener.transport == "wss") {
      std::string tls_error;
      entry->tls = TlsContext::create(listener.tls, tls_error);
      if (!entry->tls) {
        return "listener " + listener.host + ":" + std::to_string(listener.port) + ": " + tls_error;
      }
    }
    tcp::acceptor& acceptor = entry->acceptor;
    acceptor.open(endpoint.protocol(), error);
    if (!error) acceptor.set_option(tcp::acceptor::reuse_address(true), error);
    if (!error) acceptor.bind(endpoint, error);
    if (!error) acceptor.listen(asio::socket_base::max_listen_connections, error);
    if (error) {
      return "cannot listen on " + listener.host + ":" + std::to_string(listener.port) + ": " +
             error.message();
    }
    const bool v6 = listener.host.find(':') != std::string::npos;
    entry->name = (v6 ? "[" + listener.host + "]" : listener.host) + ":" +
                  std::to_string(acceptor.local_endpoint().port());
    entry->transport = listener.transport;
    impl_->listeners.push_back(std::move(entry));
  }
  for (auto& listener : impl_->listeners)
    impl_->accept(*listener);
  for (auto& worker : impl_->workers)
    worker->start();
  return std::nullopt;
}

std::vector<std::uint16_t> Server::bound_ports() const {
  std::vector<std::uint16_t> ports;
  for (const auto& listener : impl_->listeners) {
    ports.push_back(listener->acceptor.local_endpoint().port());
  }
  return ports;
}

void Server::set_rate_limits(const std::vector<config::ListenerConfig>& listeners,
                             const config::RateLimitConfig& global) {
  std::lock_guard lock(impl_->reloaded_mutex);
  for (std::size_t i = 0; i < impl_->listeners.size() && i < listeners.size(); ++i) {
    auto limits = std::make_unique<const config::RateLimitConfig>(
        listeners[i].rate_limits ? *listeners[i].rate_limits : global);
    impl_->listeners[i]->rate_limits.store(limits.get());
    impl_->rate_limit_versions.push_back(std::move(limits));
  }
}

void Server::set_websocket(const std::vector<config::ListenerConfig>& listeners) {
  std::lock_guard lock(impl_->reloaded_mutex);
  for (std::size_t i = 0; i < impl_->listeners.size() && i < listeners.size(); ++i) {
    if (impl_->listeners[i]->websocket.load() == nullptr) continue;  // not ws or wss
    auto settings = std::make_unique<const config::WebSocketConfig>(listeners[i].websocket);
    impl_->listeners[i]->websocket.store(settings.get());
    impl_->websocket_versions.push_back(std::move(settings));
  }
}

std::vector<broker::ListenerConnections> Server::listener_connections() const {
  std::vector<broker::ListenerConnections> out;
  for (const auto& listener : impl_->listeners) {
    out.push_back({listener->name, listener->transport,
                   listener->count->accepted.load(std::memory_order_relaxed),
                   listener->count->open.load(std::memory_order_relaxed)});
  }
  return out;
}

std::optional<std::string> Server::prepare_tls(const std::vector<config::ListenerConfig>& listeners,
                                               PreparedTls& out) const {
  out.assign(impl_->listeners.size(), nullptr);
  for (std::size_t i = 0; i < listeners.size() && i < out.size(); ++i) {
    const config::ListenerConfig& listener = listeners[i];
    if (listener.transport != "tls" && listener.transport != "wss") continue;
    std::string error;
    out[i] = TlsContext::create(listener.tls, error);
    if (!out[i])
      return "listener " + listener.host + ":" + std::to_string(listener.port) + ": " + error;
  }
  return std::nullopt;
}

void Server::commit_tls(PreparedTls prepared) {
  // On the acceptors' thread, which alone reads a listener's context (each
  // accepted connection takes its own reference to it).
  asio::post(impl_->workers[0]->context(), [this, prepared = std::move(prepared)] {
    for (std::size_t i = 0; i < prepared.size() && i < impl_->listeners.size(); ++i)
      if (prepared[i]) impl_->listeners[i]->tls = prepared[i];
  });
}

void Server::stop_accepting() {
  if (impl_->not_accepting.exchange(true)) return;
  asio::post(impl_->workers[0]->context(), [this] {
    for (auto& listener : impl_->listeners) {
      boost::system::error_code ignored;
      listener->acceptor.close(ignored);
      listener->retry.cancel();
    }
  });
}

void Server::stop() {
  if (impl_->stopped.exchange(true)) return;
  stop_accepting();
  for (auto& worker : impl_->workers)
    worker->post_shutdown();
  const auto deadline = std::chrono::steady_clock::now() + kShutdownGrace;
  for (auto& worker : impl_->workers) {
    while (!worker->context().stopped() && std::chrono::steady_clock::now() < deadline) {
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    worker->context().stop();
    worker->join();
  }
}

}  // namespace sluice::net
