#include "admin/admin_api.hpp"

#include <arpa/inet.h>
#include <signal.h>
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <algorithm>
#include <charconv>
#include <chrono>
#include <limits>
#include <map>
#include <nlohmann/json.hpp>
#include <string_view>
#include <vector>

#include "admin/config_json.hpp"
#include "admin/metrics.hpp"
#include "admin/openapi.hpp"
#include "admin/queue_body.hpp"
#include "admin/shard_query.hpp"
#include "auth/base64.hpp"
#include "broker/broker.hpp"
#include "broker/client_protocol.hpp"
#include "broker/shard.hpp"
#include "config/config_loader.hpp"
#include "mqtt/topic.hpp"
#include "mqtt/utf8.hpp"
#include "queue/queue_service.hpp"
#include "store/journal.hpp"

namespace sluice::admin {
namespace {

using nlohmann::json;
using Params = std::vector<std::string>;  // the {placeholders} of a route, in order

constexpr std::size_t kDefaultPage = 100;
constexpr std::size_t kMostPage = 1000;

HttpResponse json_response(unsigned status, const json& body) {
  HttpResponse response;
  response.status = status;
  response.body = body.dump(-1, ' ', false, json::error_handler_t::replace);
  return response;
}

HttpResponse error(unsigned status, std::string_view code, std::string_view message) {
  return json_response(status, {{"error", {{"code", code}, {"message", message}}}});
}

// What the API shows of one session (and its connection, while online).
struct ClientView {
  std::string client_id;
  bool connected = false;
  std::string protocol;
  std::string address;
  std::string username;
  std::uint16_t keep_alive_s = 0;
  std::uint32_t expiry_s = 0;
  bool stored = false;
  std::int64_t offline_for_s = 0;
  std::size_t subscription_count = 0;
  std::size_t inflight = 0;
  std::size_t queued = 0;
  std::uint32_t dropped = 0;
  json subscriptions;  // the detail only
};

ClientView view(const broker::Session& session, bool detail) {
  ClientView v;
  v.client_id = session.client_id();
  v.connected = session.online();
  v.protocol = mqtt::to_string(session.version());
  if (const broker::ClientLink* link = session.link()) v.address = link->peer_address();
  if (const std::string* identity = session.identity()) v.username = *identity;
  if (const broker::ClientProtocol* owner = session.owner(); owner != nullptr && v.connected)
    v.keep_alive_s = owner->keep_alive_s();
  v.expiry_s = session.expiry_s();
  v.stored = session.stored();
  if (const auto since = session.offline_since(); since && !v.connected) {
    v.offline_for_s =
        std::chrono::duration_cast<std::chrono::seconds>(broker::Clock::now() - *since).count();
  }
  auto& subscriptions = const_cast<broker::Session&>(session).subscriptions();
  v.subscription_count = subscriptions.size();
  v.inflight = session.inflight();
  v.queued = session.queued();
  v.dropped = session.dropped();
  if (detail) {
    v.subscriptions = json::array();
    for (const auto& [filter, record] : subscriptions) {
      v.subscriptions.push_back(
          {{"filter", filter},
           {"qos", static_cast<int>(record.options.max_qos)},
           {"no_local", record.options.no_local},
           {"retain_as_published", record.options.retain_as_published},
           {"retain_handling", static_cast<int>(record.options.retain_handling)},
           {"identifier", record.identifier}});
    }
  }
  return v;
}

json to_json(const ClientView& v) {
  json out = {
      {"client_id", v.client_id},
      {"connected", v.connected},
      {"protocol", v.protocol},
      {"address", v.address},
      {"username", v.username.empty() ? json(nullptr) : json(v.username)},
      {"keep_alive_s", v.keep_alive_s},
      {"session",
       {{"expiry_s", v.expiry_s}, {"persistent", v.stored}, {"offline_for_s", v.offline_for_s}}},
      {"subscriptions", v.subscription_count},
      {"inflight", v.inflight},
      {"queued", v.queued},
      {"dropped", v.dropped}};
  if (!v.subscriptions.is_null()) {
    out["subscriptions"] = v.subscriptions;
  }
  return out;
}

// Filters of GET /api/v1/clients.
struct ClientFilter {
  std::string prefix;    // client id prefix
  std::string username;  // exact
  std::string address;   // prefix of "address:port"
  std::string protocol;  // "3.1", "3.1.1" or "5.0"
  std::optional<bool> connected;
  std::string after;  // the cursor: client ids after this one
  std::size_t limit = kDefaultPage;

  bool admits(const ClientView& v) const {
    return v.client_id.starts_with(prefix) && (username.empty() || v.username == username) &&
           (address.empty() || v.address.starts_with(address)) &&
           (protocol.empty() || v.protocol == protocol) &&
           (!connected || *connected == v.connected);
  }
};

// A payload as JSON: "payload" when it is UTF-8 text, else "payload_base64".
void put_payload(json& out, const std::vector<std::uint8_t>& bytes) {
  const std::string_view text(reinterpret_cast<const char*>(bytes.data()), bytes.size());
  if (mqtt::check_utf8(text) == mqtt::Utf8Check::kValid)
    out["payload"] = text;
  else
    out["payload_base64"] = auth::to_base64(bytes);
}

// One subscription, for GET /api/v1/subscriptions.
struct SubscriptionView {
  std::string client_id;
  std::string filter;
  int qos = 0;
  bool no_local = false;
  bool retain_as_published = false;
  int retain_handling = 0;
  std::uint32_t identifier = 0;

