// A client for broker tests: ClientProtocol over a link that records what
// the broker sends instead of writing it to a socket.
#pragma once

#include <condition_variable>
#include <functional>
#include <mutex>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "broker/broker.hpp"
#include "broker/client_link.hpp"
#include "broker/client_protocol.hpp"
#include "broker/shard.hpp"

namespace sluice::broker::testing_support {

using mqtt::QoS;

struct SentPublish {
  std::string topic;
  QoS qos;
  bool dup;
  std::uint16_t packet_id;
  std::string payload;
};

class RecordingLink : public ClientLink {
 public:
  void send(const mqtt::Packet& packet) override { packets.push_back(packet); }
  void send_publish(const mqtt::PublishHead& head, const MessagePtr& message) override {
    publishes.push_back({message->topic, head.qos, head.dup, head.packet_id,
                         std::string(message->payload.begin(), message->payload.end())});
  }
  std::size_t unsent_bytes() const override { return unsent; }
  void close() override { closed = true; }

  template <class T>
  std::vector<T> sent() const {
    std::vector<T> out;
    for (const auto& p : packets) {
      if (const T* t = std::get_if<T>(&p)) out.push_back(*t);
    }
    return out;
  }

  std::vector<mqtt::Packet> packets;
  std::vector<SentPublish> publishes;
  std::size_t unsent = 0;
  bool closed = false;
};

// Runs every shard of a broker on the test's thread: what shards post to
// each other (deliveries, tasks) waits here until settle() runs it, as the
// workers' inboxes would at the end of a loop turn.
class LoopbackBroker final : public Mailbox {
 public:
  LoopbackBroker(config::Config config, std::uint32_t shards)
      : broker(std::move(config), shards, "test") {
    broker.set_mailbox(this);
  }
  // From any thread (the store's committer posts its callbacks).
  void post(std::uint32_t shard, std::vector<RemoteDelivery>&& deliveries) override {
    std::lock_guard lock(mutex_);
    posted_.emplace_back(shard, std::move(deliveries));
    ready_.notify_one();
  }
  void post_task(std::uint32_t, std::function<void()> task) override {
    std::lock_guard lock(mutex_);
    tasks_.push_back(std::move(task));
    ready_.notify_one();
  }
  Shard& shard_for(const std::string& client_id) {
    return broker.shard(broker.shard_for_client(client_id));
  }
  // Until nothing is left on the way between shards. What the store calls
  // back waits for settle_store(), so that a test can see what happens
  // before a write is durable.
  void settle() {
    while (run_posted(false)) {
    }
  }
  // Until everything handed to the store so far is written and its callbacks
  // have run (the journal keeps the order of what it is given).
  void settle_store() {
    settle();
    if (broker.journal() == nullptr) return;
    bool done = false;
    broker.shard(0).write_then(store::WriteBatch(), [&](bool) { done = true; });
    while (!done) {
      {
        std::unique_lock lock(mutex_);
        ready_.wait(lock, [&] { return !posted_.empty() || !tasks_.empty(); });
      }
      while (run_posted(true)) {
      }
    }
  }
  // The sum of one counter over every shard.
  std::uint64_t total(ShardStats::Counter ShardStats::*counter) {
    std::uint64_t sum = 0;
    for (std::uint32_t i = 0; i < broker.shard_count(); ++i)
      sum += (broker.shard(i).stats().*counter).load();
    return sum;
  }

  Broker broker;

 private:
  // Flushes every shard's outbox, then delivers what was posted (and runs
  // the posted tasks with `tasks`); false when there was nothing.
  bool run_posted(bool with_tasks) {
    for (std::uint32_t i = 0; i < broker.shard_count(); ++i)
      broker.shard(i).flush_outbox();
    std::vector<std::pair<std::uint32_t, std::vector<RemoteDelivery>>> posted;
    std::vector<std::function<void()>> tasks;
    {
      std::lock_guard lock(mutex_);
      posted.swap(posted_);
      if (with_tasks) tasks.swap(tasks_);
    }
    for (auto& [shard, deliveries] : posted)
      broker.shard(shard).deliver_batch(std::move(deliveries));
    for (auto& task : tasks)
      task();
    return !posted.empty() || !tasks.empty();
  }

  std::mutex mutex_;
  std::condition_variable ready_;
  std::vector<std::pair<std::uint32_t, std::vector<RemoteDelivery>>> posted_;
  std::vector<std::function<void()>> tasks_;
};

class Client {
 public:
  Client(Shard& shard, std::string id, mqtt::ProtocolVersion version = mqtt::ProtocolVersion::kV5)
      : protocol(shard, link), id_(std::move(id)), version_(version) {}
  // On the shard its client id maps to; every action below settles the
  // broker afterwards, so its effects on other shards are there to look at.
  Client(LoopbackBroker& broker, std::string id,
         mqtt::ProtocolVersion version = mqtt::ProtocolVersion::kV5)
      : protocol(broker.shard_for(id), link),
        id_(std::move(id)),
        version_(version),
        broker_(&broker) {}

  // A packet from the client, as the net layer hands it over.
  void packet(mqtt::Packet packet) {
    protocol.on_packet(std::move(packet));
    settle();
  }
  void lost() {
    protocol.on_connection_lost();
    settle();
  }
  void writable() {
    protocol.on_writable();
    settle();
  }

  void connect(bool clean = true, std::uint32_t expiry = 0, std::uint16_t receive_maximum = 0,
               std::optional<mqtt::Will> will = std::nullopt) {
    mqtt::Connect c;
    c.version = version_;
    c.client_id = id_;
    c.clean_start = clean;
    c.will = std::move(will);
    if (expiry) c.properties.session_expiry_interval = expiry;
    if (receive_maximum) c.properties.receive_maximum = receive_maximum;
    protocol.on_connect(std::move(c));
    settle();
  }
  void subscribe(const std::string& filter, QoS qos) {
    mqtt::Subscribe s;
    s.packet_id = next_id++;
    s.subscriptions.push_back({filter, {qos}});
    protocol.on_packet(s);
    settle();
  }
  void publish(const std::string& topic, const std::string& payload, QoS qos, std::uint16_t id = 0,
               bool dup = false, bool retain = false) {
    mqtt::Publish p;
    p.topic = topic;
    p.qos = qos;
    p.dup = dup;
    p.retain = retain;
    p.packet_id = qos == QoS::kAtMostOnce ? 0 : (id ? id : next_id++);
    p.payload.assign(payload.begin(), payload.end());
    protocol.on_packet(p);
    settle();
  }

  RecordingLink link;
  ClientProtocol protocol;

 private:
  void settle() {
    if (broker_ != nullptr) broker_->settle();
  }

  std::string id_;
  mqtt::ProtocolVersion version_;
  std::uint16_t next_id = 1;
  LoopbackBroker* broker_ = nullptr;
};

}  // namespace sluice::broker::testing_support
