// What watches the broker from outside it: the webhook endpoints and the
// OTLP trace exporter (docs/admin.md, docs/tracing.md). Made at start from
// the configuration, and made again by a reload whose `webhooks` or
// `tracing` changed: the new ones are put in the broker's place (workers
// pick them up at their next event or publish), and the replaced ones get
// the shutdown grace to send what they hold, on a thread of their own,
// then stay in memory, stopped, until the workers are gone (a worker may
// still hold one; a traced message's spans go to the exporter that
// started it).
#pragma once

#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "config/config.hpp"

namespace sluice::admin {
class AdminApi;
class OtlpExporter;
class Webhooks;
}  // namespace sluice::admin
namespace sluice::broker {
class Broker;
}

namespace sluice::app {

class Observers {
 public:
  Observers(broker::Broker& broker, admin::AdminApi& admin, std::string version);
  ~Observers();  // stop() first
  Observers(const Observers&) = delete;
  Observers& operator=(const Observers&) = delete;

  // Made from `config` and put in place; why not, when an endpoint is not one.
  std::optional<std::string> start(const config::Config& config);

  // A reload: what `next` needs that `running` has not, made but not yet
  // in place, so that a later failure of the reload changes nothing.
  struct Prepared {
    bool webhooks_changed = false;
    bool tracing_changed = false;               // more than the sample ratio
    std::unique_ptr<admin::Webhooks> webhooks;  // nullptr: none any more
    std::unique_ptr<admin::OtlpExporter> tracer;
    Prepared();
    Prepared(Prepared&&) noexcept;
    ~Prepared();  // stops what was made and never put in place
  };
  std::optional<std::string> prepare(const config::Config& running, const config::Config& next,
                                     Prepared& prepared);
  // Puts them in place; adds "webhooks" and "tracing" to `applied`.
  void commit(Prepared&& prepared, std::vector<std::string>& applied);

  // The exporter in place (for the sample ratio); nullptr: tracing is off.
  admin::OtlpExporter* tracer() const { return tracer_.get(); }

  // Gives what is held up to `grace` (one grace for all), then stops.
  void stop(std::chrono::milliseconds grace);

 private:
  void put_in_place();
  void retire(std::unique_ptr<admin::Webhooks> webhooks);
  void retire(std::unique_ptr<admin::OtlpExporter> tracer);

  broker::Broker& broker_;
  admin::AdminApi& admin_;
  const std::string version_;
  std::unique_ptr<admin::Webhooks> webhooks_;
  std::unique_ptr<admin::OtlpExporter> tracer_;
  std::vector<std::unique_ptr<admin::Webhooks>> replaced_webhooks_;
  std::vector<std::unique_ptr<admin::OtlpExporter>> replaced_tracers_;
  std::vector<std::thread> stopping_;  // replaced ones sending what they hold
};

}  // namespace sluice::app
