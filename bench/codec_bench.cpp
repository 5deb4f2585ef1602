// Codec micro-benchmarks: framing and decoding a 64-byte PUBLISH, encoding it
// whole and as a gathered head, and topic matching. Each reports time per
// operation and heap allocations per operation.
//
//   make bench            (or: build/release/bench/codec_bench)
#include <benchmark/benchmark.h>

#include <string>
#include <vector>

#include "allocation_counter.hpp"
#include "mqtt/frame_decoder.hpp"
#include "mqtt/packet_decoder.hpp"
#include "mqtt/packet_encoder.hpp"
#include "mqtt/topic.hpp"

namespace {

using namespace sluice::mqtt;

// A QoS 1 PUBLISH as a sensor would send it: 64 bytes of payload, a short
// topic, one property on MQTT 5.
Publish sample_publish() {
  Publish p;
  p.topic = "sensors/room1/temp";
  p.qos = QoS::kAtLeastOnce;
  p.packet_id = 7;
  p.payload.assign(64, 0x5A);
  p.properties.payload_format_indicator = 0;
  return p;
}

class AllocationsPerOp {
 public:
  explicit AllocationsPerOp(benchmark::State& state)
      : state_(state), start_(sluice::bench::allocation_count()) {}
  ~AllocationsPerOp() {
    const auto allocations = sluice::bench::allocation_count() - start_;
    state_.counters["allocs/op"] =
        benchmark::Counter(static_cast<double>(allocations), benchmark::Counter::kAvgIterations);
  }

 private:
  benchmark::State& state_;
  std::uint64_t start_;
};

void BM_DecodePublish64(benchmark::State& state) {
  const auto version = static_cast<ProtocolVersion>(state.range(0));
  std::vector<std::uint8_t> bytes;
  encode_packet(sample_publish(), version, bytes);
  FrameDecoder decoder;
  Packet packet;
  {
    AllocationsPerOp allocations(state);
    for (auto _ : state) {
      decoder.feed(bytes);
      Frame frame;
      decoder.next(frame);
      const DecodeError error = decode_packet(frame, version, packet);
      benchmark::DoNotOptimize(error);
      decoder.next(frame);  // kNeedMore: the input is used up
    }
  }
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations() * bytes.size()));
}
BENCHMARK(BM_DecodePublish64)->Arg(4)->Arg(5)->ArgName("mqtt_level");

void BM_FramePublish64(benchmark::State& state) {
  std::vector<std::uint8_t> bytes;
  encode_packet(sample_publish(), ProtocolVersion::kV5, bytes);
  FrameDecoder decoder;
  AllocationsPerOp allocations(state);
  for (auto _ : state) {
    decoder.feed(bytes);
    Frame frame;
    benchmark::DoNotOptimize(decoder.next(frame));
    decoder.next(frame);
  }
}
BENCHMARK(BM_FramePublish64);

void BM_EncodePublish64(benchmark::State& state) {
  const auto version = static_cast<ProtocolVersion>(state.range(0));
  const Packet packet = sample_publish();
  std::vector<std::uint8_t> out;
  out.reserve(256);
  AllocationsPerOp allocations(state);
  for (auto _ : state) {
    out.clear();
    benchmark::DoNotOptimize(encode_packet(packet, version, out));
  }
}
BENCHMARK(BM_EncodePublish64)->Arg(4)->Arg(5)->ArgName("mqtt_level");

// What the broker does per subscriber: the head only, shared properties
// encoded once beforehand, the payload left where it is.
void BM_EncodePublishHead64(benchmark::State& state) {
  const Publish publish = sample_publish();
  std::vector<std::uint8_t> shared;
  encode_shared_properties(publish.properties, shared);
  const std::uint32_t subscription_ids[] = {12};
  PublishHead head;
  head.topic = publish.topic;
  head.qos = publish.qos;
  head.packet_id = 1;
  head.shared_properties = shared;
  head.subscription_identifiers = subscription_ids;
  head.payload_bytes = publish.payload.size();
  std::vector<std::uint8_t> out;
  out.reserve(256);
  AllocationsPerOp allocations(state);
  for (auto _ : state) {
    out.clear();
    head.packet_id = static_cast<std::uint16_t>(head.packet_id % 65535 + 1);
    benchmark::DoNotOptimize(encode_publish_head(head, ProtocolVersion::kV5, out));
  }
}
BENCHMARK(BM_EncodePublishHead64);

void BM_TopicMatch(benchmark::State& state) {
  const std::vector<std::pair<std::string, std::string>> pairs = {
      {"sensors/+/temp", "sensors/room1/temp"},
      {"sensors/#", "sensors/room1/temp"},
      {"sensors/room1/temp", "sensors/room1/temp"},
      {"sensors/room2/temp", "sensors/room1/temp"},
      {"+/+/+/+", "a/b/c/d"},
      {"#", "$SYS/broker/uptime"},
  };
  std::size_t matched = 0;
  AllocationsPerOp allocations(state);
  for (auto _ : state) {
    for (const auto& [filter, topic] : pairs)
      matched += topic_matches(filter, topic) ? 1 : 0;
  }
  benchmark::DoNotOptimize(matched);
  state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations() * pairs.size()));
}
BENCHMARK(BM_TopicMatch);

}  // namespace

BENCHMARK_MAIN();
