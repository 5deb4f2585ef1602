#include "admin/http_server.hpp"

#include <atomic>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>
#include <list>
#include <mutex>
#include <thread>

namespace sluice::admin {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;

constexpr std::size_t kBodyLimit = 1 << 20;       // bytes of a request body
constexpr std::uint32_t kHeaderLimit = 16 << 10;  // bytes of a request's headers
constexpr auto kIdleTimeout = std::chrono::seconds(30);
constexpr std::size_t kMostConnections = 256;  // beyond: closed at once

int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

std::string error_body(std::string_view code, std::string_view message) {
  // Plain text only (no quotes or backslashes) comes here.
  return std::string("{\"error\":{\"code\":\"") + std::string(code) + "\",\"message\":\"" +
         std::string(message) + "\"}}";
}

}  // namespace

std::optional<std::string> percent_decode(std::string_view text, bool plus_is_space) {
  std::string out;
  out.reserve(text.size());
  for (std::size_t i = 0; i < text.size(); ++i) {
    if (text[i] == '%') {
      if (i + 2 >= text.size()) return std::nullopt;
      const int high = hex_value(text[i + 1]);
      const int low = hex_value(text[i + 2]);
      if (high < 0 || low < 0) return std::nullopt;
      out.push_back(static_cast<char>(high * 16 + low));
      i += 2;
    } else if (plus_is_space && text[i] == '+') {
      out.push_back(' ');
    } else {
      out.push_back(text[i]);
    }
  }
  return out;
}

const std::string* HttpRequest::parameter(std::string_view name) const {
  const std::string* found = nullptr;
  for (const auto& [key, value] : query)
    if (key == name) found = &value;
  return found;
}

struct HttpServer::Impl {
  explicit Impl(HttpHandler& h) : handler(h) {}
  HttpHandler& handler;
  // Before `io`, so that they outlive the sessions its destruction destroys.
  // Atomic: a session's last reference may go on a worker thread (a
  // response callback held by a per-worker query).
  std::atomic<std::size_t> connections{0};
  bool stopped = false;
  asio::io_context io{1};
  std::vector<std::unique_ptr<tcp::acceptor>> acceptors;
  std::vector<std::unique_ptr<asio::steady_timer>> retries;  // after a failed accept
  std::vector<std::shared_ptr<asio::ssl::context>> tls;      // by listener; nullptr: plain
  struct Repeating {
    explicit Repeating(asio::io_context& io) : timer(io) {}
    asio::steady_timer timer;
    std::chrono::milliseconds period{0};
    std::function<void()> task;
  };
  std::vector<std::unique_ptr<Repeating>> repeating;
  std::thread thread;

  void accept(std::size_t listener);
  void arm(Repeating& r) {
    r.timer.expires_after(r.period);
    r.timer.async_wait([this, &r](beast::error_code ec) {
      if (ec || stopped) return;
      r.task();
      arm(r);
    });
  }
};

namespace {

template <class Stream>
class Session : public std::enable_shared_from_this<Session<Stream>> {
 public:
  Session(HttpServer::Impl& server, Stream&& stream, std::string peer, bool loopback)
      : server_(server), stream_(std::move(stream)), peer_(std::move(peer)), loopback_(loopback) {
    ++server_.connections;
  }
  ~Session() { --server_.connections; }

  void start() {
    if constexpr (std::is_same_v<Stream, beast::ssl_stream<beast::tcp_stream>>) {
      beast::get_lowest_layer(stream_).expires_after(kIdleTimeout);
      stream_.async_handshake(asio::ssl::stream_base::server,
                              [self = this->shared_from_this()](beast::error_code ec) {
                                if (!ec) self->read();
                              });
    } else {
      read();
    }
  }

 private:
  void read() {
    parser_.emplace();
    parser_->body_limit(kBodyLimit);
    parser_->header_limit(kHeaderLimit);
    beast::get_lowest_layer(stream_).expires_after(kIdleTimeout);
    http::async_read(stream_, buffer_, *parser_,
                     [self = this->shared_from_this()](beast::error_code ec, std::size_t) {
                       self->on_read(ec);
                     });
  }

