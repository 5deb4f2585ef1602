// Reading the queues back at start, and what the queues tell about themselves.
#include <spdlog/spdlog.h>

#include <algorithm>

#include "config/config_loader.hpp"
#include "mqtt/topic.hpp"
#include "queue/address.hpp"
#include "queue/queue_service.hpp"

namespace sluice::queue {

// A Q record: the partition count (4 bytes), flags (1: dead_letter none,
// 2: a stream, 4: options follow), then either the dead-letter queue's
// name to the end (no options), or its length (4 bytes), the name, and the
// options as queue_options_yaml wrote them.
namespace {
constexpr char kNoDeadLetters = 1, kStream = 2, kWithOptions = 4;
}

std::string queue_record(const config::QueueConfig& config, bool with_options) {
  std::string value = encode_u32(config.options.partitions);
  const bool none = config.options.dead_letter == "none";
  value.push_back(static_cast<char>((none ? kNoDeadLetters : 0) |
                                    (config.kind == config::QueueKind::kStream ? kStream : 0) |
                                    (with_options ? kWithOptions : 0)));
  const std::string dead_letter = none ? "" : config.options.dead_letter;
  if (!with_options) return value + dead_letter;
  value += encode_u32(static_cast<std::uint32_t>(dead_letter.size())) + dead_letter;
  return value + config::queue_options_yaml(config.options);
}

std::optional<StoredQueue> decode_queue_record(std::string_view value) {
  if (value.size() < 4) return std::nullopt;
  StoredQueue stored;
  stored.partitions = decode_u32(value.substr(0, 4));
  const char flags = value.size() > 4 ? value[4] : 0;  // the first records had none
  stored.no_dead_letters = (flags & kNoDeadLetters) != 0;
  stored.stream = (flags & kStream) != 0;
  std::string_view rest = value.substr(std::min<std::size_t>(5, value.size()));
  if ((flags & kWithOptions) == 0) {
    stored.dead_letter = std::string(rest);
    return stored;
  }
  if (rest.size() < 4) return std::nullopt;
  const std::uint32_t length = decode_u32(rest.substr(0, 4));
  if (rest.size() - 4 < length) return std::nullopt;
  stored.dead_letter = std::string(rest.substr(4, length));
  stored.options = std::string(rest.substr(4 + length));
  return stored;
}

std::optional<std::string> QueueService::read_key(const std::string& key) {
  std::optional<std::string> value;
  std::string end = key;
  end.push_back('\0');  // the range [key, end) holds `key` alone
  store_->scan(store::Space::kQueues, key, end, [&](std::string_view, std::string_view found) {
    value = std::string(found);
    return false;
  });
  return value;
}

store::Status QueueService::recover() {
  std::lock_guard lock(mutex_);
  const config::Config& config = broker_.config();
  std::map<std::string, StoredQueue> stored;
  if (store_ != nullptr) {
    const std::string prefix = keys::queues_prefix();
    std::string damaged;
    const store::Status status =
        store_->scan(store::Space::kQueues, prefix, keys::prefix_end(prefix),
                     [&](std::string_view key, std::string_view value) {
                       const std::string name(keys::last_name(key, prefix.size()));
                       if (auto queue = decode_queue_record(value)) {
                         stored[name] = std::move(*queue);
                         return true;
                       }
                       if (!config.storage.recover) {
                         damaged = name;
                         return false;
                       }
                       // Left out, with its messages in the store, for someone to look at.
                       spdlog::error(
                           "event=queue_record_damaged queue=\"{}\" note=\"storage.recover: "
                           "started without it\"",
                           name);
                       return true;
                     });
    if (!status.ok) return status;
    if (!damaged.empty())
      return store::Status::error("queue '" + damaged +
                                  "': its record in the store is damaged (storage.recover "
                                  "starts without it)");
  }
  for (std::size_t i = 0; i < config.queues.size(); ++i) {
    const config::QueueConfig& queue = config.queues[i];
    const auto found = stored.find(queue.name);
    const std::uint32_t had = found == stored.end() ? 0 : found->second.partitions;
    if (had > queue.options.partitions) {
      return store::Status::error(
          "queues[" + std::to_string(i) + "].partitions: queue '" + queue.name + "' has " +
          std::to_string(had) + " partitions in the store and cannot have fewer (the messages " +
          "of the others would be stranded); set it to " + std::to_string(had) + " or more");
    }
    if (found != stored.end() &&
        found->second.stream != (queue.kind == config::QueueKind::kStream)) {
      return store::Status::error("queues[" + std::to_string(i) + "].kind: '" + queue.name +
                                  "' is a " + (found->second.stream ? "stream" : "work queue") +
                                  " in the store and cannot change kind");
    }
    declare(queue, had);
  }
  // Queues in the store that the configuration does not name (made by
  // auto-creation, or since removed from it) keep their messages.
  for (const auto& [name, queue] : stored) {
    if (find_queue(name) != nullptr) continue;
    config::QueueConfig kept{name,
                             queue.stream ? config::QueueKind::kStream : config::QueueKind::kQueue,
                             config.queue_defaults,
                             {},
                             {}};
    // One made or changed through the admin API keeps the options it had.
    if (queue.options) {
      if (const auto failed = config::parse_queue_options(*queue.options, kept.options,
                                                          "queue '" + name + "' in the store")) {
        return store::Status::error(failed->message);
      }
    }
    kept.options.dead_letter = queue.no_dead_letters ? "none" : queue.dead_letter;
    kept.options.partitions = queue.partitions;  // as it was: keys stay on their partitions
    declare(kept, queue.partitions).options_in_record = queue.options.has_value();
  }
  link_dead_letters();
  for (std::size_t i = 0; i < config.queues.size(); ++i) {
    for (const std::string& filter : config.queues[i].capture) {
      const mqtt::DecodeError checked = mqtt::check_topic_filter(filter);
      if (!checked.ok() || mqtt::parse_shared_filter(filter) || filter.starts_with("$queue/") ||
          filter.starts_with("$stream/")) {
        return store::Status::error("queues[" + std::to_string(i) + "].capture: '" + filter +
                                    "' is not a topic filter of ordinary publishes");
      }
      captures_.emplace_back(filter, find_queue(config.queues[i].name));
    }
  }
  note_replicated_queues();
  store::WriteBatch declared;
  const std::int64_t now_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                                  std::chrono::system_clock::now().time_since_epoch())
                                  .count();
  for (auto& [name, queue] : queues_) {
    if (const store::Status status = load(*queue); !status.ok) return status;
    if (store_ != nullptr) {
      if (const store::Status status = load_message_ids(*queue, now_ms); !status.ok) return status;
    }
    const auto found = stored.find(name);
    const std::string& dead_letter = queue->config.options.dead_letter;
    const bool changed = found == stored.end() ||
                         found->second.partitions != queue->config.options.partitions ||
                         found->second.no_dead_letters != (dead_letter == "none") ||
                         found->second.stream != queue->stream ||
                         (dead_letter != "none" && found->second.dead_letter != dead_letter) ||
                         found->second.options.has_value() != queue->options_in_record;
    if (changed) {
      declared.add(store::WriteBatch::Put{store::Space::kQueues, keys::queue(name),
                                          queue_record(queue->config, queue->options_in_record)});
    }
  }
  if (store_ != nullptr && !declared.empty()) return store_->write(declared, true);
  return {};
}

