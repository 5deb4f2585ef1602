// The broker's process-wide state: configuration, the subscription index and
// the retained store (shared by all workers), and one Shard per worker. A
// client id always maps to the same shard, so a session is found, resumed or
// taken over without any lock across threads.
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "broker/delivery.hpp"
#include "broker/events.hpp"
#include "broker/retained_store.hpp"
#include "broker/subscription_index.hpp"
#include "broker/trace.hpp"
#include "config/config.hpp"

namespace sluice::store {
class Journal;
}
namespace sluice::auth {
class Authenticator;
}

namespace sluice::broker {

class Shard;
class QueueGateway;
class QueuePlacement;
class SessionDirectory;

// How a shard hands deliveries to another shard's thread (net::Worker
// implements it with its inbox).
class Mailbox {
 public:
  virtual ~Mailbox() = default;
  virtual void post(std::uint32_t shard, std::vector<RemoteDelivery>&& deliveries) = 0;
  // Runs `task` on the shard's thread (from the store's committer thread, say).
  virtual void post_task(std::uint32_t shard, std::function<void()> task) = 0;
};

// Where deliveries to targets of a kind other than a local session go: the
// queue layer for TargetKind::kQueue, the cluster for TargetKind::kNode. Called
// on the worker thread that routed the message (`shard`).
class TargetSink {
 public:
  virtual ~TargetSink() = default;
  virtual void deliver(std::uint32_t shard, const TargetRef& to, Delivery&& delivery) = 0;
  // Every target of this kind there is, for what goes to all of them
  // whoever subscribes (the cluster: every other node, for retained
  // messages). From any worker thread.
  virtual void all_targets(std::vector<TargetRef>&) const {}
};

class Broker {
 public:
  Broker(config::Config config, std::uint32_t shard_count, std::string version);
  ~Broker();
  Broker(const Broker&) = delete;
  Broker& operator=(const Broker&) = delete;

  const config::Config& config() const { return config_; }
  const std::string& version() const { return version_; }
  SubscriptionIndex& index() { return index_; }
  RetainedStore& retained() { return retained_; }

  std::uint32_t shard_count() const { return shard_count_; }
  Shard& shard(std::uint32_t index) { return *shards_[index]; }
  std::uint32_t shard_for_client(std::string_view client_id) const;

  // Set before the workers start; nullptr: nothing of that kind is routed to.
  void set_sink(TargetKind kind, TargetSink* sink) {
    sinks_[static_cast<std::size_t>(kind)] = sink;
  }
  TargetSink* sink(TargetKind kind) const { return sinks_[static_cast<std::size_t>(kind)]; }

  // The durable queues ($queue/...); nullptr: publishes and subscriptions to
  // queue addresses are refused as for an unknown queue.
  void set_queues(QueueGateway* queues) { queues_ = queues; }

  // Who owns which session in a cluster; nullptr (a single node): this one.
  // Set before the workers start.
  void set_session_directory(SessionDirectory* directory) { sessions_directory_ = directory; }
  SessionDirectory* session_directory() const { return sessions_directory_; }
  QueueGateway* queues() const { return queues_; }
  // Which node is each queue's home in a cluster; nullptr (a single node):
  // this one. Set before the workers start.
  void set_queue_placement(QueuePlacement* placement) { queue_placement_ = placement; }
  QueuePlacement* queue_placement() const { return queue_placement_; }

  void set_mailbox(Mailbox* mailbox) { mailbox_ = mailbox; }
  Mailbox* mailbox() const { return mailbox_; }

  // Where durable changes go (store/journal.hpp); nullptr when state is
  // kept in memory only.
  void set_journal(store::Journal* journal) { journal_ = journal; }
  store::Journal* journal() const { return journal_; }

  // Where events go for webhooks; nullptr (the default): nowhere. A reload
  // may put another sink in place while the workers run: each use loads
  // the pointer once, and a replaced sink lives on until the workers have
  // stopped (app/observers.hpp keeps it).
  void set_events(EventSink* sink) { events_.store(sink, std::memory_order_release); }
  // Whether anything takes events of `kind`: a load and a test, for hot paths.
  bool wants(EventKind kind) const {
    const EventSink* sink = events_.load(std::memory_order_acquire);
    return sink != nullptr && sink->wants(kind);
  }
  // For message.published: whether any endpoint's topic filters match.
  bool wants_message(std::string_view topic) const {
    const EventSink* sink = events_.load(std::memory_order_acquire);
    return sink != nullptr && sink->wants_message(topic);
  }
  void emit(Event&& event) const {
    if (EventSink* sink = events_.load(std::memory_order_acquire)) sink->emit(std::move(event));
  }

  // Where spans of traced messages go (broker/trace.hpp); nullptr (the
  // default): no tracing. Replaced as the events' sink is; a traced
  // message's spans all go to the sink that started it (MessageTrace::sink).
  void set_tracer(SpanSink* sink) { tracer_.store(sink, std::memory_order_release); }
  SpanSink* tracer() const { return tracer_.load(std::memory_order_acquire); }

  // Who may connect and what they may do; nullptr: anyone, anything.
  void set_auth(const auth::Authenticator* auth) { auth_ = auth; }
  const auth::Authenticator* auth() const { return auth_; }

  std::uint64_t new_session_id() { return next_session_id_.fetch_add(1) + 1; }
  // Ids of stored messages: increasing across restarts, so that a session's
  // stored queue reads back in the order it was filled.
  std::uint64_t new_message_id() { return next_message_id_.fetch_add(1); }
  void set_next_message_id(std::uint64_t id) { next_message_id_.store(id); }
  // An id for a publish that leaves this node (Message::cluster_id): a
  // random prefix per process, then a count, so no two nodes give the same.
  std::uint64_t new_cluster_id() {
    return cluster_id_prefix_ |
           ((next_cluster_id_.fetch_add(1, std::memory_order_relaxed) + 1) & 0xFF'FFFF'FFFFull);
  }
  std::atomic<std::uint32_t>& connections() { return connections_; }
  std::atomic<std::uint32_t>& sessions() { return sessions_; }
  // Writes the store had acknowledged and lost, found by a recovery at start.
  void set_store_lost_writes(std::uint64_t count) { store_lost_writes_ = count; }
  std::uint64_t store_lost_writes() const { return store_lost_writes_; }
  Clock::time_point started_at() const { return started_at_; }

 private:
  const config::Config config_;
  const std::string version_;
  const std::uint32_t shard_count_;
  SubscriptionIndex index_;
  RetainedStore retained_;
  std::vector<std::unique_ptr<Shard>> shards_;
  Mailbox* mailbox_ = nullptr;
  QueueGateway* queues_ = nullptr;
  SessionDirectory* sessions_directory_ = nullptr;
  QueuePlacement* queue_placement_ = nullptr;
  std::array<TargetSink*, 3> sinks_{};  // by TargetKind (kSession's stays nullptr)
  store::Journal* journal_ = nullptr;
  const auth::Authenticator* auth_ = nullptr;
  std::atomic<EventSink*> events_{nullptr};
  std::atomic<SpanSink*> tracer_{nullptr};
  std::atomic<std::uint64_t> next_session_id_{0};
  std::atomic<std::uint64_t> next_message_id_{1};
  const std::uint64_t cluster_id_prefix_;
  std::atomic<std::uint64_t> next_cluster_id_{0};
  std::atomic<std::uint32_t> connections_{0};
  std::atomic<std::uint32_t> sessions_{0};
  std::uint64_t store_lost_writes_ = 0;
  const Clock::time_point started_at_;
};

}  // namespace sluice::broker