  void on_read(beast::error_code ec) {
    if (ec == http::error::end_of_stream || ec == beast::error::timeout ||
        ec == asio::error::operation_aborted) {
      return close();
    }
    if (ec) {
      keep_alive_ = false;
      const bool too_large = ec == http::error::body_limit || ec == http::error::header_limit;
      HttpResponse response;
      response.status = too_large ? 413 : 400;
      response.body = too_large ? error_body("too_large", "the request is too large")
                                : error_body("bad_request", "the request is not valid HTTP/1.1");
      return write(std::move(response));
    }
    const http::request<http::string_body>& message = parser_->get();
    keep_alive_ = message.keep_alive();
    version_ = message.version();
    HttpRequest request;
    request.method = std::string(message.method_string());
    const std::string_view target(message.target().data(), message.target().size());
    const std::size_t question = target.find('?');
    request.path = std::string(target.substr(0, question));
    bool valid = request.path.starts_with('/');
    for (std::size_t start = 1; valid && start <= request.path.size();) {
      std::size_t end = request.path.find('/', start);
      if (end == std::string::npos) end = request.path.size();
      const auto segment =
          percent_decode(std::string_view(request.path).substr(start, end - start), false);
      if (!segment)
        valid = false;
      else if (!segment->empty() || end != request.path.size())
        request.segments.push_back(*segment);
      start = end + 1;
    }
    if (valid && question != std::string_view::npos) {
      std::string_view query = target.substr(question + 1);
      while (valid && !query.empty()) {
        const std::size_t amp = query.find('&');
        const std::string_view pair = query.substr(0, amp);
        query = amp == std::string_view::npos ? std::string_view() : query.substr(amp + 1);
        if (pair.empty()) continue;
        const std::size_t equals = pair.find('=');
        // '+' stays '+' (a topic wildcard here); a space is %20.
        const auto key = percent_decode(pair.substr(0, equals), false);
        const auto value = percent_decode(
            equals == std::string_view::npos ? std::string_view() : pair.substr(equals + 1), false);
        if (!key || !value)
          valid = false;
        else
          request.query.emplace_back(*key, *value);
      }
    }
    if (!valid) {
      HttpResponse response;
      response.status = 400;
      response.body = error_body("bad_request", "malformed percent-encoding in the request target");
      return write(std::move(response));
    }
    request.body = message.body();
    const auto header = [&](http::field field) {
      const auto it = message.find(field);
      return it == message.end() ? std::string() : std::string(it->value());
    };
    request.authorization = header(http::field::authorization);
    request.host = header(http::field::host);
    request.origin = header(http::field::origin);
    request.peer = peer_;
    request.peer_loopback = loopback_;
    // No timeout while the handler works: it answers, or the server stops.
    beast::get_lowest_layer(stream_).expires_never();
    server_.handler.handle(
        std::move(request), [self = this->shared_from_this()](HttpResponse&& response) mutable {
          auto& io = self->server_.io;
          asio::post(io, [self = std::move(self), response = std::move(response)]() mutable {
            self->write(std::move(response));
          });
        });
  }

  void write(HttpResponse&& answer) {
    if (server_.stopped) return;
    response_ = {};
    response_.version(version_);
    response_.result(answer.status);
    response_.set(http::field::server, "sluice");
    response_.set(http::field::content_type, answer.content_type);
    response_.set(http::field::cache_control, "no-store");
    for (const auto& [name, value] : answer.headers)
      response_.set(name, value);
    response_.body() = std::move(answer.body);
    response_.keep_alive(keep_alive_);
    response_.prepare_payload();
    beast::get_lowest_layer(stream_).expires_after(kIdleTimeout);
    http::async_write(stream_, response_,
                      [self = this->shared_from_this()](beast::error_code ec, std::size_t) {
                        if (ec || !self->keep_alive_) return self->close();
                        self->read();
                      });
  }

  void close() {
    beast::error_code ignored;
    beast::get_lowest_layer(stream_).socket().shutdown(tcp::socket::shutdown_both, ignored);
    beast::get_lowest_layer(stream_).close();
  }

  HttpServer::Impl& server_;
  Stream stream_;
  std::string peer_;
  bool loopback_;
  beast::flat_buffer buffer_;
  std::optional<http::request_parser<http::string_body>> parser_;
  http::response<http::string_body> response_;
  bool keep_alive_ = true;
  unsigned version_ = 11;
};

std::shared_ptr<asio::ssl::context> make_tls(const config::TlsConfig& c, std::string& error) {
  auto context = std::make_shared<asio::ssl::context>(asio::ssl::context::tls_server);
  beast::error_code ec;
  context->set_options(asio::ssl::context::default_workarounds | asio::ssl::context::no_sslv2 |
                       asio::ssl::context::no_sslv3 | asio::ssl::context::no_tlsv1 |
                       asio::ssl::context::no_tlsv1_1 |
                       (c.min_version == "1.3" ? asio::ssl::context::no_tlsv1_2 : 0));
  context->use_certificate_chain_file(c.cert_file, ec);
  if (ec) {
    error = c.cert_file + ": " + ec.message();
    return nullptr;
  }
  context->use_private_key_file(c.key_file, asio::ssl::context::pem, ec);
  if (ec) {
    error = c.key_file + ": " + ec.message();
    return nullptr;
  }
  if (!c.ca_file.empty()) {
    context->load_verify_file(c.ca_file, ec);
    if (ec) {
      error = c.ca_file + ": " + ec.message();
      return nullptr;
    }
  }
  if (c.client_auth == "require") {
    context->set_verify_mode(asio::ssl::verify_peer | asio::ssl::verify_fail_if_no_peer_cert);
  } else if (c.client_auth == "optional") {
    context->set_verify_mode(asio::ssl::verify_peer);
  }
  if (!c.ciphers.empty() &&
      SSL_CTX_set_cipher_list(context->native_handle(), c.ciphers.c_str()) != 1) {
    error = "tls.ciphers: OpenSSL accepts none of '" + c.ciphers + "'";
    return nullptr;
  }
  return context;
}

}  // namespace

