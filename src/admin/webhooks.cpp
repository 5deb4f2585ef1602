#include "admin/webhooks.hpp"

#include <openssl/hmac.h>
#include <openssl/rand.h>
#include <spdlog/spdlog.h>

#include <atomic>
#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <condition_variable>
#include <deque>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <thread>

#include "admin/tokens.hpp"
#include "auth/base64.hpp"
#include "mqtt/topic.hpp"

namespace sluice::admin {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;

std::string new_id() {
  unsigned char random[16];
  if (RAND_bytes(random, sizeof random) != 1) return "0";
  return to_hex(random, sizeof random);
}

void add(std::atomic<std::uint64_t>& counter) {
  counter.fetch_add(1, std::memory_order_relaxed);
}

}  // namespace

struct Webhooks::Endpoint {
  config::WebhookConfig config;
  std::string host;
  std::string port;
  std::string target;
  std::array<bool, broker::kEventKinds> events{};
  std::vector<std::string> topics;  // message.published filters

  struct Queued {
    std::shared_ptr<const std::string> body;  // one copy for every endpoint
    const char* event = "";
    std::string id;
  };
  mutable std::mutex mutex;
  std::condition_variable wake;
  std::deque<Queued> queue;
  std::uint64_t queued_bytes = 0;
  // Whether the queue is full, readable without the lock: a worker asks it
  // before building a body that would only be dropped (a receiver that is
  // down keeps it full, and must not cost every publish a body).
  std::atomic<bool> full{false};

  void note_fill() {  // under the lock
    full.store(queue.size() >= config.max_queue || queued_bytes + 1024 > config.max_queue_bytes,
               std::memory_order_relaxed);
  }
  bool stopping = false;
  std::chrono::steady_clock::time_point give_up_at;  // once stopping

  std::atomic<std::uint64_t> delivered{0};
  std::atomic<std::uint64_t> failed{0};
  std::atomic<std::uint64_t> dropped{0};

  // The sender's own: its I/O, and a connection kept between requests.
  asio::io_context io;
  std::optional<beast::tcp_stream> stream;
  asio::steady_timer closer{io};  // armed by stop()
  std::thread sender;

  void offer(Queued&& item) {
    {
      std::lock_guard lock(mutex);
      if (stopping || queue.size() >= config.max_queue ||
          queued_bytes + item.body->size() > config.max_queue_bytes) {
        add(dropped);
        return;
      }
      queued_bytes += item.body->size();
      queue.push_back(std::move(item));
      note_fill();
    }
    wake.notify_one();
  }

  void run() {
    while (true) {
      Queued item;
      {
        std::unique_lock lock(mutex);
        wake.wait(lock, [&] { return stopping || !queue.empty(); });
        if (queue.empty()) return;
        if (stopping && std::chrono::steady_clock::now() >= give_up_at) break;
        item = std::move(queue.front());
        queue.pop_front();
        queued_bytes -= item.body->size();
        note_fill();
      }
      deliver(item);
    }
    std::lock_guard lock(mutex);
    dropped.fetch_add(queue.size(), std::memory_order_relaxed);
    queue.clear();
    queued_bytes = 0;
  }

