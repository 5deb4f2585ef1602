// Bytes waiting to be written to one socket, as a list of pieces for one
// gathered write: encoded packets go into one growing byte buffer, and large
// payloads are referenced where they lie (the shared Message keeps them alive)
// instead of being copied. Small payloads are copied: for them one more
// iovec costs more than the copy.
#pragma once

#include <boost/asio/buffer.hpp>
#include <cstdint>
#include <vector>

#include "broker/message.hpp"
#include "mqtt/packet_encoder.hpp"

namespace sluice::net {

class OutputBuffer {
 public:
  void append_packet(const mqtt::Packet& packet, mqtt::ProtocolVersion version);
  void append_publish(const mqtt::PublishHead& head, mqtt::ProtocolVersion version,
                      const broker::MessagePtr& message);

  void append_plain_ack(mqtt::PacketType type, std::uint16_t packet_id);

  std::size_t size() const { return size_; }
  bool empty() const { return size_ == 0; }

  // The pieces as Asio buffers; valid until the next append or clear.
  const std::vector<boost::asio::const_buffer>& buffers();

  // Empties the buffer, releasing memory a burst left behind.
  void clear();

 private:
  struct Piece {
    const std::uint8_t* payload;  // nullptr: `offset` into bytes_
    std::size_t offset;
    std::size_t size;
  };
  void extend_bytes(std::size_t from);

  std::vector<std::uint8_t> bytes_;
  std::vector<Piece> pieces_;
  std::vector<broker::MessagePtr> owners_;  // keep referenced payloads alive
  std::vector<boost::asio::const_buffer> buffers_;
  std::size_t size_ = 0;
};

// What one connection writes from: the packets of this loop turn, and those
// the socket is taking.
struct ConnectionOutput {
  OutputBuffer pending;  // filled during this turn
  OutputBuffer writing;  // handed to the socket
};

}  // namespace sluice::net
