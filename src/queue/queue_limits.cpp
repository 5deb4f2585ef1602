// What bounds a queue: deduplication by msg-id, the depth limit and its
// overflow, and retention by age and count.
#include <algorithm>
#include <limits>

#include "broker/shard.hpp"
#include "mqtt/topic.hpp"
#include "queue/properties.hpp"
#include "queue/queue_service.hpp"

namespace sluice::queue {

// ---- deduplication --------------------------------------------------------------

bool QueueService::remember_message_id(Work& work, Queue& queue, const std::string& id,
                                       store::WriteBatch& batch) {
  if (queue.config.options.dedup_window_ms == 0) return true;
  forget_old_message_ids(work, queue);
  if (queue.seen_ids.contains(id)) return false;
  queue.seen_ids.emplace(id, work.now);
  queue.seen_order.emplace_back(work.now, id);
  batch.add(store::WriteBatch::Put{store::Space::kQueues, keys::dedup(queue.config.name, id),
                                   encode_u64(static_cast<std::uint64_t>(work.now_ms))});
  return true;
}

void QueueService::forget_message_id(Queue& queue, const std::optional<std::string>& id) {
  if (id) queue.seen_ids.erase(*id);  // its place in seen_order goes when it is old
}

void QueueService::forget_old_message_ids(Work& work, Queue& queue) {
  const auto window = std::chrono::milliseconds(queue.config.options.dedup_window_ms);
  while (!queue.seen_order.empty() && queue.seen_order.front().first + window <= work.now) {
    const auto& [seen, id] = queue.seen_order.front();
    const auto known = queue.seen_ids.find(id);
    if (known != queue.seen_ids.end() && known->second == seen) {
      queue.seen_ids.erase(known);
      work.batch.add(
          store::WriteBatch::Erase{store::Space::kQueues, keys::dedup(queue.config.name, id)});
    }
    queue.seen_order.pop_front();
  }
}

store::Status QueueService::load_message_ids(Queue& queue, std::int64_t now_ms) {
  const auto window = static_cast<std::int64_t>(queue.config.options.dedup_window_ms);
  const std::string prefix = keys::dedup_prefix(queue.config.name);
  std::vector<std::pair<std::int64_t, std::string>> seen;
  store::WriteBatch expired;
  const store::Status status = store_->scan(
      store::Space::kQueues, prefix, keys::prefix_end(prefix),
      [&](std::string_view key, std::string_view value) {
        const auto at = static_cast<std::int64_t>(decode_u64(value));
        std::string id(key.substr(prefix.size()));
        if (window > 0 && now_ms - at < window) {
          seen.emplace_back(at, std::move(id));
        } else {
          expired.add(store::WriteBatch::Erase{store::Space::kQueues, std::string(key)});
        }
        return true;
      });
  if (!status.ok) return status;
  std::sort(seen.begin(), seen.end());
  const Clock::time_point now = Clock::now();
  for (auto& [at, id] : seen) {
    const Clock::time_point when = now - std::chrono::milliseconds(now_ms - at);
    queue.seen_ids.emplace(id, when);
    queue.seen_order.emplace_back(when, std::move(id));
  }
  if (!expired.empty()) return store_->write(expired, false);
  return {};
}

// ---- depth and overflow ------------------------------------------------------------

std::uint64_t QueueService::depth(const Queue& queue, std::uint32_t partition) const {
  const Partition& log = queue.partitions[partition];
  std::uint64_t low = log.start;
  if (!queue.stream && !queue.groups.empty()) {  // a stream holds what it holds, read or not
    low = std::numeric_limits<std::uint64_t>::max();
    for (const auto& [name, group] : queue.groups)
      low = std::min(low, group->partitions[partition].floor);
  }
  return log.next - std::min(low, log.next);
}

void QueueService::skip_in_group(Work& work, Queue& queue, Group& group, std::uint32_t partition,
                                 std::uint64_t offset, store::WriteBatch& batch) {
  GroupPartition& state = group.partitions[partition];
  if (offset < state.floor || state.settled.contains(offset)) return;
  bool had_failures = state.failures_before.erase(offset) > 0;
  if (const auto pending = state.pending.find(offset); pending != state.pending.end()) {
    if (pending->second.leased) end_lease(group, partition, offset);
    state.due.erase({pending->second.when, offset});
    state.parked.erase(offset);
    had_failures = finish_pending(work, group, partition, offset) || had_failures;
  }
  settle(queue, group, partition, offset, batch, had_failures, /*atomic=*/true);
}

bool QueueService::make_room(Work& work, Queue& queue, std::uint32_t partition,
                             std::size_t incoming) {
  const config::QueueOptions& options = queue.config.options;
  if (options.max_depth == 0 && options.max_depth_bytes == 0) return true;
  Partition& log = queue.partitions[partition];
  // One message larger than the limit would empty the queue and still not fit.
  if (options.max_depth_bytes != 0 && incoming > options.max_depth_bytes) return false;
  const auto full = [&] {
    return (options.max_depth != 0 && depth(queue, partition) >= options.max_depth) ||
           (options.max_depth_bytes != 0 && log.bytes + incoming > options.max_depth_bytes);
  };
  while (full()) {
    if (queue.counts_bytes && !queue.stream && !queue.groups.empty()) {
      // Bytes every group has settled still count until truncate_logs cuts
      // them (each second): cut them now. The log's start goes in the same
      // write, so the floors need not.
      std::uint64_t settled_by_all = log.visible;
      for (const auto& [name, group] : queue.groups)
        settled_by_all = std::min(settled_by_all, group->partitions[partition].floor);
      if (settled_by_all > log.start) {
        store::WriteBatch batch;
        cut_log(work, queue, partition, settled_by_all, batch, /*count_dropped=*/false);
        submit(work, std::move(batch), nullptr);
        continue;
      }
    }
    if (options.overflow == "reject_publish") return false;
    const std::uint64_t before = depth(queue, partition), bytes_before = log.bytes;
    const std::uint64_t oldest = log.next - before;
    // The oldest can only go once it is durable: until then the publish is
    // refused, never looped on. (Moved or dropped before its own write, it
    // could be in the dead-letter queue and, resent by its publisher, in
    // this one too.)
    if (oldest >= log.visible) return false;
    store::WriteBatch batch;
    bool moved = false;
    if (options.overflow == "dead_letter" && queue.dead_letter != nullptr) {
      GroupPartition reader;  // a one-off read, outside any group's read-ahead
      bool failed = false;
      const EntryPtr entry = fetch(queue, partition, reader, oldest, false, &failed);
      if (failed) return false;  // unreadable now: refused rather than lost
      if (entry) {
        move_to_dead_letters(work, queue, *entry, partition, oldest, "overflow", nullptr, 0, batch);
        moved = true;
      }
    }
    if (!moved) ++queue.counters.dropped;
    // Settled (or gone) for every group in the same write as its move.
    if (queue.groups.empty() || queue.stream) {
      cut_log(work, queue, partition, oldest + 1, batch, /*count_dropped=*/false);
    } else {
      std::uint64_t settled_by_all = log.next;
      for (auto& [name, group] : queue.groups) {
        skip_in_group(work, queue, *group, partition, oldest, batch);
        settled_by_all = std::min(settled_by_all, group->partitions[partition].floor);
      }
      // What every group has now passed goes from the log at once (its
      // floors are in this batch), so that its bytes stop counting.
      if (queue.counts_bytes && settled_by_all > log.start)
        cut_log(work, queue, partition, settled_by_all, batch, /*count_dropped=*/false);
    }
    submit_move(work, std::move(batch));
    // No progress: refuse, never spin.
    if (depth(queue, partition) >= before && log.bytes >= bytes_before) return false;
  }
  return true;
}

// ---- retention ------------------------------------------------------------------

void QueueService::cut_log(Work& work, Queue& queue, std::uint32_t partition, std::uint64_t cut,
                           store::WriteBatch& batch, bool count_dropped, bool bytes_counted) {
  Partition& log = queue.partitions[partition];
  cut = std::min(cut, log.visible);
  if (cut <= log.start) return;
  const std::string& name = queue.config.name;
  std::uint64_t unsettled = 0;
  for (auto& [group_name, group] : queue.groups)
    unsettled += skip_to(work, queue, *group, partition, cut, batch);
  // A stream's groups do not hold its messages: what they had not read is
  // not counted as dropped.
  if (count_dropped && !queue.stream) {
    queue.counters.dropped += queue.groups.empty() ? cut - log.start : unsettled;
  }
  if (queue.counts_bytes && !bytes_counted) {
    const std::uint64_t gone = bytes_between(queue, partition, log.start, cut);
    log.bytes -= std::min(log.bytes, gone);
  }
  batch.add(store::WriteBatch::EraseRange{store::Space::kQueues,
                                          keys::entry(name, partition, log.start),
                                          keys::entry(name, partition, cut)});
  // Where the log starts now, so that a restart never gives these offsets again.
  batch.add(store::WriteBatch::Put{store::Space::kQueues, keys::log_start(name, partition),
                                   encode_u64(cut)});
  log.start = cut;
  while (log.window_start < log.start && !log.window.empty())
    log.pop();
}

std::uint64_t QueueService::skip_to(Work& work, Queue& queue, Group& group, std::uint32_t partition,
                                    std::uint64_t cut, store::WriteBatch& into) {
  GroupPartition& state = group.partitions[partition];
  if (state.floor >= cut) return 0;
  store::WriteBatch unstored;  // an anonymous reader's: kept in memory only
  store::WriteBatch& batch = group.ephemeral ? unstored : into;
  std::vector<std::uint64_t> gone;
  for (auto it = state.pending.begin(); it != state.pending.end() && it->first < cut; ++it)
    gone.push_back(it->first);
  for (const std::uint64_t offset : gone) {
    Pending& pending = state.pending[offset];
    if (pending.leased) end_lease(group, partition, offset);  // a late PUBACK changes nothing
    state.due.erase({pending.when, offset});
    state.parked.erase(offset);
    finish_pending(work, group, partition, offset);
  }
  const std::uint64_t old_floor = state.floor;
  const std::size_t settled_before = state.settled.size();
  state.settled.erase(state.settled.begin(), state.settled.lower_bound(cut));
  const std::uint64_t unsettled = (cut - old_floor) - (settled_before - state.settled.size());
  state.failures_before.erase(state.failures_before.begin(),
                              state.failures_before.lower_bound(cut));
  state.floor = cut;
  while (!state.settled.empty() && *state.settled.begin() == state.floor) {
    state.settled.erase(state.settled.begin());
    ++state.floor;
  }
  state.cursor = std::max(state.cursor, state.floor);
  state.read_ahead.clear();
  const std::string& name = queue.config.name;
  batch.add(store::WriteBatch::Put{store::Space::kQueues, keys::floor(name, group.name, partition),
                                   encode_u64(state.floor)});
  state.written_floor = state.floor;
  batch.add(store::WriteBatch::EraseRange{store::Space::kQueues,
                                          keys::settled(name, group.name, partition, old_floor),
                                          keys::settled(name, group.name, partition, cut)});
  batch.add(store::WriteBatch::EraseRange{store::Space::kQueues,
                                          keys::failures(name, group.name, partition, old_floor),
                                          keys::failures(name, group.name, partition, cut)});
  return unsettled;
}

void QueueService::apply_retention(Work& work, Queue& queue) {
  const config::QueueOptions& options = queue.config.options;
  if (options.retention_max_age_ms == 0 && options.retention_max_messages == 0 &&
      options.retention_max_bytes == 0) {
    return;
  }
  if (queue.stream && options.cleanup == "compact") return;  // kept until compacted
  constexpr std::size_t kMostRead = 10'000;  // per partition and pass: the rest goes next time
  for (std::uint32_t p = 0; p < queue.partitions.size(); ++p) {
    Partition& log = queue.partitions[p];
    std::uint64_t cut = log.start;
    if (options.retention_max_messages != 0 &&
        log.next - log.start > options.retention_max_messages)
      cut = log.next - options.retention_max_messages;
    // What retention may not pass: the groups' floors, while it respects them.
    std::uint64_t limit = log.visible;
    if (options.respect_pending && !queue.stream && !queue.groups.empty()) {
      for (const auto& [name, group] : queue.groups)
        limit = std::min(limit, group->partitions[p].floor);
    }
    cut = std::min(cut, limit);
    if (options.retention_max_bytes != 0 && log.bytes > options.retention_max_bytes) {
      // The oldest go until what is left fits.
      std::uint64_t left = log.bytes - std::min(log.bytes, bytes_between(queue, p, log.start, cut));
      GroupPartition reader;
      std::size_t read = 0;
      for (std::uint64_t offset = cut;
           offset < limit && left > options.retention_max_bytes && read < kMostRead;
           ++offset, ++read) {
        bool failed = false;
        const EntryPtr entry = fetch(queue, p, reader, offset, true, &failed);
        if (failed) break;
        if (entry) left -= std::min<std::uint64_t>(left, entry_bytes(*entry));
        cut = offset + 1;
      }
    }
    if (options.retention_max_age_ms != 0) {
      const std::int64_t oldest_kept = work.now_ms - options.retention_max_age_ms;
      GroupPartition reader;
      std::size_t read = 0;
      for (std::uint64_t offset = cut; offset < limit && read < kMostRead; ++offset, ++read) {
        bool failed = false;
        const EntryPtr entry = fetch(queue, p, reader, offset, true, &failed);
        if (failed || (entry && entry->timestamp_ms >= oldest_kept)) break;
        cut = offset + 1;  // too old (or a hole)
      }
    }
    if (cut > log.start) cut_log(work, queue, p, cut, work.batch, /*count_dropped=*/true);
  }
}

std::uint64_t QueueService::bytes_between(Queue& queue, std::uint32_t partition, std::uint64_t from,
                                          std::uint64_t to) {
  Partition& log = queue.partitions[partition];
  from = std::max(from, log.start);
  std::uint64_t bytes = 0;
  if (from < log.window_start && store_ != nullptr) {
    const std::string& name = queue.config.name;
    store_->scan(store::Space::kQueues, keys::entry(name, partition, from),
                 keys::entry(name, partition, std::min(to, log.window_start)),
                 [&](std::string_view, std::string_view value) {
                   if (const auto entry = decode_entry(value)) bytes += entry_bytes(*entry);
                   return true;
                 });
  }
  for (std::uint64_t at = std::max(from, log.window_start); at < to && at < log.next; ++at) {
    if (const EntryPtr& entry = log.window[at - log.window_start].entry)
      bytes += entry_bytes(*entry);
  }
  return bytes;
}

// ---- redrive --------------------------------------------------------------------

std::optional<std::size_t> QueueService::redrive(broker::Shard& shard, std::string_view dead_letter,
                                                 std::size_t most) {
  std::optional<std::size_t> moved;
  run(&shard, [&](Work& work) {
    Queue* source = find_queue(dead_letter);
    if (source == nullptr) return;
    moved = 0;
    store::WriteBatch batch;
    const std::string& name = source->config.name;
    for (std::uint32_t p = 0; p < source->partitions.size() && *moved < most; ++p) {
      Partition& log = source->partitions[p];
      GroupPartition reader;
      for (std::uint64_t offset = log.start; offset < log.visible && *moved < most; ++offset) {
        // What a consumer of the dead-letter queue holds, or every group
        // settled, stays where it is.
        bool held = false, settled_by_all = !source->groups.empty();
        for (const auto& [group_name, group] : source->groups) {
          const GroupPartition& state = group->partitions[p];
          const auto pending = state.pending.find(offset);
          if (pending != state.pending.end() && pending->second.leased) held = true;
          if (offset >= state.floor && !state.settled.contains(offset)) settled_by_all = false;
        }
        if (held || settled_by_all) continue;
        const EntryPtr entry = fetch(*source, p, reader, offset, true);
        if (!entry) continue;
        mqtt::Properties properties = read_block(entry->properties);
        const std::string* origin = user_property(properties, "original-queue");
        Queue* target = origin != nullptr ? find_queue(*origin) : nullptr;
        if (target == nullptr || target == source) continue;
        // Back as it was published: the dead letter's own notes go, and
        // with them its count of failed attempts.
        std::erase_if(properties.user_properties, [](const mqtt::UserProperty& property) {
          return property.name.starts_with("dead-letter") ||
                 property.name.starts_with("original-") || property.name == "dead-lettered-at";
        });
        auto back = std::make_shared<LogEntry>(*entry);
        back->timestamp_ms = work.now_ms;
        back->properties = write_block(properties);
        const auto [to_partition, to_offset] = append(*target, std::move(back), batch);
        work.appended.push_back({target, to_partition, to_offset});
        for (auto& [group_name, group] : source->groups)
          skip_in_group(work, *source, *group, p, offset, batch);
        batch.add(store::WriteBatch::Erase{store::Space::kQueues, keys::entry(name, p, offset)});
        log.bytes -= std::min<std::uint64_t>(log.bytes, entry_bytes(*entry));
        if (offset >= log.window_start) log.forget(offset);
        if (offset == log.start) ++log.start;
        ++*moved;
      }
    }
    if (*moved > 0) submit_move(work, std::move(batch));
  });
  return moved;
}

// ---- capture ----------------------------------------------------------------------

std::function<void(bool)> QueueService::capture(broker::Shard& shard,
                                                const broker::Message& message,
                                                store::WriteBatch& batch) {
  std::vector<Queue*> into;
  for (const auto& [filter, queue] : captures_) {
    if (mqtt::topic_matches(filter, message.topic) &&
        std::find(into.begin(), into.end(), queue) == into.end() && captures_here(*queue)) {
      into.push_back(queue);
    }
  }
  if (into.empty()) return nullptr;
  // The entry as a publish to $queue/<name>/<topic> would make it, with the
  // topic it came on.
  mqtt::Properties properties = read_list(message.encoded_properties);
  const std::string* key = user_property(properties, "key");
  std::string explicit_key = key != nullptr ? *key : std::string();
  std::erase_if(properties.user_properties,
                [](const mqtt::UserProperty& property) { return property.name == "source-topic"; });
  properties.user_properties.push_back({"source-topic", message.topic});
  const std::vector<std::uint8_t> block = write_block(properties);
  std::vector<Appended> appended;
  run(&shard, [&](Work& work) {
    for (Queue* queue : into) {
      // Delivered as $queue/<name>/<topic>, which must still be a topic.
      if (queue->prefix.size() + 1 + message.topic.size() > 65'535) {
        ++queue->counters.rejected;
        continue;
      }
      auto entry = std::make_shared<LogEntry>();
      entry->timestamp_ms = work.now_ms;
      if (message.expires_at) {
        entry->expires_at_ms = work.now_ms + std::chrono::duration_cast<std::chrono::milliseconds>(
                                                 *message.expires_at - work.now)
                                                 .count();
      }
      entry->subtopic = message.topic;
      entry->key = !explicit_key.empty()
                       ? explicit_key
                       : key_from_subtopic(entry->subtopic, queue->config.options.key_level);
      entry->properties = block;
      entry->payload = message.payload;
      const std::uint32_t partition = partition_for(*queue, *entry);
      // A full queue cannot refuse a publish that also went elsewhere: under
      // reject_publish it just does not take it (counted).
      if (!make_room(work, *queue, partition, entry_bytes(*entry))) {
        ++queue->counters.rejected;
        continue;
      }
      const auto [at_partition, offset] = append(*queue, std::move(entry), batch, partition);
      appended.push_back({queue, at_partition, offset});
    }
  });
  return confirm_when_durable(shard, std::move(appended));
}

}  // namespace sluice::queue
