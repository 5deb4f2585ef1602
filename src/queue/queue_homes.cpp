// The queue layer in a cluster (docs/cluster.md, "Queues"): each queue has
// one home node, which holds its log and serves its consumers. A publish on
// another node goes to the home; a consumer elsewhere is refused, naming the
// home; a queue no node has claimed yet is claimed by the first node that
// takes a publish or consumer for it. Without a cluster (no placement)
// every queue is here and none of this runs.
#include <deque>
#include <memory>

#include "broker/queue_placement.hpp"
#include "broker/shard.hpp"
#include "queue/queue_service.hpp"

namespace sluice::queue {

namespace {

using mqtt::ReasonCode;
using Kind = broker::QueueHome::Kind;

std::string quoted(std::string_view name) {
  return "'" + std::string(name) + "'";
}

}  // namespace

std::optional<QueueService::Outcome> QueueService::publish_if_not_home(
    broker::Shard& shard, broker::TargetRef from, std::string_view name, mqtt::Publish& publish,
    store::WriteBatch& with, Acknowledge& acknowledge) {
  broker::QueuePlacement* placement = broker_.queue_placement();
  if (placement == nullptr) return std::nullopt;
  // Behind earlier publishes of this worker that wait for the queue's claim.
  if (from.id != 0 && join_claim_wait(shard, from, name, publish, with, acknowledge))
    return Outcome{};
  const broker::QueueHome home = placement->home_of(name);
  if (home.kind == Kind::kHere) return std::nullopt;
  if (from.id == 0) {
    // Its sender took this node for the home and this one does not (the key
    // changed meanwhile): not sent on again, which could go round in circles.
    return Outcome{
        ReasonCode::kImplementationSpecificError,
        "queue " + quoted(name) + " is not homed on the node it was sent to" +
            (home.kind == Kind::kElsewhere ? " (its home is " + home.node_id + ")" : "")};
  }
  if (home.kind == Kind::kElsewhere) {
    if (with.empty()) {
      placement->forward(shard.index(), home, std::move(publish), std::move(acknowledge));
      return Outcome{};
    }
    // The publisher's own changes (a QoS 2 packet id, kept until PUBREL)
    // are this node's: written here before the message leaves.
    auto held = std::make_shared<mqtt::Publish>(std::move(publish));
    shard.write_then(std::move(with), [placement, &shard, home, held,
                                       acknowledge = std::move(acknowledge)](bool durable) {
      if (!durable) {
        if (acknowledge)
          acknowledge(ReasonCode::kImplementationSpecificError, "the store write failed");
        return;
      }
      placement->forward(shard.index(), home, std::move(*held), acknowledge);
    });
    return Outcome{};
  }
  // Unclaimed: a queue this node has, or would make, is claimed first; an
  // unknown one is refused as on a single node.
  if (!has_or_would_make(name)) return std::nullopt;
  wait_for_claim(shard, from, name, publish, with, acknowledge);
  return Outcome{};
}

bool QueueService::join_claim_wait(broker::Shard& shard, broker::TargetRef from,
                                   std::string_view name, mqtt::Publish& publish,
                                   store::WriteBatch& with, Acknowledge& acknowledge) {
  // Most publishes find no wait at all: one load, no lock.
  if (claim_waits_count_.load(std::memory_order_acquire) == 0) return false;
  std::lock_guard lock(claim_waits_mutex_);
  const auto it = claim_waits_.find(std::pair{shard.index(), std::string(name)});
  if (it == claim_waits_.end()) return false;
  it->second.push_back({from, std::move(publish), std::move(with), std::move(acknowledge)});
  return true;
}

void QueueService::wait_for_claim(broker::Shard& shard, broker::TargetRef from,
                                  std::string_view name, mqtt::Publish& publish,
                                  store::WriteBatch& with, Acknowledge& acknowledge) {
  const auto key = std::pair{shard.index(), std::string(name)};
  {
    std::lock_guard lock(claim_waits_mutex_);
    claim_waits_[key].push_back(
        {from, std::move(publish), std::move(with), std::move(acknowledge)});
    claim_waits_count_.store(claim_waits_.size(), std::memory_order_release);
  }
  broker::QueuePlacement* placement = broker_.queue_placement();
  placement->claim(shard.index(), claimed_with(name), [this, &shard, key](broker::QueueHome now) {
    std::deque<ClaimWait> waiting;
    {
      std::lock_guard lock(claim_waits_mutex_);
      const auto it = claim_waits_.find(key);
      if (it == claim_waits_.end()) return;
      waiting.swap(it->second);
      claim_waits_.erase(it);
      claim_waits_count_.store(claim_waits_.size(), std::memory_order_release);
    }
    // In the order they came: the first publishes to a new queue keep
    // their order as later ones do.
    for (ClaimWait& wait : waiting) {
      if (now.kind == Kind::kUnclaimed) {
        if (wait.acknowledge) {
          wait.acknowledge(ReasonCode::kImplementationSpecificError,
                           "queue " + quoted(key.second) +
                               " could not be claimed in the cluster: etcd did not answer");
        }
        continue;
      }
      const Outcome outcome =
          this->publish(shard, wait.from, wait.publish, std::move(wait.with), wait.acknowledge);
      if (outcome.reason != ReasonCode::kSuccess && wait.acknowledge)
        wait.acknowledge(outcome.reason, outcome.reason_string);
    }
  });
}

std::optional<std::pair<ReasonCode, std::string>> QueueService::consumer_not_home(
    broker::Shard& shard, std::string_view name) {
  broker::QueuePlacement* placement = broker_.queue_placement();
  if (placement == nullptr) return std::nullopt;
  const broker::QueueHome home = placement->home_of(name);
  if (home.kind == Kind::kHere) return std::nullopt;
  if (home.kind == Kind::kElsewhere) {
    return std::pair{ReasonCode::kImplementationSpecificError,
                     "queue " + quoted(name) + " is homed on node " + home.node_id +
                         ": its consumers connect there"};
  }
  if (!has_or_would_make(name)) return std::nullopt;
  // The SUBACK cannot wait for etcd: the claim goes ahead, the client tries again.
  placement->claim(shard.index(), claimed_with(name), nullptr);
  return std::pair{ReasonCode::kImplementationSpecificError,
                   "queue " + quoted(name) +
                       " had no home in the cluster: this node claims it now; subscribe again"};
}

bool QueueService::has_or_would_make(std::string_view name) {
  if (broker_.config().queues_auto_create) return true;
  std::lock_guard lock(mutex_);
  return find_queue(name) != nullptr;
}

bool QueueService::captures_here(const Queue& queue) const {
  const broker::QueuePlacement* placement = broker_.queue_placement();
  return placement == nullptr || placement->home_of(queue.config.name).kind == Kind::kHere;
}

std::vector<std::string> QueueService::claimed_with(std::string_view name) {
  std::vector<std::string> names{std::string(name)};
  std::lock_guard lock(mutex_);
  if (const Queue* queue = find_queue(name)) {
    if (queue->dead_letter != nullptr) names.push_back(queue->dead_letter->config.name);
    return names;
  }
  // Made now by auto-creation, with queue_defaults.
  if (std::string dead_letter = config::dead_letter_name(name, broker_.config().queue_defaults);
      !dead_letter.empty())
    names.push_back(std::move(dead_letter));
  if (names.size() == 2 && names[1] == names[0]) names.pop_back();
  return names;
}

std::vector<broker::QueueGateway::Known> QueueService::known_queues() const {
  std::vector<Known> known;
  std::lock_guard lock(mutex_);
  for (const auto& [name, queue] : queues_) {
    Known entry{name, queue->config.capture, {}};
    if (queue->dead_letter != nullptr) entry.dead_letter = queue->dead_letter->config.name;
    known.push_back(std::move(entry));
  }
  return known;
}

}  // namespace sluice::queue
