// Spans of traced messages (broker/trace.hpp) exported as OTLP over
// HTTP/JSON to `tracing.otlp_endpoint` (docs/tracing.md): workers put spans
// in a bounded buffer (dropped, counted, when full); a thread of its own
// sends them in batches. A collector that is down or slow costs a batch,
// counted as dropped, and never a worker's time.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "broker/trace.hpp"
#include "config/config.hpp"

namespace sluice::admin {

class OtlpExporter final : public broker::SpanSink {
 public:
  // nullptr, with the reason, for an endpoint that is not http://host[:port]/path.
  static std::unique_ptr<OtlpExporter> create(const config::TracingConfig& config,
                                              std::string version, std::string& error);
  ~OtlpExporter() override;
  OtlpExporter(const OtlpExporter&) = delete;
  OtlpExporter& operator=(const OtlpExporter&) = delete;

  double sample_ratio() const override;
  // From a reload; from any thread.
  void set_sample_ratio(double ratio);
  void record(broker::Span&& span) override;

  // Sends what it holds for up to `grace`, then stops; the rest is dropped
  // (counted). Once.
  void stop(std::chrono::milliseconds grace);

  struct Stats {
    std::uint64_t exported = 0;  // spans a collector took
    std::uint64_t dropped = 0;   // the buffer was full, a batch failed, or the broker stopped
    std::uint64_t queued = 0;
  };
  Stats stats() const;

  // One ExportTraceServiceRequest in OTLP's JSON mapping (public for tests).
  static std::string body(const std::vector<broker::Span>& spans, const std::string& service_name,
                          const std::string& version);

 private:
  OtlpExporter() = default;
  struct State;
  std::unique_ptr<State> state_;
};

}  // namespace sluice::admin
