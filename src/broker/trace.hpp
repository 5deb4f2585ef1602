// W3C trace context on messages (docs/tracing.md). A PUBLISH that carries a
// sampled `traceparent` user property, or that the sampler picks, gets spans
// for its receive, route, store commit and each delivery; each delivered
// copy carries the `traceparent` of its delivery span. The broker only makes
// spans; a SpanSink (admin/otlp_exporter.cpp) takes them off the worker's
// hands. Nothing here costs a message that is not traced more than a look at
// its user properties.
#pragma once

#include <array>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "mqtt/property.hpp"

namespace sluice::broker {

using TraceId = std::array<std::uint8_t, 16>;
using SpanId = std::array<std::uint8_t, 8>;

// The fields of a `traceparent` (version 00): 00-<trace id>-<parent id>-<flags>.
struct TraceContext {
  TraceId trace_id{};
  SpanId span_id{};
  bool sampled = false;
};

// nullopt for anything that is not a valid version-00 traceparent (all-zero
// ids are invalid too); a later version is read as 00, as W3C asks.
std::optional<TraceContext> parse_traceparent(std::string_view text);
std::string format_traceparent(const TraceContext& context);  // always 55 characters

// Fresh, random, never all zero. Per thread, so workers share nothing.
TraceId new_trace_id();
SpanId new_span_id();
std::uint64_t unix_nanos_now();

// OpenTelemetry's span kinds, with OTLP's numbers.
enum class SpanKind : std::uint8_t { kInternal = 1, kServer = 2, kProducer = 4 };

struct Span {
  TraceId trace_id{};
  SpanId span_id{};
  std::optional<SpanId> parent;  // none: the root of its trace
  const char* name = "";
  SpanKind kind = SpanKind::kInternal;
  std::uint64_t start_ns = 0;  // Unix time
  std::uint64_t end_ns = 0;
  bool failed = false;  // OTLP status ERROR
  std::vector<std::pair<const char*, std::string>> attributes;
};

class SpanSink {
 public:
  virtual ~SpanSink() = default;
  // The share of untraced publishes that start a trace of their own: 0..1.
  virtual double sample_ratio() const = 0;
  // From any thread; never waits on the collector (a full buffer drops, counted).
  virtual void record(Span&& span) = 0;
};

// What a traced message carries, shared by every copy: its trace, the span
// of its receive (the parent of everything the broker did with it), when
// it arrived, just before routing (where each delivery span starts), and
// the sink that started it, which takes all of its spans (a reload may put
// another in the broker meanwhile; sinks outlive the workers).
struct MessageTrace {
  SpanSink* sink = nullptr;
  TraceId trace_id{};
  SpanId receive_span{};
  std::uint64_t routed_ns = 0;
};

// A receive span under way, on the publisher's worker.
struct PublishTrace {
  Span receive;
  std::shared_ptr<const MessageTrace> message;
};

// Whether this publish is traced: a sampled traceparent among `properties`
// (then every traceparent is taken out, as deliveries carry their own) or,
// without one, the sampler's pick. An unsampled traceparent is left as it
// is and traces nothing.
std::optional<PublishTrace> start_publish_trace(SpanSink& sink, mqtt::Properties& properties,
                                                std::string_view topic, std::string_view client_id,
                                                int qos);

// The span of one step the broker took for a traced message, made a child
// of its receive span; the caller fills in the end and attributes.
Span child_span(const MessageTrace& trace, const char* name, SpanKind kind, std::uint64_t start_ns);

// Wraps `then` (called once the publish's store write is durable, or
// failed) so that it also records the store commit span, from now.
std::function<void(bool)> trace_store_commit(std::shared_ptr<const MessageTrace> trace,
                                             std::function<void(bool)> then);

}  // namespace sluice::broker