store::Status QueueService::load(Queue& queue) {
  if (store_ == nullptr) return {};
  const std::string& name = queue.config.name;
  for (std::uint32_t p = 0; p < queue.partitions.size(); ++p) {
    Partition& log = queue.partitions[p];
    bool any = false;
    store::Status status = store_->scan_back(store::Space::kQueues, keys::entry(name, p, 0),
                                             keys::entries_end(name, p),
                                             [&](std::string_view key, std::string_view value) {
                                               log.next = keys::offset_of(key) + 1;
                                               // Timestamps go on from the newest, whatever the
                                               // clock did.
                                               if (const auto entry = decode_entry(value))
                                                 log.last_timestamp_ms = entry->timestamp_ms;
                                               any = true;
                                               return false;
                                             });
    if (!status.ok) return status;
    // Offsets below where retention last cut the log are never given again.
    if (const auto start = read_key(keys::log_start(name, p)))
      log.next = std::max(log.next, decode_u64(*start));
    log.start = log.next;
    if (any) {
      status =
          store_->scan(store::Space::kQueues, keys::entry(name, p, 0), keys::entries_end(name, p),
                       [&](std::string_view key, std::string_view) {
                         log.start = keys::offset_of(key);
                         return false;
                       });
      if (!status.ok) return status;
    }
  }
  const std::string prefix = keys::groups_prefix(name);
  std::vector<std::string> groups;
  store::Status status = store_->scan(store::Space::kQueues, prefix, keys::prefix_end(prefix),
                                      [&](std::string_view key, std::string_view) {
                                        groups.emplace_back(keys::last_name(key, prefix.size()));
                                        return true;
                                      });
  if (!status.ok) return status;
  for (const std::string& group_name : groups) {
    auto group = std::make_unique<Group>();
    group->name = group_name;
    group->partitions.resize(queue.partitions.size());
    for (std::uint32_t p = 0; p < queue.partitions.size(); ++p) {
      GroupPartition& state = group->partitions[p];
      const auto floor = read_key(keys::floor(name, group_name, p));
      state.floor = std::max(floor ? decode_u64(*floor) : 0, queue.partitions[p].start);
      state.written_floor = state.floor;
      const std::string settled = keys::settled_prefix(name, group_name, p);
      status = store_->scan(store::Space::kQueues, settled, keys::prefix_end(settled),
                            [&](std::string_view key, std::string_view) {
                              const std::uint64_t offset = keys::offset_of(key);
                              if (offset >= state.floor) state.settled.insert(offset);
                              return true;
                            });
      if (!status.ok) return status;
      while (!state.settled.empty() && *state.settled.begin() == state.floor) {
        state.settled.erase(state.settled.begin());
        ++state.floor;
      }
      state.cursor = state.floor;
      const std::string failures = keys::failures_prefix(name, group_name, p);
      status = store_->scan(store::Space::kQueues, failures, keys::prefix_end(failures),
                            [&](std::string_view key, std::string_view value) {
                              const std::uint64_t offset = keys::offset_of(key);
                              if (offset >= state.floor)
                                state.failures_before[offset] = decode_u32(value);
                              return true;
                            });
      if (!status.ok) return status;
    }
    queue.groups.emplace(group_name, std::move(group));
  }
  // Offsets are never given twice: the next one is past the last entry and
  // past everything any group settled (an emptied log, or appends that
  // failed and were settled as missing).
  for (std::uint32_t p = 0; p < queue.partitions.size(); ++p) {
    Partition& log = queue.partitions[p];
    const bool empty = log.start == log.next;
    for (const auto& [group_name, group] : queue.groups) {
      const GroupPartition& state = group->partitions[p];
      log.next = std::max(log.next, state.floor);
      if (!state.settled.empty()) log.next = std::max(log.next, *state.settled.rbegin() + 1);
      if (!state.failures_before.empty())
        log.next = std::max(log.next, state.failures_before.rbegin()->first + 1);
    }
    if (empty) log.start = log.next;
    log.visible = log.window_start = log.next;
    // A byte limit bounds what this reads.
    if (queue.counts_bytes) log.bytes = bytes_between(queue, p, log.start, log.next);
  }
  return {};
}

