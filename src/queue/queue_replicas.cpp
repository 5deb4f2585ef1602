// The queue layer's side of replication (docs/replication.md): a replicated
// queue's writes go to its replica group's log instead of this node's
// journal, and the queue is served only on the node that leads the group,
// from its store as the group's log made it.
#include <spdlog/spdlog.h>

#include <algorithm>
#include <chrono>
#include <map>
#include <memory>

#include "broker/client_protocol.hpp"
#include "broker/queue_placement.hpp"
#include "broker/remote_acks.hpp"
#include "broker/session.hpp"
#include "broker/shard.hpp"
#include "queue/queue_service.hpp"

namespace sluice::queue {

namespace {

// The store key an operation writes, when it is one of the queue space's.
const std::string* queue_space_key(const store::WriteBatch::Operation& operation) {
  if (const auto* put = std::get_if<store::WriteBatch::Put>(&operation))
    return put->space == store::Space::kQueues ? &put->key : nullptr;
  if (const auto* erase = std::get_if<store::WriteBatch::Erase>(&operation))
    return erase->space == store::Space::kQueues ? &erase->key : nullptr;
  if (const auto* range = std::get_if<store::WriteBatch::EraseRange>(&operation))
    return range->space == store::Space::kQueues ? &range->from : nullptr;
  return nullptr;
}

}  // namespace

void QueueService::note_replicated_queues() {
  for (const config::QueueConfig& declared : broker_.config().queues) {
    if (declared.replication.factor <= 1) continue;
    replica_group_of_[declared.name] = declared.name;
    // Its dead letters are its own <name>.dlq (the configuration allows no
    // other), kept by the same group.
    if (std::string dead_letter = config::dead_letter_name(declared.name, declared.options);
        !dead_letter.empty())
      replica_group_of_[std::move(dead_letter)] = declared.name;
  }
  for (const auto& [name, group] : replica_group_of_) {
    if (Queue* queue = find_queue(name)) queue->standby = true;  // until its group is led here
  }
}

void QueueService::write(broker::Shard& shard, store::WriteBatch&& batch,
                         std::function<void(bool)> then) {
  // The group that keeps what an operation writes; null for anything else.
  const auto group_of =
      [this](const store::WriteBatch::Operation& operation) -> const std::string* {
    const std::string* key = queue_space_key(operation);
    if (key == nullptr) return nullptr;
    const auto found = replica_group_of_.find(keys::queue_of(*key));
    return found == replica_group_of_.end() ? nullptr : &found->second;
  };
  // Most writes touch no replicated queue: they go to the journal whole.
  const auto& operations = batch.operations();
  if (replica_group_of_.empty() ||
      std::none_of(operations.begin(), operations.end(),
                   [&](const auto& operation) { return group_of(operation) != nullptr; })) {
    return shard.write_then(std::move(batch), std::move(then));
  }
  broker::QueuePlacement* placement = broker_.queue_placement();
  if (placement == nullptr) {  // the cluster is not (or no longer) there: nowhere to commit
    if (then) then(false);
    return;
  }
  std::map<std::string, store::WriteBatch, std::less<>> replicated;  // by group
  store::WriteBatch local;
  for (store::WriteBatch::Operation& operation : batch.take_operations()) {
    if (const std::string* group = group_of(operation)) {
      replicated[*group].add(std::move(operation));
    } else {
      local.add(std::move(operation));
    }
  }
  // The session's own changes (a QoS 2 packet id) go to this node's journal
  // beside the queue's, which go to the group; the PUBACK waits for both
  // (RemoteAcks joins them, as it joins forwards to other nodes).
  auto parts = std::make_shared<broker::RemoteAcks>();
  for (std::size_t part = 0; part < replicated.size() + (local.empty() ? 0 : 1); ++part)
    parts->expect();
  const auto part_done = [parts](bool ok) { parts->answer(ok); };
  if (!local.empty()) shard.write_then(std::move(local), part_done);
  for (auto& [group, writes] : replicated)
    placement->replicate(shard.index(), group, std::move(writes), part_done);
  parts->when_done(then ? std::move(then) : std::function<void(bool)>([](bool) {}));
}

bool QueueService::lead(std::string_view name) {
  std::lock_guard lock(mutex_);
  std::vector<Queue*> read;
  bool all_read = true;
  for (const auto& [queue_name, group] : replica_group_of_) {
    if (group != name) continue;
    bool ok = true;
    read.push_back(&read_back(queue_name, /*from_store=*/true, ok));
    all_read = all_read && ok;
  }
  link_dead_letters();
  // Served only if all of the group's queues could be read.
  std::size_t messages = 0;
  for (Queue* queue : read) {
    queue->standby = !all_read;
    for (const Partition& log : queue->partitions)
      messages += log.next - log.start;
    if (all_read) dispatch_soon(*queue);
  }
  if (all_read)
    spdlog::info("event=queue_replica_leading queue=\"{}\" messages={}", name, messages);
  return all_read;
}

void QueueService::stand_by(std::string_view name) {
  std::vector<broker::TargetRef> consumers;
  {
    std::lock_guard lock(mutex_);
    for (const auto& [queue_name, group] : replica_group_of_) {
      if (group != name) continue;
      if (const Queue* queue = find_queue(queue_name); queue != nullptr && !queue->standby) {
        for (const auto& [group_name, its] : queue->groups)
          for (const auto& consumer : its->consumers)
            if (consumer->online) consumers.push_back(consumer->session);
      }
      bool ok = true;
      read_back(queue_name, /*from_store=*/false, ok).standby = true;
    }
    link_dead_letters();
  }
  spdlog::warn("event=queue_replica_standing_by queue=\"{}\" consumers_closed={}", name,
               consumers.size());
  // Their leases end with the leadership; closed, they learn at their next
  // SUBSCRIBE where the queue is served now (a Reason String names it).
  const std::string why = "queue '" + std::string(name) + "' is no longer served by this node";
  for (const broker::TargetRef& consumer : consumers) {
    broker_.mailbox()->post_task(consumer.shard, [this, consumer, why] {
      broker::Session* session = broker_.shard(consumer.shard).find_session_by_id(consumer.id);
      if (session != nullptr && session->owner() != nullptr) session->owner()->on_queue_moved(why);
    });
  }
}

Queue& QueueService::read_back(const std::string& name, bool from_store, bool& ok) {
  Queue* old = find_queue(name);
  const auto partitions = static_cast<std::uint32_t>(old->partitions.size());
  // What still points at the old one (a write in flight, a delivery not yet
  // settled, a compaction, a dirty floor) finds it deleted and goes no
  // further; what it held goes now, but for its consumers, which move.
  std::erase_if(leases_, [&](const auto& lease) { return lease.second.queue == old; });
  old->deleted = true;
  auto it = queues_.find(name);
  std::unique_ptr<Queue> shell = std::move(it->second);
  queues_.erase(it);
  Queue& fresh = declare(old->config, partitions);
  fresh.counters = old->counters;
  fresh.options_in_record = old->options_in_record;
  ok = true;
  if (from_store) {
    const std::int64_t now_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                                    std::chrono::system_clock::now().time_since_epoch())
                                    .count();
    store::Status status = load(fresh);
    if (status.ok && store_ != nullptr) status = load_message_ids(fresh, now_ms);
    if (!status.ok) {
      ok = false;
      spdlog::error("event=queue_read_back_failed queue=\"{}\" error=\"{}\"", name, status.message);
    }
  }
  // Consumers stay subscribed (a persistent session's subscription outlives
  // a change of leader); what they had leased ends with the old state.
  for (auto& [group_name, group] : old->groups) {
    if (group->consumers.empty()) continue;
    auto found = fresh.groups.find(group_name);
    if (found == fresh.groups.end()) {
      auto made = std::make_unique<Group>();
      made->name = group_name;
      made->ephemeral = group->ephemeral;
      made->partitions.resize(partitions);
      // Where the log starts now; a stream's reader without a group reads
      // on from where it was.
      for (std::uint32_t p = 0; p < partitions; ++p) {
        GroupPartition& state = made->partitions[p];
        const Partition& log = fresh.partitions[p];
        const std::uint64_t was =
            p < group->partitions.size() ? group->partitions[p].cursor : log.start;
        state.floor = state.written_floor = state.cursor =
            group->ephemeral ? std::clamp(was, log.start, log.next) : log.start;
      }
      found = fresh.groups.emplace(group_name, std::move(made)).first;
    }
    for (auto& consumer : group->consumers) {
      consumer->outstanding = 0;
      found->second->consumers.push_back(std::move(consumer));
    }
  }
  for (Partition& log : shell->partitions) {  // the bounds stay: a compaction may look
    log.window.clear();
    log.window_bytes = 0;
    log.compaction_kept.clear();
  }
  shell->groups.clear();
  shell->seen_ids.clear();
  shell->seen_order.clear();
  deleted_.push_back(std::move(shell));
  return fresh;
}

}  // namespace sluice::queue