  // Paged by (client id, filter); the cursor is both, joined by a NUL.
  std::string cursor() const { return client_id + std::string(1, '\0') + filter; }
};

json queue_json(const queue::QueueStats& q) {
  json groups = json::array();
  for (const auto& g : q.groups) {
    groups.push_back({{"name", g.name},
                      {"pending", g.pending},
                      {"leased", g.leased},
                      {"waiting", g.waiting},
                      {"consumers", g.consumers}});
  }
  json counters = json::object();
  for (const auto& [name, value] : q.counters.named())
    counters[name] = value;
  return {{"name", q.name},
          {"kind", q.stream ? "stream" : "queue"},
          {"origin", q.origin},
          {"options", queue_options_json(q.options)},
          {"partitions", q.partitions},
          {"depth", q.depth},
          {"bytes", q.bytes ? json(*q.bytes) : json(nullptr)},
          {"oldest_age_ms", q.oldest_age_ms},
          {"anonymous_readers", q.anonymous_readers},
          {"counters", counters},
          {"groups", groups}};
}

}  // namespace

struct AdminApi::Impl {
  Impl(broker::Broker& b, queue::QueueService* q, TokenTable t)
      : broker(b), queues(q), tokens(std::move(t)) {}
  broker::Broker& broker;
  queue::QueueService* queues;
  TokenTable tokens;
  AdminCounters counters;
  std::function<void(std::function<void()>)> executor;
  std::function<ReloadOutcome()> reload;
  std::function<config::Config()> config_source;
  // Replaced by a reload (from another thread); a replaced one lives on.
  std::atomic<const Webhooks*> webhooks{nullptr};
  std::atomic<const OtlpExporter*> tracer{nullptr};
  std::function<std::vector<broker::ListenerConnections>()> listener_connections;
  std::function<broker::ClusterView()> cluster_view;

  broker::ClusterView cluster() const {
    if (cluster_view) return cluster_view();
    broker::ClusterView single;
    single.node_id = "local";
    single.joined = true;
    broker::ClusterNodeView self;
    self.id = "local";
    self.version = broker.version();
    self.this_node = true;
    self.up = true;
    single.nodes.push_back(std::move(self));
    return single;
  }

  void off_workers(std::function<void()> task) {
    if (executor)
      executor(std::move(task));
    else
      task();
  }

  // The overview's rates: totals a second apart.
  struct Sample {
    broker::Clock::time_point at;
    std::uint64_t received = 0;
    std::uint64_t sent = 0;
  };
  Sample last;
  double received_per_s = 0;
  double sent_per_s = 0;

  struct Route {
    const char* method;
    std::vector<std::string_view> pattern;  // "{}" matches any one segment
    Role role;
    void (Impl::*serve)(const HttpRequest&, const Params&, Respond&);
  };
  std::vector<Route> routes;

  Sample take_sample() const {
    Sample s;
    s.at = broker::Clock::now();
    for (std::uint32_t i = 0; i < broker.shard_count(); ++i) {
      const broker::ShardStats& stats = broker.shard(i).stats();
      s.received += stats.messages_received();
      s.sent += stats.messages_sent();
    }
    return s;
  }

  // ---- the endpoints ----

  void health(const HttpRequest&, const Params&, Respond& respond) {
    respond(json_response(200, {{"status", "alive"}}));
  }

  bool draining = false;  // copied from AdminApi's flag per request
  std::atomic<bool> shutdown_requested{false};

  void ready(const HttpRequest&, const Params&, Respond& respond) {
    std::string reason;
    if (draining) reason = "draining: the broker is shutting down";
    if (const store::Journal* journal = broker.journal(); reason.empty() && journal != nullptr) {
      const store::JournalHealth health = journal->health();
      if (!health.healthy) reason = "the store failed a write: " + health.last_error;
    }
    if (reason.empty()) return respond(json_response(200, {{"status", "ready"}}));
    respond(json_response(503, {{"status", "not ready"}, {"reason", reason}}));
  }

  void metrics(const HttpRequest&, const Params&, Respond& respond) {
    // Each worker sums its own sessions; the last to answer renders.
    ask_every_shard<SessionTotals>(
        broker,
        [](broker::Shard& shard) {
          SessionTotals totals;
          shard.for_each_session([&](const broker::Session& session) {
            totals.inflight += session.inflight();
            totals.queued += session.queued();
          });
          return totals;
        },
        [this, respond](std::vector<SessionTotals>&& parts) mutable {
          SessionTotals all;
          for (const SessionTotals& part : parts) {
            all.inflight += part.inflight;
            all.queued += part.queued;
          }
          // Rendered on the admin thread: the last worker to answer goes back to work.
          off_workers([this, all, respond]() mutable {
            HttpResponse response;
            response.content_type = "text/plain; version=0.0.4; charset=utf-8";
            MetricsSources sources{webhooks.load(), tracer.load(), {}, std::nullopt};
            if (listener_connections) sources.listeners = listener_connections();
            if (cluster_view) sources.cluster = cluster_view();
            response.body = render_metrics(broker, queues, counters, all, sources);
            respond(std::move(response));
          });
        });
  }

  void overview(const HttpRequest&, const Params&, Respond& respond) {
    std::uint64_t connected = 0;
    for (std::uint32_t i = 0; i < broker.shard_count(); ++i)
      connected += broker.shard(i).stats().clients_connected.load(std::memory_order_relaxed);
    json queue_totals = {{"queues", 0}, {"depth", 0}, {"dead_lettered", 0}};
    if (queues != nullptr) {
      const auto all = queues->stats();
      std::uint64_t depth = 0, dead = 0;
      for (const auto& q : all) {
        depth += q.depth;
        dead += q.counters.dead_lettered;
      }
      queue_totals = {{"queues", all.size()}, {"depth", depth}, {"dead_lettered", dead}};
    }
    const auto uptime = std::chrono::duration_cast<std::chrono::seconds>(broker::Clock::now() -
                                                                         broker.started_at());
    respond(json_response(200, {{"version", broker.version()},
                                {"uptime_s", uptime.count()},
                                {"workers", broker.shard_count()},
                                {"connections", connected},
                                {"sessions", broker.sessions().load(std::memory_order_relaxed)},
                                {"subscriptions", broker.index().size()},
                                {"retained", broker.retained().size()},
                                {"messages_in_per_s", received_per_s},
                                {"messages_out_per_s", sent_per_s},
                                {"queues", queue_totals}}));
  }

