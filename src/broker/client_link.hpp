// What the broker needs of a client's network connection, implemented by
// net::Connection. Everything here is called on the connection's own worker
// thread; sends are batched and written at the end of the loop turn.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

#include "broker/message.hpp"
#include "mqtt/packet_encoder.hpp"
#include "mqtt/packets.hpp"

namespace sluice::broker {

class ClientLink {
 public:
  virtual ~ClientLink() = default;

  // Queues `packet` for sending.
  virtual void send(const mqtt::Packet& packet) = 0;

  // Queues a PUBLISH: `head` from encode_publish_head's inputs, and the
  // message's payload, which is written from where it lies, not copied.
  virtual void send_publish(const mqtt::PublishHead& head, const MessagePtr& message) = 0;

  // Queues the PUBACK, PUBREC, PUBREL or PUBCOMP of `packet_id` with reason
  // Success and no properties: the acknowledgement every QoS 1/2 message
  // needs, which a connection can write without building a Packet.
  virtual void send_plain_ack(mqtt::PacketType type, std::uint16_t packet_id) {
    send(mqtt::plain_ack_packet(type, packet_id));
  }

  // Bytes queued but not yet taken by the socket: how far behind the client is.
  virtual std::size_t unsent_bytes() const = 0;
  // "address:port" of the client, for operators; empty when unknown.
  virtual std::string peer_address() const { return {}; }

  // Sends what is queued, then closes the connection.
  virtual void close() = 0;

  // Stops handing packets to the broker after the one being handled, until
  // release_input(): the rest waits, read or unread (a CONNECT whose steps
  // wait on another thread; a publisher held back while a queue is full).
  virtual void hold_input() {}
  virtual void release_input() {}
};

}  // namespace sluice::broker
