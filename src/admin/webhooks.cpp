#include "admin/webhooks.hpp"

#include <openssl/hmac.h>
#include <openssl/rand.h>
#include <spdlog/spdlog.h>

#include <atomic>
#include <condition_variable>
#include <deque>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <thread>

#include "admin/http_poster.hpp"
#include "admin/tokens.hpp"
#include "auth/base64.hpp"
#include "mqtt/topic.hpp"

namespace sluice::admin {
namespace {

std::string new_id() {
  unsigned char random[16];
  if (RAND_bytes(random, sizeof random) != 1) return "0";
  return auth::to_hex(random);
}

void add(std::atomic<std::uint64_t>& counter) {
  counter.fetch_add(1, std::memory_order_relaxed);
}

}  // namespace

struct Webhooks::Endpoint {
  config::WebhookConfig config;
  std::array<bool, broker::kEventKinds> events{};
  std::vector<std::string> topics;  // message.published filters

  // An event as the worker handed it over: its body is made by the first
  // sender to need it, off the workers (a body costs more than the publish
  // it describes), once for every endpoint.
  struct Made {
    broker::Event event;
    std::int64_t timestamp_ms = 0;
    std::size_t bytes = 0;  // what it holds, for max_queue_bytes
    std::once_flag once;
    std::string id;
    std::string body;
    const std::string& text() {
      std::call_once(once, [this] {
        id = new_id();
        body = Webhooks::body(event, id, timestamp_ms);
      });
      return body;
    }
  };
  using Queued = std::shared_ptr<Made>;
  mutable std::mutex mutex;
  std::condition_variable wake;
  std::deque<Queued> queue;
  std::uint64_t queued_bytes = 0;
  // Whether the queue is full, readable without the lock: a worker asks it
  // before building a body that would only be dropped (a receiver that is
  // down keeps it full, and must not cost every publish a body).
  // A cache line of its own, written only when it changes: every publish
  // reads it, and the sender's counters must not take the line away.
  struct alignas(64) Flag {
    std::atomic<bool> value{false};
    bool load(std::memory_order order) const { return value.load(order); }
  };
  Flag full;

  void note_fill() {  // under the lock
    const bool now =
        queue.size() >= config.max_queue || queued_bytes + 1024 > config.max_queue_bytes;
    if (full.value.load(std::memory_order_relaxed) != now)
      full.value.store(now, std::memory_order_relaxed);
  }
  bool stopping = false;
  std::chrono::steady_clock::time_point give_up_at;  // once stopping

  std::atomic<std::uint64_t> delivered{0};
  std::atomic<std::uint64_t> failed{0};
  // Every worker counts what a full queue refuses, per publish: on a line
  // of its own each, so that they do not take one cache line in turns.
  struct alignas(64) Stripe {
    std::atomic<std::uint64_t> count{0};
  };
  std::array<Stripe, 16> dropped{};
  void add_dropped(std::uint64_t count = 1) {
    thread_local const std::size_t stripe =
        std::hash<std::thread::id>{}(std::this_thread::get_id()) % 16;
    dropped[stripe].count.fetch_add(count, std::memory_order_relaxed);
  }
  std::uint64_t dropped_total() const {
    std::uint64_t total = 0;
    for (const Stripe& stripe : dropped)
      total += stripe.count.load(std::memory_order_relaxed);
    return total;
  }

  std::unique_ptr<HttpPoster> poster;  // the sender's own
  std::thread sender;