  void clients(const HttpRequest& request, const Params&, Respond& respond) {
    ClientFilter filter;
    if (const auto* v = request.parameter("client_id")) filter.prefix = *v;
    if (const auto* v = request.parameter("username")) filter.username = *v;
    if (const auto* v = request.parameter("address")) filter.address = *v;
    if (const auto* v = request.parameter("protocol")) {
      if (*v != "3.1" && *v != "3.1.1" && *v != "5.0")
        return respond(error(400, "bad_parameter", "protocol: expected 3.1, 3.1.1 or 5.0"));
      filter.protocol = *v;
    }
    if (const auto* v = request.parameter("connected")) {
      if (*v != "true" && *v != "false")
        return respond(error(400, "bad_parameter", "connected: expected true or false"));
      filter.connected = *v == "true";
    }
    if (const auto* v = request.parameter("cursor")) filter.after = *v;
    if (!page_limit(request, filter.limit, respond)) return;
    // Each worker returns its first `limit` matches after the cursor, in
    // client-id order; the page is the first `limit` of all of them.
    ask_every_shard<std::vector<ClientView>>(
        broker,
        [filter](broker::Shard& shard) {
          std::vector<ClientView> found;
          shard.for_each_session([&](const broker::Session& session) {
            if (session.client_id() <= filter.after && !filter.after.empty()) return;
            // The cheap test first: a view costs a system call (the peer address).
            if (!session.client_id().starts_with(filter.prefix)) return;
            ClientView v = view(session, false);
            if (filter.admits(v)) found.push_back(std::move(v));
          });
          std::sort(found.begin(), found.end(),
                    [](const auto& a, const auto& b) { return a.client_id < b.client_id; });
          if (found.size() > filter.limit + 1) found.resize(filter.limit + 1);
          return found;
        },
        [respond, limit = filter.limit](std::vector<std::vector<ClientView>>&& parts) mutable {
          std::vector<ClientView> all;
          for (auto& part : parts)
            std::move(part.begin(), part.end(), std::back_inserter(all));
          std::sort(all.begin(), all.end(),
                    [](const auto& a, const auto& b) { return a.client_id < b.client_id; });
          const bool more = all.size() > limit;
          if (more) all.resize(limit);
          json data = json::array();
          for (const ClientView& v : all)
            data.push_back(to_json(v));
          respond(json_response(
              200, {{"data", data},
                    {"next_cursor", more ? json(all.back().client_id) : json(nullptr)}}));
        });
  }

  void client(const HttpRequest&, const Params& params, Respond& respond) {
    const std::string client_id = params[0];
    ask_client_shard<std::optional<ClientView>>(
        broker, client_id,
        [client_id](broker::Shard& shard) -> std::optional<ClientView> {
          const broker::Session* session = shard.find_session(client_id);
          if (session == nullptr) return std::nullopt;
          return view(*session, true);
        },
        [respond, client_id](std::optional<ClientView>&& found) mutable {
          if (!found) return respond(error(404, "not_found", "no session with that client id"));
          respond(json_response(200, to_json(*found)));
        });
  }

  void disconnect_client(const HttpRequest& request, const Params& params, Respond& respond) {
    const std::string client_id = params[0];
    bool discard = false;
    if (const auto* v = request.parameter("discard")) {
      if (*v != "true" && *v != "false")
        return respond(error(400, "bad_parameter", "discard: expected true or false"));
      discard = *v == "true";
    }
    struct Outcome {
      bool found = false;
      bool was_connected = false;
      bool session_ended = false;
    };
    ask_client_shard<Outcome>(
        broker, client_id,
        [client_id, discard](broker::Shard& shard) {
          Outcome outcome;
          broker::Session* session = shard.find_session(client_id);
          if (session == nullptr) return outcome;
          outcome.found = true;
          if (broker::ClientProtocol* owner = session->owner(); owner != nullptr) {
            outcome.was_connected = session->online();
            owner->on_administrative_disconnect();
          }
          // Found again: a session without expiry ended with its connection.
          broker::Session* left = shard.find_session(client_id);
          if (discard && left != nullptr) {
            shard.publish_will(*left);  // a pending will goes out when its session ends
            shard.end_session(*left);
            left = nullptr;
          }
          outcome.session_ended = left == nullptr;
          return outcome;
        },
        [respond](Outcome&& outcome) mutable {
          if (!outcome.found)
            return respond(error(404, "not_found", "no session with that client id"));
          respond(json_response(200, {{"disconnected", outcome.was_connected},
                                      {"session_ended", outcome.session_ended}}));
        });
  }

  void queue_list(const HttpRequest& request, const Params&, Respond& respond) {
    std::size_t limit = kDefaultPage;
    if (!page_limit(request, limit, respond)) return;
    const std::string* cursor = request.parameter("cursor");
    std::vector<queue::QueueStats> all;
    if (queues != nullptr) all = queues->stats();
    std::sort(all.begin(), all.end(), [](const auto& a, const auto& b) { return a.name < b.name; });
    json data = json::array();
    std::optional<std::string> next;
    for (const auto& q : all) {
      if (cursor != nullptr && q.name <= *cursor) continue;
      if (data.size() == limit) {
        next = data.back()["name"].get<std::string>();
        break;
      }
      data.push_back(queue_json(q));
    }
    respond(
        json_response(200, {{"data", data}, {"next_cursor", next ? json(*next) : json(nullptr)}}));
  }

  void queue_detail(const HttpRequest&, const Params& params, Respond& respond) {
    if (queues != nullptr) {
      for (const auto& q : queues->stats())
        if (q.name == params[0]) return respond(json_response(200, queue_json(q)));
    }
    respond(error(404, "not_found", "no queue of that name"));
  }

  // Queue operations change queue state under the queue layer's lock; they
  // run on worker 0's thread, where their store writes report back.
  template <class Result>
  void on_worker(std::function<Result(broker::Shard&)> work, std::function<void(Result&&)> done) {
    ask_shard<Result>(broker, 0, std::move(work), std::move(done));
  }

  bool need_queues(Respond& respond) {
    if (queues != nullptr) return true;
    respond(error(404, "not_found", "no queue of that name"));
    return false;
  }

  // POST /api/v1/queues, PATCH and DELETE /api/v1/queues/{name}: the
  // catalogue (queue_catalog.cpp). The body has a queue's keys (queue_body.hpp).
  using Catalog = queue::QueueService::CatalogResult;
  // Runs `start` on worker 0's thread (as on_worker); `done` gets the
  // result once the change is durable.
  void catalog_change(std::function<void(broker::Shard&, queue::QueueService::CatalogDone)> start,
                      queue::QueueService::CatalogDone done) {
    broker.mailbox()->post_task(0, [this, start = std::move(start), done = std::move(done)] {
      start(broker.shard(0), done);
    });
  }

