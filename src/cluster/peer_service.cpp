#include "cluster/peer_service.hpp"

#include <grpcpp/grpcpp.h>
#include <spdlog/spdlog.h>

#include <atomic>
#include <functional>
#include <future>

#include "broker/shard.hpp"
#include "peer.grpc.pb.h"

namespace sluice::cluster {

namespace {

broker::MessagePtr to_message(const ForwardedMessage& m, broker::Clock::time_point now) {
  auto message = std::make_shared<broker::Message>();
  message->topic = m.topic();
  message->payload.assign(m.payload().begin(), m.payload().end());
  message->qos = static_cast<mqtt::QoS>(std::min<std::uint32_t>(m.qos(), 2));
  message->retain = m.retain();
  message->forwarded = true;
  message->encoded_properties.assign(m.properties().begin(), m.properties().end());
  if (m.expiry_ms() != 0) message->expires_at = now + std::chrono::milliseconds(m.expiry_ms());
  message->origin_client_hash = m.publisher_hash();
  return message;
}

// What one Forward call waits for: an answer per message, given on the
// worker that routes them.
struct Answers {
  std::vector<std::uint32_t> reasons;
  std::size_t left = 0;
  std::promise<void> done;
};

class PeerHandler final : public Peer::Service {
 public:
  PeerHandler(broker::Broker& broker, const config::ClusterConfig& config)
      : broker_(broker), config_(config) {}

  grpc::Status Forward(grpc::ServerContext* context, const ForwardRequest* request,
                       ForwardReply* reply) override {
    const int count = request->messages_size();
    if (count == 0) return grpc::Status::OK;
    auto answers = std::make_shared<Answers>();
    answers->reasons.assign(static_cast<std::size_t>(count), 0);
    answers->left = static_cast<std::size_t>(count);
    std::future<void> done = answers->done.get_future();
    const std::uint32_t shard = static_cast<std::uint32_t>(
        std::hash<std::string>{}(request->from_node()) % broker_.shard_count());
    const auto now = broker::Clock::now();
    auto messages = std::make_shared<std::vector<broker::MessagePtr>>();
    messages->reserve(static_cast<std::size_t>(count));
    for (const ForwardedMessage& m : request->messages())
      messages->push_back(to_message(m, now));
    broker_.mailbox()->post_task(shard, [this, shard, messages, answers] {
      route(broker_.shard(shard), *messages, answers);
    });
    received_.fetch_add(static_cast<std::uint64_t>(count), std::memory_order_relaxed);
    const auto deadline =
        std::min(context->deadline(), std::chrono::system_clock::now() +
                                          std::chrono::milliseconds(config_.forward_timeout_ms));
    if (done.wait_until(deadline) != std::future_status::ready)
      return {grpc::StatusCode::DEADLINE_EXCEEDED, "not routed in time"};
    for (const std::uint32_t reason : answers->reasons)
      reply->add_reasons(reason);
    return grpc::Status::OK;
  }

  std::uint64_t received() const { return received_.load(std::memory_order_relaxed); }

 private:
  // On the worker's thread; the answers come on it too (write_then).
  static void route(broker::Shard& shard, const std::vector<broker::MessagePtr>& messages,
                    const std::shared_ptr<Answers>& answers) {
    for (std::size_t i = 0; i < messages.size(); ++i) {
      const auto answer = [answers, i](std::uint32_t reason) {
        answers->reasons[i] = reason;
        if (--answers->left == 0) answers->done.set_value();
      };
      shard.publish(
          messages[i], {},
          [&](broker::Shard::Routed routed, store::WriteBatch&& batch) {
            if (routed.refused)
              return answer(static_cast<std::uint32_t>(mqtt::ReasonCode::kQuotaExceeded));
            if (batch.empty()) {
              if (routed.captured) routed.captured(true);
              return answer(0);
            }
            shard.write_then(std::move(batch), [answer, captured = std::move(routed.captured)](
                                                   bool durable) {
              if (captured) captured(durable);
              answer(durable ? 0 : static_cast<std::uint32_t>(mqtt::ReasonCode::kUnspecifiedError));
            });
          },
          /*may_refuse=*/true);
    }
  }

  broker::Broker& broker_;
  const config::ClusterConfig& config_;
  std::atomic<std::uint64_t> received_{0};
};

}  // namespace

struct PeerService::Impl {
  explicit Impl(broker::Broker& broker, const config::ClusterConfig& config)
      : handler(broker, config) {}
  PeerHandler handler;
  std::unique_ptr<grpc::Server> server;
};

PeerService::PeerService(broker::Broker& broker, const config::ClusterConfig& config)
    : impl_(std::make_unique<Impl>(broker, config)) {
  listen_ = config.listen;
}

PeerService::~PeerService() {
  stop();
}

std::optional<std::string> PeerService::start(
    std::shared_ptr<grpc::ServerCredentials> credentials) {
  grpc::ServerBuilder builder;
  int port = 0;
  builder.AddListeningPort(listen_, std::move(credentials), &port);
  builder.RegisterService(&impl_->handler);
  impl_->server = builder.BuildAndStart();
  if (!impl_->server || port == 0)
    return "cannot listen on cluster.listen " + listen_ + " (in use, or not an address here)";
  spdlog::info("event=cluster_listening address={}", listen_);
  return std::nullopt;
}

void PeerService::stop() {
  if (!impl_->server) return;
  impl_->server->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(2));
  impl_->server.reset();
}

std::uint64_t PeerService::received() const {
  return impl_->handler.received();
}

}  // namespace sluice::cluster