  void offer(Queued&& item) {
    {
      std::lock_guard lock(mutex);
      if (stopping || queue.size() >= config.max_queue ||
          queued_bytes + item->bytes > config.max_queue_bytes) {
        add_dropped();
        return;
      }
      queued_bytes += item->bytes;
      queue.push_back(std::move(item));
      note_fill();
      // The sender waits on an empty queue, or out a backoff; only the
      // first wakes it.
      if (queue.size() != 1) return;
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
        queued_bytes -= item->bytes;
        note_fill();
      }
      deliver(item);
    }
    std::lock_guard lock(mutex);
    add_dropped(queue.size());
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
      // Waits out the backoff, but not past a stop's grace.
      const auto until = std::chrono::steady_clock::now() + backoff;
      while (true) {
        const auto limit = stopping ? std::min(until, give_up_at) : until;
        if (std::chrono::steady_clock::now() >= limit) break;
        const bool was_stopping = stopping;
        wake.wait_until(lock, limit, [&] { return stopping != was_stopping; });
      }
      if (stopping && std::chrono::steady_clock::now() >= give_up_at) break;
      backoff = std::min(backoff * 2, std::chrono::milliseconds(10'000));
    }
    add(failed);
    spdlog::warn("event=webhook_failed webhook=\"{}\" event_name={} id={} attempts={}", config.name,
                 broker::event_name(item->event.kind), item->id, config.max_attempts);
  }

  // When the current step must end: its timeout, or sooner once stopping.
  std::chrono::steady_clock::time_point deadline() {
    auto until = std::chrono::steady_clock::now() + std::chrono::milliseconds(config.timeout_ms);
    std::lock_guard lock(mutex);
    if (stopping) until = std::min(until, give_up_at);
    return until;
  }

  bool post(const Queued& item) {
    const std::string& body = item->text();
    HttpPoster::Headers headers = {{"X-Sluice-Event", broker::event_name(item->event.kind)},
                                   {"X-Sluice-Delivery", item->id}};
    if (!config.secret.empty())
      headers.emplace_back("X-Sluice-Signature", Webhooks::signature(config.secret, body));
    headers.insert(headers.end(), config.headers.begin(), config.headers.end());
    return poster->post(body, headers, [this] { return deadline(); });
  }
};

std::unique_ptr<Webhooks> Webhooks::create(const std::vector<config::WebhookConfig>& hooks,
                                           std::string& error) {
  std::unique_ptr<Webhooks> webhooks(new Webhooks());
  for (const config::WebhookConfig& hook : hooks) {
    auto endpoint = std::make_unique<Endpoint>();
    endpoint->config = hook;
    endpoint->poster = HttpPoster::create(hook.url, error);
    if (!endpoint->poster) {
      error = "webhook " + hook.name + ": " + error;
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
      endpoint->add_dropped();
      continue;
    }
    wanted = true;
  }
  return wanted;
}

void Webhooks::emit(broker::Event&& event) {
  const auto kind = static_cast<std::size_t>(event.kind);
  Endpoint::Queued made;  // one for every endpoint that takes it
  for (auto& endpoint : endpoints_) {
    if (!endpoint->events[kind]) continue;
    if (event.kind == broker::EventKind::kMessagePublished) {
      // Once handed over, the event is the one in `made` (read only from then on).
      const std::string& topic = made ? made->event.topic : event.topic;
      bool match = false;
      for (const std::string& filter : endpoint->topics)
        match = match || mqtt::topic_matches(filter, topic);
      if (!match) continue;
    }
    if (endpoint->full.load(std::memory_order_relaxed)) {
      endpoint->add_dropped();  // counted, and nothing built for it
      continue;
    }
    if (!made) {
      made = std::make_shared<Endpoint::Made>();
      made->timestamp_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                               std::chrono::system_clock::now().time_since_epoch())
                               .count();
      // Its body's size, near enough: base64 of the payload, and the rest.
      made->bytes = event.payload.size() * 4 / 3 + event.topic.size() + event.client_id.size() +
                    event.username.size() + event.reason.size() + 256;
      made->event = std::move(event);
    }
    endpoint->offer(Endpoint::Queued(made));
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
    endpoint->poster->close_at(endpoint->give_up_at);
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
    s.dropped = endpoint->dropped_total();
    {
      std::lock_guard lock(endpoint->mutex);
      s.queued = endpoint->queue.size();
    }
    out.push_back(std::move(s));
  }
  return out;
}

std::string Webhooks::body(const broker::Event& event, const std::string& id,
                           std::int64_t timestamp_ms) {
  using nlohmann::json;
  json out = {
      {"id", id}, {"event", broker::event_name(event.kind)}, {"timestamp_ms", timestamp_ms}};
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
  return "sha256=" + auth::to_hex({digest, size});
}

}  // namespace sluice::admin