  static HttpResponse catalog_answer(const Catalog& result, unsigned done_status) {
    switch (result.kind) {
      case Catalog::Kind::kDone:
        break;
      case Catalog::Kind::kNotFound:
        return error(404, "not_found", result.message);
      case Catalog::Kind::kConflict:
        return error(409, "conflict", result.message);
      case Catalog::Kind::kInvalid:
        return error(400, "bad_body", result.message);
      case Catalog::Kind::kStoreFailed:
        return error(503, "store_failed", result.message);
    }
    const config::QueueConfig& c = result.config;
    json body = {{"name", c.name},
                 {"kind", c.kind == config::QueueKind::kStream ? "stream" : "queue"},
                 {"options", queue_options_json(c.options)}};
    if (done_status == 200 && result.removed != 0) body["removed"] = result.removed;
    return json_response(done_status, body);
  }

  void create_queue(const HttpRequest& request, const Params&, Respond& respond) {
    if (!need_queues(respond)) return;
    std::string why;
    const auto text = queue_body_yaml(request.body, why);
    if (!text) return respond(error(400, "bad_body", why));
    auto parsed = config::parse_queue(*text, broker.config().queue_defaults, "body");
    if (const auto* failed = std::get_if<config::ConfigError>(&parsed))
      return respond(error(400, "bad_body", failed->message));
    catalog_change(
        [this, declared = std::get<config::QueueConfig>(std::move(parsed))](
            broker::Shard& shard, queue::QueueService::CatalogDone done) {
          queues->create_queue(shard, declared, std::move(done));
        },
        [respond](Catalog&& result) mutable { respond(catalog_answer(result, 201)); });
  }

  void update_queue(const HttpRequest& request, const Params& params, Respond& respond) {
    if (!need_queues(respond)) return;
    // GET's answer sent back as it is names the queue and its kind: they
    // are not changes.
    json body = json::parse(request.body, nullptr, false);
    std::string kind;
    if (body.is_object()) {
      if (body.contains("name") && body["name"] == params[0]) body.erase("name");
      if (body.contains("kind") && body["kind"].is_string()) {
        kind = body["kind"].get<std::string>();
        body.erase("kind");
      }
    }
    std::string why;
    const auto text = queue_body_yaml(body.is_discarded() ? request.body : body.dump(), why);
    if (!text) return respond(error(400, "bad_body", why));
    const std::string name = params[0];
    catalog_change(
        [this, name, kind, text = *text](broker::Shard& shard,
                                         queue::QueueService::CatalogDone done) {
          queues->update_queue(
              shard, name,
              [&](bool stream, config::QueueOptions& options) -> std::optional<std::string> {
                if (!kind.empty() && kind != (stream ? "stream" : "queue"))
                  return "kind: cannot change (delete the queue and create it again)";
                if (const auto failed = config::parse_queue_options(text, options, "body"))
                  return failed->message;
                return std::nullopt;
              },
              std::move(done));
        },
        [respond](Catalog&& result) mutable { respond(catalog_answer(result, 200)); });
  }

  void delete_queue(const HttpRequest&, const Params& params, Respond& respond) {
    if (!need_queues(respond)) return;
    const std::string name = params[0];
    catalog_change(
        [this, name](broker::Shard& shard, queue::QueueService::CatalogDone done) {
          queues->delete_queue(shard, name, std::move(done));
        },
        [respond](Catalog&& result) mutable {
          if (result.kind != Catalog::Kind::kDone) return respond(catalog_answer(result, 200));
          respond(
              json_response(200, {{"deleted", result.config.name}, {"removed", result.removed}}));
        });
  }

  void purge_queue(const HttpRequest&, const Params& params, Respond& respond) {
    if (!need_queues(respond)) return;
    const std::string name = params[0];
    on_worker<std::optional<std::uint64_t>>(
        [this, name](broker::Shard& shard) { return queues->purge(shard, name); },
        [respond](std::optional<std::uint64_t>&& purged) mutable {
          if (!purged) return respond(error(404, "not_found", "no queue of that name"));
          respond(json_response(200, {{"purged", *purged}}));
        });
  }

  void redrive_queue(const HttpRequest& request, const Params& params, Respond& respond) {
    if (!need_queues(respond)) return;
    std::size_t most = 1000;
    if (!request.body.empty()) {
      const json body = json::parse(request.body, nullptr, false);
      if (body.is_discarded() || !body.is_object())
        return respond(error(400, "bad_body", "expected a JSON object, e.g. {\"max\": 100}"));
      if (body.contains("max")) {
        if (!body["max"].is_number_unsigned() || body["max"].get<std::uint64_t>() == 0)
          return respond(error(400, "bad_body", "max: expected a whole number above 0"));
        most = body["max"].get<std::size_t>();
      }
    }
    const std::string name = params[0];
    on_worker<std::optional<std::size_t>>(
        [this, name, most](broker::Shard& shard) { return queues->redrive(shard, name, most); },
        [respond](std::optional<std::size_t>&& moved) mutable {
          if (!moved) return respond(error(404, "not_found", "no queue of that name"));
          respond(json_response(200, {{"moved", *moved}}));
        });
  }

