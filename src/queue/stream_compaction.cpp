// Compaction passes over streams with cleanup: compact (compaction.hpp says
// what goes). A pass takes what the last pass kept and what was appended
// since (from memory under the queue lock, or from the store without it),
// decides without the lock, and erases what goes under it again: the first
// pass of a run reads the whole partition, later ones only what is new. It
// runs when what was appended since the last pass is at least what that
// pass kept, or, at most every kAgedPassInterval, when a message kept only
// for its age may go.
#include <spdlog/spdlog.h>

#include <algorithm>
#include <chrono>

#include "queue/compaction.hpp"
#include "queue/queue_service.hpp"

namespace sluice::queue {
namespace {

constexpr std::int64_t kAgedPassInterval_ms = 5'000;

using Seen = CompactionEntry;

Seen seen(std::uint64_t offset, const LogEntry& entry) {
  return {offset, entry.key, entry.timestamp_ms, entry.payload.empty(), entry_bytes(entry)};
}

}  // namespace

struct QueueService::CompactionJob {
  Queue* queue = nullptr;
  std::uint32_t partition = 0;
  std::uint64_t start = 0, visible = 0, window_start = 0;
  std::uint64_t read_from = 0;  // the store's part: [read_from, window_start)
  config::QueueOptions options;
  // What the last pass kept (the partition's, lent to the job: moved, not
  // copied, under the lock), the store's part read without it, and the
  // window's; `entries` puts them in offset order.
  std::vector<Seen> previous;
  std::vector<Seen> entries;
  std::vector<Seen> from_window;
  bool failed = false;
  // The decision, made without the lock.
  std::vector<std::pair<std::uint64_t, std::size_t>> removed;  // offset, bytes
  // The same as runs [first, end) with nothing kept inside: one range
  // deletion each instead of one deletion per message.
  std::vector<std::pair<std::uint64_t, std::uint64_t>> removed_runs;
  std::vector<Seen> kept;
  std::uint64_t first_kept = 0;  // the partition's new start, if the head went
  std::int64_t again_at_ms = 0;
};

void QueueService::compact(broker::Shard& shard) {
  std::vector<CompactionJob> jobs;
  std::int64_t now_ms = 0;
  run(&shard, [&](Work& work) {
    now_ms = work.now_ms;
    for (auto& [name, queue] : queues_) {
      if (!queue->stream || queue->standby ||
          queue->config.options.cleanup.find("compact") == std::string::npos)
        continue;
      for (std::uint32_t p = 0; p < queue->partitions.size(); ++p) {
        Partition& log = queue->partitions[p];
        if (log.compacting || log.visible <= log.start + 1) continue;
        // compacted_to is 0 until the first pass of a run (which needs two entries).
        const std::uint64_t from = log.compacted_to != 0
                                       ? std::clamp(log.compacted_to, log.start, log.visible)
                                       : log.start;  // the first pass of a run: all of it
        const std::uint64_t fresh = log.visible - from;
        const bool grown = fresh > 0 && fresh >= log.compaction_kept.size();
        const bool aged = log.compact_again_ms != 0 && work.now_ms >= log.compact_again_ms &&
                          work.now_ms >= log.compacted_at_ms + kAgedPassInterval_ms;
        if (!grown && !aged) continue;
        CompactionJob job;
        job.queue = queue.get();
        job.partition = p;
        job.start = log.start;
        job.visible = log.visible;
        job.window_start = log.window_start;
        job.read_from = from;
        job.options = queue->config.options;
        job.previous = std::move(log.compaction_kept);
        log.compaction_kept.clear();
        for (std::uint64_t at = std::max(from, log.window_start); at < log.visible; ++at) {
          if (const EntryPtr& entry = log.window[at - log.window_start].entry)
            job.from_window.push_back(seen(at, *entry));
        }
        log.compacting = true;
        jobs.push_back(std::move(job));
      }
    }
  });
  if (jobs.empty()) return;
  for (CompactionJob& job : jobs)
    plan_compaction(job, now_ms);
  run(&shard, [&](Work& work) {
    for (CompactionJob& job : jobs) {
      Partition& log = job.queue->partitions[job.partition];
      log.compacting = false;
      if (job.queue->deleted) continue;  // its keys are gone, and its name may be another's
      if (job.failed) {
        log.compaction_kept = std::move(job.previous);  // as it was: tried again later
        continue;
      }
      const std::string& name = job.queue->config.name;
      for (auto [first, end] : job.removed_runs) {
        first = std::max(first, log.start);  // retention took the rest meanwhile
        if (first >= end) continue;
        work.batch.add(store::WriteBatch::EraseRange{store::Space::kQueues,
                                                     keys::entry(name, job.partition, first),
                                                     keys::entry(name, job.partition, end)});
      }
      for (const auto& [offset, bytes] : job.removed) {
        if (offset < log.start) continue;
        if (offset >= log.window_start) log.forget(offset);
        log.bytes -= std::min<std::uint64_t>(log.bytes, bytes);
        ++job.queue->counters.compacted;
      }
      // A head that went entirely: the log starts at what is left (readers
      // from `earliest` and $SYS need not step over it again). Its bytes
      // were just counted off, message by message.
      if (job.first_kept > log.start && job.first_kept <= log.visible) {
        cut_log(work, *job.queue, job.partition, job.first_kept, work.batch, false,
                /*bytes_counted=*/true);
      }
      log.compacted_to = job.visible;
      log.compaction_kept = std::move(job.kept);
      log.compacted_at_ms = now_ms;
      log.compact_again_ms = job.again_at_ms;
    }
  });
}

void QueueService::plan_compaction(CompactionJob& job, std::int64_t now_ms) {
  // The store's part of the partition, read without the lock.
  std::vector<Seen> stored;
  if (store_ != nullptr && job.read_from < job.window_start) {
    const std::string& name = job.queue->config.name;
    const store::Status status =
        store_->scan(store::Space::kQueues, keys::entry(name, job.partition, job.read_from),
                     keys::entry(name, job.partition, std::min(job.window_start, job.visible)),
                     [&](std::string_view key, std::string_view value) {
                       const std::uint64_t offset = keys::offset_of(key);
                       if (auto entry = decode_entry(value)) {
                         stored.push_back(seen(offset, *entry));
                       } else {  // one this version cannot read is kept, as a keyless message is
                         stored.push_back({offset, std::string(), 0, false, 0});
                       }
                       return true;
                     });
    if (!status.ok) {
      spdlog::error("event=compaction_read_failed queue={} partition={} error=\"{}\"", name,
                    job.partition, status.message);
      job.failed = true;
      return;
    }
  }
  for (Seen& kept : job.previous) {  // retention may have cut some since
    if (kept.offset >= job.start && kept.offset < job.read_from)
      job.entries.push_back(std::move(kept));
  }
  job.previous.clear();
  for (std::vector<Seen>* part : {&stored, &job.from_window}) {
    job.entries.insert(job.entries.end(), std::make_move_iterator(part->begin()),
                       std::make_move_iterator(part->end()));
  }
  CompactionPlan plan({now_ms, job.options.min_compaction_lag_ms, job.options.delete_retention_ms});
  for (const Seen& entry : job.entries)
    plan.see(entry.offset, entry.key);
  job.first_kept = job.visible;
  bool in_run = false;
  for (Seen& entry : job.entries) {
    if (plan.removes(entry.offset, entry.key, entry.timestamp_ms, entry.tombstone)) {
      job.removed.emplace_back(entry.offset, entry.bytes);
      // What lies between two removed entries with nothing kept between
      // them is already gone (an earlier pass, a failed write): one run.
      if (in_run) {
        job.removed_runs.back().second = entry.offset + 1;
      } else {
        job.removed_runs.emplace_back(entry.offset, entry.offset + 1);
      }
      in_run = true;
    } else {
      in_run = false;  // a kept entry ends the run
      job.first_kept = std::min(job.first_kept, entry.offset);
      job.kept.push_back(std::move(entry));
    }
  }
  job.again_at_ms = plan.again_at_ms();
}

}  // namespace sluice::queue
