#include "cluster/forwarder.hpp"

#include <grpcpp/grpcpp.h>
#include <spdlog/spdlog.h>

#include <condition_variable>
#include <deque>
#include <mutex>
#include <thread>

#include "broker/session.hpp"
#include "cluster/message_codec.hpp"
#include "cluster/peer_channel.hpp"
#include "mqtt/reason_code.hpp"
#include "peer.grpc.pb.h"

namespace sluice::cluster {

namespace {

struct Outgoing {
  std::uint32_t shard;  // the publisher's worker, where settling happens
  broker::Delivery delivery;
  broker::Clock::time_point queued_at;
  // Set for a publish to a queue homed on that node: told its answer,
  // instead of the delivery's listener.
  broker::QueueGateway::Acknowledge acknowledge = nullptr;
};

// What one link holds at most before it refuses more: a node that is alive
// but does not keep up costs its publishers failures, not this node's memory.
constexpr std::size_t kMostQueued = 100'000;
// What one Forward call carries at most (a single larger message goes alone).
constexpr std::size_t kMostBatchBytes = 4u << 20;

std::size_t forwarded_size(const broker::Message& message) {
  return message.topic.size() + message.payload.size() + message.encoded_properties.size() + 32;
}

}  // namespace

// One other node: what is queued for it, and the thread that sends it.
class PeerLink {
 public:
  PeerLink(broker::Broker& broker, const config::ClusterConfig& config, std::string node_id,
           const std::string& address, const std::shared_ptr<grpc::ChannelCredentials>& credentials)
      : broker_(broker),
        config_(config),
        node_id_(std::move(node_id)),
        stub_(Peer::NewStub(peer_channel(address, credentials))) {
    thread_ = std::thread([this] { run(); });
  }
  ~PeerLink() { stop(); }

  void enqueue(std::uint32_t shard, broker::Delivery&& delivery,
               broker::QueueGateway::Acknowledge acknowledge = nullptr) {
    {
      std::lock_guard lock(mutex_);
      if (!stopping_ && queue_.size() < kMostQueued) {
        queue_.push_back(
            {shard, std::move(delivery), broker::Clock::now(), std::move(acknowledge)});
        ++enqueued_;
        if (queue_.size() == 1) wake_.notify_one();
        return;
      }
    }
    std::vector<Outgoing> refused;
    refused.push_back({shard, std::move(delivery), {}, std::move(acknowledge)});
    fail(std::move(refused));
  }

  // Fails what is queued and stops the thread.
  void stop() {
    {
      std::lock_guard lock(mutex_);
      stopping_ = true;
      if (in_flight_ != nullptr) in_flight_->TryCancel();  // not wait for its deadline
    }
    wake_.notify_all();
    drained_.notify_all();
    if (thread_.joinable()) thread_.join();
    std::deque<Outgoing> left;
    {
      std::lock_guard lock(mutex_);
      left.swap(queue_);
    }
    fail(std::vector<Outgoing>(std::make_move_iterator(left.begin()),
                               std::make_move_iterator(left.end())));
  }

  // Waits until every message queued so far was answered (or failed);
  // false at `deadline`.
  bool drain(std::chrono::steady_clock::time_point deadline) {
    std::unique_lock lock(mutex_);
    const std::uint64_t target = enqueued_;
    return drained_.wait_until(lock, deadline, [&] { return stopping_ || finished_ >= target; });
  }

  const std::string& node_id() const { return node_id_; }
  std::uint64_t forwarded() const { return forwarded_.load(std::memory_order_relaxed); }
  std::uint64_t failures() const { return failures_.load(std::memory_order_relaxed); }
  std::uint64_t queued() const {
    std::lock_guard lock(mutex_);
    return queue_.size();
  }

 private:
  using Peer = sluice::cluster::Peer;

  void run() {
    std::unique_lock lock(mutex_);
    while (true) {
      wake_.wait(lock, [this] { return stopping_ || !queue_.empty(); });
      if (stopping_) return;
      // What waited longer than forward_timeout_ms has failed already, as
      // far as its publisher is concerned: it is not sent late.
      const auto too_old =
          broker::Clock::now() - std::chrono::milliseconds(config_.forward_timeout_ms);
      std::vector<Outgoing> expired, batch;
      std::size_t bytes = 0;
      while (!queue_.empty() && batch.size() < config_.forward_batch) {
        Outgoing& next = queue_.front();
        if (next.queued_at < too_old) {
          expired.push_back(std::move(next));
          queue_.pop_front();
          continue;
        }
        const std::size_t size = forwarded_size(*next.delivery.message);
        if (!batch.empty() && bytes + size > kMostBatchBytes) break;
        bytes += size;
        batch.push_back(std::move(next));
        queue_.pop_front();
      }
      const std::size_t taken = expired.size() + batch.size();
      lock.unlock();
      fail(std::move(expired));
      if (!batch.empty()) send(std::move(batch));
      lock.lock();
      finished_ += taken;
      drained_.notify_all();
    }
  }