  void seek_group(const HttpRequest& request, const Params& params, Respond& respond) {
    if (!need_queues(respond)) return;
    const json body = json::parse(request.body, nullptr, false);
    if (body.is_discarded() || !body.is_object() || !body.contains("to") || !body["to"].is_string())
      return respond(error(400, "bad_body",
                           "expected {\"to\": \"earliest | latest | next | offset=N | "
                           "timestamp=MS | ago=30m\", \"partition\": N (optional)}"));
    const std::int64_t now_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                                    std::chrono::system_clock::now().time_since_epoch())
                                    .count();
    const auto to = queue::parse_stream_start(body["to"].get<std::string>(), now_ms);
    if (!to || to->kind == queue::StreamStart::Kind::kCommitted)
      return respond(
          error(400, "bad_body",
                "to: expected earliest, latest, next, offset=N, timestamp=MS or ago=..."));
    std::optional<std::uint32_t> partition;
    if (body.contains("partition")) {
      if (!body["partition"].is_number_unsigned() ||
          body["partition"].get<std::uint64_t>() > std::numeric_limits<std::uint32_t>::max())
        return respond(error(400, "bad_body", "partition: expected a whole number"));
      partition = body["partition"].get<std::uint32_t>();
    }
    const std::string name = params[0], group = params[1];
    using Outcome = queue::QueueService::SeekOutcome;
    on_worker<Outcome>(
        [this, name, group, partition, to = *to](broker::Shard& shard) {
          return queues->seek_group(shard, name, group, partition, to);
        },
        [respond](Outcome&& outcome) mutable {
          switch (outcome) {
            case Outcome::kMoved:
              return respond(json_response(200, {{"moved", true}}));
            case Outcome::kNoQueue:
              return respond(error(404, "not_found", "no queue of that name"));
            case Outcome::kNoGroup:
              return respond(error(404, "not_found", "no group of that name in the queue"));
            case Outcome::kNoPartition:
              return respond(error(400, "bad_body", "partition: the queue has no such partition"));
          }
        });
  }

  void peek_queue(const HttpRequest& request, const Params& params, Respond& respond) {
    if (!need_queues(respond)) return;
    std::size_t limit = 10;
    if (!page_limit(request, limit, respond)) return;
    std::optional<std::uint32_t> partition;
    std::optional<std::uint64_t> from;
    for (const auto& [key, target] :
         {std::pair<const char*, int>{"partition", 0}, std::pair<const char*, int>{"offset", 1}}) {
      const std::string* text = request.parameter(key);
      if (text == nullptr) continue;
      std::uint64_t value = 0;
      const auto [end, ec] = std::from_chars(text->data(), text->data() + text->size(), value);
      if (ec != std::errc() || end != text->data() + text->size() ||
          (target == 0 && value > std::numeric_limits<std::uint32_t>::max()))
        return respond(error(400, "bad_parameter", std::string(key) + ": expected a whole number"));
      if (target == 0)
        partition = static_cast<std::uint32_t>(value);
      else
        from = value;
    }
    const auto peeked = queues->peek(params[0], partition, from, limit);
    if (!peeked) return respond(error(404, "not_found", "no queue (or partition) of that name"));
    json data = json::array();
    std::size_t bytes = 0;
    constexpr std::size_t kMostPeekBytes = 4 << 20;  // one answer: the rest by offset
    for (const auto& m : *peeked) {
      bytes += m.entry.payload.size();
      if (bytes > kMostPeekBytes && !data.empty()) break;
      json item = {{"message_id", std::to_string(m.partition) + ":" + std::to_string(m.offset)},
                   {"partition", m.partition},
                   {"offset", m.offset},
                   {"timestamp_ms", m.entry.timestamp_ms},
                   {"subtopic", m.entry.subtopic ? json(*m.entry.subtopic) : json(nullptr)},
                   {"key", m.entry.key.empty() ? json(nullptr) : json(m.entry.key)}};
      put_payload(item, m.entry.payload);
      data.push_back(std::move(item));
    }
    respond(json_response(200, {{"data", data}}));
  }

  void subscriptions(const HttpRequest& request, const Params&, Respond& respond) {
    std::size_t limit = kDefaultPage;
    if (!page_limit(request, limit, respond)) return;
    const std::string* client_id = request.parameter("client_id");
    const std::string* filter = request.parameter("filter");
    const std::string* cursor = request.parameter("cursor");
    const std::string after = cursor ? *cursor : std::string();
    const std::string only_client = client_id ? *client_id : std::string();
    const std::string only_filter = filter ? *filter : std::string();
    ask_every_shard<std::vector<SubscriptionView>>(
        broker,
        [=](broker::Shard& shard) {
          std::vector<SubscriptionView> found;
          shard.for_each_session([&](const broker::Session& session) {
            if (!only_client.empty() && session.client_id() != only_client) return;
            auto& all = const_cast<broker::Session&>(session).subscriptions();
            for (const auto& [subscribed, record] : all) {
              if (!only_filter.empty() && subscribed != only_filter) continue;
              SubscriptionView v{session.client_id(),
                                 subscribed,
                                 static_cast<int>(record.options.max_qos),
                                 record.options.no_local,
                                 record.options.retain_as_published,
                                 static_cast<int>(record.options.retain_handling),
                                 record.identifier};
              if (!after.empty() && v.cursor() <= after) continue;
              found.push_back(std::move(v));
            }
          });
          const auto by_cursor = [](const auto& a, const auto& b) {
            return a.cursor() < b.cursor();
          };
          std::sort(found.begin(), found.end(), by_cursor);
          if (found.size() > limit + 1) found.resize(limit + 1);
          return found;
        },
        [respond, limit](std::vector<std::vector<SubscriptionView>>&& parts) mutable {
          std::vector<SubscriptionView> all;
          for (auto& part : parts)
            std::move(part.begin(), part.end(), std::back_inserter(all));
          std::sort(all.begin(), all.end(),
                    [](const auto& a, const auto& b) { return a.cursor() < b.cursor(); });
          const bool more = all.size() > limit;
          if (more) all.resize(limit);
          json data = json::array();
          for (const auto& v : all) {
            data.push_back({{"client_id", v.client_id},
                            {"filter", v.filter},
                            {"qos", v.qos},
                            {"no_local", v.no_local},
                            {"retain_as_published", v.retain_as_published},
                            {"retain_handling", v.retain_handling},
                            {"identifier", v.identifier}});
          }
          respond(json_response(
              200,
              {{"data", data}, {"next_cursor", more ? json(all.back().cursor()) : json(nullptr)}}));
        });
  }

  void topics(const HttpRequest& request, const Params&, Respond& respond) {
    const std::string* asked = request.parameter("prefix");
    const std::string prefix = asked ? *asked : std::string();
    const auto levels = broker.index().levels_below(prefix);
    if (!levels) return respond(error(404, "not_found", "no subscribed filter starts with that"));
    json data = json::array();
    for (const auto& level : *levels) {
      data.push_back({{"level", level.level},
                      {"filter", prefix.empty() ? level.level : prefix + "/" + level.level},
                      {"subscribers", level.subscribers},
                      {"shared_groups", level.shared_groups},
                      {"has_children", level.has_children}});
    }
    respond(json_response(200, {{"prefix", prefix}, {"data", data}}));
  }