  void deliver(const Queued& item) {
    auto backoff = std::chrono::milliseconds(100);
    for (std::uint32_t attempt = 1; attempt <= config.max_attempts; ++attempt) {
      if (post(item)) {
        add(delivered);
        return;
      }
      if (attempt == config.max_attempts) break;
      std::unique_lock lock(mutex);
      // Waits out the backoff, unless stopping makes it pointless.
      const auto until = std::chrono::steady_clock::now() + backoff;
      wake.wait_until(lock, until,
                      [&] { return stopping && std::chrono::steady_clock::now() >= give_up_at; });
      if (stopping && std::chrono::steady_clock::now() >= give_up_at) break;
      backoff = std::min(backoff * 2, std::chrono::milliseconds(10'000));
    }
    add(failed);
    spdlog::warn("event=webhook_failed webhook=\"{}\" event_name={} id={} attempts={}", config.name,
                 item.event, item.id, config.max_attempts);
  }

  // Runs the I/O started on `io` to its end: each step has a deadline.
  void run_io() {
    io.restart();
    io.run();
  }

  // When the current step must end: its timeout, or sooner once stopping.
  std::chrono::steady_clock::time_point deadline() {
    auto until = std::chrono::steady_clock::now() + std::chrono::milliseconds(config.timeout_ms);
    std::lock_guard lock(mutex);
    if (stopping) until = std::min(until, give_up_at);
    return until;
  }

  void drop_connection() {
    if (!stream) return;
    beast::error_code ignored;
    stream->socket().close(ignored);
    stream.reset();
  }

  bool post(const Queued& item) {
    // A kept connection the receiver closed while idle fails before any
    // answer: that is tried again at once on a new one, not counted.
    const bool reused = stream.has_value();
    bool answered = false;
    if (attempt(item, answered)) return true;
    return reused && !answered && attempt(item, answered);
  }

  bool attempt(const Queued& item, bool& answered) {
    beast::error_code ec;
    if (!stream) {
      // Without a deadline of its own (docs/admin.md): an address, or a
      // name the resolver answers at once.
      tcp::resolver resolver(io);
      const auto found = resolver.resolve(host, port, ec);
      if (ec || found.empty()) return false;
      stream.emplace(io);
      stream->expires_at(deadline());
      stream->async_connect(found, [&ec](beast::error_code e, const tcp::endpoint&) { ec = e; });
      run_io();
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
    request.set("X-Sluice-Event", item.event);
    request.set("X-Sluice-Delivery", item.id);
    if (!config.secret.empty())
      request.set("X-Sluice-Signature", Webhooks::signature(config.secret, *item.body));
    for (const auto& [name, value] : config.headers)
      request.set(name, value);
    request.body() = *item.body;
    request.keep_alive(true);
    request.prepare_payload();
    stream->expires_at(deadline());
    http::async_write(*stream, request, [&ec](beast::error_code e, std::size_t) { ec = e; });
    run_io();
    http::response_parser<http::string_body> response;
    response.body_limit(64 * 1024);  // what a receiver says back is not read beyond this
    if (!ec) {
      beast::flat_buffer buffer;
      stream->expires_at(deadline());
      http::async_read(*stream, buffer, response,
                       [&ec](beast::error_code e, std::size_t) { ec = e; });
      run_io();
    }
    answered = response.is_header_done();
    const bool ok = !ec && response.is_done() && response.get().result_int() / 100 == 2;
    if (ec || !response.is_done() || !response.get().keep_alive()) drop_connection();
    return ok;
  }
};

std::unique_ptr<Webhooks> Webhooks::create(const std::vector<config::WebhookConfig>& hooks,
                                           std::string& error) {
  std::unique_ptr<Webhooks> webhooks(new Webhooks());
  for (const config::WebhookConfig& hook : hooks) {
    auto endpoint = std::make_unique<Endpoint>();
    endpoint->config = hook;
    // http://host[:port]/path (the loader checked the scheme).
    const std::string_view rest = std::string_view(hook.url).substr(7);
    const std::size_t slash = rest.find('/');
    const std::string_view authority = rest.substr(0, slash);
    endpoint->target = slash == std::string_view::npos ? "/" : std::string(rest.substr(slash));
    const std::size_t colon = authority.rfind(':');
    const bool has_port =
        colon != std::string_view::npos && authority.find(']', colon) == std::string_view::npos;
    endpoint->host = std::string(has_port ? authority.substr(0, colon) : authority);
    endpoint->port = has_port ? std::string(authority.substr(colon + 1)) : "80";
    if (endpoint->host.starts_with('[') && endpoint->host.ends_with(']'))
      endpoint->host = endpoint->host.substr(1, endpoint->host.size() - 2);
    if (endpoint->host.empty()) {
      error = "webhook " + hook.name + ": no host in url '" + hook.url + "'";
      return nullptr;
    }
    for (std::size_t kind = 0; kind < broker::kEventKinds; ++kind) {
      const char* name = broker::event_name(static_cast<broker::EventKind>(kind));
      endpoint->events[kind] =
          hook.events.empty() ||
          std::find(hook.events.begin(), hook.events.end(), name) != hook.events.end();
      webhooks->wanted_[kind] = webhooks->wanted_[kind] || endpoint->events[kind];
    }
    endpoint->topics = hook.topics.empty() ? std::vector<std::string>{"#"} : hook.topics;
    for (const std::string& filter : endpoint->topics) {
      if (!mqtt::check_topic_filter(filter).ok() || mqtt::parse_shared_filter(filter)) {
        error = "webhook " + hook.name + ": '" + filter + "' in topics is not a topic filter";
        return nullptr;
      }
    }
    webhooks->endpoints_.push_back(std::move(endpoint));
  }
  for (auto& endpoint : webhooks->endpoints_) {
    Endpoint* raw = endpoint.get();
    raw->sender = std::thread([raw] { raw->run(); });
  }
  return webhooks;
}

Webhooks::~Webhooks() {
  stop(std::chrono::milliseconds(0));
}

bool Webhooks::wants_message(std::string_view topic) const {
  bool wanted = false;
  for (const auto& endpoint : endpoints_) {
    if (!endpoint->events[static_cast<std::size_t>(broker::EventKind::kMessagePublished)]) continue;
    bool match = false;
    for (const std::string& filter : endpoint->topics)
      match = match || mqtt::topic_matches(filter, topic);
    if (!match) continue;
    // A full queue takes nothing: counted here, so that the worker builds
    // no event at all (a receiver that is down costs a publish this much).
    if (endpoint->full.load(std::memory_order_relaxed)) {
      add(endpoint->dropped);
      continue;
    }
    wanted = true;
  }
  return wanted;
}

void Webhooks::emit(broker::Event&& event) {
  const auto kind = static_cast<std::size_t>(event.kind);
  std::optional<Endpoint::Queued> made;  // built once, for the first endpoint that takes it
  for (auto& endpoint : endpoints_) {
    if (!endpoint->events[kind]) continue;
    if (event.kind == broker::EventKind::kMessagePublished) {
      bool match = false;
      for (const std::string& filter : endpoint->topics)
        match = match || mqtt::topic_matches(filter, event.topic);
      if (!match) continue;
    }
    if (endpoint->full.load(std::memory_order_relaxed)) {
      add(endpoint->dropped);  // counted, and nothing built for it
      continue;
    }
    if (!made) {
      made.emplace();
      made->id = new_id();
      made->event = broker::event_name(event.kind);
      made->body = std::make_shared<const std::string>(body(event, made->id));
    }
    endpoint->offer(Endpoint::Queued(*made));
  }
}

void Webhooks::stop(std::chrono::milliseconds grace) {
  for (auto& endpoint : endpoints_) {
    std::lock_guard lock(endpoint->mutex);
    if (endpoint->stopping) continue;
    endpoint->stopping = true;
    endpoint->give_up_at = std::chrono::steady_clock::now() + grace;
  }
  for (auto& endpoint : endpoints_) {
    endpoint->wake.notify_all();
    // A request under way gets the grace, then its connection is closed
    // (its deadline was set before the stop).
    Endpoint* raw = endpoint.get();
    asio::post(raw->io, [raw] {
      raw->closer.expires_at(raw->give_up_at);
      raw->closer.async_wait([raw](beast::error_code e) {
        if (!e) raw->drop_connection();
      });
    });
    if (endpoint->sender.joinable()) endpoint->sender.join();
  }
}

std::vector<Webhooks::EndpointStats> Webhooks::stats() const {
  std::vector<EndpointStats> out;
  for (const auto& endpoint : endpoints_) {
    EndpointStats s;
    s.name = endpoint->config.name;
    s.delivered = endpoint->delivered.load(std::memory_order_relaxed);
    s.failed = endpoint->failed.load(std::memory_order_relaxed);
    s.dropped = endpoint->dropped.load(std::memory_order_relaxed);
    {
      std::lock_guard lock(endpoint->mutex);
      s.queued = endpoint->queue.size();
    }
    out.push_back(std::move(s));
  }
  return out;
}

std::string Webhooks::body(const broker::Event& event, const std::string& id) {
  using nlohmann::json;
  json out = {{"id", id},
              {"event", broker::event_name(event.kind)},
              {"timestamp_ms", std::chrono::duration_cast<std::chrono::milliseconds>(
                                   std::chrono::system_clock::now().time_since_epoch())
                                   .count()}};
  const auto text = [&](const char* key, const std::string& value) {
    if (!value.empty()) out[key] = value;
  };
  text("client_id", event.client_id);
  text("username", event.username);
  text("address", event.address);
  text("protocol", event.protocol);
  text(event.kind == broker::EventKind::kSubscriptionCreated ||
               event.kind == broker::EventKind::kSubscriptionRemoved ||
               (event.kind == broker::EventKind::kAuthzDenied && event.reason == "subscribe")
           ? "filter"
           : "topic",
       event.topic);
  text("reason", event.reason);
  text("queue", event.queue);
  text("group", event.group);
  text("message_id", event.message_id);
  if (event.qos >= 0) out["qos"] = event.qos;
  if (event.kind == broker::EventKind::kMessagePublished) {
    out["retain"] = event.retain;
    out["payload_base64"] = auth::to_base64(event.payload);
  }
  return out.dump(-1, ' ', false, json::error_handler_t::replace);
}

std::string Webhooks::signature(std::string_view secret, std::string_view body) {
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int size = 0;
  HMAC(EVP_sha256(), secret.data(), static_cast<int>(secret.size()),
       reinterpret_cast<const unsigned char*>(body.data()), body.size(), digest, &size);
  return "sha256=" + to_hex(digest, size);
}

}  // namespace sluice::admin
