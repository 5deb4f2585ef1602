// One load-generator thread: an epoll loop over its share of the client
// connections. The main thread sets up the connections' roles, then moves
// every worker through the phases together; workers only touch their own
// connections, and the main thread reads their counters when they are done.
#pragma once

#include <sys/types.h>

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "measures.hpp"
#include "wire.hpp"

struct ssl_ctx_st;

namespace sluice::load {

enum class Phase : int { kSetup, kRun, kDrain, kStop };

struct Settings {
  std::string host = "127.0.0.1";
  int port = 1883;
  int version = 4;
  int qos = 0;
  std::size_t payload_bytes = 64;
  double rate_per_publisher = 0;  // messages/s; 0: as fast as the window and socket allow
  std::uint32_t inflight = 100;   // unacknowledged QoS 1/2 messages per publisher
  // QoS 0 messages per publisher sent but not yet received by every
  // subscriber; 0 floods (open loop). Closed loop measures what a broker
  // delivers, instead of how it sheds what it cannot.
  std::uint32_t window = 1000;
  std::uint64_t deliveries_per_message = 1;
  // Set: subscribers connect here, publishers to `port` (another node of a
  // cluster, so that every message crosses between nodes).
  int subscriber_port = 0;
  std::string tls_ca;  // set: connect with TLS, verifying the broker against this CA file
  // Subscribers and consumers keep their session (clean session 0): what a
  // durable broker stores QoS 1 messages for, so the run measures its disk
  // path. Publishers stay clean: their session holds nothing to keep.
  bool persistent = false;
  // Set: consumers subscribe with ack-mode manual (5.0) and settle each
  // delivery by publishing its message-id to this verb topic, at QoS 0.
  std::string manual_ack_topic;
};

// What the main thread shares with every worker.
struct Shared {
  std::atomic<Phase> phase{Phase::kSetup};
  std::atomic<std::uint64_t> run_started_ns{0};
  std::atomic<std::uint64_t> sent{0};      // PUBLISHes written
  std::atomic<std::uint64_t> received{0};  // PUBLISHes read by subscribers
  std::atomic<std::uint64_t> acked{0};     // QoS 1/2 publishes completed
  std::atomic<std::uint64_t> last_receive_ns{0};
  std::atomic<std::uint32_t> ready{0};   // connections past CONNACK (and SUBACK)
  std::atomic<std::uint32_t> failed{0};  // connections that could not be made or were lost
  // Deliveries received, per publisher index (for the QoS 0 window).
  std::unique_ptr<std::atomic<std::uint64_t>[]> received_from;
};

std::uint64_t monotonic_ns();

struct ClientSpec {
  std::string client_id;
  std::string publish_topic;     // set for a publisher
  std::string subscribe_filter;  // set for a subscriber
  std::uint32_t publisher_index = 0;
};

class Worker {
 public:
  Worker(const Settings& settings, Shared& shared, std::uint32_t publishers);
  ~Worker();
  Worker(const Worker&) = delete;
  Worker& operator=(const Worker&) = delete;

  void add(ClientSpec spec);
  void start();
  void join();

  // After join(): what the subscribers on this thread saw.
  struct Totals {
    std::uint64_t distinct = 0, duplicated = 0, reordered = 0, undecodable = 0;
    LatencyHistogram latency;
  };
  const Totals& totals() const { return totals_; }

 private:
  struct Connection;
  void run();
  void open(Connection& connection);
  void on_readable(Connection& connection);
  void on_frame(Connection& connection, const Frame& frame);
  void on_publish(Connection& connection, const Frame& frame);
  void publish_some(Connection& connection, std::uint64_t now_ns);
  void flush(Connection& connection);
  ssize_t transport_send(Connection& connection, const std::uint8_t* data, std::size_t size);
  ssize_t transport_recv(Connection& connection, std::uint8_t* data, std::size_t size);
  ssize_t tls_failure(Connection& connection, int result);
  void continue_handshake(Connection& connection);
  void send_connect(Connection& connection);
  void fail(Connection& connection);
  void finish();

  const Settings settings_;
  Shared& shared_;
  const std::uint32_t publishers_;
  int epoll_ = -1;
  ssl_ctx_st* tls_ = nullptr;
  std::vector<std::unique_ptr<Connection>> connections_;
  std::vector<Connection*> dirty_;
  std::vector<std::uint8_t> payload_;
  Totals totals_;
  std::thread thread_;
};

}  // namespace sluice::load
