#include "cluster/peer_service.hpp"

#include <grpcpp/grpcpp.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <atomic>
#include <functional>
#include <future>
#include <limits>

#include "broker/queue_gateway.hpp"
#include "broker/session_handover.hpp"
#include "broker/shard.hpp"
#include "cluster/handover_codec.hpp"
#include "cluster/message_codec.hpp"
#include "cluster/on_worker.hpp"
#include "cluster/peer_raft_links.hpp"
#include "peer.grpc.pb.h"

namespace sluice::cluster {

namespace {

constexpr std::uint32_t kRouted = 0;

std::uint32_t code(mqtt::ReasonCode reason) {
  return static_cast<std::uint32_t>(reason);
}

// What one Forward call waits for: an answer per message, given on the
// worker that routes them.
struct Answers {
  std::vector<std::uint32_t> reasons;
  std::vector<std::string> texts;  // Reason Strings: set when a queue publish is refused
  std::size_t left = 0;
  std::promise<void> done;
  // The call gave up (timed out, cancelled, stopping): its sender counts the
  // messages as failed, so what is not routed yet must not be routed late.
  std::atomic<bool> abandoned{false};
};

// One message of a Forward call: for this node's subscribers, or for a
// queue homed here.
struct Incoming {
  std::size_t index;
  broker::MessagePtr message;
  std::optional<mqtt::Publish> to_queue;
};
using Indexed = std::vector<Incoming>;

class PeerHandler final : public Peer::Service {
 public:
  PeerHandler(broker::Broker& broker, const config::ClusterConfig& config)
      : broker_(broker), config_(config) {}

  grpc::Status Forward(grpc::ServerContext* context, const ForwardRequest* request,
                       ForwardReply* reply) override {
    const auto count = static_cast<std::size_t>(request->messages_size());
    if (count == 0) return grpc::Status::OK;
    broker::Mailbox* mailbox = broker_.mailbox();
    if (mailbox == nullptr || !accepting_.load() || stopping_.load())
      return {grpc::StatusCode::UNAVAILABLE, "this node is not taking messages"};
    auto answers = std::make_shared<Answers>();
    answers->reasons.assign(count, kRouted);
    std::future<void> done = answers->done.get_future();
    // One worker per sending node: its messages are routed in the order sent.
    const auto shard = static_cast<std::uint32_t>(std::hash<std::string>{}(request->from_node()) %
                                                  broker_.shard_count());
    const auto now = broker::Clock::now();
    auto messages = std::make_shared<Indexed>();
    messages->reserve(count);
    for (std::size_t i = 0; i < count; ++i) {
      const ForwardedMessage& m = request->messages(static_cast<int>(i));
      if (m.queue()) {
        auto publish = queue_publish_from_forwarded(m, broker_.config(), answers->reasons[i]);
        if (publish) messages->push_back({i, nullptr, std::move(publish)});
        continue;
      }
      auto message = from_forwarded(m, now, broker_.config(), answers->reasons[i]);
      if (message) messages->push_back({i, std::move(message), std::nullopt});
    }
    if (messages->empty()) return answer(*answers, reply);
    answers->left = messages->size();
    mailbox->post_task(shard, [this, shard, messages, answers] {
      route(broker_.shard(shard), *messages, answers);
    });
    received_.fetch_add(messages->size(), std::memory_order_relaxed);
    // Waits for the worker, but not past the caller's deadline, nor once the
    // caller gave up or this node is stopping (its workers may be gone).
    const auto deadline =
        std::min(context->deadline(), std::chrono::system_clock::now() +
                                          std::chrono::milliseconds(config_.forward_timeout_ms));
    while (done.wait_for(std::chrono::milliseconds(100)) != std::future_status::ready) {
      if (context->IsCancelled() || stopping_.load() ||
          std::chrono::system_clock::now() >= deadline) {
        answers->abandoned.store(true);
        return {grpc::StatusCode::DEADLINE_EXCEEDED, "not routed in time"};
      }
    }
    return answer(*answers, reply);
  }

