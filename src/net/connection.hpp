// One client's TCP connection. It reads with the worker's shared buffer (an
// idle connection holds no read buffer of its own), frames and decodes
// packets, hands them to its ClientProtocol, and writes what the broker
// queued once per loop turn as one gathered write.
//
// The first packet decides where the connection lives: its client id maps to
// one shard, and a connection that arrived on another worker moves there
// with the bytes it had read after CONNECT.
#pragma once

#include <atomic>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <memory>
#include <optional>
#include <vector>

#include "broker/client_link.hpp"
#include "broker/client_protocol.hpp"
#include "mqtt/frame_decoder.hpp"
#include "net/output_buffer.hpp"
#include "net/tls.hpp"
#include "net/websocket.hpp"

namespace sluice::net {

class Worker;

// A socket tied to its worker's io_context. Asio's default tcp::socket carries
// a polymorphic executor: 40 bytes more in every connection, idle or not.
using Socket =
    boost::asio::basic_stream_socket<boost::asio::ip::tcp, boost::asio::io_context::executor_type>;

// A listener's connections: accepted counted by its acceptor, open ones
// by each connection for as long as it lives (on any worker).
struct ListenerCount {
  std::atomic<std::uint64_t> accepted{0};
  std::atomic<std::uint64_t> open{0};
};

class Connection : public std::enable_shared_from_this<Connection>, public broker::ClientLink {
 public:
  // Counts this connection among `count`'s open ones until it is destroyed.
  void count_in(std::shared_ptr<ListenerCount> count) {
    count->open.fetch_add(1, std::memory_order_relaxed);
    listener_count_ = std::move(count);
  }
  // Takes over the count of the connection this one was moved from (it
  // counted itself and handed it on): not counted twice.
  void adopt_count(std::shared_ptr<ListenerCount> count) { listener_count_ = std::move(count); }

  // `tls` is set for a listener with transport: tls (its handshake is done
  // first, unless the connection moved here after it).
  // `ws` is set for ws and wss listeners: WebSocket framing over the stream.
  Connection(Worker& worker, Socket socket, std::unique_ptr<TlsStream> tls = nullptr,
             std::unique_ptr<WebSocketSession> ws = nullptr);
  ~Connection() override;

  // A new connection: waits for CONNECT.
  void start();
  // A connection moved here after its CONNECT was read on another worker.
  void start_moved(mqtt::Connect&& connect, std::vector<std::uint8_t> unread);

  // broker::ClientLink
  void send(const mqtt::Packet& packet) override;
  void send_publish(const mqtt::PublishHead& head, const broker::MessagePtr& message) override;
  void send_plain_ack(mqtt::PacketType type, std::uint16_t packet_id) override;
  std::size_t unsent_bytes() const override {
    return output_ ? output_->pending.size() + output_->writing.size() : 0;
  }
  void close() override;
  std::string peer_address() const override;
  void hold_input() override { input_held_ = true; }
  void release_input() override;

  // Called by the worker: write what is queued (once per loop turn).
  void flush();
  // Called by the worker every second: connect and keep-alive deadlines.
  void check_deadlines(broker::Clock::time_point now);
  // Called by the worker when the broker stops.
  void shutdown();
  // Its address connects too often: its CONNECT will be refused.
  void refuse_over_connection_rate() { over_connection_rate_ = true; }
  // Its place in its worker's list of connections, which only the worker sets.
  std::uint32_t worker_slot() const { return worker_slot_; }
  void set_worker_slot(std::uint32_t slot) { worker_slot_ = slot; }
  // The rate limits of the listener it came through (nullptr: the global ones).
  void set_rate_limits(const config::RateLimitConfig* limits) { rate_limits_ = limits; }

