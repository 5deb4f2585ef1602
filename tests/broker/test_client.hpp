// A client for broker tests: ClientProtocol over a link that records what
// the broker sends instead of writing it to a socket.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "broker/client_link.hpp"
#include "broker/client_protocol.hpp"

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

class Client {
 public:
  Client(Shard& shard, std::string id, mqtt::ProtocolVersion version = mqtt::ProtocolVersion::kV5)
      : protocol(shard, link), id_(std::move(id)), version_(version) {}

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
  }
  void subscribe(const std::string& filter, QoS qos) {
    mqtt::Subscribe s;
    s.packet_id = next_id++;
    s.subscriptions.push_back({filter, {qos}});
    protocol.on_packet(s);
  }
  void publish(const std::string& topic, const std::string& payload, QoS qos, std::uint16_t id = 0,
               bool dup = false) {
    mqtt::Publish p;
    p.topic = topic;
    p.qos = qos;
    p.dup = dup;
    p.packet_id = qos == QoS::kAtMostOnce ? 0 : (id ? id : next_id++);
    p.payload.assign(payload.begin(), payload.end());
    protocol.on_packet(p);
  }

  RecordingLink link;
  ClientProtocol protocol;

 private:
  std::string id_;
  mqtt::ProtocolVersion version_;
  std::uint16_t next_id = 1;
};

}  // namespace sluice::broker::testing_support