  // ---- session takeover (docs/cluster.md) ----

  grpc::Status TakeSession(grpc::ServerContext* context, const TakeSessionRequest* request,
                           TakeSessionReply* reply) override {
    struct Taken {
      broker::TakeOutcome outcome = broker::TakeOutcome::kNotHere;
      std::vector<broker::HandedSubscription> subscriptions;
    };
    auto taken = std::make_shared<Taken>();
    const std::string client_id = request->client_id();
    std::optional<std::string> identity;
    if (request->has_identity()) identity = request->identity();
    const bool clean_start = request->clean_start();
    const grpc::Status status = on_shard(
        context, client_id, [taken, client_id, identity, clean_start](broker::Shard& shard) {
          taken->outcome = broker::take_session(shard, client_id, identity ? &*identity : nullptr,
                                                clean_start, taken->subscriptions);
        });
    if (!status.ok()) return status;
    switch (taken->outcome) {
      case broker::TakeOutcome::kNotHere:
        reply->set_outcome(TakeSessionReply::NOT_HERE);
        break;
      case broker::TakeOutcome::kRefused:
        reply->set_outcome(TakeSessionReply::REFUSED);
        break;
      case broker::TakeOutcome::kTaken:
        if (session_taken_) session_taken_(client_id);
        reply->set_outcome(TakeSessionReply::TAKEN);
        put_subscriptions(taken->subscriptions, *reply->mutable_subscriptions());
        break;
    }
    spdlog::info("event=session_take client_id=\"{}\" by={} outcome={}", client_id,
                 request->from_node(), static_cast<int>(reply->outcome()));
    return grpc::Status::OK;
  }

  grpc::Status ReleaseSession(grpc::ServerContext* context, const ReleaseSessionRequest* request,
                              ReleaseSessionReply* reply) override {
    struct Released {
      bool found = false;
      broker::HandedSession session;
    };
    auto released = std::make_shared<Released>();
    const std::string client_id = request->client_id();
    const grpc::Status status =
        on_shard(context, client_id, [released, client_id](broker::Shard& shard) {
          released->found = broker::release_session(shard, client_id, released->session);
        });
    if (!status.ok()) return status;
    if (released->found) put_session(released->session, broker::Clock::now(), *reply);
    spdlog::info("event=session_released client_id=\"{}\" to={} found={} messages={}", client_id,
                 request->from_node(), released->found, released->session.outbound.size());
    return grpc::Status::OK;
  }

  grpc::Status Barrier(grpc::ServerContext* context, const BarrierRequest* request,
                       BarrierReply*) override {
    if (!barrier_ || !accepting_.load() || stopping_.load())
      return {grpc::StatusCode::UNAVAILABLE, "this node is not taking sessions"};
    const auto left = context->deadline() - std::chrono::system_clock::now();
    const auto deadline = std::chrono::steady_clock::now() +
                          std::min<std::chrono::system_clock::duration>(
                              left, std::chrono::milliseconds(config_.session_takeover_timeout_ms));
    if (!barrier_(request->revision(), request->holder(), deadline))
      return {grpc::StatusCode::DEADLINE_EXCEEDED, "routes or forwards not settled in time"};
    return grpc::Status::OK;
  }

  // Every retained message this node holds, one at a time, from its
  // retained store.
  grpc::Status Retained(grpc::ServerContext* context, const RetainedRequest* request,
                        grpc::ServerWriter<ForwardedMessage>* writer) override {
    // Not before this node caught up itself and runs: its set may be stale.
    if (!accepting_.load() || stopping_.load())
      return {grpc::StatusCode::UNAVAILABLE, "this node is not serving yet"};
    std::vector<broker::MessagePtr> messages;
    const auto now = broker::Clock::now();
    broker_.retained().for_each_match(
        "#", now, [&](const broker::MessagePtr& message) { messages.push_back(message); });
    for (const broker::MessagePtr& message : messages) {
      if (context->IsCancelled()) return {grpc::StatusCode::CANCELLED, "cancelled"};
      ForwardedMessage m;
      to_forwarded(*message, now, m);
      if (!writer->Write(m)) break;
    }
    spdlog::info("event=retained_sent to={} messages={}", request->from_node(), messages.size());
    return grpc::Status::OK;
  }

