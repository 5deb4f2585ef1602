// The load generator's event loop: non-blocking connects, CONNECT and
// SUBSCRIBE, publishing within the window and rate, reading and checking
// deliveries, and one write per connection per loop turn.
#include "worker.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <cerrno>
#include <cmath>
#include <cstdio>
#include <unordered_map>

namespace sluice::load {
namespace {

constexpr std::size_t kReadChunk = 64 * 1024;
// A publisher stops writing more while this much is unsent: TCP's own
// back-pressure, without building an unbounded buffer.
constexpr std::size_t kMaxUnsent = 256 * 1024;
constexpr int kMessagesPerTurn = 256;  // per publisher, so no one starves the loop
constexpr std::size_t kMaxPendingConnects = 128;

}  // namespace

std::uint64_t monotonic_ns() {
  timespec now{};
  clock_gettime(CLOCK_MONOTONIC, &now);
  return static_cast<std::uint64_t>(now.tv_sec) * 1'000'000'000ull +
         static_cast<std::uint64_t>(now.tv_nsec);
}

struct Worker::Connection {
  enum class State {
    kIdle,
    kConnecting,
    kHandshaking,
    kAwaitingConnack,
    kAwaitingSuback,
    kReady,
    kClosed
  };
  ClientSpec spec;
  int fd = -1;
  SSL* ssl = nullptr;  // with --tls-ca
  State state = State::kIdle;
  Buffer in;
  std::size_t in_used = 0;
  Buffer out;
  std::size_t out_sent = 0;
  bool dirty = false;
  bool want_write = false;
  // publisher
  std::uint64_t next_sequence = 0;
  std::uint32_t inflight = 0;
  std::uint16_t next_packet_id = 0;
  // subscriber: one tracker per publisher index heard from
  std::unordered_map<std::uint32_t, SequenceTracker> trackers;

