#include "admin/http_poster.hpp"

#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <optional>

namespace sluice::admin {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;

struct HttpPoster::State {
  std::string host;
  std::string port;
  std::string target;
  asio::io_context io;
  std::optional<beast::tcp_stream> stream;

  asio::steady_timer closer{io};  // armed by close_at

  // Runs `io` until the step started on it is done (each step has a
  // deadline). Not io.run(): an armed closer would hold that until it fired.
  void run_io(const bool& done) {
    io.restart();
    while (!done && io.run_one() != 0) {
    }
  }

  void drop_connection() {
    if (!stream) return;
    beast::error_code ignored;
    stream->socket().close(ignored);
    stream.reset();
  }

  bool attempt(const std::string& body, const Headers& headers, const Deadline& deadline,
               bool& answered) {
    beast::error_code ec;
    if (!stream) {
      // Without a deadline of its own (docs/admin.md): an address, or a
      // name the resolver answers at once.
      tcp::resolver resolver(io);
      const auto found = resolver.resolve(host, port, ec);
      if (ec || found.empty()) return false;
      stream.emplace(io);
      stream->expires_at(deadline());
      bool connected = false;
      stream->async_connect(found, [&](beast::error_code e, const tcp::endpoint&) {
        ec = e;
        connected = true;
      });
      run_io(connected);
      if (ec) {
        drop_connection();
        return false;
      }
    }
    http::request<http::string_body> request{http::verb::post, target, 11};
    const bool v6 = host.find(':') != std::string::npos;
    request.set(http::field::host, (v6 ? "[" + host + "]" : host) + ":" + port);
    request.set(http::field::user_agent, "sluice");
    request.set(http::field::content_type, "application/json");
    for (const auto& [name, value] : headers)
      request.set(name, value);
    request.body() = body;
    request.keep_alive(true);
    request.prepare_payload();
    stream->expires_at(deadline());
    bool written = false;
    http::async_write(*stream, request, [&](beast::error_code e, std::size_t) {
      ec = e;
      written = true;
    });
    run_io(written);
    http::response_parser<http::string_body> response;
    response.body_limit(64 * 1024);  // what a receiver says back is not read beyond this
    if (!ec) {
      beast::flat_buffer buffer;
      bool read = false;
      stream->expires_at(deadline());
      http::async_read(*stream, buffer, response, [&](beast::error_code e, std::size_t) {
        ec = e;
        read = true;
      });
      run_io(read);
    }
    answered = response.is_header_done();
    const bool ok = !ec && response.is_done() && response.get().result_int() / 100 == 2;
    if (ec || !response.is_done() || !response.get().keep_alive()) drop_connection();
    return ok;
  }
};

HttpPoster::HttpPoster() : state_(std::make_unique<State>()) {}
HttpPoster::~HttpPoster() = default;

std::unique_ptr<HttpPoster> HttpPoster::create(const std::string& url, std::string& error) {
  if (!url.starts_with("http://")) {
    error = "expected http://host[:port]/path, got '" + url + "'";
    return nullptr;
  }
  std::unique_ptr<HttpPoster> poster(new HttpPoster());
  State& s = *poster->state_;
  const std::string_view rest = std::string_view(url).substr(7);
  const std::size_t slash = rest.find('/');
  const std::string_view authority = rest.substr(0, slash);
  s.target = slash == std::string_view::npos ? "/" : std::string(rest.substr(slash));
  const std::size_t colon = authority.rfind(':');
  const bool has_port =
      colon != std::string_view::npos && authority.find(']', colon) == std::string_view::npos;
  s.host = std::string(has_port ? authority.substr(0, colon) : authority);
  s.port = has_port ? std::string(authority.substr(colon + 1)) : "80";
  if (s.host.starts_with('[') && s.host.ends_with(']'))
    s.host = s.host.substr(1, s.host.size() - 2);
  if (s.host.empty()) {
    error = "no host in url '" + url + "'";
    return nullptr;
  }
  return poster;
}

bool HttpPoster::post(const std::string& body, const Headers& headers, const Deadline& deadline) {
  const bool reused = state_->stream.has_value();
  bool answered = false;
  if (state_->attempt(body, headers, deadline, answered)) return true;
  return reused && !answered && state_->attempt(body, headers, deadline, answered);
}

void HttpPoster::close_at(std::chrono::steady_clock::time_point when) {
  // A step under way then ends (later ones ask `deadline`, which a stop
  // shortens too). Only the socket is closed: the step sees the error and
  // lets the connection go itself.
  State* s = state_.get();
  asio::post(s->io, [s, when] {
    s->closer.expires_at(when);
    s->closer.async_wait([s](beast::error_code e) {
      beast::error_code ignored;
      if (!e && s->stream) s->stream->socket().close(ignored);
    });
  });
}

}  // namespace sluice::admin
