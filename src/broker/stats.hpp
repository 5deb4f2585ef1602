// Counters of one shard. Each is written only by its shard's thread and read
// by whoever sums them ($SYS, later /metrics), hence relaxed atomics: no lock,
// no contention, and a reader sees a recent value.
#pragma once

#include <atomic>
#include <cstdint>
#include <string>

#include "store/histogram.hpp"

namespace sluice::broker {

struct ShardStats {
  using Counter = std::atomic<std::uint64_t>;
  Counter bytes_received{0};
  Counter bytes_sent{0};
  Counter clients_connected{0};       // a gauge: connected clients on this shard
  Counter dropped_queue_full{0};      // max_queued_messages reached
  Counter dropped_slow_client{0};     // QoS 0 to a client behind on its socket
  Counter dropped_too_large{0};       // bigger than the client's Maximum Packet Size
  Counter dropped_expired{0};         // Message Expiry Interval passed while queued
  Counter dropped_offline_qos0{0};    // QoS 0 for an offline session
  Counter dropped_not_authorized{0};  // the client may no longer read the topic
  Counter dropped_no_target{0};       // routed to a queue or node this broker does not have
  Counter refused_queue_full{0};      // publishes refused under queue_full_policy refuse_publish
  Counter rejected_connections{0};    // over rate_limits.connections_per_s_per_ip
  Counter rejected_publishes{0};      // over rate_limits.publishes_per_s
  Counter rejected_subscriptions{0};  // over rate_limits.subscriptions_per_s
  // PUBLISH packets from and to clients, by QoS. The totals are their sums,
  // taken when read: one counter fewer per message each way.
  Counter messages_received_by_qos[3] = {0, 0, 0};
  Counter messages_sent_by_qos[3] = {0, 0, 0};
  Counter connections_by_protocol[3] = {0, 0, 0};  // CONNACKs sent: 3.1, 3.1.1, 5.0
  Counter auth_failures{0};                        // CONNECTs refused for their credentials
  Counter authz_denied{0};                         // publishes and subscriptions the ACL refused
  // How late the worker's one-second tick ran: how long its loop was busy.
  store::Histogram loop_lag_seconds{0.0001, 0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1};

  std::uint64_t messages_received() const { return sum(messages_received_by_qos); }
  std::uint64_t messages_sent() const { return sum(messages_sent_by_qos); }

#ifndef SLUICE_METRICS_OFF
  static void add(Counter& counter, std::uint64_t n = 1) {
    counter.store(counter.load(std::memory_order_relaxed) + n, std::memory_order_relaxed);
  }
  static void sub(Counter& counter, std::uint64_t n = 1) {
    counter.store(counter.load(std::memory_order_relaxed) - n, std::memory_order_relaxed);
  }
#else
  // A build that counts nothing (-DSLUICE_METRICS=OFF), only to measure
  // what counting costs (docs/admin.md): $SYS and /metrics read zeros.
  static void add(Counter&, std::uint64_t = 1) {}
  static void sub(Counter&, std::uint64_t = 1) {}
#endif

 private:
  static std::uint64_t sum(const Counter (&by_qos)[3]) {
    std::uint64_t total = 0;
    for (const Counter& counter : by_qos)
      total += counter.load(std::memory_order_relaxed);
    return total;
  }
};

// TCP connections by listener, open and accepted (net::Server counts them:
// the net layer sees a connection before the broker does, and after).
struct ListenerConnections {
  std::string listener;   // host:port as bound
  std::string transport;  // tcp, tls, ws, wss
  std::uint64_t accepted = 0;
  std::uint64_t open = 0;
};

}  // namespace sluice::broker