  bool publisher() const { return !spec.publish_topic.empty(); }
  std::size_t unsent() const { return out.size() - out_sent; }
};

Worker::Worker(const Settings& settings, Shared& shared, std::uint32_t publishers)
    : settings_(settings), shared_(shared), publishers_(publishers) {
  epoll_ = epoll_create1(EPOLL_CLOEXEC);
  payload_.assign(std::max(settings_.payload_bytes, kPayloadHeadBytes), 'x');
  if (!settings_.tls_ca.empty()) {
    tls_ = SSL_CTX_new(TLS_client_method());
    SSL_CTX_load_verify_locations(tls_, settings_.tls_ca.c_str(), nullptr);
    SSL_CTX_set_verify(tls_, SSL_VERIFY_PEER, nullptr);
    SSL_CTX_set_mode(tls_, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
  }
}

namespace {

// Closes with a reset: a closing client keeps its port in TIME_WAIT for a
// minute, and the 10,000 of one conns run would slow the connects of the
// next broker measured.
void close_without_time_wait(int fd) {
  const linger reset{1, 0};
  setsockopt(fd, SOL_SOCKET, SO_LINGER, &reset, sizeof reset);
  close(fd);
}

}  // namespace

Worker::~Worker() {
  for (auto& connection : connections_) {
    SSL_free(connection->ssl);
    if (connection->fd >= 0) close_without_time_wait(connection->fd);
  }
  if (epoll_ >= 0) close(epoll_);
  SSL_CTX_free(tls_);
}

void Worker::add(ClientSpec spec) {
  auto connection = std::make_unique<Connection>();
  connection->spec = std::move(spec);
  connections_.push_back(std::move(connection));
}

void Worker::start() {
  thread_ = std::thread([this] { run(); });
}

void Worker::join() {
  if (thread_.joinable()) thread_.join();
}

void Worker::open(Connection& c) {
  c.fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (c.fd < 0) return fail(c);
  const int one = 1;
  setsockopt(c.fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  const bool subscriber = !c.spec.subscribe_filter.empty();
  const int port =
      subscriber && settings_.subscriber_port != 0 ? settings_.subscriber_port : settings_.port;
  address.sin_port = htons(static_cast<std::uint16_t>(port));
  inet_pton(AF_INET, settings_.host.c_str(), &address.sin_addr);
  const int result = connect(c.fd, reinterpret_cast<const sockaddr*>(&address), sizeof address);
  if (result < 0 && errno != EINPROGRESS) return fail(c);
  c.state = Connection::State::kConnecting;
  epoll_event event{};
  event.events = EPOLLIN | EPOLLOUT;
  event.data.ptr = &c;
  epoll_ctl(epoll_, EPOLL_CTL_ADD, c.fd, &event);
  c.want_write = true;
}

void Worker::fail(Connection& c) {
  if (c.state == Connection::State::kClosed) return;
  if (c.fd >= 0) {
    epoll_ctl(epoll_, EPOLL_CTL_DEL, c.fd, nullptr);
    close(c.fd);
    c.fd = -1;
  }
  c.state = Connection::State::kClosed;
  shared_.failed.fetch_add(1, std::memory_order_relaxed);
}

// Plain or TLS, the answer reads like send/recv's: bytes, 0 for closed, -1
// with errno EAGAIN when the socket must become ready first.
ssize_t Worker::transport_send(Connection& c, const std::uint8_t* data, std::size_t size) {
  if (c.ssl == nullptr) return ::send(c.fd, data, size, MSG_NOSIGNAL);
  std::size_t written = 0;
  const int result = SSL_write_ex(c.ssl, data, size, &written);
  if (result == 1) return static_cast<ssize_t>(written);
  return tls_failure(c, result);
}

ssize_t Worker::transport_recv(Connection& c, std::uint8_t* data, std::size_t size) {
  if (c.ssl == nullptr) return ::recv(c.fd, data, size, 0);
  std::size_t got = 0;
  const int result = SSL_read_ex(c.ssl, data, size, &got);
  if (result == 1) return static_cast<ssize_t>(got);
  return tls_failure(c, result);
}

ssize_t Worker::tls_failure(Connection& c, int result) {
  const int error = SSL_get_error(c.ssl, result);
  ERR_clear_error();
  if (error == SSL_ERROR_WANT_READ || error == SSL_ERROR_WANT_WRITE) {
    errno = EAGAIN;
    return -1;
  }
  if (error == SSL_ERROR_ZERO_RETURN) return 0;
  errno = EIO;
  return -1;
}

void Worker::continue_handshake(Connection& c) {
  const int result = SSL_do_handshake(c.ssl);
  if (result == 1) return send_connect(c);
  if (tls_failure(c, result) < 0 && errno == EAGAIN) return;
  fail(c);
}

void Worker::send_connect(Connection& c) {
  c.state = Connection::State::kAwaitingConnack;
  const bool keep_session = settings_.persistent && !c.spec.subscribe_filter.empty();
  append_connect(c.out, settings_.version, c.spec.client_id, keep_session);
  flush(c);
}

void Worker::flush(Connection& c) {
  c.dirty = false;
  while (c.unsent() > 0 && c.fd >= 0) {
    const ssize_t n = transport_send(c, c.out.data() + c.out_sent, c.unsent());
    if (n > 0) {
      c.out_sent += static_cast<std::size_t>(n);
      continue;
    }
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) break;
    return fail(c);
  }
  if (c.unsent() == 0) {
    c.out.clear();
    c.out_sent = 0;
  }
  const bool want_write = c.unsent() > 0;
  if (want_write != c.want_write && c.fd >= 0) {
    epoll_event event{};
    event.events = EPOLLIN | (want_write ? EPOLLOUT : 0u);
    event.data.ptr = &c;
    epoll_ctl(epoll_, EPOLL_CTL_MOD, c.fd, &event);
    c.want_write = want_write;
  }
}

void Worker::on_readable(Connection& c) {
  while (c.fd >= 0) {
    if (c.in.size() - c.in_used < kReadChunk) c.in.resize(c.in_used + kReadChunk);
    const ssize_t n = transport_recv(c, c.in.data() + c.in_used, c.in.size() - c.in_used);
    if (n == 0) return fail(c);
    if (n < 0) {
      if (errno == EAGAIN || errno == EWOULDBLOCK) break;
      return fail(c);
    }
    c.in_used += static_cast<std::size_t>(n);
    std::size_t at = 0;
    while (c.fd >= 0) {
      std::size_t consumed = 0;
      bool malformed = false;
      const auto frame =
          next_frame(std::span(c.in.data() + at, c.in_used - at), consumed, malformed);
      if (malformed) return fail(c);
      if (!frame) break;
      on_frame(c, *frame);
      at += consumed;
    }
    if (c.fd < 0) return;
    std::copy(c.in.begin() + static_cast<std::ptrdiff_t>(at),
              c.in.begin() + static_cast<std::ptrdiff_t>(c.in_used), c.in.begin());
    c.in_used -= at;
    // Drained for now; TLS reads a record at a time and may hold more than
    // the socket will signal, so it reads until OpenSSL says to wait.
    if (c.ssl == nullptr && static_cast<std::size_t>(n) < kReadChunk) break;
  }
}

void Worker::on_frame(Connection& c, const Frame& frame) {
  switch (frame.type) {
    case PacketType::kConnack:
      if (connack_code(frame) != 0) return fail(c);
      if (!c.spec.subscribe_filter.empty()) {
        Buffer properties;
        if (!settings_.manual_ack_topic.empty())
          append_user_property(properties, "ack-mode", "manual");
        append_subscribe(c.out, settings_.version, 1, c.spec.subscribe_filter, settings_.qos,
                         properties);
        c.state = Connection::State::kAwaitingSuback;
      } else {
        c.state = Connection::State::kReady;
        shared_.ready.fetch_add(1, std::memory_order_relaxed);
      }
      break;
    case PacketType::kSuback:
      c.state = Connection::State::kReady;
      shared_.ready.fetch_add(1, std::memory_order_relaxed);
      break;
    case PacketType::kPublish:
      on_publish(c, frame);
      break;
    case PacketType::kPuback:
    case PacketType::kPubcomp:
      if (c.inflight > 0) --c.inflight;
      shared_.acked.fetch_add(1, std::memory_order_relaxed);
      break;
    case PacketType::kPubrec:
      append_ack(c.out, PacketType::kPubrel, packet_id_of(frame));
      break;
    case PacketType::kPubrel:
      append_ack(c.out, PacketType::kPubcomp, packet_id_of(frame));
      break;
    default:
      break;
  }
  if (!c.dirty && !c.out.empty()) {
    c.dirty = true;
    dirty_.push_back(&c);
  }
}

void Worker::on_publish(Connection& c, const Frame& frame) {
  const auto publish = parse_publish(frame, settings_.version);
  PayloadHead head;
  if (!publish || !read_head(publish->payload, head) || head.publisher >= publishers_) {
    ++totals_.undecodable;
    return;
  }
  const std::uint64_t now = monotonic_ns();
  totals_.latency.add(now > head.sent_ns ? (now - head.sent_ns) / 1000 : 0);
  c.trackers[head.publisher].saw(head.sequence);
  shared_.received.fetch_add(1, std::memory_order_relaxed);
  shared_.received_from[head.publisher].fetch_add(1, std::memory_order_relaxed);
  shared_.last_receive_ns.store(now, std::memory_order_relaxed);
  if (publish->qos == 1) append_ack(c.out, PacketType::kPuback, publish->packet_id);
  if (publish->qos == 2) append_ack(c.out, PacketType::kPubrec, publish->packet_id);
  if (!settings_.manual_ack_topic.empty()) {
    if (const auto id = user_property(publish->properties, "message-id")) {
      Buffer properties;
      append_user_property(properties, "message-id", *id);
      append_publish(c.out, settings_.version, settings_.manual_ack_topic, 0, 0, {}, properties);
    }
  }
}

void Worker::publish_some(Connection& c, std::uint64_t now_ns) {
  std::uint64_t allowed = kMessagesPerTurn;
  if (settings_.rate_per_publisher > 0) {
    const double elapsed_s =
        static_cast<double>(now_ns - shared_.run_started_ns.load(std::memory_order_relaxed)) / 1e9;
    const auto due =
        static_cast<std::uint64_t>(std::floor(elapsed_s * settings_.rate_per_publisher));
    allowed = due > c.next_sequence ? std::min<std::uint64_t>(due - c.next_sequence, allowed) : 0;
  }
  if (settings_.qos == 0 && settings_.window > 0) {
    const std::uint64_t delivered =
        shared_.received_from[c.spec.publisher_index].load(std::memory_order_relaxed) /
        settings_.deliveries_per_message;
    const std::uint64_t outstanding = c.next_sequence - std::min(delivered, c.next_sequence);
    allowed = outstanding < settings_.window
                  ? std::min<std::uint64_t>(allowed, settings_.window - outstanding)
                  : 0;
  }
  std::uint64_t sent = 0;
  for (; sent < allowed && c.unsent() < kMaxUnsent; ++sent) {
    if (settings_.qos > 0 && c.inflight >= settings_.inflight) break;
    write_head(payload_, {c.spec.publisher_index, c.next_sequence, monotonic_ns()});
    std::uint16_t packet_id = 0;
    if (settings_.qos > 0) {
      c.next_packet_id =
          static_cast<std::uint16_t>(c.next_packet_id == 65535 ? 1 : c.next_packet_id + 1);
      packet_id = c.next_packet_id;
      ++c.inflight;
    }
    append_publish(c.out, settings_.version, c.spec.publish_topic, settings_.qos, packet_id,
                   payload_);
    ++c.next_sequence;
  }
  if (sent > 0) {
    shared_.sent.fetch_add(sent, std::memory_order_relaxed);
    if (!c.dirty) {
      c.dirty = true;
      dirty_.push_back(&c);
    }
  }
}

void Worker::run() {
  std::size_t next_to_open = 0;
  std::size_t pending_connects = 0;
  std::vector<epoll_event> events(512);
  while (true) {
    const Phase phase = shared_.phase.load(std::memory_order_acquire);
    if (phase == Phase::kStop) break;
    // Open connections a bounded number at a time, so the listen backlog
    // does not overflow into SYN retries (which would measure the kernel's
    // one-second retry timer, not the broker).
    while (next_to_open < connections_.size() && pending_connects < kMaxPendingConnects) {
      open(*connections_[next_to_open++]);
      ++pending_connects;
    }
    const bool publishing = phase == Phase::kRun;
    const int timeout_ms = publishing ? (settings_.rate_per_publisher > 0 ? 1 : 0) : 10;
    const int n = epoll_wait(epoll_, events.data(), static_cast<int>(events.size()), timeout_ms);
    for (int i = 0; i < n; ++i) {
      auto& c = *static_cast<Connection*>(events[static_cast<std::size_t>(i)].data.ptr);
      const std::uint32_t flags = events[static_cast<std::size_t>(i)].events;
      if (c.state == Connection::State::kConnecting && (flags & (EPOLLOUT | EPOLLERR | EPOLLHUP))) {
        --pending_connects;
        int error = 0;
        socklen_t length = sizeof error;
        getsockopt(c.fd, SOL_SOCKET, SO_ERROR, &error, &length);
        if (error != 0) {
          fail(c);
          continue;
        }
        if (tls_ != nullptr) {
          c.ssl = SSL_new(tls_);
          SSL_set_fd(c.ssl, c.fd);
          SSL_set_connect_state(c.ssl);
          c.state = Connection::State::kHandshaking;
          continue_handshake(c);
          continue;
        }
        send_connect(c);
        continue;
      }
      if (c.state == Connection::State::kHandshaking) {
        continue_handshake(c);
        continue;
      }
      if (flags & (EPOLLIN | EPOLLHUP | EPOLLERR)) on_readable(c);
      if ((flags & EPOLLOUT) && c.fd >= 0) flush(c);
    }
    if (publishing) {
      const std::uint64_t now = monotonic_ns();
      for (auto& c : connections_) {
        if (c->state == Connection::State::kReady && c->publisher()) publish_some(*c, now);
      }
    }
    std::vector<Connection*> dirty;
    dirty.swap(dirty_);
    for (Connection* c : dirty)
      flush(*c);
    dirty.clear();
    if (dirty_.empty()) dirty_.swap(dirty);  // keep the capacity
  }
  finish();
}

void Worker::finish() {
  for (auto& c : connections_) {
    for (const auto& [publisher_index, tracker] : c->trackers) {
      totals_.distinct += tracker.distinct();
      totals_.duplicated += tracker.duplicated();
      totals_.reordered += tracker.reordered();
    }
    if (c->fd >= 0) {
      Buffer bye;
      append_disconnect(bye);
      ::send(c->fd, bye.data(), bye.size(), MSG_NOSIGNAL);
    }
  }
}

}  // namespace sluice::load
