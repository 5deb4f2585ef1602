// Queues made, changed and deleted while the broker runs (the admin API's
// POST, PATCH and DELETE /api/v1/queues). Each change runs under the
// service's mutex like any other, and its store writes go through the
// journal in that order: a publish that follows a create is never stored
// before the queue's record, nor a delete's erasures after a later create.
#include <algorithm>

#include "broker/queue_placement.hpp"
#include "broker/shard.hpp"
#include "queue/queue_service.hpp"

namespace sluice::queue {

using Kind = QueueService::CatalogResult::Kind;

bool QueueService::declared_in_file(std::string_view name) const {
  const auto& declared = broker_.config().queues;
  return std::any_of(declared.begin(), declared.end(),
                     [&](const config::QueueConfig& queue) { return queue.name == name; });
}

void QueueService::answer_when_durable(Work& work, CatalogResult result, CatalogDone done) {
  if (result.kind != Kind::kDone) {
    work.after.push_back([done = std::move(done), result = std::move(result)]() mutable {
      done(std::move(result));
    });
    return;
  }
  submit(work, std::exchange(work.batch, store::WriteBatch()),
         [done = std::move(done), result = std::move(result)](bool durable) mutable {
           if (!durable) {
             // Memory has the change, the store may not: a restart shows
             // what the store has (a deleted queue may come back).
             result = {Kind::kStoreFailed,
                       "the store could not write the change: it is in force until the broker "
                       "restarts, and may not be after (restart before making a queue of this "
                       "name again)",
                       {},
                       0};
           }
           done(std::move(result));
         });
}

void QueueService::create_queue(broker::Shard& shard, const config::QueueConfig& config,
                                CatalogDone done) {
  broker::QueuePlacement* placement = broker_.queue_placement();
  if (placement != nullptr) {
    if (const broker::QueueHome home = placement->home_of(config.name);
        home.kind == broker::QueueHome::Kind::kElsewhere) {
      return done({Kind::kConflict,
                   "a queue named '" + config.name + "' is homed on node " + home.node_id,
                   {},
                   0});
    }
  }
  bool made = false;
  run(&shard, [&](Work& work) {
    CatalogResult result = create(work, config);
    made = result.kind == Kind::kDone;
    answer_when_durable(work, std::move(result), std::move(done));
  });
  // In a cluster a queue made here is claimed at once, so that publishes on
  // the other nodes find their way to it.
  if (made && placement != nullptr &&
      placement->home_of(config.name).kind == broker::QueueHome::Kind::kUnclaimed) {
    placement->claim(shard.index(), claimed_with(config.name), nullptr);
  }
}

QueueService::CatalogResult QueueService::create(Work& work, const config::QueueConfig& config) {
  if (find_queue(config.name) != nullptr)
    return {Kind::kConflict, "a queue named '" + config.name + "' exists", {}, 0};
  if (config.options.dead_letter.empty() && config.name.size() + 4 > 200) {
    return {Kind::kInvalid,
            "name: its dead-letter queue '<name>.dlq' would be longer than 200 characters; name "
            "one with dead_letter, or none",
            {},
            0};
  }
  if (const std::string target = config::dead_letter_name(config.name, config.options);
      replica_group_of_.contains(target)) {
    return {Kind::kInvalid,
            "dead_letter: '" + target +
                "' is kept by a replicated queue's group; another queue's dead letters cannot "
                "move into it",
            {},
            0};
  }
  Queue& queue = declare(config, 0);
  queue.options_in_record = true;
  link_dead_letters();
  for (const Queue* made : {&queue, queue.dead_letter})
    if (made != nullptr) record(*made, work.batch);
  return {Kind::kDone, {}, queue.config, 0};
}

void QueueService::update_queue(broker::Shard& shard, std::string_view name,
                                const OptionsChange& change, CatalogDone done) {
  run(&shard,
      [&](Work& work) { answer_when_durable(work, update(work, name, change), std::move(done)); });
}

QueueService::CatalogResult QueueService::update(Work& work, std::string_view name,
                                                 const OptionsChange& change) {
  Queue* queue = find_queue(name);
  if (queue == nullptr) {
    return {Kind::kNotFound, "no queue of that name", {}, 0};
  }
  if (declared_in_file(name)) {
    return {Kind::kConflict,
            "the configuration file declares this queue: change it there (a restart applies "
            "it)",
            {},
            0};
  }
  config::QueueOptions next = queue->config.options;
  if (auto refused = change(queue->stream, next)) {
    return {Kind::kInvalid, std::move(*refused), {}, 0};
  }
  const config::QueueOptions& now = queue->config.options;
  std::string refused;
  if (next.partitions != now.partitions) {
    // Keys would move to other partitions under messages still held.
    refused = "partitions: fixed once the queue exists (delete it and create it again)";
  } else if (next.ordering != now.ordering) {
    refused = "ordering: fixed once the queue exists (delete it and create it again)";
  } else if (next.key_level != now.key_level) {
    // Keys pick partitions, key order and what compaction keeps.
    refused = "key_level: fixed once the queue exists (delete it and create it again)";
  } else if (!queue->counts_bytes && (next.retention_max_bytes != 0 || next.max_depth_bytes != 0)) {
    // Partition::bytes was never kept for it: the limit would count from zero.
    refused =
        "retention.max_bytes and max_depth_bytes: a byte limit is set when the queue is "
        "created (its bytes are counted from then)";
  } else if (!queue->stream && next.cleanup != "delete") {
    refused = "cleanup: delete on a work queue (compaction is for streams)";
  } else if (next.dead_letter.empty() && queue->config.name.size() + 4 > 200) {
    refused = "dead_letter: '<name>.dlq' would be longer than 200 characters";
  } else if (replica_group_of_.contains(queue->config.name)) {
    refused = "replicated queues are changed in the configuration file";
  } else if (replica_group_of_.contains(config::dead_letter_name(queue->config.name, next))) {
    refused =
        "dead_letter: it is kept by a replicated queue's group; another queue's dead letters "
        "cannot move into it";
  }
  if (!refused.empty()) {
    return {Kind::kInvalid, std::move(refused), {}, 0};
  }
  const bool new_dead_letter = next.dead_letter != now.dead_letter;
  queue->config.options = std::move(next);
  queue->options_in_record = true;
  if (new_dead_letter) link_dead_letters();
  for (const Queue* made : {queue, queue->dead_letter})
    if (made != nullptr) record(*made, work.batch);
  // Limits may have risen: what waited may go now.
  dispatch(work, *queue);
  return {Kind::kDone, {}, queue->config, 0};
}

void QueueService::delete_queue(broker::Shard& shard, std::string_view name, CatalogDone done) {
  run(&shard, [&](Work& work) { answer_when_durable(work, remove(work, name), std::move(done)); });
}

QueueService::CatalogResult QueueService::remove(Work& work, std::string_view name) {
  CatalogResult result;
  const auto it = queues_.find(name);
  if (it == queues_.end()) {
    return {Kind::kNotFound, "no queue of that name", {}, 0};
  }
  Queue* queue = it->second.get();
  if (declared_in_file(name)) {
    return {Kind::kConflict,
            "the configuration file declares this queue: remove it there first (it would be "
            "declared again, empty, at the next start)",
            {},
            0};
  }
  for (const auto& [other_name, other] : queues_) {
    if (other.get() != queue && other->dead_letter == queue) {
      return {Kind::kConflict,
              "it is the dead-letter queue of '" + other_name +
                  "': delete that one first, or give it another dead_letter",
              {},
              0};
    }
  }
  std::size_t consumers = 0;
  for (const auto& [group_name, group] : queue->groups)
    consumers += group->consumers.size();
  if (consumers != 0) {
    return {Kind::kConflict,
            std::to_string(consumers) +
                " consumer(s), online or not, subscribe to it: unsubscribe them first",
            {},
            0};
  }
  for (const Partition& log : queue->partitions)
    result.removed += log.next - log.start;
  for (std::string& prefix : keys::every_prefix(queue->config.name)) {
    std::string end = keys::prefix_end(prefix);
    work.batch.add(
        store::WriteBatch::EraseRange{store::Space::kQueues, std::move(prefix), std::move(end)});
  }
  // Nothing points at it any more, except writes still in flight, whose
  // confirmations find it deleted and go no further: only the shell is
  // kept (its name, its partitions' bounds), not what it held.
  queue->deleted = true;
  for (Partition& log : queue->partitions) {
    log.window.clear();
    log.window.shrink_to_fit();
    log.window_bytes = 0;
    log.compaction_kept = {};
  }
  queue->groups.clear();
  queue->seen_ids = {};
  queue->seen_order = {};
  std::erase(to_dispatch_, queue);
  std::erase_if(dirty_floors_, [&](const DirtyFloor& dirty) { return dirty.queue == queue; });
  std::erase_if(leases_, [&](const auto& lease) { return lease.second.queue == queue; });
  result.config = queue->config;
  deleted_.push_back(std::move(it->second));
  queues_.erase(it);
  return result;
}

}  // namespace sluice::queue
