// A worker thread: its own io_context, its shard of the broker, the
// connections it owns, and an inbox where other workers drop deliveries and
// moved connections. Work for the thread is batched: many deliveries cost
// one wake-up, and writes are flushed once per loop turn.
#pragma once

#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <functional>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "broker/broker.hpp"
#include "broker/shard.hpp"
#include "net/output_buffer.hpp"

namespace sluice::net {

class Connection;
struct ListenerCount;
class TlsStream;
class WebSocketSession;
class Server;

class Worker {
 public:
  Worker(Server& server, broker::Broker& broker, std::uint32_t index);
  ~Worker();

  std::uint32_t index() const { return index_; }
  boost::asio::io_context& context() { return context_; }
  broker::Shard& shard() { return shard_; }
  broker::Broker& broker() { return broker_; }
  Server& server() { return server_; }
  // The worker that runs shard `index`.
  Worker& peer(std::uint32_t index);

  void start();  // runs the thread
  void join();
  // The broker is stopping: no connection is taken any more.
  bool stopping() const { return stopping_; }

  // ---- on this worker's thread ----
  // False once the worker is stopping: the connection is not taken.
  bool add(std::shared_ptr<Connection> connection);
  void remove(Connection& connection);
  // Asks for a flush at the end of this loop turn.
  void schedule_flush();
  void mark_dirty(std::shared_ptr<Connection> connection);
  std::span<std::uint8_t> read_buffer() { return read_buffer_; }
  // Output buffers for a connection that has something to write, given back
  // once it has written everything: idle connections hold none, and their
  // capacity serves the next busy one instead of being freed and made again.
  std::unique_ptr<ConnectionOutput> lend_output();
  void return_output(std::unique_ptr<ConnectionOutput> output);

  // ---- from any thread ----
  void post_deliveries(std::vector<broker::RemoteDelivery>&& deliveries);
  // Takes over a connection (its socket as a file descriptor) whose CONNECT
  // another worker read.
  void post_moved_connection(int fd, bool ipv6, mqtt::Connect&& connect,
                             std::vector<std::uint8_t> unread, std::unique_ptr<TlsStream> tls,
                             std::unique_ptr<WebSocketSession> ws,
                             const config::RateLimitConfig* rate_limits,
                             std::shared_ptr<ListenerCount> count);
  void post_shutdown();
  // Runs `task` on this worker's thread, then flushes what it queued.
  void post_task(std::function<void()> task);

 private:
  void flush_turn();
  void drain_inbox();
  void schedule_tick();
  void on_tick();

  Server& server_;
  broker::Broker& broker_;
  const std::uint32_t index_;
  boost::asio::io_context context_{1};
  broker::Shard& shard_;
  std::thread thread_;
  boost::asio::steady_timer tick_timer_;
  bool stopping_ = false;

  // Each knows its slot (Connection::worker_slot), so removing one is a swap
  // with the last: no hash-map node per connection.
  std::vector<std::shared_ptr<Connection>> connections_;
  std::vector<std::shared_ptr<Connection>> dirty_;
  std::vector<std::shared_ptr<Connection>> flushing_;  // dirty_ of the turn being flushed
  bool flush_scheduled_ = false;
  std::vector<std::uint8_t> read_buffer_;
  std::vector<std::unique_ptr<ConnectionOutput>> spare_outputs_;

  std::mutex inbox_mutex_;
  std::vector<std::vector<broker::RemoteDelivery>> inbox_;
  std::vector<std::vector<broker::RemoteDelivery>> draining_;  // this thread's only
};

}  // namespace sluice::net
