#include "cluster/peer_service.hpp"

#include <grpcpp/grpcpp.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <atomic>
#include <functional>
#include <future>
#include <limits>

#include "broker/queue_gateway.hpp"
#include "broker/shard.hpp"
#include "mqtt/byte_reader.hpp"
#include "mqtt/byte_writer.hpp"
#include "mqtt/packet_encoder.hpp"
#include "mqtt/property.hpp"
#include "mqtt/topic.hpp"
#include "mqtt/utf8.hpp"
#include "peer.grpc.pb.h"

namespace sluice::cluster {

namespace {

constexpr std::uint32_t kRouted = 0;

std::uint32_t code(mqtt::ReasonCode reason) {
  return static_cast<std::uint32_t>(reason);
}

// A peer is another Sluice, but what it sends is checked as a client's
// PUBLISH would be: the topic (a name, valid UTF-8, within max_topic_levels,
// not $SYS), the QoS, and the properties, read with the codec's own rules
// and written again (so a per-hop property, or bytes that are not
// properties, never reach a subscriber). nullptr, and `reason`, when refused.
broker::MessagePtr to_message(const ForwardedMessage& m, broker::Clock::time_point now,
                              const config::Config& config, std::uint32_t& reason) {
  const std::string& topic = m.topic();
  // Queue addresses ($queue/, $stream/) are not forwarded this way either.
  if (topic.size() > 0xFFFF || !mqtt::check_topic_name(topic).ok() ||
      mqtt::check_utf8(topic) != mqtt::Utf8Check::kValid || mqtt::is_sys_topic(topic) ||
      broker::QueueGateway::addresses(topic) ||
      mqtt::topic_levels(topic) > config.limits.max_topic_levels) {
    reason = code(mqtt::ReasonCode::kTopicNameInvalid);
    return nullptr;
  }
  if (m.qos() > 2) {
    reason = code(mqtt::ReasonCode::kMalformedPacket);
    return nullptr;
  }
  auto message = std::make_shared<broker::Message>();
  if (!m.properties().empty()) {
    std::vector<std::uint8_t> block;
    mqtt::ByteWriter writer(block);
    writer.varint(static_cast<std::uint32_t>(m.properties().size()));
    block.insert(block.end(), m.properties().begin(), m.properties().end());
    mqtt::ByteReader reader(block);
    mqtt::Properties properties;
    mqtt::read_properties(reader, mqtt::PropertyContext::kPublish, properties);
    if (!reader.ok() || !reader.at_end() || properties.topic_alias ||
        !properties.subscription_identifiers.empty() || properties.message_expiry_interval ||
        (properties.response_topic && mqtt::has_wildcard(*properties.response_topic))) {
      reason = code(mqtt::ReasonCode::kMalformedPacket);
      return nullptr;
    }
    if (properties.payload_format_indicator == 1 &&
        mqtt::check_utf8(m.payload()) != mqtt::Utf8Check::kValid) {
      reason = code(mqtt::ReasonCode::kPayloadFormatInvalid);
      return nullptr;
    }
    mqtt::encode_shared_properties(properties, message->encoded_properties);
  }
  message->topic = topic;
  message->payload.assign(m.payload().begin(), m.payload().end());
  message->qos = static_cast<mqtt::QoS>(m.qos());
  message->retain = m.retain();
  message->forwarded = true;
  if (m.expiry_ms() != 0) {
    // At most what a Message Expiry Interval can say.
    const auto left = std::min<std::uint64_t>(m.expiry_ms(), 0xFFFF'FFFFull * 1000);
    message->expires_at = now + std::chrono::milliseconds(left);
  }
  message->origin_client_hash = m.publisher_hash();
  return message;
}

// What one Forward call waits for: an answer per message, given on the
// worker that routes them.
struct Answers {
  std::vector<std::uint32_t> reasons;
  std::size_t left = 0;
  std::promise<void> done;
  // The call gave up (timed out, cancelled, stopping): its sender counts the
  // messages as failed, so what is not routed yet must not be routed late.
  std::atomic<bool> abandoned{false};
};

using Indexed = std::vector<std::pair<std::size_t, broker::MessagePtr>>;

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
      auto message = to_message(request->messages(static_cast<int>(i)), now, broker_.config(),
                                answers->reasons[i]);
      if (message) messages->emplace_back(i, std::move(message));
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

  void accept() { accepting_.store(true); }
  void stop() { stopping_.store(true); }
  std::uint64_t received() const { return received_.load(std::memory_order_relaxed); }

 private:
  static grpc::Status answer(const Answers& answers, ForwardReply* reply) {
    for (const std::uint32_t reason : answers.reasons)
      reply->add_reasons(reason);
    return grpc::Status::OK;
  }

  // On the worker's thread; the answers come on it too (write_then).
  static void route(broker::Shard& shard, const Indexed& messages,
                    const std::shared_ptr<Answers>& answers) {
    if (answers->abandoned.load()) return;
    for (const auto& [i, message] : messages) {
      const auto answer = [answers, i = i](std::uint32_t reason) {
        answers->reasons[i] = reason;
        if (--answers->left == 0) answers->done.set_value();
      };
      shard.publish(
          message, {},
          [&](broker::Shard::Routed routed, store::WriteBatch&& batch) {
            if (routed.refused) return answer(code(mqtt::ReasonCode::kQuotaExceeded));
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