 private:
  void wait_readable();
  void on_readable();
  // What reading does after the bytes at hand are processed.
  enum class Next { kWaitReadable, kWaitWritable, kReadAgain, kEnd };
  struct ReadResult {
    std::size_t bytes;
    Next next;
  };
  // Reads what the socket (or TLS) has into `buffer`, and says what comes next:
  // kReadAgain when TLS filled the buffer and may hold more than the socket
  // will signal, kEnd when the connection closed or failed.
  ReadResult read_into(std::span<std::uint8_t> buffer);
  void continue_reading(Next next);
  // Runs `next` on this connection once the socket is ready for `type`.
  void wait_then(boost::asio::socket_base::wait_type type, void (Connection::*next)());
  void continue_handshake();
  // Makes the ClientProtocol, with what the listener and the TLS layer say.
  void prepare_protocol();
  // With use_identity_as_username: the verified client certificate's CN.
  void apply_certificate_identity();
  void write_tls();
  void release_staged();
  void process(std::span<const std::uint8_t> bytes);
  // Hands the frames the decoder holds to the protocol, until input is held
  // or more bytes are needed.
  void drain_frames();
  void keep_unread_input();
  // After input was held: the packets that waited, then reading again.
  void resume_input();
  void on_malformed(const mqtt::DecodeError& error);
  // False when processing must stop (moved away or closing).
  bool handle_first_packet(const mqtt::Frame& frame);
  void move_to(std::uint32_t shard, mqtt::Connect&& connect);
  void on_written(const boost::system::error_code& error, std::size_t bytes);
  // Everything queued is written and the connection is closing: half-close,
  // read and discard (bounded), then close (see kLingerTime).
  void linger();
  void discard_input();
  void terminate();
  void mark_dirty();

  Worker& worker_;
  Socket socket_;
  // What only TLS and WebSocket connections need: a plain one (most) does
  // not carry it.
  struct Layers {
    std::unique_ptr<TlsStream> tls;
    std::unique_ptr<WebSocketSession> ws;
    std::vector<std::uint8_t> ws_in;     // MQTT bytes unwrapped from this read's frames
    std::vector<std::uint8_t> ws_reply;  // HTTP response, pong and close frames to send
    // TLS and WebSocket write one contiguous buffer (records, one frame).
    std::vector<std::uint8_t> staged;
    std::size_t staged_written = 0;
  };
  std::unique_ptr<Layers> layers_;
  TlsStream* tls() const { return layers_ ? layers_->tls.get() : nullptr; }
  WebSocketSession* ws() const { return layers_ ? layers_->ws.get() : nullptr; }
  mqtt::FrameDecoder decoder_;
  std::optional<broker::ClientProtocol> protocol_;
  std::shared_ptr<ListenerCount> listener_count_;  // set by count_in
  mqtt::ProtocolVersion version_ = mqtt::ProtocolVersion::kV3_1_1;
  // Lent by the worker while there is something to write, and given back
  // once everything is written: an idle connection holds no output buffers.
  std::unique_ptr<ConnectionOutput> output_;
  ConnectionOutput& output();
  // What arrived behind the packet that held input, until it is released.
  std::unique_ptr<std::vector<std::uint8_t>> held_bytes_;
  bool writing_now_ = false;
  bool dirty_ = false;
  bool closing_ = false;                     // close once everything queued is written
  bool reading_paused_ = false;              // the client is behind on reading what we send
  bool input_held_ = false;                  // the protocol takes no packets for now (hold_input)
  bool reading_stopped_ = false;             // and reading stopped for it: release_input resumes it
  broker::Clock::time_point closing_since_;  // since close(), then since linger()
  bool lingering_ = false;
  std::uint32_t discarded_ = 0;  // bytes read and dropped while lingering
  bool terminated_ = false;
  bool over_connection_rate_ = false;
  std::uint32_t worker_slot_ = 0;
  const config::RateLimitConfig* rate_limits_ = nullptr;
  broker::Clock::time_point connected_at_;
  broker::Clock::time_point last_read_;
};

}  // namespace sluice::net
