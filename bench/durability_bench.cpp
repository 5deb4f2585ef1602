// What durability costs, in process (no sockets, so the store is what is
// measured): QoS 1 publishes to an offline persistent session, acknowledged
// only once stored, with the memory engine and with RocksDB under each
// durability policy; then how long a start takes to load a large store.
//
//   build/release/bench/durability_bench [--messages N] [--publishers P]
//       [--window W] [--sessions S] [--retained R] [--cycles C] [--dir DIR]
//
// Publishers each keep W PUBLISHes unacknowledged, as a real client with a
// window does; the committer groups whatever is waiting into one write.
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <functional>
#include <string>
#include <vector>

#include "broker/broker.hpp"
#include "broker/client_protocol.hpp"
#include "broker/persistence.hpp"
#include "broker/shard.hpp"
#include "store/committer.hpp"
#include "store/store.hpp"
#include "task_mailbox.hpp"

namespace {

using namespace sluice;
using SteadyClock = std::chrono::steady_clock;

// A client connection that counts acknowledgements instead of writing them.
class CountingLink final : public broker::ClientLink {
 public:
  void send(const mqtt::Packet& packet) override {
    if (std::holds_alternative<mqtt::Puback>(packet)) ++pubacks;
  }
  void send_publish(const mqtt::PublishHead&, const broker::MessagePtr&) override {}
  std::size_t unsent_bytes() const override { return 0; }
  void close() override {}
  std::uint64_t pubacks = 0;
};

struct Client {
  CountingLink link;
  broker::ClientProtocol protocol;
  std::uint64_t sent = 0;
  Client(broker::Shard& shard, const std::string& id, std::uint32_t expiry)
      : protocol(shard, link) {
    mqtt::Connect connect;
    connect.client_id = id;
    connect.clean_start = expiry == 0;
    if (expiry != 0) connect.properties.session_expiry_interval = expiry;
    protocol.on_connect(std::move(connect));
  }
};

// Runs the store's callbacks until everything handed to it so far is written
// (a stored session's CONNACK, and so its SUBSCRIBE, wait for its record).
void settle(broker::Shard& shard, testing_support::TaskMailbox& mailbox) {
  if (!shard.has_store()) return;
  bool done = false;
  shard.write_then(store::WriteBatch(), [&](bool) { done = true; });
  while (!done)
    mailbox.run(true);
}

struct Options {
  std::uint64_t messages = 100'000;
  int publishers = 8;
  std::uint64_t window = 100;
  int sessions = 100'000;
  int retained = 1'000'000;
  int cycles = 8;
  std::string dir = "/tmp/sluice-durability-bench-" + std::to_string(getpid());
};

std::unique_ptr<store::Store> open_fresh(const std::string& dir) {
  std::filesystem::remove_all(dir);
  std::unique_ptr<store::Store> store;
  const store::Status status = store::open_rocksdb_store(dir, store);
  if (!status.ok) {
    std::fprintf(stderr, "durability_bench: %s\n", status.message.c_str());
    std::exit(1);
  }
  return store;
}

// Publishes `messages` QoS 1 messages of 64 bytes to one offline persistent
// subscriber; returns messages per second, counted from the first PUBLISH to
// the last PUBACK.
double publish_rate(const Options& options, const char* durability) {
  config::Config config;
  config.limits.max_queued_messages = static_cast<std::uint32_t>(options.messages) + 1;
  broker::Broker broker(config, 1, "bench");
  testing_support::TaskMailbox mailbox;
  broker.set_mailbox(&mailbox);
  std::unique_ptr<store::Store> store;
  std::unique_ptr<store::Committer> committer;
  if (durability != nullptr) {
    store = open_fresh(options.dir);
    const std::string policy = durability;
    committer = std::make_unique<store::Committer>(*store,
                                                   policy == "sync"    ? store::Durability::kSync
                                                   : policy == "batch" ? store::Durability::kBatch
                                                                       : store::Durability::kNone,
                                                   std::chrono::milliseconds(10));
    broker.set_journal(committer.get());
  }
  broker::Shard& shard = broker.shard(0);
  {
    Client subscriber(shard, "subscriber", 3600);
    settle(shard, mailbox);
    mqtt::Subscribe subscribe;
    subscribe.packet_id = 1;
    subscribe.subscriptions.push_back({"bench/#", {mqtt::QoS::kAtLeastOnce}});
    subscriber.protocol.on_packet(std::move(subscribe));
    settle(shard, mailbox);
    subscriber.protocol.on_connection_lost();  // offline from here: every message is queued
  }
  std::vector<std::unique_ptr<Client>> publishers;
  for (int p = 0; p < options.publishers; ++p)
    publishers.push_back(std::make_unique<Client>(shard, "publisher-" + std::to_string(p), 0));

  const std::vector<std::uint8_t> payload(64, 'x');
  const std::uint64_t per_publisher = options.messages / publishers.size();
  const auto start = SteadyClock::now();
  std::uint64_t acknowledged = 0;
  while (acknowledged < per_publisher * publishers.size()) {
    bool room = false;
    for (std::size_t p = 0; p < publishers.size(); ++p) {
      Client& client = *publishers[p];
      while (client.sent < per_publisher && client.sent - client.link.pubacks < options.window) {
        mqtt::Publish publish;
        publish.topic = "bench/" + std::to_string(p);
        publish.qos = mqtt::QoS::kAtLeastOnce;
        publish.packet_id = static_cast<std::uint16_t>(client.sent % 65535 + 1);
        publish.payload = payload;
        client.protocol.on_packet(std::move(publish));
        ++client.sent;
        room = true;
      }
    }
    mailbox.run(!room && committer != nullptr);
    acknowledged = 0;
    for (const auto& client : publishers)
      acknowledged += client->link.pubacks;
  }
  const double seconds = std::chrono::duration<double>(SteadyClock::now() - start).count();
  return static_cast<double>(acknowledged) / seconds;
}

std::uintmax_t directory_bytes(const std::string& dir) {
  std::uintmax_t total = 0;
  for (const auto& entry : std::filesystem::recursive_directory_iterator(dir)) {
    if (entry.is_regular_file()) total += entry.file_size();
  }
  return total;
}

// Fills and drains a persistent session's queue `cycles` times under
// `sync`, printing the store's size on disk after each drain: what is
// delivered and acknowledged must not keep using disk.
void disk_use(const Options& options, int cycles) {
  config::Config config;
  config.limits.max_queued_messages = static_cast<std::uint32_t>(options.messages) + 1;
  broker::Broker broker(config, 1, "bench");
  testing_support::TaskMailbox mailbox;
  broker.set_mailbox(&mailbox);
  auto store = open_fresh(options.dir);
  store::Committer committer(*store, store::Durability::kSync, std::chrono::milliseconds(10));
  broker.set_journal(&committer);
  broker::Shard& shard = broker.shard(0);
  {
    Client subscriber(shard, "subscriber", 3600);
    settle(shard, mailbox);
    mqtt::Subscribe subscribe;
    subscribe.packet_id = 1;
    subscribe.subscriptions.push_back({"bench/#", {mqtt::QoS::kAtLeastOnce}});
    subscriber.protocol.on_packet(std::move(subscribe));
    subscriber.protocol.on_connection_lost();
  }
  Client publisher(shard, "publisher", 0);
  const std::vector<std::uint8_t> payload(64, 'x');
  std::printf("disk use of the store, after each fill and drain of %llu messages:",
              static_cast<unsigned long long>(options.messages));
  for (int cycle = 0; cycle < cycles; ++cycle) {
    for (std::uint64_t i = 0; i < options.messages; ++i) {
      mqtt::Publish publish;
      publish.topic = "bench/disk";
      publish.qos = mqtt::QoS::kAtLeastOnce;
      publish.packet_id = static_cast<std::uint16_t>(i % 65535 + 1);
      publish.payload = payload;
      publisher.protocol.on_packet(std::move(publish));
      if (i % 1000 == 999) settle(shard, mailbox);
    }
    settle(shard, mailbox);
    // The subscriber comes back and acknowledges everything, window by window.
    struct AckingLink final : broker::ClientLink {
      std::vector<std::uint16_t> ids;
      void send(const mqtt::Packet&) override {}
      void send_publish(const mqtt::PublishHead& head, const broker::MessagePtr&) override {
        ids.push_back(head.packet_id);
      }
      std::size_t unsent_bytes() const override { return 0; }
      void close() override {}
    } link;
    broker::ClientProtocol reader(shard, link);
    mqtt::Connect connect;
    connect.client_id = "subscriber";
    connect.clean_start = false;
    connect.properties.session_expiry_interval = 3600;
    reader.on_connect(std::move(connect));
    settle(shard, mailbox);
    std::uint64_t acknowledged = 0;
    while (acknowledged < options.messages && !link.ids.empty()) {
      std::vector<std::uint16_t> ids;
      ids.swap(link.ids);
      for (const std::uint16_t id : ids) {
        reader.on_packet(mqtt::Puback{id, mqtt::ReasonCode::kSuccess, {}});
        ++acknowledged;
      }
    }
    reader.on_connection_lost();
    settle(shard, mailbox);
    if (acknowledged != options.messages) {
      std::fprintf(stderr, "durability_bench: drained %llu of %llu\n",
                   static_cast<unsigned long long>(acknowledged),
                   static_cast<unsigned long long>(options.messages));
      std::exit(1);
    }
    std::printf(" %.1f MB", static_cast<double>(directory_bytes(options.dir)) / 1e6);
    std::fflush(stdout);
  }
  std::printf("\nRESULT disk_mb_after_drain=%.1f\n",
              static_cast<double>(directory_bytes(options.dir)) / 1e6);
}

// Fills a store with `sessions` persistent sessions (one subscription each)
// and `retained` retained messages, then times opening and loading it.
void restart_time(const Options& options) {
  {
    auto store = open_fresh(options.dir);
    store::WriteBatch batch;
    auto flush = [&] {
      store->write(batch, false);
      batch = store::WriteBatch();
    };
    for (int s = 0; s < options.sessions; ++s) {
      const std::string id = "device-" + std::to_string(s);
      batch.add(
          store::WriteBatch::PutSession{{id, 5, 86'400, 0, store::SessionOwner::kUnknown, {}}});
      batch.add(store::WriteBatch::PutSubscription{{id, "commands/" + id, 1, 0, {}}});
      if (batch.size() >= 20'000) flush();
    }
    for (int r = 0; r < options.retained; ++r) {
      store::MessageRecord record;
      record.topic = "site/" + std::to_string(r % 1000) + "/sensor/" + std::to_string(r);
      record.payload.assign(64, 'r');
      record.qos = 1;
      record.retain = true;
      batch.add(store::WriteBatch::PutRetained{std::move(record)});
      if (batch.size() >= 20'000) flush();
    }
    flush();
    store->sync();
  }
  const auto start = SteadyClock::now();
  std::unique_ptr<store::Store> store;
  store::open_rocksdb_store(options.dir, store);
  config::Config config;
  config.limits.max_sessions = static_cast<std::uint32_t>(options.sessions) + 1;
  config.limits.max_retained_messages = static_cast<std::uint32_t>(options.retained) + 1;
  broker::Broker broker(config, 2, "bench");
  broker::LoadCounts counts;
  std::vector<store::SubscriptionRecord> queue_subscriptions;  // none: no queues here
  const store::Status status = broker::load_state(*store, broker, counts, queue_subscriptions);
  const double seconds = std::chrono::duration<double>(SteadyClock::now() - start).count();
  if (!status.ok) std::fprintf(stderr, "durability_bench: %s\n", status.message.c_str());
  std::printf("restart: %zu sessions, %zu subscriptions, %zu retained loaded in %.2f s\n",
              counts.sessions, counts.subscriptions, counts.retained, seconds);
  std::printf("RESULT restart sessions=%zu retained=%zu seconds=%.3f\n", counts.sessions,
              counts.retained, seconds);
}

}  // namespace

int main(int argc, char** argv) {
  Options options;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string name = argv[i];
    const std::string value = argv[i + 1];
    if (name == "--messages")
      options.messages = std::stoull(value);
    else if (name == "--publishers")
      options.publishers = std::stoi(value);
    else if (name == "--window")
      options.window = std::stoull(value);
    else if (name == "--sessions")
      options.sessions = std::stoi(value);
    else if (name == "--retained")
      options.retained = std::stoi(value);
    else if (name == "--dir")
      options.dir = value;
    else if (name == "--cycles")
      options.cycles = std::stoi(value);
    else {
      std::fprintf(stderr, "durability_bench: unknown option %s\n", name.c_str());
      return 2;
    }
  }
  std::printf(
      "QoS 1 to an offline persistent session: %llu messages of 64 B, %d publishers, "
      "window %llu each\n",
      static_cast<unsigned long long>(options.messages), options.publishers,
      static_cast<unsigned long long>(options.window));
  const double memory = publish_rate(options, nullptr);
  std::printf("%-16s %12.0f msg/s   ratio to memory 1.000\n", "memory", memory);
  for (const char* policy : {"none", "batch", "sync"}) {
    const double rate = publish_rate(options, policy);
    std::printf("%-16s %12.0f msg/s   ratio to memory %.3f\n",
                (std::string("rocksdb ") + policy).c_str(), rate, rate / memory);
    std::printf("RESULT durability=%s msgs_per_s=%.0f ratio_to_memory=%.3f\n", policy, rate,
                rate / memory);
  }
  disk_use(options, options.cycles);
  restart_time(options);
  std::filesystem::remove_all(options.dir);
  return 0;
}