  void send(std::vector<Outgoing>&& batch) {
    ForwardRequest request;
    request.set_from_node(config_.node_id);
    const auto now = broker::Clock::now();
    for (const Outgoing& out : batch) {
      const broker::Message& message = *out.delivery.message;
      ForwardedMessage* m = request.add_messages();
      to_forwarded(message, now, *m);
      if (out.delivery.shared_filter) m->set_shared_filter(*out.delivery.shared_filter);
      if (out.acknowledge) m->set_queue(true);
    }
    ForwardReply reply;
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() +
                         std::chrono::milliseconds(config_.forward_timeout_ms));
    {
      std::lock_guard lock(mutex_);
      if (stopping_) return fail(std::move(batch));
      in_flight_ = &context;
    }
    const grpc::Status status = stub_->Forward(&context, request, &reply);
    {
      std::lock_guard lock(mutex_);
      in_flight_ = nullptr;
    }
    if (!status.ok() || reply.reasons_size() != static_cast<int>(batch.size()) ||
        (reply.reason_strings_size() != 0 && reply.reason_strings_size() != reply.reasons_size())) {
      spdlog::warn("event=forward_failed node={} messages={} error=\"{}\"", node_id_, batch.size(),
                   status.ok() ? "short reply" : status.error_message());
      return fail(std::move(batch));
    }
    std::vector<mqtt::ReasonCode> reasons;
    reasons.reserve(batch.size());
    std::uint64_t refused = 0;
    for (const std::uint32_t reason : reply.reasons()) {
      // Anything but an MQTT reason code is taken for a failure.
      reasons.push_back(reason < 0x80    ? mqtt::ReasonCode::kSuccess
                        : reason <= 0xFF ? static_cast<mqtt::ReasonCode>(reason)
                                         : mqtt::ReasonCode::kUnspecifiedError);
      if (reason >= 0x80) ++refused;
    }
    forwarded_.fetch_add(batch.size() - refused, std::memory_order_relaxed);
    failures_.fetch_add(refused, std::memory_order_relaxed);
    std::vector<std::string> texts(reply.reason_strings().begin(), reply.reason_strings().end());
    settle(std::move(batch), std::move(reasons), std::move(texts));
  }

  void fail(std::vector<Outgoing>&& batch) {
    if (batch.empty()) return;
    failures_.fetch_add(batch.size(), std::memory_order_relaxed);
    std::vector<mqtt::ReasonCode> reasons(batch.size(), mqtt::ReasonCode::kUnspecifiedError);
    std::vector<std::string> texts(batch.size(),
                                   "node " + node_id_ + " did not answer in time, or is gone");
    settle(std::move(batch), std::move(reasons), std::move(texts));
  }

  // Tells each waiting publisher's worker how its deliveries ended: one task
  // per worker, not one per message. `texts`: the Reason Strings (for queue
  // publishes), one per message, or none.
  void settle(std::vector<Outgoing>&& batch, std::vector<mqtt::ReasonCode>&& reasons,
              std::vector<std::string>&& texts) {
    struct Settled {
      Outgoing out;
      mqtt::ReasonCode reason;
      std::string text;
    };
    broker::Mailbox* mailbox = broker_.mailbox();
    std::vector<std::vector<Settled>> by_shard(broker_.shard_count());
    for (std::size_t i = 0; i < batch.size(); ++i) {
      // QoS 0: nobody waits.
      if (batch[i].delivery.listener == nullptr && !batch[i].acknowledge) continue;
      std::string text = i < texts.size() ? std::move(texts[i]) : std::string();
      by_shard[batch[i].shard].push_back({std::move(batch[i]), reasons[i], std::move(text)});
    }
    for (std::uint32_t shard = 0; shard < by_shard.size(); ++shard) {
      if (by_shard[shard].empty()) continue;
      auto settled = std::make_shared<std::vector<Settled>>(std::move(by_shard[shard]));
      mailbox->post_task(shard, [settled] {
        for (const Settled& each : *settled) {
          if (each.out.acknowledge) {
            // Only what a PUBACK may say reaches the publisher (the home may
            // answer 0x81 for what it could not read).
            const mqtt::ReasonCode reason =
                mqtt::reason_code_allowed(each.reason, mqtt::PacketType::kPuback)
                    ? each.reason
                    : mqtt::ReasonCode::kUnspecifiedError;
            each.out.acknowledge(reason, mqtt::is_error(reason) ? each.text : "");
          } else {
            broker::Session::settle(each.out.delivery, each.reason);
          }
        }
      });
    }
  }