  void retained_list(const HttpRequest& request, const Params&, Respond& respond) {
    std::size_t limit = kDefaultPage;
    if (!page_limit(request, limit, respond)) return;
    const std::string* asked = request.parameter("filter");
    const std::string filter = asked ? *asked : std::string("#");
    if (!mqtt::check_topic_filter(filter).ok() || mqtt::parse_shared_filter(filter))
      return respond(error(400, "bad_parameter", "filter: expected a topic filter"));
    const std::string* cursor = request.parameter("cursor");
    // Only the page's topics are kept, in order, while the matches stream by.
    std::map<std::string, broker::MessagePtr> page;
    broker.retained().for_each_match(filter, broker::Clock::now(),
                                     [&](const broker::MessagePtr& m) {
                                       if (cursor != nullptr && m->topic <= *cursor) return;
                                       page.emplace(m->topic, m);
                                       if (page.size() > limit + 1)
                                         page.erase(std::prev(page.end()));
                                     });
    const bool more = page.size() > limit;
    if (more) page.erase(std::prev(page.end()));
    json data = json::array();
    for (const auto& [topic, message] : page)
      data.push_back(retained_json(*message, false));
    respond(json_response(
        200, {{"data", data}, {"next_cursor", more ? json(page.rbegin()->first) : json(nullptr)}}));
  }

  static json retained_json(const broker::Message& m, bool with_payload) {
    json out = {{"topic", m.topic}, {"qos", static_cast<int>(m.qos)}, {"size", m.payload.size()}};
    if (const auto left = m.remaining_expiry_s(broker::Clock::now())) out["expires_in_s"] = *left;
    if (with_payload) put_payload(out, m.payload);
    return out;
  }

  void retained_get(const HttpRequest&, const Params& params, Respond& respond) {
    const std::string& topic = params[0];
    if (!mqtt::check_topic_name(topic).ok())
      return respond(error(400, "bad_parameter", "expected a topic name, not a filter"));
    broker::MessagePtr found;
    broker.retained().for_each_match(topic, broker::Clock::now(),
                                     [&](const broker::MessagePtr& m) { found = m; });
    if (!found) return respond(error(404, "not_found", "no retained message on that topic"));
    respond(json_response(200, retained_json(*found, true)));
  }

  void retained_delete(const HttpRequest&, const Params& params, Respond& respond) {
    const std::string topic = params[0];
    if (!mqtt::check_topic_name(topic).ok())
      return respond(error(400, "bad_parameter", "expected a topic name, not a filter"));
    // On the worker that owns the topic's deletion write; the answer once durable.
    broker.mailbox()->post_task(0, [this, topic, respond]() mutable {
      using Deletion = broker::Shard::RetainedDeletion;
      broker.shard(0).delete_retained(topic, [respond](Deletion outcome) mutable {
        if (outcome == Deletion::kNotFound)
          return respond(error(404, "not_found", "no retained message on that topic"));
        if (outcome == Deletion::kStoreFailed)
          return respond(error(503, "store_failed", "the store could not write the deletion"));
        respond(json_response(200, {{"deleted", true}}));
      });
    });
  }

  void log_level_get(const HttpRequest&, const Params&, Respond& respond) {
    const auto level = spdlog::level::to_string_view(spdlog::get_level());
    respond(json_response(200, {{"level", std::string(level.data(), level.size())}}));
  }

  void log_level_put(const HttpRequest& request, const Params&, Respond& respond) {
    const json body = json::parse(request.body, nullptr, false);
    static const std::vector<std::string> kLevels = {"trace", "debug", "info",
                                                     "warn",  "error", "off"};
    if (body.is_discarded() || !body.is_object() || !body.contains("level") ||
        !body["level"].is_string() ||
        std::find(kLevels.begin(), kLevels.end(), body["level"].get<std::string>()) ==
            kLevels.end())
      return respond(error(400, "bad_body",
                           "expected {\"level\": \"trace | debug | info | warn | error | off\"}"));
    const std::string level = body["level"].get<std::string>();
    const auto before = spdlog::level::to_string_view(spdlog::get_level());
    spdlog::set_level(spdlog::level::from_str(level));
    spdlog::warn("event=log_level_changed from={} to={} by=admin_api",
                 std::string(before.data(), before.size()), level);
    respond(json_response(200, {{"level", level}}));
  }

  void shutdown(const HttpRequest& request, const Params&, Respond& respond) {
    respond(json_response(202, {{"shutting_down", true}}));
    // Once: a second SIGTERM would cut the drain short.
    if (draining || shutdown_requested.exchange(true)) return;
    spdlog::warn("event=shutdown_requested by=admin_api peer={}", request.peer);
    // The same path as SIGTERM: main's sigwait takes it (no thread has it unblocked).
    ::kill(::getpid(), SIGTERM);
  }

  void config_reload(const HttpRequest& request, const Params&, Respond& respond) {
    if (!reload)
      return respond(error(409, "no_config_file", "sluice runs on its built-in defaults"));
    spdlog::info("event=config_reload_requested by=admin_api peer={}", request.peer);
    const ReloadOutcome outcome = reload();
    if (!outcome.ok) return respond(error(400, "invalid_config", outcome.error));
    respond(json_response(
        200, {{"applied", outcome.applied}, {"needs_restart", outcome.needs_restart}}));
  }

  void config_get(const HttpRequest&, const Params&, Respond& respond) {
    HttpResponse response;
    response.body = config_json(config_source ? config_source() : broker.config());
    respond(std::move(response));
  }

  void openapi(const HttpRequest&, const Params&, Respond& respond) {
    HttpResponse response;
    response.body = openapi_document(broker.version());
    respond(std::move(response));
  }