std::vector<QueueStats> QueueService::stats() const {
  std::lock_guard lock(mutex_);
  std::vector<QueueStats> all;
  const std::int64_t now_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                                  std::chrono::system_clock::now().time_since_epoch())
                                  .count();
  for (const auto& [name, queue] : queues_) {
    QueueStats stats;
    stats.name = name;
    stats.stream = queue->stream;
    stats.partitions = static_cast<std::uint32_t>(queue->partitions.size());
    stats.options = queue->config.options;
    stats.origin = declared_in_file(name) ? "file" : queue->options_in_record ? "api" : "auto";
    if (queue->counts_bytes) stats.bytes = 0;
    for (std::uint32_t p = 0; p < queue->partitions.size(); ++p) {
      const Partition& log = queue->partitions[p];
      stats.depth += log.next - log.start;
      if (stats.bytes) *stats.bytes += log.bytes;
      bool failed = false;
      if (const auto oldest = first_at_or_after(*queue, p, log.start, failed))
        stats.oldest_age_ms = std::max(stats.oldest_age_ms, now_ms - oldest->second->timestamp_ms);
    }
    stats.counters = queue->counters;
    for (const auto& [group_name, group] : queue->groups) {
      if (group->ephemeral) {  // one topic for all of them: their names come and go
        ++stats.anonymous_readers;
        continue;
      }
      QueueStats::GroupStats g;
      g.name = group_name;
      for (std::size_t p = 0; p < group->partitions.size(); ++p) {
        const GroupPartition& state = group->partitions[p];
        const std::uint64_t end = queue->partitions[p].next;
        const std::uint64_t unsettled = end - std::min(end, state.floor);
        g.pending += unsettled - std::min<std::uint64_t>(unsettled, state.settled.size());
        g.waiting += state.due.size() + state.parked.size();
        g.leased += state.leases.size();
      }
      g.consumers = static_cast<std::uint32_t>(
          std::count_if(group->consumers.begin(), group->consumers.end(),
                        [](const auto& consumer) { return consumer->online; }));
      stats.groups.push_back(std::move(g));
    }
    all.push_back(std::move(stats));
  }
  return all;
}

void QueueService::sys_topics(std::vector<std::pair<std::string, std::string>>& out) const {
  for (const QueueStats& queue : stats()) {
    const std::string base = "$SYS/broker/queues/" + queue.name + "/";
    out.emplace_back(base + "kind", queue.stream ? "stream" : "queue");
    out.emplace_back(base + "depth", std::to_string(queue.depth));
    if (queue.bytes) out.emplace_back(base + "bytes", std::to_string(*queue.bytes));
    out.emplace_back(base + "oldest_age_ms", std::to_string(queue.oldest_age_ms));
    for (const auto& [name, value] : queue.counters.named())
      out.emplace_back(base + name, std::to_string(value));
    if (queue.stream)
      out.emplace_back(base + "anonymous_readers", std::to_string(queue.anonymous_readers));
    for (const QueueStats::GroupStats& group : queue.groups) {
      const std::string at = base + "groups/" + group.name + "/";
      out.emplace_back(at + "pending", std::to_string(group.pending));
      out.emplace_back(at + "leased", std::to_string(group.leased));
      out.emplace_back(at + "waiting", std::to_string(group.waiting));
      out.emplace_back(at + "consumers", std::to_string(group.consumers));
    }
  }
}

}  // namespace sluice::queue
