// The broker's shared state and the client-id-to-shard mapping.
#include "broker/broker.hpp"

#include <functional>
#include <random>

#include "broker/shard.hpp"

namespace sluice::broker {

Broker::Broker(config::Config config, std::uint32_t shard_count, std::string version)
    : config_(std::move(config)),
      version_(std::move(version)),
      shard_count_(shard_count),
      retained_(config_.limits.max_retained_messages),
      cluster_id_prefix_((static_cast<std::uint64_t>(std::random_device{}()) & 0xFF'FFFF) << 40),
      started_at_(Clock::now()) {
  index_.set_targets_carry_sessions(config_.limits.queue_full_policy ==
                                    config::QueueFullPolicy::kRefusePublish);
  shards_.reserve(shard_count);
  for (std::uint32_t i = 0; i < shard_count; ++i) {
    shards_.push_back(std::make_unique<Shard>(*this, i));
  }
}

Broker::~Broker() = default;

std::uint32_t Broker::shard_for_client(std::string_view client_id) const {
  return static_cast<std::uint32_t>(std::hash<std::string_view>{}(client_id) % shard_count_);
}

const char* event_name(EventKind kind) {
  switch (kind) {
    case EventKind::kClientConnected:
      return "client.connected";
    case EventKind::kClientDisconnected:
      return "client.disconnected";
    case EventKind::kClientAuthFailed:
      return "client.auth_failed";
    case EventKind::kSessionCreated:
      return "session.created";
    case EventKind::kSessionExpired:
      return "session.expired";
    case EventKind::kSessionTakenOver:
      return "session.taken_over";
    case EventKind::kSubscriptionCreated:
      return "subscription.created";
    case EventKind::kSubscriptionRemoved:
      return "subscription.removed";
    case EventKind::kMessagePublished:
      return "message.published";
    case EventKind::kMessageDropped:
      return "message.dropped";
    case EventKind::kQueueDeadLettered:
      return "queue.dead_lettered";
    case EventKind::kAuthzDenied:
      return "authz.denied";
  }
  return "unknown";
}

}  // namespace sluice::broker