  void cluster_nodes(const HttpRequest&, const Params&, Respond& respond) {
    json nodes = json::array();
    for (const broker::ClusterNodeView& node : cluster().nodes) {
      nodes.push_back({{"id", node.id},
                       {"status", node.up ? "up" : "down"},
                       {"version", node.version},
                       {"advertise", node.advertise},
                       {"this_node", node.this_node},
                       {"routes", node.routes},
                       {"forwarded", node.forwarded},
                       {"forward_failures", node.forward_failures},
                       {"forward_queued", node.queued}});
    }
    respond(json_response(200, {{"data", std::move(nodes)}, {"next_cursor", nullptr}}));
  }

  void cluster_status(const HttpRequest&, const Params&, Respond& respond) {
    const broker::ClusterView view = cluster();
    std::size_t up = 0;
    for (const broker::ClusterNodeView& node : view.nodes)
      up += node.up ? 1 : 0;
    json queue_homes = json::object();
    for (const auto& [queue, home] : view.queue_homes)
      queue_homes[queue] = home;
    json replicas = json::array();
    for (const broker::ReplicaGroupView& group : view.replicas) {
      json followers = json::array();
      for (const broker::ReplicaGroupView::Follower& follower : group.followers)
        followers.push_back({{"node", follower.node},
                             {"match_index", follower.match_index},
                             {"lag", follower.lag},
                             {"in_sync", follower.in_sync}});
      replicas.push_back({{"queue", group.queue},
                          {"members", group.members},
                          {"leader", group.leader.empty() ? json() : json(group.leader)},
                          {"member_here", group.member_here},
                          {"leading_here", group.leading_here},
                          {"role", group.role.empty() ? json() : json(group.role)},
                          {"term", group.term},
                          {"commit_index", group.commit_index},
                          {"last_applied", group.last_applied},
                          {"last_index", group.last_index},
                          {"leaderships", group.leaderships},
                          {"elections", group.elections},
                          {"snapshot_index", group.snapshot_index},
                          {"snapshot_bytes", group.snapshot_bytes},
                          // The leader alone knows its followers' progress.
                          {"followers", group.in_sync > 0 ? followers : json()},
                          {"in_sync", group.in_sync > 0 ? json(group.in_sync) : json()}});
    }
    respond(json_response(200, {{"enabled", view.enabled},
                                {"node_id", view.node_id},
                                {"joined", view.joined},
                                {"lease_id", view.lease_id},
                                {"lease_ttl_s", view.lease_ttl_s},
                                {"lease_losses", view.lease_losses},
                                {"sessions_owned", view.sessions_owned},
                                {"takeovers", view.takeovers},
                                {"ownership_conflicts", view.ownership_conflicts},
                                {"nodes", view.nodes.size()},
                                {"nodes_up", up},
                                {"local_routes", view.local_routes},
                                {"received", view.received},
                                {"queue_homes", std::move(queue_homes)},
                                {"replicas", std::move(replicas)},
                                {"healthy", view.joined && up == view.nodes.size()}}));
  }

  static bool page_limit(const HttpRequest& request, std::size_t& limit, Respond& respond) {
    const std::string* text = request.parameter("limit");
    if (text == nullptr) return true;
    std::size_t value = 0;
    const auto [end, ec] = std::from_chars(text->data(), text->data() + text->size(), value);
    if (ec != std::errc() || end != text->data() + text->size() || value == 0 ||
        value > kMostPage) {
      respond(error(400, "bad_parameter", "limit: expected 1 to 1000"));
      return false;
    }
    limit = value;
    return true;
  }

  // ---- who may ----

  static bool local_request(const HttpRequest& request) {
    std::string_view host = request.host;
    // Without its port: "127.0.0.1:9883", "[::1]:9883", "localhost".
    if (const std::size_t colon = host.rfind(':');
        colon != std::string_view::npos && host.find(']', colon) == std::string_view::npos)
      host = host.substr(0, colon);
    in_addr v4{};
    const std::string name(host);
    // A name that merely starts "127." is not an address ("127.evil.example").
    const bool loopback_v4 =
        inet_pton(AF_INET, name.c_str(), &v4) == 1 && (ntohl(v4.s_addr) >> 24) == 127;
    const bool local_host = host == "localhost" || host == "[::1]" || loopback_v4;
    if (!local_host) return false;
    return request.origin.empty() || request.origin == "http://" + request.host ||
           request.origin == "https://" + request.host;
  }

  // nullopt when the request may go on; otherwise the refusal.
  std::optional<HttpResponse> refuse(const HttpRequest& request, Role needed) {
    const std::string_view header = request.authorization;
    constexpr std::string_view kBearer = "Bearer ";
    if (header.empty()) {
      // Local-only mode: no tokens at all, and a caller on this machine, not
      // a web page it shows: the Host must name this machine (a page of
      // another site re-pointed at 127.0.0.1 still sends its own name) and
      // a browser's Origin, if any, must be this server itself.
      if (tokens.empty() && request.peer_loopback) {
        if (local_request(request)) return std::nullopt;
        ++counters.forbidden;
        return error(403, "forbidden",
                     "without tokens, only requests to localhost from this machine and not from "
                     "another site's web page are let in");
      }
      ++counters.unauthorized;
      HttpResponse response =
          error(401, "unauthorized", "an Authorization: Bearer token is needed");
      response.headers.emplace_back("WWW-Authenticate", "Bearer realm=\"sluice\"");
      return response;
    }
    const Token* token = nullptr;
    if (header.size() > kBearer.size() && header.substr(0, kBearer.size()) == kBearer)
      token = tokens.find(header.substr(kBearer.size()));
    if (token == nullptr) {
      ++counters.unauthorized;
      HttpResponse response = error(401, "unauthorized", "the token is not valid");
      response.headers.emplace_back("WWW-Authenticate",
                                    "Bearer realm=\"sluice\", error=\"invalid_token\"");
      return response;
    }
    if (static_cast<int>(token->role) < static_cast<int>(needed)) {
      ++counters.forbidden;
      return error(403, "forbidden",
                   std::string("this needs the ") + role_name(needed) + " role; the token has " +
                       role_name(token->role));
    }
    return std::nullopt;
  }

