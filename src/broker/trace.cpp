#include "broker/trace.hpp"

#include <algorithm>
#include <chrono>
#include <random>

#include "auth/base64.hpp"
#include "mqtt/packet_encoder.hpp"

namespace sluice::broker {
namespace {

std::mt19937_64& generator() {
  thread_local std::mt19937_64 engine{std::random_device{}()};
  return engine;
}

template <std::size_t N>
std::array<std::uint8_t, N> random_id() {
  std::array<std::uint8_t, N> id{};
  do {
    for (std::size_t i = 0; i < N; i += 8) {
      const std::uint64_t bits = generator()();
      for (std::size_t j = 0; j < 8 && i + j < N; ++j)
        id[i + j] = static_cast<std::uint8_t>(bits >> (8 * j));
    }
  } while (std::all_of(id.begin(), id.end(), [](std::uint8_t b) { return b == 0; }));
  return id;
}

int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  return -1;  // W3C: lowercase only
}

template <std::size_t N>
bool read_hex(std::string_view text, std::array<std::uint8_t, N>& out) {
  if (text.size() != 2 * N) return false;
  bool any = false;
  for (std::size_t i = 0; i < N; ++i) {
    const int high = hex_value(text[2 * i]), low = hex_value(text[2 * i + 1]);
    if (high < 0 || low < 0) return false;
    out[i] = static_cast<std::uint8_t>(high << 4 | low);
    any = any || out[i] != 0;
  }
  return any;
}

}  // namespace

std::optional<TraceContext> parse_traceparent(std::string_view text) {
  // version "-" trace-id "-" parent-id "-" flags; a later version may add
  // fields after another "-", which a reader of 00 ignores.
  if (text.size() < 55 || text[2] != '-' || text[35] != '-' || text[52] != '-') return std::nullopt;
  std::array<std::uint8_t, 1> version{}, flags{};
  const std::string_view version_text = text.substr(0, 2);
  if (hex_value(version_text[0]) < 0 || hex_value(version_text[1]) < 0 || version_text == "ff")
    return std::nullopt;
  read_hex(version_text, version);
  if (version[0] == 0 && text.size() != 55) return std::nullopt;
  if (version[0] != 0 && text.size() > 55 && text[55] != '-') return std::nullopt;
  TraceContext context;
  if (!read_hex(text.substr(3, 32), context.trace_id) ||
      !read_hex(text.substr(36, 16), context.span_id))
    return std::nullopt;
  const std::string_view flags_text = text.substr(53, 2);
  if (hex_value(flags_text[0]) < 0 || hex_value(flags_text[1]) < 0) return std::nullopt;
  read_hex(flags_text, flags);  // false for 00, which is still valid
  context.sampled = (flags[0] & 0x01) != 0;
  return context;
}

std::string format_traceparent(const TraceContext& context) {
  return "00-" + auth::to_hex(context.trace_id) + "-" + auth::to_hex(context.span_id) +
         (context.sampled ? "-01" : "-00");
}

TraceId new_trace_id() {
  return random_id<16>();
}

SpanId new_span_id() {
  return random_id<8>();
}

std::uint64_t unix_nanos_now() {
  return static_cast<std::uint64_t>(std::chrono::duration_cast<std::chrono::nanoseconds>(
                                        std::chrono::system_clock::now().time_since_epoch())
                                        .count());
}

std::optional<PublishTrace> start_publish_trace(SpanSink& sink, mqtt::Properties& properties,
                                                std::string_view topic, std::string_view client_id,
                                                int qos) {
  std::optional<TraceContext> parent;
  bool carried = false;
  for (const mqtt::UserProperty& property : properties.user_properties) {
    if (property.name != mqtt::kTraceparent) continue;
    carried = true;
    if (!parent) parent = parse_traceparent(property.value);
  }
  if (parent && !parent->sampled) return std::nullopt;  // the caller chose not to record
  if (!parent) {
    const double ratio = sink.sample_ratio();
    if (ratio <= 0 || std::generate_canonical<double, 53>(generator()) >= ratio)
      return std::nullopt;
  }
  if (carried) {
    std::erase_if(properties.user_properties, [](const mqtt::UserProperty& property) {
      return property.name == mqtt::kTraceparent;
    });
  }
  PublishTrace trace;
  Span& receive = trace.receive;
  receive.trace_id = parent ? parent->trace_id : new_trace_id();
  receive.span_id = new_span_id();
  if (parent) receive.parent = parent->span_id;
  receive.name = "sluice.receive";
  receive.kind = SpanKind::kServer;
  receive.start_ns = unix_nanos_now();
  receive.attributes = {{"messaging.system", "mqtt"},
                        {"messaging.destination.name", std::string(topic)},
                        {"messaging.client.id", std::string(client_id)},
                        {"messaging.mqtt.qos", std::to_string(qos)}};
  auto message = std::make_shared<MessageTrace>();
  message->sink = &sink;
  message->trace_id = receive.trace_id;
  message->receive_span = receive.span_id;
  message->routed_ns = receive.start_ns;
  trace.message = std::move(message);
  return trace;
}

Span child_span(const MessageTrace& trace, const char* name, SpanKind kind,
                std::uint64_t start_ns) {
  Span span;
  span.trace_id = trace.trace_id;
  span.span_id = new_span_id();
  span.parent = trace.receive_span;
  span.name = name;
  span.kind = kind;
  span.start_ns = start_ns;
  return span;
}

std::function<void(bool)> trace_store_commit(std::shared_ptr<const MessageTrace> trace,
                                             std::function<void(bool)> then) {
  return
      [trace = std::move(trace), then = std::move(then), start = unix_nanos_now()](bool durable) {
        Span span = child_span(*trace, "sluice.store_commit", SpanKind::kInternal, start);
        span.end_ns = unix_nanos_now();
        span.failed = !durable;
        trace->sink->record(std::move(span));
        if (then) then(durable);
      };
}

}  // namespace sluice::broker
