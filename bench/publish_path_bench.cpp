// The broker's publish path in process, without sockets: a client's PUBLISH
// through ClientProtocol, the subscription index and the subscriber's
// Session to the PublishHead its connection would write. What is left per
// message when the network is taken away.
//
//   build/release/bench/publish_path_bench
#include <benchmark/benchmark.h>

#include "allocation_counter.hpp"
#include "broker/broker.hpp"
#include "broker/client_protocol.hpp"
#include "broker/shard.hpp"

namespace {

using namespace sluice;

// Takes what the broker sends and throws it away, counting PUBLISHes.
class DiscardingLink final : public broker::ClientLink {
 public:
  void send(const mqtt::Packet&) override {}
  void send_publish(const mqtt::PublishHead& head, const broker::MessagePtr&) override {
    ++publishes;
    last_packet_id = head.packet_id;
  }
  std::size_t unsent_bytes() const override { return 0; }
  void close() override {}
  std::uint64_t publishes = 0;
  std::uint16_t last_packet_id = 0;
};

struct Client {
  DiscardingLink link;
  broker::ClientProtocol protocol;
  Client(broker::Shard& shard, const std::string& id, mqtt::ProtocolVersion version)
      : protocol(shard, link) {
    mqtt::Connect connect;
    connect.version = version;
    connect.client_id = id;
    protocol.on_connect(std::move(connect));
  }
};

// One publisher, `state.range(0)` subscribers of its topic, QoS `state.range(1)`.
void BM_PublishToSubscribers(benchmark::State& state) {
  const auto subscribers = static_cast<int>(state.range(0));
  const auto qos = static_cast<mqtt::QoS>(state.range(1));
  broker::Broker broker(config::Config{}, 1, "bench");
  broker::Shard& shard = broker.shard(0);
  std::vector<std::unique_ptr<Client>> subs;
  for (int s = 0; s < subscribers; ++s) {
    subs.push_back(std::make_unique<Client>(shard, "sub-" + std::to_string(s),
                                            mqtt::ProtocolVersion::kV3_1_1));
    mqtt::Subscribe subscribe;
    subscribe.packet_id = 1;
    subscribe.subscriptions.push_back({"devices/42/temperature", {qos}});
    subs.back()->protocol.on_packet(std::move(subscribe));
  }
  Client publisher(shard, "publisher", mqtt::ProtocolVersion::kV3_1_1);
  const std::vector<std::uint8_t> payload(64, 'x');
  std::uint16_t packet_id = 0;
  const auto allocations_before = bench::allocation_count();
  for (auto _ : state) {
    mqtt::Publish publish;
    publish.topic = "devices/42/temperature";
    publish.qos = qos;
    publish.payload = payload;
    if (qos != mqtt::QoS::kAtMostOnce) {
      packet_id = static_cast<std::uint16_t>(packet_id == 65535 ? 1 : packet_id + 1);
      publish.packet_id = packet_id;
    }
    publisher.protocol.on_packet(std::move(publish));
    if (qos != mqtt::QoS::kAtMostOnce) {
      // Each subscriber acknowledges at once, as a fast client would.
      for (auto& sub : subs)
        sub->protocol.on_packet(
            mqtt::Puback{sub->link.last_packet_id, mqtt::ReasonCode::kSuccess, {}});
    }
  }
  state.counters["allocs/publish"] =
      benchmark::Counter(static_cast<double>(bench::allocation_count() - allocations_before),
                         benchmark::Counter::kAvgIterations);
  state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations()) * subscribers);
}

}  // namespace

BENCHMARK(BM_PublishToSubscribers)->Args({1, 0})->Args({1, 1})->Args({100, 0})->Args({100, 1});

BENCHMARK_MAIN();