  void serve(HttpRequest&& request, Respond& respond) {
    ++counters.requests;
    bool path_known = false;
    std::string allowed;
    for (const Route& route : routes) {
      if (route.pattern.size() != request.segments.size()) continue;
      Params params;
      bool match = true;
      for (std::size_t i = 0; i < route.pattern.size() && match; ++i) {
        if (route.pattern[i] == "{}")
          params.push_back(request.segments[i]);
        else
          match = route.pattern[i] == request.segments[i];
      }
      if (!match) continue;
      path_known = true;
      if (request.method != route.method) {
        allowed += allowed.empty() ? route.method : std::string(", ") + route.method;
        continue;
      }
      if (auto refusal = refuse(request, route.role)) return respond(std::move(*refusal));
      return (this->*route.serve)(request, params, respond);
    }
    // Who may not use the API learns nothing of its paths either.
    if (auto refusal = refuse(request, Role::kViewer)) return respond(std::move(*refusal));
    if (!path_known) return respond(error(404, "not_found", "no such endpoint"));
    HttpResponse response = error(405, "method_not_allowed", "allowed: " + allowed);
    response.headers.emplace_back("Allow", allowed);
    respond(std::move(response));
  }
};

AdminApi::AdminApi(broker::Broker& broker, queue::QueueService* queues, TokenTable tokens)
    : impl_(std::make_unique<Impl>(broker, queues, std::move(tokens))) {
  using I = Impl;
  const Role viewer = Role::kViewer, operator_ = Role::kOperator;
  impl_->routes = {
      {"GET", {"health"}, viewer, &I::health},
      {"GET", {"ready"}, viewer, &I::ready},
      {"GET", {"metrics"}, viewer, &I::metrics},
      {"GET", {"api", "v1", "openapi.json"}, viewer, &I::openapi},
      {"GET", {"api", "v1", "overview"}, viewer, &I::overview},
      {"GET", {"api", "v1", "clients"}, viewer, &I::clients},
      {"GET", {"api", "v1", "clients", "{}"}, viewer, &I::client},
      {"DELETE", {"api", "v1", "clients", "{}"}, operator_, &I::disconnect_client},
      {"GET", {"api", "v1", "queues"}, viewer, &I::queue_list},
      {"POST", {"api", "v1", "queues"}, Role::kAdmin, &I::create_queue},
      {"GET", {"api", "v1", "queues", "{}"}, viewer, &I::queue_detail},
      {"PATCH", {"api", "v1", "queues", "{}"}, Role::kAdmin, &I::update_queue},
      {"DELETE", {"api", "v1", "queues", "{}"}, Role::kAdmin, &I::delete_queue},
      {"GET", {"api", "v1", "queues", "{}", "messages"}, viewer, &I::peek_queue},
      {"POST", {"api", "v1", "queues", "{}", "purge"}, operator_, &I::purge_queue},
      {"POST", {"api", "v1", "queues", "{}", "redrive"}, operator_, &I::redrive_queue},
      {"POST", {"api", "v1", "queues", "{}", "groups", "{}", "seek"}, Role::kAdmin, &I::seek_group},
      {"GET", {"api", "v1", "subscriptions"}, viewer, &I::subscriptions},
      {"GET", {"api", "v1", "topics"}, viewer, &I::topics},
      {"GET", {"api", "v1", "retained"}, viewer, &I::retained_list},
      {"GET", {"api", "v1", "retained", "{}"}, viewer, &I::retained_get},
      {"DELETE", {"api", "v1", "retained", "{}"}, operator_, &I::retained_delete},
      {"GET", {"api", "v1", "config"}, viewer, &I::config_get},
      {"POST", {"api", "v1", "config", "reload"}, operator_, &I::config_reload},
      {"GET", {"api", "v1", "log-level"}, viewer, &I::log_level_get},
      {"PUT", {"api", "v1", "log-level"}, operator_, &I::log_level_put},
      {"POST", {"api", "v1", "shutdown"}, Role::kAdmin, &I::shutdown},
      {"GET", {"api", "v1", "cluster", "nodes"}, viewer, &I::cluster_nodes},
      {"GET", {"api", "v1", "cluster", "status"}, viewer, &I::cluster_status},
  };
  impl_->last = impl_->take_sample();
}

AdminApi::~AdminApi() = default;

void AdminApi::handle(HttpRequest&& request, Respond respond) {
  impl_->draining = draining_.load();
  try {
    impl_->serve(std::move(request), respond);
  } catch (const std::exception& failure) {
    // Nothing a request brings may take the broker down: it is refused.
    spdlog::error("event=admin_request_failed error=\"{}\"", failure.what());
    respond(error(500, "internal_error", "the request failed; the log says why"));
  }
}

void AdminApi::set_cluster_view(std::function<broker::ClusterView()> view) {
  impl_->cluster_view = std::move(view);
}

void AdminApi::set_listener_connections(
    std::function<std::vector<broker::ListenerConnections>()> read) {
  impl_->listener_connections = std::move(read);
}

void AdminApi::set_config_source(std::function<config::Config()> source) {
  impl_->config_source = std::move(source);
}

void AdminApi::set_tracer(const OtlpExporter* tracer) {
  impl_->tracer = tracer;
}

void AdminApi::set_webhooks(const Webhooks* webhooks) {
  impl_->webhooks = webhooks;
}

void AdminApi::set_reload(std::function<ReloadOutcome()> reload) {
  impl_->reload = std::move(reload);
}

void AdminApi::set_tokens(TokenTable tokens) {
  // On the admin thread, where requests read them.
  impl_->off_workers(
      [this, tokens = std::move(tokens)]() mutable { impl_->tokens = std::move(tokens); });
}

AdminCounters& AdminApi::counters() {
  return impl_->counters;
}

void AdminApi::set_executor(std::function<void(std::function<void()>)> post) {
  impl_->executor = std::move(post);
}

void AdminApi::sample() {
  const Impl::Sample now = impl_->take_sample();
  const double seconds = std::chrono::duration<double>(now.at - impl_->last.at).count();
  if (seconds > 0) {
    impl_->received_per_s = static_cast<double>(now.received - impl_->last.received) / seconds;
    impl_->sent_per_s = static_cast<double>(now.sent - impl_->last.sent) / seconds;
  }
  impl_->last = now;
}

}  // namespace sluice::admin
