#include "admin/otlp_exporter.hpp"

#include <spdlog/spdlog.h>

#include <atomic>
#include <condition_variable>
#include <deque>
#include <mutex>
#include <nlohmann/json.hpp>
#include <thread>

#include "admin/http_poster.hpp"
#include "auth/base64.hpp"

namespace sluice::admin {

struct OtlpExporter::State {
  config::TracingConfig config;
  std::atomic<double> sample_ratio{0};  // config.sample_ratio, or a reload's
  std::string version;
  std::unique_ptr<HttpPoster> poster;

  mutable std::mutex mutex;
  std::condition_variable wake;
  std::deque<broker::Span> buffer;
  bool stopping = false;
  std::chrono::steady_clock::time_point give_up_at;  // once stopping

  std::atomic<std::uint64_t> exported{0};
  std::atomic<std::uint64_t> dropped{0};
  std::thread sender;

  std::chrono::steady_clock::time_point deadline() {
    auto until = std::chrono::steady_clock::now() + std::chrono::milliseconds(config.timeout_ms);
    std::lock_guard lock(mutex);
    if (stopping) until = std::min(until, give_up_at);
    return until;
  }

  void run() {
    bool failing = false;  // logged once per outage, not per batch
    while (true) {
      std::vector<broker::Span> batch;
      {
        std::unique_lock lock(mutex);
        // A full batch goes at once; a partial one after the flush interval.
        wake.wait_for(lock, std::chrono::milliseconds(config.flush_interval_ms),
                      [&] { return stopping || buffer.size() >= config.batch_size; });
        if (stopping && (buffer.empty() || std::chrono::steady_clock::now() >= give_up_at)) {
          dropped.fetch_add(buffer.size(), std::memory_order_relaxed);
          buffer.clear();
          return;
        }
        if (buffer.empty()) continue;
        const std::size_t take = std::min<std::size_t>(buffer.size(), config.batch_size);
        batch.assign(std::make_move_iterator(buffer.begin()),
                     std::make_move_iterator(buffer.begin() + static_cast<std::ptrdiff_t>(take)));
        buffer.erase(buffer.begin(), buffer.begin() + static_cast<std::ptrdiff_t>(take));
      }
      const bool sent = poster->post(body(batch, config.service_name, version), {},
                                     [this] { return deadline(); });
      (sent ? exported : dropped).fetch_add(batch.size(), std::memory_order_relaxed);
      if (!sent && !failing) {
        spdlog::warn("event=trace_export_failed endpoint=\"{}\" spans={}", config.otlp_endpoint,
                     batch.size());
      } else if (sent && failing) {
        spdlog::info("event=trace_export_resumed endpoint=\"{}\"", config.otlp_endpoint);
      }
      failing = !sent;
    }
  }
};

std::unique_ptr<OtlpExporter> OtlpExporter::create(const config::TracingConfig& config,
                                                   std::string version, std::string& error) {
  std::unique_ptr<OtlpExporter> exporter(new OtlpExporter());
  exporter->state_ = std::make_unique<State>();
  State& s = *exporter->state_;
  s.config = config;
  s.sample_ratio.store(config.sample_ratio, std::memory_order_relaxed);
  s.version = std::move(version);
  s.poster = HttpPoster::create(config.otlp_endpoint, error);
  if (!s.poster) {
    error = "tracing.otlp_endpoint: " + error;
    return nullptr;
  }
  s.sender = std::thread([state = &s] { state->run(); });
  return exporter;
}

OtlpExporter::~OtlpExporter() {
  stop(std::chrono::milliseconds(0));
}

double OtlpExporter::sample_ratio() const {
  return state_->sample_ratio.load(std::memory_order_relaxed);
}

void OtlpExporter::set_sample_ratio(double ratio) {
  state_->sample_ratio.store(ratio, std::memory_order_relaxed);
}

void OtlpExporter::record(broker::Span&& span) {
  State& s = *state_;
  bool wake = false;
  {
    std::lock_guard lock(s.mutex);
    if (s.stopping || s.buffer.size() >= s.config.max_queue) {
      s.dropped.fetch_add(1, std::memory_order_relaxed);
      return;
    }
    s.buffer.push_back(std::move(span));
    wake = s.buffer.size() == s.config.batch_size;
  }
  if (wake) s.wake.notify_one();
}

void OtlpExporter::stop(std::chrono::milliseconds grace) {
  State& s = *state_;
  {
    std::lock_guard lock(s.mutex);
    if (s.stopping) return;
    s.stopping = true;
    s.give_up_at = std::chrono::steady_clock::now() + grace;
  }
  s.wake.notify_all();
  if (!s.poster) return;             // create() failed: no sender either
  s.poster->close_at(s.give_up_at);  // a request under way ends with the grace
  if (s.sender.joinable()) s.sender.join();
}

OtlpExporter::Stats OtlpExporter::stats() const {
  Stats out;
  out.exported = state_->exported.load(std::memory_order_relaxed);
  out.dropped = state_->dropped.load(std::memory_order_relaxed);
  std::lock_guard lock(state_->mutex);
  out.queued = state_->buffer.size();
  return out;
}

std::string OtlpExporter::body(const std::vector<broker::Span>& spans,
                               const std::string& service_name, const std::string& version) {
  using nlohmann::json;
  const auto attribute = [](std::string_view key, std::string_view value) {
    return json{{"key", key}, {"value", {{"stringValue", value}}}};
  };
  json out_spans = json::array();
  for (const broker::Span& span : spans) {
    json attributes = json::array();
    for (const auto& [key, value] : span.attributes)
      attributes.push_back(attribute(key, value));
    // OTLP/JSON: ids in lowercase hex, 64-bit times as decimal strings.
    json item = {{"traceId", auth::to_hex(span.trace_id)},
                 {"spanId", auth::to_hex(span.span_id)},
                 {"name", span.name},
                 {"kind", static_cast<int>(span.kind)},
                 {"startTimeUnixNano", std::to_string(span.start_ns)},
                 {"endTimeUnixNano", std::to_string(span.end_ns)},
                 {"attributes", std::move(attributes)},
                 {"status", span.failed ? json{{"code", 2}} : json::object()}};
    if (span.parent) item["parentSpanId"] = auth::to_hex(*span.parent);
    out_spans.push_back(std::move(item));
  }
  const json request = {
      {"resourceSpans",
       json::array(
           {{{"resource",
              {{"attributes", json::array({attribute("service.name", service_name),
                                           attribute("service.version", version)})}}},
             {"scopeSpans", json::array({{{"scope", {{"name", "sluice"}, {"version", version}}},
                                          {"spans", std::move(out_spans)}}})}}})}};
  return request.dump(-1, ' ', false, json::error_handler_t::replace);
}

}  // namespace sluice::admin
