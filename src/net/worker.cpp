// The worker loop's own work: flushing, inbox, ticks, and taking over
// connections that moved here.
#include "net/worker.hpp"

#include <spdlog/spdlog.h>
#include <unistd.h>

#include <boost/asio/post.hpp>

#include "net/connection.hpp"
#include "net/server.hpp"
#include "net/tls.hpp"
#include "net/websocket.hpp"

namespace sluice::net {

namespace asio = boost::asio;

namespace {
// One read is at most this much; it is shared by all of a worker's connections.
constexpr std::size_t kReadBufferBytes = 64 * 1024;
constexpr auto kTickInterval = std::chrono::seconds(1);
}  // namespace

Worker::Worker(Server& server, broker::Broker& broker, std::uint32_t index)
    : server_(server),
      broker_(broker),
      index_(index),
      shard_(broker.shard(index)),
      tick_timer_(context_),
      read_buffer_(kReadBufferBytes) {}

Worker::~Worker() {
  join();
}

Worker& Worker::peer(std::uint32_t index) {
  return server_.worker(index);
}

void Worker::start() {
  schedule_tick();
  thread_ = std::thread([this] {
    auto guard = asio::make_work_guard(context_);
    context_.run();
  });
}

void Worker::join() {
  if (thread_.joinable()) thread_.join();
}

bool Worker::add(std::shared_ptr<Connection> connection) {
  if (stopping_) return false;  // dropping the last reference closes the socket
  connection->set_worker_slot(static_cast<std::uint32_t>(connections_.size()));
  connections_.push_back(std::move(connection));
  return true;
}

void Worker::remove(Connection& connection) {
  // Keep it alive until the end of this turn: the caller may be inside it.
  const std::uint32_t slot = connection.worker_slot();
  if (slot >= connections_.size() || connections_[slot].get() != &connection) return;
  asio::post(context_, [doomed = std::move(connections_[slot])] {});
  if (slot + 1 != connections_.size()) {  // the last one takes its place
    connections_[slot] = std::move(connections_.back());
    connections_[slot]->set_worker_slot(slot);
  }
  connections_.pop_back();
  if (stopping_ && connections_.empty()) context_.stop();
}

std::unique_ptr<ConnectionOutput> Worker::lend_output() {
  if (spare_outputs_.empty()) return std::make_unique<ConnectionOutput>();
  auto output = std::move(spare_outputs_.back());
  spare_outputs_.pop_back();
  return output;
}

void Worker::return_output(std::unique_ptr<ConnectionOutput> output) {
  // As many as were busy at once, up to a bound: a burst of connects must not
  // leave thousands behind.
  constexpr std::size_t kMostSpare = 256;
  if (spare_outputs_.size() < kMostSpare) spare_outputs_.push_back(std::move(output));
}

void Worker::schedule_flush() {
  if (flush_scheduled_) return;
  flush_scheduled_ = true;
  // Posted behind the handlers already due, so it runs once they all have.
  asio::post(context_, [this] { flush_turn(); });
}

void Worker::mark_dirty(std::shared_ptr<Connection> connection) {
  dirty_.push_back(std::move(connection));
  schedule_flush();
}

void Worker::flush_turn() {
  flush_scheduled_ = false;
  shard_.retry_held_publishers();            // nothing to do unless some are held
  shard_.poll_queues(broker::Clock::now());  // as cheap: nothing to do unless something is due
  shard_.flush_outbox();
  // Two lists that trade places keep their capacity: no allocation per turn.
  flushing_.swap(dirty_);
  for (auto& connection : flushing_)
    connection->flush();
  flushing_.clear();
}

void Worker::post_deliveries(std::vector<broker::RemoteDelivery>&& deliveries) {
  bool wake = false;
  {
    std::lock_guard lock(inbox_mutex_);
    wake = inbox_.empty();
    inbox_.push_back(std::move(deliveries));
  }
  if (wake) asio::post(context_, [this] { drain_inbox(); });
}

void Worker::drain_inbox() {
  {
    std::lock_guard lock(inbox_mutex_);
    draining_.swap(inbox_);  // as with flushing_: both keep their capacity
  }
  for (auto& batch : draining_)
    shard_.deliver_batch(std::move(batch));
  draining_.clear();
  schedule_flush();
}

void Worker::post_moved_connection(int fd, bool ipv6, mqtt::Connect&& connect,
                                   std::vector<std::uint8_t> unread, std::unique_ptr<TlsStream> tls,
                                   std::unique_ptr<WebSocketSession> ws,
                                   const config::RateLimitConfig* rate_limits,
                                   std::shared_ptr<ListenerCount> count) {
  asio::post(context_, [this, fd, ipv6, connect = std::move(connect), unread = std::move(unread),
                        tls = std::move(tls), ws = std::move(ws), rate_limits,
                        count = std::move(count)]() mutable {
    boost::system::error_code error;
    Socket socket(context_);
    socket.assign(ipv6 ? asio::ip::tcp::v6() : asio::ip::tcp::v4(), fd, error);
    if (error) {
      ::close(fd);
      if (count) count->open.fetch_sub(1, std::memory_order_relaxed);  // it ends here
      return;
    }
    if (tls) tls->rebind(fd);
    auto connection =
        std::make_shared<Connection>(*this, std::move(socket), std::move(tls), std::move(ws));
    connection->set_rate_limits(rate_limits);
    if (count) connection->adopt_count(std::move(count));
    // A stopping worker takes no connection: dropping it closes the socket.
    if (add(connection)) connection->start_moved(std::move(connect), std::move(unread));
  });
}

void Worker::post_task(std::function<void()> task) {
  asio::post(context_, [this, task = std::move(task)] {
    task();
    schedule_flush();
  });
}

void Worker::post_shutdown() {
  asio::post(context_, [this] {
    // The tick goes on, for the deadlines of connections still closing.
    stopping_ = true;
    std::vector<std::shared_ptr<Connection>> all;
    for (auto& connection : connections_)
      all.push_back(connection);
    for (auto& connection : all)
      connection->shutdown();
    flush_turn();
    if (connections_.empty()) context_.stop();
  });
}

void Worker::schedule_tick() {
  tick_timer_.expires_after(kTickInterval);
  tick_timer_.async_wait([this](const boost::system::error_code& error) {
    if (!error) on_tick();
  });
}

void Worker::on_tick() {
  // How late this tick runs is how long the loop was busy with other work.
  shard_.stats().loop_lag_seconds.observe(std::max(
      0.0, std::chrono::duration<double>(std::chrono::steady_clock::now() - tick_timer_.expiry())
               .count()));
  const auto now = broker::Clock::now();
  if (!stopping_) shard_.tick(now);  // no wills or $SYS while the broker stops
  std::vector<std::shared_ptr<Connection>> all;
  all.reserve(connections_.size());
  for (auto& connection : connections_)
    all.push_back(connection);
  for (auto& connection : all)
    connection->check_deadlines(now);
  schedule_flush();
  schedule_tick();
}

}  // namespace sluice::net
