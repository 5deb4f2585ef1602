// Compaction passes over streams with cleanup: compact (compaction.hpp says
// what goes). A pass reads the partition's keys from the store outside the
// queue lock, decides, and erases what goes under it; it runs when at least
// half of the partition was appended since the last pass (so a pass costs
// at most a few reads per appended message), or when something kept only
// for its age may go.
#include <spdlog/spdlog.h>

#include <algorithm>

#include "queue/compaction.hpp"
#include "queue/queue_service.hpp"

namespace sluice::queue {
namespace {

struct Seen {
  std::uint64_t offset;
  std::string key;
  std::int64_t timestamp_ms;
  bool tombstone;
  std::size_t bytes;
};

Seen seen(std::uint64_t offset, const LogEntry& entry) {
  return {offset, entry.key, entry.timestamp_ms, entry.payload.empty(), entry_bytes(entry)};
}

}  // namespace

struct QueueService::CompactionJob {
  Queue* queue;
  std::uint32_t partition;
  std::uint64_t start, visible, window_start;
  std::vector<Seen> entries;  // offset order; the window's first, the store's added
  bool failed = false;
};

void QueueService::compact(broker::Shard& shard) {
  std::vector<CompactionJob> jobs;
  std::int64_t now_ms = 0;
  run(&shard, [&](Work& work) {
    now_ms = work.now_ms;
    for (auto& [name, queue] : queues_) {
      if (!queue->stream || queue->config.options.cleanup.find("compact") == std::string::npos)
        continue;
      for (std::uint32_t p = 0; p < queue->partitions.size(); ++p) {
        Partition& log = queue->partitions[p];
        if (log.compacting || log.visible <= log.start + 1) continue;
        const std::uint64_t size = log.visible - log.start;
        const std::uint64_t fresh =
            log.visible - std::clamp(log.compacted_to, log.start, log.visible);
        const bool aged = log.compact_again_ms != 0 && work.now_ms >= log.compact_again_ms;
        if (fresh * 2 < size && !aged) continue;
        CompactionJob job{queue.get(), p, log.start, log.visible, log.window_start, {}};
        for (std::uint64_t at = std::max(log.start, log.window_start); at < log.visible; ++at) {
          if (const EntryPtr& entry = log.window[at - log.window_start].entry)
            job.entries.push_back(seen(at, *entry));
        }
        log.compacting = true;
        jobs.push_back(std::move(job));
      }
    }
  });
  if (jobs.empty()) return;
  // The store's part of each partition, read without the lock.
  for (CompactionJob& job : jobs) {
    if (store_ == nullptr || job.start >= job.window_start) continue;
    std::vector<Seen> stored;
    const std::string& name = job.queue->config.name;
    const store::Status status =
        store_->scan(store::Space::kQueues, keys::entry(name, job.partition, job.start),
                     keys::entry(name, job.partition, std::min(job.window_start, job.visible)),
                     [&](std::string_view key, std::string_view value) {
                       if (auto entry = decode_entry(value))
                         stored.push_back(seen(keys::offset_of(key), *entry));
                       return true;  // one this version cannot read is never removed
                     });
    if (!status.ok) {
      spdlog::error("event=compaction_read_failed queue={} partition={} error=\"{}\"", name,
                    job.partition, status.message);
      job.failed = true;
      continue;
    }
    stored.insert(stored.end(), std::make_move_iterator(job.entries.begin()),
                  std::make_move_iterator(job.entries.end()));
    job.entries = std::move(stored);
  }
  run(&shard, [&](Work& work) {
    for (CompactionJob& job : jobs) {
      Partition& log = job.queue->partitions[job.partition];
      log.compacting = false;
      if (job.failed) continue;
      const config::QueueOptions& options = job.queue->config.options;
      CompactionPlan plan({now_ms, options.min_compaction_lag_ms, options.delete_retention_ms});
      for (const Seen& entry : job.entries)
        plan.see(entry.offset, entry.key);
      const std::string& name = job.queue->config.name;
      for (const Seen& entry : job.entries) {
        if (!plan.removes(entry.offset, entry.key, entry.timestamp_ms, entry.tombstone)) continue;
        if (entry.offset < log.start) continue;  // retention took it meanwhile
        work.batch.add(store::WriteBatch::Erase{store::Space::kQueues,
                                                keys::entry(name, job.partition, entry.offset)});
        if (entry.offset >= log.window_start) log.forget(entry.offset);
        log.bytes -= std::min<std::uint64_t>(log.bytes, entry.bytes);
        ++job.queue->counters.compacted;
      }
      log.compacted_to = job.visible;
      log.compact_again_ms = plan.again_at_ms();
    }
  });
}

}  // namespace sluice::queue
