// Reading, framing and writing for one client connection.
#include "net/connection.hpp"

#include <spdlog/spdlog.h>
#include <unistd.h>

#include <boost/asio/write.hpp>

#include "mqtt/packet_decoder.hpp"
#include "net/worker.hpp"

namespace sluice::net {

namespace asio = boost::asio;
using boost::system::error_code;

namespace {
// How long a closing connection may take to write its last packets.
constexpr auto kClosingGrace = std::chrono::seconds(5);
// After its last packet is written, a closing connection reads and discards
// what the client still sends, for at most this long and this much: closing
// a socket with unread input makes the kernel reset the connection, and the
// reset can reach the client before the DISCONNECT or CONNACK that says why.
constexpr auto kLingerTime = std::chrono::seconds(2);
// While the broker stops, a client gets this long to go.
constexpr auto kShutdownLingerTime = std::chrono::milliseconds(500);
constexpr std::size_t kLingerBytes = 16 * 1024 * 1024;
}  // namespace

Connection::Connection(Worker& worker, Socket socket, std::unique_ptr<TlsStream> tls,
                       std::unique_ptr<WebSocketSession> ws)
    : worker_(worker),
      socket_(std::move(socket)),
      decoder_(worker.broker().config().limits.max_packet_bytes),
      connected_at_(broker::Clock::now()),
      last_read_(connected_at_) {
  error_code ignored;
  socket_.set_option(asio::ip::tcp::no_delay(true), ignored);
  socket_.non_blocking(true, ignored);
  if (tls || ws) {
    layers_ = std::make_unique<Layers>();
    layers_->tls = std::move(tls);
    layers_->ws = std::move(ws);
  }
}

Connection::~Connection() {
  // The protocol goes first: ending it may still queue packets on this connection.
  protocol_.reset();
  if (listener_count_) listener_count_->open.fetch_sub(1, std::memory_order_relaxed);
}

void Connection::start() {
  if (tls()) return continue_handshake();
  wait_readable();
}

void Connection::wait_then(asio::socket_base::wait_type type, void (Connection::*next)()) {
  if (terminated_) return;
  socket_.async_wait(type, [self = shared_from_this(), next](const error_code& error) {
    if (error) return self->terminate();
    ((*self).*next)();
  });
}

void Connection::continue_handshake() {
  if (terminated_) return;
  // Bounded by connect_timeout_s like any connection without CONNECT yet.
  switch (tls()->handshake()) {
    case TlsStream::Want::kNone:
      return on_readable();  // the client's first bytes may have come with the handshake
    case TlsStream::Want::kRead:
      return wait_then(asio::socket_base::wait_read, &Connection::continue_handshake);
    case TlsStream::Want::kWrite:
      return wait_then(asio::socket_base::wait_write, &Connection::continue_handshake);
    default:
      spdlog::debug("event=tls_handshake_failed error=\"{}\"", tls()->last_error());
      return terminate();
  }
}

void Connection::start_moved(mqtt::Connect&& connect, std::vector<std::uint8_t> unread) {
  version_ = connect.version;
  prepare_protocol();
  protocol_->on_connect(std::move(connect));
  process(unread);
  if (input_held_) {
    reading_stopped_ = true;
  } else if (!terminated_) {
    wait_readable();
  }
  mark_dirty();
}

void Connection::prepare_protocol() {
  protocol_.emplace(worker_.shard(), *this);
  if (rate_limits_ != nullptr) protocol_->set_rate_limits(rate_limits_);
  apply_certificate_identity();
}

void Connection::apply_certificate_identity() {
  if (!tls() || !tls()->identity_as_username()) return;
  if (auto name = tls()->peer_common_name()) protocol_->set_certificate_identity(std::move(*name));
}

void Connection::wait_readable() {
  if (terminated_ || closing_) return;
  socket_.async_wait(asio::ip::tcp::socket::wait_read,
                     [self = shared_from_this()](const error_code& error) {
                       if (error) return self->terminate();
                       self->on_readable();
                     });
}

Connection::ReadResult Connection::read_into(std::span<std::uint8_t> buffer) {
  if (!tls()) {
    error_code error;
    const std::size_t n = socket_.read_some(asio::buffer(buffer.data(), buffer.size()), error);
    if (error == asio::error::would_block) return {0, Next::kWaitReadable};
    if (error || n == 0) return {0, Next::kEnd};
    return {n, Next::kWaitReadable};
  }
  // TLS: records until OpenSSL needs the socket again, or until the buffer is
  // full (then it may still hold decrypted bytes the socket will not signal).
  std::size_t n = 0;
  while (n < buffer.size()) {
    const TlsStream::Result result = tls()->read(buffer.subspan(n));
    switch (result.want) {
      case TlsStream::Want::kNone:
        n += result.bytes;
        continue;
      case TlsStream::Want::kRead:
        return {n, Next::kWaitReadable};
      case TlsStream::Want::kWrite:
        return {n, Next::kWaitWritable};
      default:
        return {n, Next::kEnd};
    }
  }
  return {n, Next::kReadAgain};
}

void Connection::continue_reading(Next next) {
  switch (next) {
    case Next::kWaitReadable:
      return wait_readable();
    case Next::kWaitWritable:
      return wait_then(asio::socket_base::wait_write, &Connection::on_readable);
    case Next::kReadAgain:
      asio::post(socket_.get_executor(), [self = shared_from_this()] { self->on_readable(); });
      return;
    case Next::kEnd:
      return terminate();
  }
}

void Connection::on_readable() {
  if (terminated_) return;
  if (lingering_) return discard_input();
  const std::span<std::uint8_t> buffer = worker_.read_buffer();
  const auto [n, next] = read_into(buffer);
  if (n == 0) return continue_reading(next);
  broker::ShardStats::add(worker_.shard().stats().bytes_received, n);
  last_read_ = broker::Clock::now();
  std::span<const std::uint8_t> bytes = buffer.first(n);
  if (ws()) {
    // WebSocket: the upgrade, then frames unwrapped into MQTT bytes.
    layers_->ws_in.clear();
    const auto status = ws()->consume(bytes, layers_->ws_in, layers_->ws_reply);
    if (!layers_->ws_reply.empty()) mark_dirty();
    if (status == WebSocketSession::Status::kClose) {
      close();  // after the HTTP refusal or the close frame in ws_reply
      worker_.schedule_flush();
      return;
    }
    bytes = layers_->ws_in;
  }
  process(bytes);
  worker_.schedule_flush();
  if (input_held_) {
    reading_stopped_ = true;
    return;
  }
  // A client that sends but does not read (its PUBACKs, PINGRESPs... pile up)
  // is not read from until it catches up: back-pressure instead of memory.
  if (unsent_bytes() > worker_.shard().limits().max_write_buffer_bytes) {
    reading_paused_ = true;
    return;
  }
  continue_reading(next);
}

void Connection::process(std::span<const std::uint8_t> bytes) {
  decoder_.feed(bytes);
  drain_frames();
  if (input_held_) keep_unread_input();
}

void Connection::keep_unread_input() {
  // The decoder points into bytes that are not ours to keep (the worker's
  // read buffer, a moved connection's first bytes): what it has not framed
  // yet is copied, and it goes on from the copy when input is released.
  const std::span<const std::uint8_t> unread = decoder_.unread_input();
  if (unread.empty()) return held_bytes_.reset();
  auto kept = std::make_unique<std::vector<std::uint8_t>>(unread.begin(), unread.end());
  held_bytes_ = std::move(kept);  // may free the bytes `unread` pointed into: copied first
  decoder_.feed(*held_bytes_);
}

void Connection::drain_frames() {
  mqtt::Frame frame;
  while (!closing_ && !terminated_ && !input_held_) {
    switch (decoder_.next(frame)) {
      case mqtt::FrameDecoder::Status::kNeedMore:
        return;
      case mqtt::FrameDecoder::Status::kError:
        if (protocol_) {
          protocol_->on_decode_error(decoder_.error(), std::nullopt);
        } else {
          close();
        }
        return;
      case mqtt::FrameDecoder::Status::kFrame:
        break;
    }
    if (!protocol_) {
      if (!handle_first_packet(frame)) return;
      continue;
    }
    // The packets every message brings skip the Packet variant: a PUBLISH is
    // decoded into one Publish this thread reuses, and a bare PUBACK, PUBREC
    // or PUBCOMP is just its packet id.
    std::uint16_t packet_id = 0;
    if (frame.type() == mqtt::PacketType::kPublish) {
      thread_local mqtt::Publish publish;
      const mqtt::DecodeError error = mqtt::decode_publish_into(frame, version_, publish);
      if (!error.ok()) return on_malformed(error);
      protocol_->on_publish_packet(std::move(publish));
    } else if (mqtt::decode_plain_ack(frame, packet_id)) {
      protocol_->on_plain_ack(frame.type(), packet_id);
    } else {
      mqtt::Packet packet;
      const mqtt::DecodeError error = mqtt::decode_packet(frame, version_, packet);
      if (!error.ok()) return on_malformed(error);
      protocol_->on_packet(std::move(packet));
    }
  }
}

void Connection::release_input() {
  input_held_ = false;
  if (!reading_stopped_) return;
  reading_stopped_ = false;
  // In a handler of its own: the caller may be inside the protocol.
  asio::post(socket_.get_executor(), [self = shared_from_this()] { self->resume_input(); });
}

void Connection::resume_input() {
  if (terminated_) return;
  drain_frames();  // the decoder still points at held_bytes_
  worker_.schedule_flush();
  if (input_held_) {
    keep_unread_input();
    reading_stopped_ = true;
    return;
  }
  held_bytes_.reset();                      // all framed, or copied into the decoder's own buffer
  last_read_ = broker::Clock::now();        // its keep alive counts from here again
  if (reading_paused_ || closing_) return;  // on_written resumes a paused read
  on_readable();  // TLS may hold decrypted bytes the socket will not signal
}

void Connection::on_malformed(const mqtt::DecodeError& error) {
  spdlog::debug("event=malformed client={} rule={} detail=\"{}\"", protocol_->client_id(),
                error.rule, error.detail);
  protocol_->on_decode_error(error, std::nullopt);
}

bool Connection::handle_first_packet(const mqtt::Frame& frame) {
  if (frame.type() != mqtt::PacketType::kConnect) {  // [MQTT-3.1.0-1]
    close();
    return false;
  }
  mqtt::Connect connect;
  const mqtt::DecodeError error = mqtt::decode_connect(frame, connect);
  version_ = connect.version;
  if (!error.ok()) {
    spdlog::debug("event=bad_connect rule={} detail=\"{}\"", error.rule, error.detail);
    protocol_.emplace(worker_.shard(), *this);
    protocol_->on_decode_error(error, connect.version);
    return false;
  }
  if (over_connection_rate_) {
    protocol_.emplace(worker_.shard(), *this);
    protocol_->refuse_over_connection_rate(connect.version);
    return false;
  }
  const std::uint32_t shard = connect.client_id.empty()
                                  ? worker_.index()
                                  : worker_.broker().shard_for_client(connect.client_id);
  if (shard != worker_.index()) {
    move_to(shard, std::move(connect));
    return false;
  }
  prepare_protocol();
  protocol_->on_connect(std::move(connect));
  mark_dirty();
  return true;
}

void Connection::move_to(std::uint32_t shard, mqtt::Connect&& connect) {
  // The socket changes threads as a file descriptor: dup it, close this
  // handle (which leaves this worker's epoll set), and let the target build
  // its own socket from the copy.
  error_code error;
  const auto local = socket_.local_endpoint(error);
  const bool ipv6 = !error && local.address().is_v6();
  const int fd = ::dup(socket_.native_handle());
  const std::span<const std::uint8_t> unread = decoder_.unread_input();
  std::vector<std::uint8_t> rest(unread.begin(), unread.end());
  terminated_ = true;
  error_code ignored;
  socket_.close(ignored);
  worker_.remove(*this);
  if (fd < 0) return;
  // The open count moves with it: this object no longer counts itself.
  worker_.peer(shard).post_moved_connection(
      fd, ipv6, std::move(connect), std::move(rest), layers_ ? std::move(layers_->tls) : nullptr,
      layers_ ? std::move(layers_->ws) : nullptr, rate_limits_, std::move(listener_count_));
}

void Connection::send(const mqtt::Packet& packet) {
  output().pending.append_packet(packet, version_);
  mark_dirty();
}

void Connection::send_publish(const mqtt::PublishHead& head, const broker::MessagePtr& message) {
  output().pending.append_publish(head, version_, message);
  mark_dirty();
}

void Connection::send_plain_ack(mqtt::PacketType type, std::uint16_t packet_id) {
  output().pending.append_plain_ack(type, packet_id);
  mark_dirty();
}

ConnectionOutput& Connection::output() {
  if (!output_) output_ = worker_.lend_output();
  return *output_;
}

void Connection::mark_dirty() {
  if (dirty_ || terminated_) return;
  dirty_ = true;
  worker_.mark_dirty(shared_from_this());
}

std::string Connection::peer_address() const {
  boost::system::error_code ec;
  const auto remote = socket_.remote_endpoint(ec);  // a system call, on demand: nothing kept
  if (ec) return {};
  const auto address = remote.address();
  const std::string host = address.is_v6() ? "[" + address.to_string() + "]" : address.to_string();
  return host + ":" + std::to_string(remote.port());
}

void Connection::close() {
  if (closing_ || terminated_) return;
  closing_ = true;
  closing_since_ = broker::Clock::now();
  mark_dirty();
}

void Connection::flush() {
  dirty_ = false;
  if (terminated_ || writing_now_) return;
  const bool ws_reply = ws() && !layers_->ws_reply.empty();
  if ((!output_ || output_->pending.empty()) && !ws_reply) {
    if (closing_) linger();
    return;
  }
  ConnectionOutput& output = this->output();
  std::swap(output.pending, output.writing);
  OutputBuffer& writing = output.writing;
  writing_now_ = true;
  if (tls() || ws()) {
    // One contiguous buffer: TLS writes its records from it, and WebSocket
    // puts the turn's packets in one binary frame after any control reply.
    layers_->staged.clear();
    layers_->staged_written = 0;
    if (ws()) {
      layers_->staged.insert(layers_->staged.end(), layers_->ws_reply.begin(),
                             layers_->ws_reply.end());
      layers_->ws_reply.clear();
      if (writing.size() > 0)
        WebSocketSession::append_frame_header(layers_->staged, writing.size());
    }
    for (const asio::const_buffer& piece : writing.buffers()) {
      const auto* bytes = static_cast<const std::uint8_t*>(piece.data());
      layers_->staged.insert(layers_->staged.end(), bytes, bytes + piece.size());
    }
    if (tls()) return write_tls();
    asio::async_write(socket_, asio::buffer(layers_->staged),
                      [self = shared_from_this()](const error_code& error, std::size_t bytes) {
                        self->release_staged();
                        self->on_written(error, bytes);
                      });
    return;
  }
  // A span, not the vector: Asio copies the buffer sequence into the
  // operation, and copying a vector would allocate on every write.
  asio::async_write(socket_, std::span<const asio::const_buffer>(writing.buffers()),
                    [self = shared_from_this()](const error_code& error, std::size_t bytes) {
                      self->on_written(error, bytes);
                    });
}

void Connection::write_tls() {
  if (terminated_) return;
  while (layers_->staged_written < layers_->staged.size()) {
    const TlsStream::Result result = tls()->write(
        std::span<const std::uint8_t>(layers_->staged).subspan(layers_->staged_written));
    switch (result.want) {
      case TlsStream::Want::kNone:
        layers_->staged_written += result.bytes;
        continue;
      case TlsStream::Want::kWrite:
        return wait_then(asio::socket_base::wait_write, &Connection::write_tls);
      case TlsStream::Want::kRead:
        return wait_then(asio::socket_base::wait_read, &Connection::write_tls);
      default:
        return on_written(asio::error::connection_reset, 0);
    }
  }
  const std::size_t bytes = layers_->staged.size();
  release_staged();
  on_written({}, bytes);
}

void Connection::release_staged() {
  layers_->staged.clear();
  // An idle connection keeps no large buffer.
  if (layers_->staged.capacity() > 64 * 1024) std::vector<std::uint8_t>().swap(layers_->staged);
}

void Connection::on_written(const error_code& error, std::size_t bytes) {
  writing_now_ = false;
  output_->writing.clear();
  if (error) return terminate();
  broker::ShardStats::add(worker_.shard().stats().bytes_sent, bytes);
  if (protocol_ && !closing_) protocol_->on_writable();
  flush();
  if (!writing_now_ && output_ && output_->pending.empty()) {
    worker_.return_output(std::move(output_));
  }
  worker_.schedule_flush();
  if (reading_paused_ && unsent_bytes() <= worker_.shard().limits().max_write_buffer_bytes) {
    reading_paused_ = false;
    if (tls()) {
      asio::post(socket_.get_executor(), [self = shared_from_this()] { self->on_readable(); });
    } else {
      wait_readable();
    }
  }
}

void Connection::linger() {
  if (lingering_ || terminated_) return;
  lingering_ = true;
  closing_since_ = broker::Clock::now();  // from here, the linger's own bound
  // Done with the broker: the connection no longer counts against
  // max_connections while it waits for the client to go.
  if (protocol_) protocol_->on_connection_lost();
  protocol_.reset();
  worker_.schedule_flush();      // a will, or handed-on messages, may be bound for other workers
  if (tls()) tls()->shutdown();  // close_notify, best effort
  // Half-close: the client reads our last packets, then end of stream.
  boost::system::error_code ignored;
  socket_.shutdown(asio::ip::tcp::socket::shutdown_send, ignored);
  discard_input();
}

void Connection::discard_input() {
  if (terminated_) return;
  const std::span<std::uint8_t> buffer = worker_.read_buffer();
  while (true) {
    error_code error;
    // Raw bytes, TLS or not: nothing of it is read any more.
    const std::size_t n = socket_.read_some(asio::buffer(buffer.data(), buffer.size()), error);
    if (error == asio::error::would_block) break;
    if (error || n == 0) return terminate();  // the client closed too: done
    discarded_ += static_cast<std::uint32_t>(std::min(n, kLingerBytes));
    if (discarded_ > kLingerBytes) return terminate();
  }
  socket_.async_wait(asio::ip::tcp::socket::wait_read,
                     [self = shared_from_this()](const error_code& error) {
                       if (error) return self->terminate();
                       self->discard_input();
                     });
}

void Connection::check_deadlines(broker::Clock::time_point now) {
  if (terminated_) return;
  if (lingering_) {
    if (now - closing_since_ > (worker_.stopping() ? kShutdownLingerTime : kLingerTime)) {
      terminate();
    }
    return;
  }
  if (closing_) {
    // A peer that does not read its last packets does not hold the socket
    // (nor, for long, a broker that stops).
    if (now - closing_since_ > (worker_.stopping() ? kShutdownLingerTime : kClosingGrace)) {
      terminate();
    }
    return;
  }
  if (!protocol_ || !protocol_->connected()) {
    // Also bounds the TLS handshake, the WebSocket upgrade and an AUTH
    // exchange that never ends.
    const auto timeout = std::chrono::seconds(worker_.shard().limits().connect_timeout_s);
    if (now - connected_at_ > timeout) terminate();
    return;
  }
  if (input_held_) return;  // the broker is not reading: the client's silence is not its own
  const std::uint16_t keep_alive = protocol_->keep_alive_s();
  // [MQTT-3.1.2-22] one and a half keep-alive periods without a packet.
  if (keep_alive != 0 && now - last_read_ > std::chrono::milliseconds(keep_alive * 1500)) {
    spdlog::debug("event=keep_alive_timeout client={}", protocol_->client_id());
    protocol_->on_keep_alive_expired();
  }
}

void Connection::shutdown() {
  if (terminated_) return;
  if (lingering_) return terminate();  // the broker stops: no more waiting on the client
  if (protocol_) {
    protocol_->on_server_shutdown();
  } else {
    close();
  }
}

void Connection::terminate() {
  if (terminated_) return;
  terminated_ = true;
  if (protocol_) protocol_->on_connection_lost();
  if (tls()) tls()->shutdown();
  error_code ignored;
  socket_.shutdown(asio::ip::tcp::socket::shutdown_both, ignored);
  socket_.close(ignored);
  worker_.remove(*this);
  worker_.schedule_flush();  // a will or handed-on messages may be bound for other workers
}

}  // namespace sluice::net