  // Raft channels between this node and the one that opened the stream
  // (peer_raft_links.hpp), when this node replicates queues.
  grpc::Status Raft(grpc::ServerContext* context,
                    grpc::ServerReaderWriter<RaftFrame, RaftFrame>* stream) override {
    if (raft_links_ == nullptr)
      return {grpc::StatusCode::UNAVAILABLE, "this node replicates no queue"};
    return raft_links_->serve(context, stream);
  }

  void set_raft_links(PeerRaftLinks* links) { raft_links_ = links; }
  void set_barrier(PeerService::Barrier barrier) { barrier_ = std::move(barrier); }
  void set_session_taken(std::function<void(const std::string&)> taken) {
    session_taken_ = std::move(taken);
  }

  void accept() { accepting_.store(true); }
  void stop() { stopping_.store(true); }
  std::uint64_t received() const { return received_.load(std::memory_order_relaxed); }

 private:
  // Runs `task` on the worker of `client_id` and waits for it, as Forward
  // waits (cluster/on_worker.hpp).
  template <class Task>
  grpc::Status on_shard(grpc::ServerContext* context, const std::string& client_id, Task&& task) {
    if (!accepting_.load() || stopping_.load())
      return {grpc::StatusCode::UNAVAILABLE, "this node is not taking sessions"};
    const auto left = context->deadline() - std::chrono::system_clock::now();
    const auto deadline = std::chrono::steady_clock::now() +
                          std::min<std::chrono::system_clock::duration>(
                              left, std::chrono::milliseconds(config_.forward_timeout_ms));
    const bool ran = run_on_worker(broker_, broker_.shard_for_client(client_id), task, deadline,
                                   [&] { return context->IsCancelled() || stopping_.load(); });
    if (!ran)
      return {grpc::StatusCode::DEADLINE_EXCEEDED, "the session's worker did not answer in time"};
    return grpc::Status::OK;
  }

  static grpc::Status answer(const Answers& answers, ForwardReply* reply) {
    for (const std::uint32_t reason : answers.reasons)
      reply->add_reasons(reason);
    for (const std::string& text : answers.texts)
      reply->add_reason_strings(text);
    return grpc::Status::OK;
  }

  // A publish to a queue homed here: the queue layer's answer, once durable.
  template <class Answer>
  static void publish_to_queue(broker::Shard& shard, mqtt::Publish& publish, const Answer& answer) {
    broker::QueueGateway* queues = shard.broker().queues();
    if (queues == nullptr)
      return answer(code(mqtt::ReasonCode::kTopicNameInvalid), "no queues on this node");
    const broker::QueueGateway::Outcome outcome =
        queues->publish(shard, broker::TargetRef{}, publish, {},
                        [answer](mqtt::ReasonCode reason, std::string text) {
                          answer(code(reason), std::move(text));
                        });
    if (outcome.reason != mqtt::ReasonCode::kSuccess)
      answer(code(outcome.reason), outcome.reason_string);
  }