  broker::Broker& broker_;
  const config::ClusterConfig& config_;
  const std::string node_id_;
  std::unique_ptr<Peer::Stub> stub_;
  mutable std::mutex mutex_;
  std::condition_variable wake_;
  std::deque<Outgoing> queue_;
  std::uint64_t enqueued_ = 0;  // ever queued
  std::uint64_t finished_ = 0;  // ever answered or failed (drain)
  std::condition_variable drained_;
  bool stopping_ = false;
  grpc::ClientContext* in_flight_ = nullptr;  // the call under way, for stop()
  std::thread thread_;
  std::atomic<std::uint64_t> forwarded_{0};
  std::atomic<std::uint64_t> failures_{0};
};

Forwarder::Forwarder(broker::Broker& broker, const config::ClusterConfig& config,
                     std::shared_ptr<grpc::ChannelCredentials> credentials)
    : broker_(broker), config_(config), credentials_(std::move(credentials)) {}

Forwarder::~Forwarder() {
  stop();
}

void Forwarder::deliver(std::uint32_t shard, const broker::TargetRef& to,
                        broker::Delivery&& delivery) {
  std::shared_ptr<PeerLink> link;
  {
    std::shared_lock lock(mutex_);
    if (to.node < links_.size()) link = links_[to.node];
  }
  if (link) return link->enqueue(shard, std::move(delivery));
  // The node left between matching and now.
  broker::Session::settle(delivery, mqtt::ReasonCode::kUnspecifiedError);
}

void Forwarder::to_queue(std::uint16_t number, std::uint32_t shard, broker::MessagePtr message,
                         broker::QueueGateway::Acknowledge acknowledge) {
  std::shared_ptr<PeerLink> link;
  {
    std::shared_lock lock(mutex_);
    if (number < links_.size()) link = links_[number];
  }
  broker::Delivery delivery;
  delivery.message = std::move(message);
  delivery.qos = delivery.message->qos;
  if (link) return link->enqueue(shard, std::move(delivery), std::move(acknowledge));
  if (acknowledge)
    acknowledge(mqtt::ReasonCode::kUnspecifiedError, "the queue's home node is down");
}

void Forwarder::all_targets(std::vector<broker::TargetRef>& out) const {
  std::shared_lock lock(mutex_);
  for (std::size_t number = 0; number < links_.size(); ++number) {
    if (links_[number])
      out.push_back({0, 0, static_cast<std::uint16_t>(number), broker::TargetKind::kNode});
  }
}

void Forwarder::add(std::uint16_t number, const std::string& node_id, const std::string& address) {
  auto link = std::make_shared<PeerLink>(broker_, config_, node_id, address, credentials_);
  std::shared_ptr<PeerLink> old;
  {
    std::unique_lock lock(mutex_);
    if (links_.size() <= number) links_.resize(number + 1u);
    old = std::exchange(links_[number], std::move(link));
  }
  if (old) old->stop();
}

bool Forwarder::drain(std::uint16_t number, std::chrono::steady_clock::time_point deadline) {
  std::shared_ptr<PeerLink> link;
  {
    std::shared_lock lock(mutex_);
    if (number < links_.size()) link = links_[number];
  }
  return !link || link->drain(deadline);
}

void Forwarder::remove(std::uint16_t number) {
  std::shared_ptr<PeerLink> old;
  {
    std::unique_lock lock(mutex_);
    if (number < links_.size()) old = std::exchange(links_[number], nullptr);
  }
  if (old) old->stop();
}

void Forwarder::stop() {
  std::vector<std::shared_ptr<PeerLink>> links;
  {
    std::unique_lock lock(mutex_);
    links.swap(links_);
  }
  for (auto& link : links)
    if (link) link->stop();
}

void Forwarder::describe(broker::ClusterView& view) const {
  std::shared_lock lock(mutex_);
  for (const auto& link : links_) {
    if (!link) continue;
    for (broker::ClusterNodeView& node : view.nodes) {
      if (node.id != link->node_id()) continue;
      node.forwarded = link->forwarded();
      node.forward_failures = link->failures();
      node.queued = link->queued();
    }
  }
}

}  // namespace sluice::cluster
