#include "app/observers.hpp"

#include <spdlog/spdlog.h>

#include <utility>

#include "admin/admin_api.hpp"
#include "admin/otlp_exporter.hpp"
#include "admin/webhooks.hpp"
#include "broker/broker.hpp"

namespace sluice::app {
namespace {

// What a replaced observer gets to send what it holds (as at shutdown).
constexpr std::chrono::milliseconds kReplacedGrace{2000};

// Tracing other than the sample ratio, which the exporter in place takes.
bool tracing_differs(config::TracingConfig a, const config::TracingConfig& b) {
  a.sample_ratio = b.sample_ratio;
  return !(a == b);
}

}  // namespace

Observers::Prepared::Prepared() = default;
Observers::Prepared::Prepared(Prepared&&) noexcept = default;
Observers::Prepared::~Prepared() {
  if (webhooks) webhooks->stop(std::chrono::milliseconds(0));
  if (tracer) tracer->stop(std::chrono::milliseconds(0));
}

Observers::Observers(broker::Broker& broker, admin::AdminApi& admin, std::string version)
    : broker_(broker), admin_(admin), version_(std::move(version)) {}

Observers::~Observers() {
  for (std::thread& thread : stopping_)
    if (thread.joinable()) thread.join();
}

std::optional<std::string> Observers::start(const config::Config& config) {
  Prepared made;
  if (const auto failed = prepare(config::Config{}, config, made)) return failed;
  webhooks_ = std::move(made.webhooks);
  tracer_ = std::move(made.tracer);
  put_in_place();
  if (webhooks_) spdlog::info("event=webhooks endpoints={}", config.webhooks.size());
  if (tracer_) {
    spdlog::info("event=tracing endpoint=\"{}\" sample_ratio={}", config.tracing.otlp_endpoint,
                 config.tracing.sample_ratio);
  }
  return std::nullopt;
}

std::optional<std::string> Observers::prepare(const config::Config& running,
                                              const config::Config& next, Prepared& prepared) {
  std::string error;
  prepared.webhooks_changed = !(next.webhooks == running.webhooks);
  if (prepared.webhooks_changed && !next.webhooks.empty()) {
    prepared.webhooks = admin::Webhooks::create(next.webhooks, error);
    if (!prepared.webhooks) return error;
  }
  prepared.tracing_changed = tracing_differs(running.tracing, next.tracing);
  if (prepared.tracing_changed && !next.tracing.otlp_endpoint.empty()) {
    prepared.tracer = admin::OtlpExporter::create(next.tracing, version_, error);
    if (!prepared.tracer) return error;
  }
  return std::nullopt;
}

void Observers::commit(Prepared&& prepared, std::vector<std::string>& applied) {
  std::unique_ptr<admin::Webhooks> old_webhooks;
  std::unique_ptr<admin::OtlpExporter> old_tracer;
  if (prepared.webhooks_changed) {
    old_webhooks = std::exchange(webhooks_, std::move(prepared.webhooks));
    applied.emplace_back("webhooks");
  }
  if (prepared.tracing_changed) {
    old_tracer = std::exchange(tracer_, std::move(prepared.tracer));
    applied.emplace_back("tracing");
  }
  put_in_place();
  if (old_webhooks) retire(std::move(old_webhooks));
  if (old_tracer) retire(std::move(old_tracer));
}

void Observers::put_in_place() {
  broker_.set_events(webhooks_.get());
  broker_.set_tracer(tracer_.get());
  admin_.set_webhooks(webhooks_.get());
  admin_.set_tracer(tracer_.get());
}

void Observers::retire(std::unique_ptr<admin::Webhooks> webhooks) {
  admin::Webhooks* sending = webhooks.get();
  replaced_webhooks_.push_back(std::move(webhooks));
  stopping_.emplace_back([sending] { sending->stop(kReplacedGrace); });
}

void Observers::retire(std::unique_ptr<admin::OtlpExporter> tracer) {
  admin::OtlpExporter* sending = tracer.get();
  replaced_tracers_.push_back(std::move(tracer));
  stopping_.emplace_back([sending] { sending->stop(kReplacedGrace); });
}

void Observers::stop(std::chrono::milliseconds grace) {
  const auto ends = std::chrono::steady_clock::now() + grace;
  const auto left = [&] {
    return std::chrono::duration_cast<std::chrono::milliseconds>(
        std::max(ends - std::chrono::steady_clock::now(), std::chrono::steady_clock::duration{}));
  };
  if (webhooks_) webhooks_->stop(left());
  if (tracer_) tracer_->stop(left());
  for (std::thread& thread : stopping_)
    if (thread.joinable()) thread.join();
}

}  // namespace sluice::app