  // On the worker's thread; the answers come on it too (write_then).
  static void route(broker::Shard& shard, Indexed& messages,
                    const std::shared_ptr<Answers>& answers) {
    if (answers->abandoned.load()) return;
    for (auto& [i, message, to_queue] : messages) {
      const auto answer = [answers, i = i](std::uint32_t reason, std::string text = {}) {
        answers->reasons[i] = reason;
        if (!text.empty()) {
          answers->texts.resize(answers->reasons.size());
          answers->texts[i] = std::move(text);
        }
        if (--answers->left == 0) answers->done.set_value();
      };
      if (to_queue) {
        publish_to_queue(shard, *to_queue, answer);
        continue;
      }
      shard.publish(
          message, {},
          [&](broker::Shard::Routed routed, store::WriteBatch&& batch) {
            if (routed.refused) return answer(code(mqtt::ReasonCode::kQuotaExceeded));
            // Picked for a shared group whose last member here just left:
            // the publisher is told, and its node picks again next time.
            if (message->for_shared_group && routed.receivers == 0)
              return answer(code(mqtt::ReasonCode::kUnspecifiedError));
            if (batch.empty()) {
              if (routed.captured) routed.captured(true);
              return answer(kRouted);
            }
            shard.write_then(
                std::move(batch), [answer, captured = std::move(routed.captured)](bool durable) {
                  if (captured) captured(durable);
                  answer(durable ? kRouted : code(mqtt::ReasonCode::kUnspecifiedError));
                });
          },
          /*may_refuse=*/true);
    }
  }

  broker::Broker& broker_;
  const config::ClusterConfig& config_;
  std::atomic<std::uint64_t> received_{0};
  PeerService::Barrier barrier_;                           // set before the server starts
  PeerRaftLinks* raft_links_ = nullptr;                    // the same
  std::function<void(const std::string&)> session_taken_;  // the same
  std::atomic<bool> accepting_{false};
  std::atomic<bool> stopping_{false};
};

}  // namespace

struct PeerService::Impl {
  explicit Impl(broker::Broker& broker, const config::ClusterConfig& config)
      : handler(broker, config) {}
  PeerHandler handler;
  std::unique_ptr<grpc::Server> server;
};

PeerService::PeerService(broker::Broker& broker, const config::ClusterConfig& config)
    : impl_(std::make_unique<Impl>(broker, config)),
      listen_(config.listen),
      max_packet_bytes_(broker.config().limits.max_packet_bytes) {}

PeerService::~PeerService() {
  stop();
}

std::optional<std::string> PeerService::start(
    std::shared_ptr<grpc::ServerCredentials> credentials) {
  grpc::ServerBuilder builder;
  // Two processes on one cluster.listen would share its connections and
  // take each other's messages: the second must fail to start instead.
  builder.AddChannelArgument(GRPC_ARG_ALLOW_REUSEPORT, 0);
  // A batch of forwarded messages: forwarder.cpp keeps it under
  // Forwarder::kMostBatchBytes, or sends one larger message alone.
  const std::uint64_t most = std::max<std::uint64_t>(max_packet_bytes_ + (1u << 20), 64u << 20);
  builder.SetMaxReceiveMessageSize(
      static_cast<int>(std::min<std::uint64_t>(most, std::numeric_limits<int>::max())));
  int port = 0;
  builder.AddListeningPort(listen_, std::move(credentials), &port);
  builder.RegisterService(&impl_->handler);
  impl_->server = builder.BuildAndStart();
  if (!impl_->server || port == 0)
    return "cannot listen on cluster.listen " + listen_ + " (in use, or not an address here)";
  spdlog::info("event=cluster_listening address={}", listen_);
  return std::nullopt;
}

void PeerService::set_raft_links(PeerRaftLinks* links) {
  impl_->handler.set_raft_links(links);
}

void PeerService::set_barrier(Barrier barrier) {
  impl_->handler.set_barrier(std::move(barrier));
}

void PeerService::set_session_taken(std::function<void(const std::string&)> taken) {
  impl_->handler.set_session_taken(std::move(taken));
}

void PeerService::accept() {
  impl_->handler.accept();
}

void PeerService::stop() {
  impl_->handler.stop();
  if (!impl_->server) return;
  impl_->server->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(2));
  impl_->server.reset();
}

std::uint64_t PeerService::received() const {
  return impl_->handler.received();
}

}  // namespace sluice::cluster
