// The admin API's operations on queues: purge, peek and seek (redrive is
// in queue_limits.cpp, beside the dead-letter moves it undoes). Each runs
// under the service's mutex like any other change.
#include <algorithm>

#include "queue/queue_service.hpp"

namespace sluice::queue {

std::optional<std::uint64_t> QueueService::purge(broker::Shard& shard, std::string_view name) {
  std::optional<std::uint64_t> removed;
  run(&shard, [&](Work& work) {
    Queue* queue = find_queue(name);
    if (queue == nullptr) return;
    removed = 0;
    for (std::uint32_t p = 0; p < queue->partitions.size(); ++p) {
      const Partition& log = queue->partitions[p];
      const std::uint64_t before = log.start;
      // Up to what is durable: an append still being written stays.
      cut_log(work, *queue, p, log.visible, work.batch, /*count_dropped=*/false);
      *removed += log.start - before;
    }
    queue->counters.purged += *removed;
  });
  return removed;
}

std::optional<std::vector<QueueService::PeekedMessage>> QueueService::peek(
    std::string_view name, std::optional<std::uint32_t> partition,
    std::optional<std::uint64_t> from, std::size_t most) {
  std::optional<std::vector<PeekedMessage>> out;
  run(nullptr, [&](Work&) {
    Queue* queue = find_queue(name);
    if (queue == nullptr || (partition && *partition >= queue->partitions.size())) return;
    out.emplace();
    const std::uint32_t first = partition.value_or(0);
    const auto last =
        partition ? *partition + 1 : static_cast<std::uint32_t>(queue->partitions.size());
    for (std::uint32_t p = first; p < last && out->size() < most; ++p) {
      const Partition& log = queue->partitions[p];
      GroupPartition reader;  // a reader of its own: no group's state moves
      for (std::uint64_t offset = std::max(log.start, from.value_or(0));
           offset < log.visible && out->size() < most; ++offset) {
        if (const EntryPtr entry = fetch(*queue, p, reader, offset, true))
          out->push_back({p, offset, *entry});
      }
    }
  });
  return out;
}

QueueService::SeekOutcome QueueService::seek_group(broker::Shard& shard, std::string_view name,
                                                   std::string_view group_name,
                                                   std::optional<std::uint32_t> partition,
                                                   const StreamStart& to) {
  SeekOutcome outcome = SeekOutcome::kNoQueue;
  run(&shard, [&](Work& work) {
    Queue* queue = find_queue(name);
    if (queue == nullptr) return;
    Group* group = find_group(*queue, group_name);
    if (group == nullptr || group->ephemeral) {
      outcome = SeekOutcome::kNoGroup;
      return;
    }
    if (partition && *partition >= queue->partitions.size()) {
      outcome = SeekOutcome::kNoPartition;
      return;
    }
    const std::uint32_t first = partition.value_or(0);
    const auto last =
        partition ? *partition + 1 : static_cast<std::uint32_t>(queue->partitions.size());
    for (std::uint32_t p = first; p < last; ++p) {
      // A consumer's late PUBACK or $ack for what it held settles nothing now.
      seek(work, *queue, *group, p, start_offset(*queue, p, to, group->partitions[p].floor));
    }
    dispatch(work, *queue, *group);
    outcome = SeekOutcome::kMoved;
  });
  return outcome;
}

}  // namespace sluice::queue
