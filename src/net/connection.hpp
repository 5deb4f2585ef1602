// One client's TCP connection. It reads with the worker's shared buffer (an
// idle connection holds no read buffer of its own), frames and decodes
// packets, hands them to its ClientProtocol, and writes what the broker
// queued once per loop turn as one gathered write.
//
// The first packet decides where the connection lives: its client id maps to
// one shard, and a connection that arrived on another worker moves there
// with the bytes it had read after CONNECT.
#pragma once

#include <boost/asio/ip/tcp.hpp>
#include <memory>
#include <optional>
#include <vector>

#include "broker/client_link.hpp"
#include "broker/client_protocol.hpp"
#include "mqtt/frame_decoder.hpp"
#include "net/output_buffer.hpp"

namespace sluice::net {

class Worker;

class Connection : public std::enable_shared_from_this<Connection>, public broker::ClientLink {
 public:
  Connection(Worker& worker, boost::asio::ip::tcp::socket socket);
  ~Connection() override;

  // A new connection: waits for CONNECT.
  void start();
  // A connection moved here after its CONNECT was read on another worker.
  void start_moved(mqtt::Connect&& connect, std::vector<std::uint8_t> unread);

  // broker::ClientLink
  void send(const mqtt::Packet& packet) override;
  void send_publish(const mqtt::PublishHead& head, const broker::MessagePtr& message) override;
  std::size_t unsent_bytes() const override { return pending_.size() + writing_.size(); }
  void close() override;

  // Called by the worker: write what is queued (once per loop turn).
  void flush();
  // Called by the worker every second: connect and keep-alive deadlines.
  void check_deadlines(broker::Clock::time_point now);
  // Called by the worker when the broker stops.
  void shutdown();

 private:
  void wait_readable();
  void on_readable();
  void process(std::span<const std::uint8_t> bytes);
  // False when processing must stop (moved away or closing).
  bool handle_first_packet(const mqtt::Frame& frame);
  void move_to(std::uint32_t shard, mqtt::Connect&& connect);
  void on_written(const boost::system::error_code& error, std::size_t bytes);
  void terminate();
  void mark_dirty();

  Worker& worker_;
  boost::asio::ip::tcp::socket socket_;
  mqtt::FrameDecoder decoder_;
  std::optional<broker::ClientProtocol> protocol_;
  mqtt::ProtocolVersion version_ = mqtt::ProtocolVersion::kV3_1_1;
  OutputBuffer pending_;  // filled during this turn
  OutputBuffer writing_;  // handed to the socket
  bool writing_now_ = false;
  bool dirty_ = false;
  bool closing_ = false;         // close once everything queued is written
  bool reading_paused_ = false;  // the client is behind on reading what we send
  broker::Clock::time_point closing_since_;
  bool terminated_ = false;
  broker::Clock::time_point connected_at_;
  broker::Clock::time_point last_read_;
};

}  // namespace sluice::net