void HttpServer::Impl::accept(std::size_t listener) {
  acceptors[listener]->async_accept([this, listener](beast::error_code ec, tcp::socket socket) {
    if (ec == asio::error::operation_aborted || stopped) return;
    if (ec) {
      // Out of descriptors, say: accepting again at once would only spin.
      retries[listener]->expires_after(std::chrono::milliseconds(100));
      retries[listener]->async_wait([this, listener](beast::error_code timer) {
        if (!timer && !stopped) accept(listener);
      });
      return;
    }
    if (connections < kMostConnections) {
      beast::error_code ignored;
      const tcp::endpoint remote = socket.remote_endpoint(ignored);
      const std::string peer = remote.address().to_string() + ":" + std::to_string(remote.port());
      const bool loopback =
          remote.address().is_loopback() ||
          (remote.address().is_v6() && remote.address().to_v6().is_v4_mapped() &&
           asio::ip::make_address_v4(asio::ip::v4_mapped, remote.address().to_v6()).is_loopback());
      if (tls[listener]) {
        std::make_shared<Session<beast::ssl_stream<beast::tcp_stream>>>(
            *this, beast::ssl_stream<beast::tcp_stream>(std::move(socket), *tls[listener]), peer,
            loopback)
            ->start();
      } else {
        std::make_shared<Session<beast::tcp_stream>>(*this, beast::tcp_stream(std::move(socket)),
                                                     peer, loopback)
            ->start();
      }
    }
    accept(listener);
  });
}

HttpServer::HttpServer(HttpHandler& handler) : impl_(std::make_unique<Impl>(handler)) {}

HttpServer::~HttpServer() {
  stop();
}

std::optional<std::string> HttpServer::start(
    const std::vector<config::AdminListenerConfig>& listeners) {
  for (const config::AdminListenerConfig& listener : listeners) {
    std::shared_ptr<asio::ssl::context> tls;
    if (listener.transport == "https") {
      std::string error;
      tls = make_tls(listener.tls, error);
      if (!tls)
        return "admin listener " + listener.host + ":" + std::to_string(listener.port) + ": " +
               error;
    }
    beast::error_code ec;
    const asio::ip::address address =
        asio::ip::make_address(listener.host == "localhost" ? "127.0.0.1" : listener.host, ec);
    if (ec) return "admin listener " + listener.host + ": not an IP address";
    auto acceptor = std::make_unique<tcp::acceptor>(impl_->io);
    const tcp::endpoint endpoint(address, listener.port);
    acceptor->open(endpoint.protocol(), ec);
    if (!ec) acceptor->set_option(asio::socket_base::reuse_address(true), ec);
    if (!ec) acceptor->bind(endpoint, ec);
    if (!ec) acceptor->listen(asio::socket_base::max_listen_connections, ec);
    if (ec) {
      return "admin listener " + listener.host + ":" + std::to_string(listener.port) + ": " +
             ec.message();
    }
    impl_->acceptors.push_back(std::move(acceptor));
    impl_->retries.push_back(std::make_unique<asio::steady_timer>(impl_->io));
    impl_->tls.push_back(std::move(tls));
  }
  for (std::size_t i = 0; i < impl_->acceptors.size(); ++i)
    impl_->accept(i);
  impl_->thread = std::thread([this] { impl_->io.run(); });
  return std::nullopt;
}

void HttpServer::stop() {
  if (!impl_->thread.joinable()) return;
  asio::post(impl_->io, [this] {
    impl_->stopped = true;
    for (auto& acceptor : impl_->acceptors) {
      beast::error_code ignored;
      acceptor->close(ignored);
    }
    for (auto& r : impl_->repeating)
      r->timer.cancel();
    for (auto& retry : impl_->retries)
      retry->cancel();
    impl_->io.stop();  // sessions still open are destroyed with their handlers
  });
  impl_->thread.join();
}

std::vector<std::uint16_t> HttpServer::bound_ports() const {
  std::vector<std::uint16_t> ports;
  for (const auto& acceptor : impl_->acceptors) {
    beast::error_code ec;
    ports.push_back(acceptor->local_endpoint(ec).port());
  }
  return ports;
}

void HttpServer::post(std::function<void()> task) {
  asio::post(impl_->io, std::move(task));
}

void HttpServer::every(std::chrono::milliseconds period, std::function<void()> task) {
  auto r = std::make_unique<Impl::Repeating>(impl_->io);
  r->period = period;
  r->task = std::move(task);
  asio::post(impl_->io, [this, r = std::move(r)]() mutable {
    impl_->arm(*r);
    impl_->repeating.push_back(std::move(r));
  });
}

}  // namespace sluice::admin
