// The queue layer's life of a message: append, lease, settle, fail, dead-letter.
#include "queue/queue_service.hpp"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <charconv>
#include <chrono>
#include <limits>
#include <tuple>
#include <utility>

#include "broker/queue_placement.hpp"
#include "broker/shard.hpp"
#include "mqtt/packet_encoder.hpp"
#include "mqtt/topic.hpp"
#include "queue/address.hpp"
#include "queue/properties.hpp"
#include "queue/stable_hash.hpp"

namespace sluice::queue {
namespace {

using mqtt::ReasonCode;

// Appended entries kept in memory per partition once durable, for consumers
// that keep up: at least kWindow of them, and up to kWindowBytes of payload.
// Older ones are read back from the store.
constexpr std::size_t kWindow = 4096;
constexpr std::size_t kWindowBytes = 16 << 20;
// Entries read from the store at once by a group behind the window.
constexpr std::size_t kReadAhead = 256;
constexpr auto kHousekeepingInterval = std::chrono::seconds(1);

std::int64_t wall_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

std::string message_id(std::uint32_t partition, std::uint64_t offset) {
  return std::to_string(partition) + ":" + std::to_string(offset);
}

}  // namespace

QueueService::QueueService(broker::Broker& broker, store::Store* store)
    : broker_(broker), store_(store), next_due_(0) {}  // the first poll does housekeeping

QueueService::~QueueService() = default;

void QueueService::begin(Work& work, broker::Shard* shard) {
  work.shard = shard;
  work.now = Clock::now();
  work.now_ms = wall_ms();
}

void QueueService::end(Work& work) {
  if (!work.batch.empty()) submit(work, std::move(work.batch), nullptr);
  hand_out(work);
}

void QueueService::hand_out(Work& work) {
  // Into the consumers' shards' inboxes while still under the mutex: two
  // threads leasing in turn to one consumer must not be overtaken by each
  // other (its messages arrive in the order they were leased). Through the
  // inbox even for this shard: the caller may be a session in the middle of
  // its own PUBACK, which must not be re-entered.
  if (work.deliveries.empty()) return;
  std::vector<std::vector<broker::RemoteDelivery>> by_shard(broker_.shard_count());
  for (broker::RemoteDelivery& delivery : work.deliveries)
    by_shard[delivery.to.shard].push_back(std::move(delivery));
  for (std::uint32_t shard = 0; shard < by_shard.size(); ++shard) {
    if (!by_shard[shard].empty()) broker_.mailbox()->post(shard, std::move(by_shard[shard]));
  }
}

void QueueService::submit(Work& work, store::WriteBatch&& batch, std::function<void(bool)> then) {
  if (broker_.journal() != nullptr && work.shard != nullptr) {
    // What this work changed before goes first: the journal must see the
    // changes in the order memory made them.
    if (&batch != &work.batch && !work.batch.empty()) {
      write(*work.shard, std::exchange(work.batch, store::WriteBatch()), nullptr);
    }
    write(*work.shard, std::move(batch), std::move(then));
    return;
  }
  if (then) work.after.push_back([then = std::move(then)] { then(true); });
}

void QueueService::note_due(Clock::time_point when) {
  const Clock::rep at = when.time_since_epoch().count();
  if (at < next_due_.load(std::memory_order_relaxed))
    next_due_.store(at, std::memory_order_relaxed);
}

// ---- queues and groups ------------------------------------------------------

Queue* QueueService::find_queue(std::string_view name) {
  const auto it = queues_.find(name);
  return it == queues_.end() ? nullptr : it->second.get();
}

Queue* QueueService::find_or_create(Work& work, std::string_view name, bool stream) {
  if (Queue* queue = find_queue(name)) return queue;
  const config::Config& config = broker_.config();
  if (!config.queues_auto_create) return nullptr;
  config::QueueConfig declared{std::string(name),
                               stream ? config::QueueKind::kStream : config::QueueKind::kQueue,
                               config.queue_defaults,
                               {},
                               {}};
  if (declared.options.dead_letter.empty() && name.size() + 4 > 200) return nullptr;
  Queue& queue = declare(declared, 0);
  link_dead_letters();
  // Remembered, with its dead-letter queue (which may be new too).
  for (const Queue* made : {&queue, queue.dead_letter})
    if (made != nullptr) record(*made, work.batch);
  return &queue;
}

void QueueService::record(const Queue& queue, store::WriteBatch& batch) {
  batch.add(store::WriteBatch::Put{store::Space::kQueues, keys::queue(queue.config.name),
                                   queue_record(queue.config, queue.options_in_record)});
}

Queue& QueueService::declare(const config::QueueConfig& config, std::uint32_t stored_partitions) {
  auto queue = std::make_unique<Queue>();
  queue->config = config;
  queue->config.options.partitions = std::max(config.options.partitions, stored_partitions);
  queue->partitions.resize(queue->config.options.partitions);
  queue->stream = config.kind == config::QueueKind::kStream;
  queue->counts_bytes =
      config.options.retention_max_bytes != 0 || config.options.max_depth_bytes != 0;
  queue->prefix = (queue->stream ? "$stream/" : "$queue/") + config.name;
  const std::string& ordering = queue->config.options.ordering;
  queue->ordering = queue->stream             ? Ordering::kPartition  // read in offset order
                    : ordering == "key"       ? Ordering::kKey
                    : ordering == "partition" ? Ordering::kPartition
                                              : Ordering::kNone;
  Queue& made = *queue;
  queues_.emplace(config.name, std::move(queue));
  return made;
}

void QueueService::link_dead_letters() {
  std::vector<std::string> missing;
  for (auto& [name, queue] : queues_) {
    const std::string dead_letter = config::dead_letter_name(name, queue->config.options);
    if (dead_letter.empty() || dead_letter == name) continue;  // not its own dead-letter queue
    if (find_queue(dead_letter) == nullptr) missing.push_back(dead_letter);
  }
  for (const std::string& name : missing) {
    if (find_queue(name) != nullptr) continue;
    // An undeclared dead-letter queue: the defaults, with no dead letters of its own.
    config::QueueConfig declared{
        name, config::QueueKind::kQueue, broker_.config().queue_defaults, {}, {}};
    declared.options.dead_letter = "none";
    declared.options.partitions = 1;
    declare(declared, 0);
  }
  for (auto& [name, queue] : queues_) {
    const std::string dead_letter = config::dead_letter_name(name, queue->config.options);
    queue->dead_letter =
        dead_letter.empty() || dead_letter == name ? nullptr : find_queue(dead_letter);
  }
}

Group& QueueService::group(Work& work, Queue& queue, std::string_view name, bool ephemeral) {
  if (const auto it = queue.groups.find(name); it != queue.groups.end()) return *it->second;
  // A new group reads what the queue still holds, from the start.
  auto group = std::make_unique<Group>();
  group->name = std::string(name);
  group->ephemeral = ephemeral;
  if (ephemeral) ++anonymous_readers_;
  group->partitions.resize(queue.partitions.size());
  for (std::size_t p = 0; p < queue.partitions.size(); ++p) {
    group->partitions[p].floor = queue.partitions[p].start;
    group->partitions[p].written_floor = queue.partitions[p].start;
    group->partitions[p].cursor = queue.partitions[p].start;
  }
  if (!ephemeral) {
    work.batch.add(store::WriteBatch::Put{store::Space::kQueues,
                                          keys::group(queue.config.name, name), std::string()});
  }
  Group& made = *group;
  queue.groups.emplace(std::string(name), std::move(group));
  return made;
}

// ---- appending ----------------------------------------------------------------

std::uint32_t QueueService::partition_for(Queue& queue, const LogEntry& entry) {
  const auto count = static_cast<std::uint32_t>(queue.partitions.size());
  if (count == 1) return 0;
  // Messages without a key spread over the partitions.
  if (entry.key.empty()) return queue.next_keyless++ % count;
  return static_cast<std::uint32_t>(stable_hash(entry.key) % count);
}

std::pair<std::uint32_t, std::uint64_t> QueueService::append(Queue& queue,
                                                             std::shared_ptr<LogEntry> entry,
                                                             store::WriteBatch& batch,
                                                             std::optional<std::uint32_t> into) {
  const std::uint32_t partition = into ? *into : partition_for(queue, *entry);
  Partition& log = queue.partitions[partition];
  const std::uint64_t offset = log.next++;
  // In offset order, never earlier than the one before (the clock may step
  // back; timestamp= reads rely on it).
  entry->timestamp_ms = std::max(entry->timestamp_ms, log.last_timestamp_ms);
  log.last_timestamp_ms = entry->timestamp_ms;
  batch.add(store::WriteBatch::Put{store::Space::kQueues,
                                   keys::entry(queue.config.name, partition, offset),
                                   encode_entry(*entry)});
  log.bytes += entry_bytes(*entry);
  log.push(std::move(entry));
  ++queue.counters.enqueued;
  return {partition, offset};
}

void QueueService::confirm(Queue& queue, std::uint32_t partition, std::uint64_t offset,
                           bool durable) {
  if (queue.deleted) return;  // its window is gone with it
  Partition& log = queue.partitions[partition];
  if (offset < log.window_start) return;
  Partition::Slot& slot = log.window[offset - log.window_start];
  slot.done = true;
  if (!durable) {  // not delivered: its publisher was told 0x83
    if (slot.entry) log.bytes -= std::min<std::uint64_t>(log.bytes, entry_bytes(*slot.entry));
    log.forget(offset);
  }
  while (log.visible < log.next && log.window[log.visible - log.window_start].done)
    ++log.visible;
  if (store_ != nullptr) {
    while (log.window.size() > kWindow && log.window_bytes > kWindowBytes &&
           log.window_start < log.visible) {
      log.pop();
    }
  }
  dispatch_soon(queue);
}

void QueueService::dispatch_soon(Queue& queue) {
  // Once per loop turn (poll) for everything that became deliverable in
  // it: one lease pass and one post per consumer shard, not one per message.
  if (queue.dispatch_soon || queue.deleted) return;
  queue.dispatch_soon = true;
  to_dispatch_.push_back(&queue);
  dispatch_pending_.store(true, std::memory_order_relaxed);
}

QueueService::Outcome QueueService::publish(broker::Shard& shard, broker::TargetRef from,
                                            mqtt::Publish& publish, store::WriteBatch&& with,
                                            Acknowledge acknowledge) {
  const auto address = parse_address(publish.topic);
  if (!address) {
    return {ReasonCode::kTopicNameInvalid,
            "not a queue address: $queue/<name>[/<subtopic>], the name of 1 to 200 of "
            "A-Z a-z 0-9 _ . -"};
  }
  if (!address->verb.empty()) {
    if (from.id == 0) {
      return {ReasonCode::kTopicNameInvalid,
              "a settlement is made on the node of the consumer that holds the message"};
    }
    // Settlements are not waited for (at-least-once: one lost to a crash
    // means the message comes again): acknowledged at once.
    Outcome outcome = apply_verb(shard, from, *address, publish.properties);
    if (outcome.reason == ReasonCode::kSuccess && acknowledge)
      acknowledge(ReasonCode::kSuccess, {});
    return outcome;
  }
  if (auto elsewhere =
          publish_if_not_home(shard, from, address->name, publish, with, acknowledge)) {
    return std::move(*elsewhere);
  }
  auto entry = std::make_shared<LogEntry>();
  entry->timestamp_ms = wall_ms();
  if (publish.properties.message_expiry_interval) {
    entry->expires_at_ms =
        entry->timestamp_ms + std::int64_t{*publish.properties.message_expiry_interval} * 1000;
  }
  if (address->subtopic) entry->subtopic = std::string(*address->subtopic);
  mqtt::Properties& properties = publish.properties;
  properties.topic_alias.reset();
  properties.subscription_identifiers.clear();
  properties.message_expiry_interval.reset();  // kept as expires_at_ms
  if (const std::string* key = user_property(properties, "key")) entry->key = *key;
  std::optional<std::string> message_id_seen;
  if (const std::string* id = user_property(properties, "msg-id")) message_id_seen = *id;
  entry->properties = write_block(properties);
  entry->payload = std::move(publish.payload);

  Outcome outcome;
  run(&shard, [&](Work& work) {
    Queue* queue = find_or_create(work, address->name, address->stream);
    if (queue == nullptr) {
      outcome = {ReasonCode::kTopicNameInvalid,
                 "unknown queue '" + std::string(address->name) + "'"};
      return;
    }
    if (queue->standby) {  // its group stopped being led here since the home was asked
      outcome = {ReasonCode::kImplementationSpecificError,
                 "queue '" + std::string(address->name) + "' is not served by this node now"};
      return;
    }
    if (queue->stream != address->stream) {
      outcome = {ReasonCode::kTopicNameInvalid, misused_kind(*queue)};
      return;
    }
    if (entry->key.empty()) {
      entry->key = key_from_subtopic(entry->subtopic, queue->config.options.key_level);
    }
    // A queue this publish created is declared in the append's own write:
    // the entry is never in the store without its queue.
    store::WriteBatch batch = std::exchange(work.batch, store::WriteBatch());
    if (message_id_seen && !remember_message_id(work, *queue, *message_id_seen, batch)) {
      // A duplicate: acknowledged once everything before it is durable (the
      // original included), not stored again.
      ++queue->counters.duplicates;
      batch.append(std::move(with));
      if (replica_group_of_.contains(queue->config.name)) {
        // Through the group's log too, behind the original's entry: the
        // duplicate is acknowledged once the original is committed.
        batch.add(store::WriteBatch::Put{store::Space::kQueues, keys::queue(queue->config.name),
                                         queue_record(queue->config, queue->options_in_record)});
      }
      submit(work, std::move(batch), [acknowledge = std::move(acknowledge)](bool durable) {
        if (!acknowledge) return;
        if (durable) return acknowledge(ReasonCode::kSuccess, {});
        acknowledge(ReasonCode::kImplementationSpecificError, "the queue's store write failed");
      });
      return;
    }
    const std::uint32_t into = partition_for(*queue, *entry);
    const auto refuse = [&](Outcome why) {
      ++queue->counters.rejected;
      forget_message_id(*queue, message_id_seen);
      work.batch = std::move(batch);  // the declarations still go; the msg-id did not count
      if (message_id_seen) {
        work.batch.add(store::WriteBatch::Erase{store::Space::kQueues,
                                                keys::dedup(queue->config.name, *message_id_seen)});
      }
      outcome = std::move(why);
    };
    const config::QueueOptions& options = queue->config.options;
    const std::size_t size = entry_bytes(*entry);
    if (options.max_depth_bytes != 0 && size > options.max_depth_bytes) {
      return refuse({ReasonCode::kQuotaExceeded,
                     "a message of " + std::to_string(size) + " bytes never fits in queue '" +
                         queue->config.name + "' (max_depth_bytes " +
                         std::to_string(options.max_depth_bytes) + ")"});
    }
    if (!make_room(work, *queue, into, size)) {
      return refuse({ReasonCode::kQuotaExceeded,
                     "queue '" + queue->config.name + "' is full (max_depth " +
                         std::to_string(options.max_depth) + ", max_depth_bytes " +
                         std::to_string(options.max_depth_bytes) + ")",
                     /*full=*/true});
    }
    batch.append(std::move(with));
    const auto [partition, offset] = append(*queue, entry, batch, into);
    submit(work, std::move(batch),
           [this, queue, partition, offset, shard = shard.index(), message_id_seen,
            acknowledge = std::move(acknowledge)](bool durable) {
             run(&broker_.shard(shard), [&](Work&) {
               confirm(*queue, partition, offset, durable);
               // A retry of a publish that was refused must be stored, not taken for a duplicate.
               if (!durable) forget_message_id(*queue, message_id_seen);
             });
             if (!acknowledge) return;
             if (durable) return acknowledge(ReasonCode::kSuccess, {});
             acknowledge(ReasonCode::kImplementationSpecificError,
                         "the queue's store write failed");
           });
  });
  // Refused: the payload goes back, for a 3.x publisher held until there is room.
  if (outcome.reason != ReasonCode::kSuccess) publish.payload = std::move(entry->payload);
  return outcome;
}

// ---- delivering -------------------------------------------------------------------

EntryPtr QueueService::fetch(Queue& queue, std::uint32_t partition, GroupPartition& state,
                             std::uint64_t offset, bool sequential, bool* failed) {
  Partition& log = queue.partitions[partition];
  if (offset >= log.window_start) return log.window[offset - log.window_start].entry;
  if (offset < log.start) return nullptr;
  auto& ahead = state.read_ahead;
  while (!ahead.empty() && ahead.front().first < offset)
    ahead.pop_front();
  if (!ahead.empty()) {
    if (ahead.front().first == offset) return ahead.front().second;
    // The read that filled it started at or below `offset` and did not find it.
    if (sequential) return nullptr;
  }
  if (store_ == nullptr) return nullptr;
  if (sequential) ahead.clear();
  EntryPtr found;
  std::size_t read = 0;
  const std::size_t most = sequential ? kReadAhead : 1;
  const std::string& name = queue.config.name;
  bool undecodable = false;
  const store::Status status =
      store_->scan(store::Space::kQueues, keys::entry(name, partition, offset),
                   keys::entry(name, partition, log.window_start),
                   [&](std::string_view key, std::string_view value) {
                     auto decoded = decode_entry(value);
                     if (!decoded) {  // stop before it: nothing past it is taken as missing
                       undecodable = true;
                       return false;
                     }
                     const std::uint64_t at = keys::offset_of(key);
                     auto entry = std::make_shared<const LogEntry>(std::move(*decoded));
                     if (at == offset) found = entry;
                     if (sequential) ahead.emplace_back(at, std::move(entry));
                     return ++read < most;
                   });
  if (!status.ok || (undecodable && !found)) {
    // Never taken for a gap: that would settle a message nobody received.
    // The partition waits, and says why.
    spdlog::error("event=queue_read_failed queue={} partition={} offset={} error=\"{}\"", name,
                  partition, offset,
                  status.ok ? "an entry this version cannot read" : status.message);
    if (sequential) ahead.clear();
    if (failed != nullptr) *failed = true;
    return nullptr;
  }
  return found;
}

void QueueService::dispatch(Work& work, Queue& queue) {
  if (queue.standby || queue.deleted) return;
  for (auto& [name, group] : queue.groups)
    dispatch(work, queue, *group);
}

void QueueService::dispatch(Work& work, Queue& queue, Group& group) {
  const bool anyone = std::any_of(group.consumers.begin(), group.consumers.end(),
                                  [](const auto& consumer) { return consumer->online; });
  if (!anyone) return;
  const auto count = static_cast<std::uint32_t>(group.partitions.size());
  for (std::uint32_t i = 0; i < count; ++i)
    dispatch_partition(work, queue, group, (group.next_partition + i) % count);
  group.next_partition = (group.next_partition + 1) % count;
}

void QueueService::dispatch_partition(Work& work, Queue& queue, Group& group,
                                      std::uint32_t partition) {
  GroupPartition& state = group.partitions[partition];
  const Partition& log = queue.partitions[partition];
  // The topic a consumer's filter is matched against, built only when some
  // consumer has a filter, in one buffer for the whole pass.
  const bool filtered = std::any_of(group.consumers.begin(), group.consumers.end(),
                                    [](const auto& consumer) { return !consumer->whole_queue; });
  std::string topic;
  static const Pending kNeverFailed;
  while (true) {
    std::uint64_t offset = 0;
    const bool again = !state.due.empty() && state.due.begin()->first <= work.now;
    if (again) {
      offset = state.due.begin()->second;
    } else if (state.cursor < log.visible) {
      // A stream is read in offset order: a failed message waiting for its
      // backoff goes before anything after it that was not sent yet.
      if (queue.stream && !state.due.empty()) return;
      offset = state.cursor;
      if (offset < state.floor || state.settled.contains(offset)) {
        ++state.cursor;  // settled before a restart
        continue;
      }
    } else {
      return;
    }
    const auto take = [&] {
      if (again) {
        state.due.erase(state.due.begin());
        return;
      }
      ++state.cursor;
      Pending& pending = state.pending[offset];
      if (const auto it = state.failures_before.find(offset); it != state.failures_before.end()) {
        pending.failures = it->second;
        state.failures_before.erase(it);
      }
    };
    bool unreadable = false;
    const EntryPtr entry = fetch(queue, partition, state, offset, !again, &unreadable);
    if (unreadable) return;  // the store could not be read: tried again at the next turn
    if (!entry) {            // a write that failed, or gone from the log
      take();
      const bool had_failures = finish_pending(work, group, partition, offset);
      settle(queue, group, partition, offset, work.batch, had_failures);
      continue;
    }
    if (entry->expires_at_ms != 0 && work.now_ms >= entry->expires_at_ms) {
      take();
      dead_letter(work, queue, group, partition, offset, "expired");
      continue;
    }
    const bool keyed = queue.ordering == Ordering::kKey && !entry->key.empty();
    if (keyed) {
      if (const auto busy = state.key_busy.find(entry->key);
          busy != state.key_busy.end() && busy->second != offset) {
        take();  // behind the one of its key in flight: offered when that one settles
        state.pending[offset].key = entry->key;
        state.key_waiting[entry->key].push_back(offset);
        continue;
      }
    }
    if (filtered) {
      topic.assign(queue.prefix);
      if (entry->subtopic) topic.append("/").append(*entry->subtopic);
    }
    const Pending& probe = again ? state.pending[offset] : kNeverFailed;
    bool anyone_takes_it = false;
    Consumer* consumer = nullptr;
    if (queue.ordering == Ordering::kPartition) {
      Consumer* holder = partition_holder(group, partition);
      if (holder == nullptr) return;  // the partition changes hands once its leases settle
      consumer = choose_only(*holder, topic, anyone_takes_it);
    } else {
      consumer = choose(group, topic, probe, anyone_takes_it);
    }
    if (consumer == nullptr) {
      if (anyone_takes_it) return;  // those whose filter takes it are full: wait for room
      take();
      state.parked.insert(offset);  // offered again when the group's consumers change
      if (keyed && !state.key_busy.contains(entry->key)) {
        state.key_busy[entry->key] = offset;  // the later ones of its key wait behind it
        state.pending[offset].key = entry->key;
      }
      continue;
    }
    take();
    if (keyed) {
      state.key_busy[entry->key] = offset;
      state.pending[offset].key = entry->key;
    }
    lease(work, queue, group, partition, offset, *entry, *consumer);
  }
}

Consumer* QueueService::partition_holder(Group& group, std::uint32_t partition) {
  // The partitions are spread over the online consumers by their order of
  // arrival; a partition changes hands only when none of it is leased, so
  // it never has two holders at once.
  const auto online = static_cast<std::size_t>(
      std::count_if(group.consumers.begin(), group.consumers.end(),
                    [](const auto& consumer) { return consumer->online; }));
  if (online == 0) return nullptr;
  std::size_t skip = partition % online;
  Consumer* wanted = nullptr;
  for (const auto& consumer : group.consumers) {
    if (consumer->online && skip-- == 0) {
      wanted = consumer.get();
      break;
    }
  }
  GroupPartition& state = group.partitions[partition];
  if (state.holder == wanted->id) return wanted;
  if (!state.leases.empty()) return nullptr;
  state.holder = wanted->id;
  return wanted;
}

Consumer* QueueService::choose_only(Consumer& consumer, const std::string& topic, bool& any) {
  any = consumer.whole_queue || mqtt::topic_matches(consumer.address, topic);
  if (!any || consumer.outstanding >= consumer.credit) return nullptr;
  return &consumer;
}

bool QueueService::finish_pending(Work& work, Group& group, std::uint32_t partition,
                                  std::uint64_t offset) {
  GroupPartition& state = group.partitions[partition];
  const auto found = state.pending.find(offset);
  if (found == state.pending.end()) return false;
  const bool had_failures = found->second.failures > 0;
  const std::string key = std::move(found->second.key);
  state.pending.erase(found);
  if (key.empty()) return had_failures;
  if (const auto behind = state.key_waiting.find(key); behind != state.key_waiting.end()) {
    std::erase(behind->second, offset);  // it was waiting behind its key, and goes
  }
  // The next message of its key, if one waits, may go now.
  const auto busy = state.key_busy.find(key);
  if (busy == state.key_busy.end() || busy->second != offset) return had_failures;
  const auto waiting = state.key_waiting.find(key);
  if (waiting == state.key_waiting.end() || waiting->second.empty()) {
    state.key_busy.erase(busy);
    if (waiting != state.key_waiting.end()) state.key_waiting.erase(waiting);
    return had_failures;
  }
  busy->second = waiting->second.front();
  waiting->second.pop_front();
  if (waiting->second.empty()) state.key_waiting.erase(waiting);
  state.pending[busy->second].when = work.now;
  state.due.emplace(work.now, busy->second);
  return had_failures;
}

Consumer* QueueService::choose(Group& group, const std::string& topic, const Pending& pending,
                               bool& any) {
  any = false;
  const std::size_t count = group.consumers.size();
  std::size_t fallback = count;
  for (std::size_t i = 0; i < count; ++i) {
    const std::size_t at = (group.next_consumer + i) % count;
    Consumer& consumer = *group.consumers[at];
    if (!consumer.online) continue;
    if (!consumer.whole_queue && !mqtt::topic_matches(consumer.address, topic)) continue;
    any = true;
    if (consumer.outstanding >= consumer.credit) continue;
    const auto& failed = pending.failed_by;
    if (std::find(failed.begin(), failed.end(), consumer.id) != failed.end()) {
      if (fallback == count) fallback = at;  // only if no one else can take it
      continue;
    }
    group.next_consumer = (at + 1) % count;
    return &consumer;
  }
  if (fallback == count) return nullptr;
  group.next_consumer = (fallback + 1) % count;
  return group.consumers[fallback].get();
}

void QueueService::lease(Work& work, Queue& queue, Group& group, std::uint32_t partition,
                         std::uint64_t offset, const LogEntry& entry, Consumer& consumer) {
  GroupPartition& state = group.partitions[partition];
  Pending& pending = state.pending[offset];
  ++queue.counters.delivered;
  broker::Delivery delivery;
  delivery.message = delivery_message(queue, group, partition, offset, entry, pending.failures + 1,
                                      consumer, work.now_ms);
  if (consumer.at_most_once) {
    // Settled as it is written: at most once, as the queue allows. Its
    // credit is a pace (so much per loop turn), not a count of leases.
    ++consumer.outstanding;
    dispatch_soon(queue);
    acknowledge(work, queue, group, partition, offset);
    delivery.qos = mqtt::QoS::kAtMostOnce;
    work.deliveries.push_back({consumer.session, std::move(delivery)});
    return;
  }
  pending.leased = true;
  pending.manual = consumer.manual;
  pending.consumer = consumer.id;
  pending.when = work.now + std::chrono::milliseconds(queue.config.options.lease_timeout_ms);
  pending.message = delivery.message.get();
  state.leases.emplace(pending.when, offset);
  ++consumer.outstanding;
  leases_[pending.message] = {&queue, &group, partition, offset, consumer.session.shard};
  note_due(pending.when);
  delivery.qos = mqtt::QoS::kAtLeastOnce;
  delivery.listener = this;
  work.deliveries.push_back({consumer.session, std::move(delivery)});
}

broker::MessagePtr QueueService::delivery_message(const Queue& queue, const Group& group,
                                                  std::uint32_t partition, std::uint64_t offset,
                                                  const LogEntry& entry, std::uint32_t count,
                                                  const Consumer& consumer,
                                                  std::int64_t now_ms) const {
  auto message = std::make_shared<broker::Message>();
  message->topic = queue.prefix;
  if (entry.subtopic && !consumer.whole_queue) message->topic += "/" + *entry.subtopic;
  message->payload = entry.payload;
  message->qos = mqtt::QoS::kAtLeastOnce;
  if (entry.expires_at_ms != 0) {
    message->expires_at = Clock::now() + std::chrono::milliseconds(entry.expires_at_ms - now_ms);
  }
  if (consumer.v5) {
    mqtt::Properties properties = read_block(entry.properties);
    auto& user = properties.user_properties;
    // The names the broker sets are its own: one of each, this delivery's.
    std::erase_if(user, [](const mqtt::UserProperty& property) {
      return property.name == "message-id" || property.name == "delivery-count" ||
             property.name == "group" || property.name == "queue" || property.name == "timestamp" ||
             property.name == "subtopic" || property.name == "offset";
    });
    user.push_back({"message-id", message_id(partition, offset)});
    user.push_back({"delivery-count", std::to_string(count)});
    user.push_back({"group", group.name});
    user.push_back({"queue", queue.config.name});
    user.push_back({"timestamp", std::to_string(entry.timestamp_ms)});
    if (queue.stream) user.push_back({"offset", std::to_string(offset)});
    if (!entry.key.empty() && user_property(properties, "key") == nullptr) {
      user.push_back({"key", entry.key});
    }
    if (consumer.whole_queue && entry.subtopic) user.push_back({"subtopic", *entry.subtopic});
    mqtt::encode_shared_properties(properties, message->encoded_properties);
  }
  return message;
}

// ---- settling -----------------------------------------------------------------------

void QueueService::settle(Queue& queue, Group& group, std::uint32_t partition, std::uint64_t offset,
                          store::WriteBatch& into, bool had_failures, bool atomic) {
  GroupPartition& state = group.partitions[partition];
  store::WriteBatch unstored;  // an anonymous reader's: kept in memory only
  store::WriteBatch& batch = group.ephemeral ? unstored : into;
  const std::string& name = queue.config.name;
  if (had_failures) {
    batch.add(store::WriteBatch::Erase{store::Space::kQueues,
                                       keys::failures(name, group.name, partition, offset)});
  }
  if (offset != state.floor) {
    if (offset > state.floor && state.settled.insert(offset).second) {
      batch.add(store::WriteBatch::Put{store::Space::kQueues,
                                       keys::settled(name, group.name, partition, offset),
                                       std::string()});
    }
    return;
  }
  const std::uint64_t old_floor = state.floor;
  ++state.floor;
  while (!state.settled.empty() && *state.settled.begin() == state.floor) {
    state.settled.erase(state.settled.begin());
    ++state.floor;
  }
  state.cursor = std::max(state.cursor, state.floor);
  // The floor is written once per loop turn (write_floors), not per message:
  // a settlement lost to a crash only means a redelivery. It goes in this
  // batch when the batch is a move (all or nothing), or erases the markers
  // the floor passed (without the floor, a settled message such as a dead
  // letter would be unsettled again after a crash).
  if (atomic || state.floor - old_floor > 1) {
    batch.add(store::WriteBatch::Put{
        store::Space::kQueues, keys::floor(name, group.name, partition), encode_u64(state.floor)});
    state.written_floor = state.floor;
  } else if (!state.floor_dirty && !group.ephemeral) {
    state.floor_dirty = true;
    dirty_floors_.push_back({&queue, &group, partition});
    floors_pending_.store(true, std::memory_order_relaxed);
  }
  if (state.floor - old_floor > 1) {  // the markers the floor passed
    batch.add(store::WriteBatch::EraseRange{
        store::Space::kQueues, keys::settled(name, group.name, partition, old_floor),
        keys::settled(name, group.name, partition, state.floor)});
  }
}

void QueueService::acknowledge(Work& work, Queue& queue, Group& group, std::uint32_t partition,
                               std::uint64_t offset) {
  const bool had_failures = finish_pending(work, group, partition, offset);
  ++queue.counters.acknowledged;
  settle(queue, group, partition, offset, work.batch, had_failures);
}

void QueueService::fail(Work& work, Queue& queue, Group& group, std::uint32_t partition,
                        std::uint64_t offset, std::optional<std::uint32_t> delay_ms) {
  GroupPartition& state = group.partitions[partition];
  Pending& pending = state.pending[offset];
  ++pending.failures;
  ++queue.counters.failed;
  pending.failed_by.push_back(pending.consumer);
  pending.leased = false;
  pending.consumer = 0;
  pending.message = nullptr;
  const config::QueueOptions& options = queue.config.options;
  if (pending.failures >= options.max_deliveries) {
    return dead_letter(work, queue, group, partition, offset, "max-deliveries");
  }
  const auto& steps = options.redelivery_backoff_ms;
  const std::uint32_t wait =
      delay_ms.value_or(steps[std::min<std::size_t>(pending.failures - 1, steps.size() - 1)]);
  pending.when = work.now + std::chrono::milliseconds(wait);
  state.due.emplace(pending.when, offset);
  note_due(pending.when);
  // Kept, so that a restart does not reset the count towards max_deliveries.
  if (group.ephemeral) return;
  work.batch.add(store::WriteBatch::Put{
      store::Space::kQueues, keys::failures(queue.config.name, group.name, partition, offset),
      encode_u32(pending.failures)});
}

void QueueService::dead_letter(Work& work, Queue& queue, Group& group, std::uint32_t partition,
                               std::uint64_t offset, const char* reason,
                               const std::string* detail) {
  GroupPartition& state = group.partitions[partition];
  // A stream's message stays in the stream: one reader's failure, or its
  // expiry, is not a reason to copy it (once per reader) elsewhere. Named
  // groups dead-letter what fails max_deliveries or is rejected; anonymous
  // readers and expired messages just pass it by.
  if (queue.stream && (group.ephemeral || std::string_view(reason) == "expired")) {
    const bool had_failures = finish_pending(work, group, partition, offset);
    return settle(queue, group, partition, offset, work.batch, had_failures);
  }
  bool unreadable = false;
  const EntryPtr entry = fetch(queue, partition, state, offset, false, &unreadable);
  Pending& pending = state.pending[offset];
  if (unreadable) {  // kept, and tried again in a while: never lost to a read error
    pending.leased = false;
    pending.when = work.now + std::chrono::seconds(1);
    state.due.emplace(pending.when, offset);
    note_due(pending.when);
    return;
  }
  const std::uint32_t failures = pending.failures;
  finish_pending(work, group, partition, offset);
  if (!entry || queue.dead_letter == nullptr) {
    if (entry) ++queue.counters.discarded;  // dead_letter: none
    return settle(queue, group, partition, offset, work.batch, failures > 0);
  }
  // One write: in the dead-letter queue and settled here, or neither.
  store::WriteBatch batch;
  move_to_dead_letters(work, queue, *entry, partition, offset, reason, detail, failures, batch,
                       &group);
  settle(queue, group, partition, offset, batch, failures > 0, /*atomic=*/true);
  submit_move(work, std::move(batch));
  // Told once the move is decided (it is durable with the batch just handed on).
  if (broker_.wants(broker::EventKind::kQueueDeadLettered)) {
    broker::Event e;
    e.kind = broker::EventKind::kQueueDeadLettered;
    e.queue = queue.config.name;
    e.group = group.name;
    e.message_id = message_id(partition, offset);
    e.reason = reason;
    broker_.emit(std::move(e));
  }
}

void QueueService::move_to_dead_letters(Work& work, Queue& queue, const LogEntry& entry,
                                        std::uint32_t partition, std::uint64_t offset,
                                        const char* reason, const std::string* detail,
                                        std::uint32_t failures, store::WriteBatch& batch,
                                        const Group* group) {
  auto moved = std::make_shared<LogEntry>(entry);
  moved->timestamp_ms = work.now_ms;
  moved->expires_at_ms = 0;  // kept for someone to look at, not to expire again
  mqtt::Properties properties = read_block(entry.properties);
  auto& user = properties.user_properties;
  user.push_back({"dead-letter-reason", reason});
  if (detail != nullptr) user.push_back({"dead-letter-detail", *detail});
  user.push_back({"original-queue", queue.config.name});
  user.push_back({"original-message-id", message_id(partition, offset)});
  if (group != nullptr) user.push_back({"original-group", group->name});
  // Its own delivery-count, in the dead-letter queue, starts again.
  user.push_back({"original-delivery-count", std::to_string(failures)});
  user.push_back({"dead-lettered-at", std::to_string(work.now_ms)});
  moved->properties = write_block(properties);
  Queue& target = *queue.dead_letter;
  const auto [to_partition, to_offset] = append(target, std::move(moved), batch);
  work.appended.push_back({&target, to_partition, to_offset});
  ++queue.counters.dead_lettered;
}

void QueueService::submit_move(Work& work, store::WriteBatch&& batch) {
  std::vector<Appended> appended;
  appended.swap(work.appended);
  submit(work, std::move(batch), confirm_when_durable(*work.shard, std::move(appended)));
}

std::function<void(bool)> QueueService::confirm_when_durable(broker::Shard& shard,
                                                             std::vector<Appended> appended) {
  // The appends among a batch's changes become visible once it is durable.
  if (appended.empty()) return nullptr;
  return [this, appended = std::move(appended), shard = shard.index()](bool durable) {
    run(&broker_.shard(shard), [&](Work&) {
      for (const Appended& entry : appended)
        confirm(*entry.queue, entry.partition, entry.offset, durable);
    });
  };
}

bool QueueService::consumer_exists(const Group& group, std::uint64_t consumer) {
  return std::any_of(group.consumers.begin(), group.consumers.end(),
                     [&](const auto& candidate) { return candidate->id == consumer; });
}

Group* QueueService::find_group(Queue& queue, std::string_view name) {
  const auto found = queue.groups.find(name);
  return found == queue.groups.end() ? nullptr : found->second.get();
}

bool QueueService::end_lease(Group& group, std::uint32_t partition, std::uint64_t offset) {
  GroupPartition& state = group.partitions[partition];
  const auto found = state.pending.find(offset);
  if (found == state.pending.end() || !found->second.leased) return false;
  Pending& pending = found->second;
  if (pending.message != nullptr) leases_.erase(pending.message);
  state.leases.erase({pending.when, offset});
  for (const auto& consumer : group.consumers) {
    if (consumer->id == pending.consumer && consumer->outstanding > 0) --consumer->outstanding;
  }
  pending.message = nullptr;
  return true;
}

void QueueService::on_settled(const broker::Delivery& delivery, ReasonCode reason) {
  run(nullptr, [&](Work& work) {
    const auto found = leases_.find(delivery.message.get());
    if (found == leases_.end()) return;  // expired, or never leased
    const LeaseRef ref = found->second;
    work.shard = &broker_.shard(ref.shard);  // this thread's: the session's
    Queue& queue = *ref.queue;
    Group& group = *ref.group;
    GroupPartition& state = group.partitions[ref.partition];
    const auto held = state.pending.find(ref.offset);
    if (held == state.pending.end() || held->second.message != delivery.message.get()) {
      leases_.erase(found);  // cannot happen: a lease is always pending
      return;
    }
    Pending& pending = held->second;
    if (!mqtt::is_error(reason) && pending.manual && consumer_exists(group, pending.consumer)) {
      // Received, not settled: the lease stays until a verb or its deadline.
      leases_.erase(found);
      pending.message = nullptr;
      return;
    }
    end_lease(group, ref.partition, ref.offset);
    if (!mqtt::is_error(reason) && pending.manual) {
      // Received by a manual consumer that has since gone: no one can settle it.
      fail(work, queue, group, ref.partition, ref.offset);
    } else if (!mqtt::is_error(reason)) {
      acknowledge(work, queue, group, ref.partition, ref.offset);
    } else if (reason == ReasonCode::kPayloadFormatInvalid) {
      dead_letter(work, queue, group, ref.partition, ref.offset, "rejected");
    } else {
      fail(work, queue, group, ref.partition, ref.offset);
    }
    dispatch_soon(queue);
  });
}

// ---- verbs ----------------------------------------------------------------------------

std::optional<QueueService::Held> QueueService::held_by(Queue& queue, broker::TargetRef session,
                                                        std::string_view id,
                                                        const std::string* group_name) {
  const auto colon = id.find(':');
  if (colon == std::string_view::npos) return std::nullopt;
  const auto parsed_partition = whole_number<std::uint32_t>(id.substr(0, colon));
  const auto parsed_offset = whole_number<std::uint64_t>(id.substr(colon + 1));
  if (!parsed_partition || !parsed_offset || *parsed_partition >= queue.partitions.size())
    return std::nullopt;
  const std::uint32_t partition = *parsed_partition;
  const std::uint64_t offset = *parsed_offset;
  for (auto& [name, group] : queue.groups) {
    if (group_name != nullptr && name != *group_name) continue;
    const GroupPartition& state = group->partitions[partition];
    const auto pending = state.pending.find(offset);
    if (pending == state.pending.end() || !pending->second.leased) continue;
    for (const auto& consumer : group->consumers) {
      if (consumer->id == pending->second.consumer && consumer->session == session)
        return Held{group.get(), partition, offset};
    }
  }
  return std::nullopt;
}

QueueService::Outcome QueueService::apply_verb(broker::Shard& shard, broker::TargetRef from,
                                               const Address& address,
                                               const mqtt::Properties& properties) {
  enum class Verb { kAck, kNack, kRelease, kReject, kProgress, kCommit };
  const std::string_view verb = address.verb, queue_name = address.name;
  Verb what;
  if (verb == "$commit" && address.stream) {
    what = Verb::kCommit;
  } else if (verb == "$ack") {
    what = Verb::kAck;
  } else if (verb == "$nack") {
    what = Verb::kNack;
  } else if (verb == "$release") {
    what = Verb::kRelease;
  } else if (verb == "$reject") {
    what = Verb::kReject;
  } else if (verb == "$progress") {
    what = Verb::kProgress;
  } else {
    return {ReasonCode::kTopicNameInvalid, "unknown verb '" + std::string(verb) + "'"};
  }
  std::optional<std::uint32_t> delay_ms;
  if (const std::string* asked = user_property(properties, "delay-ms")) {
    delay_ms = whole_number<std::uint32_t>(*asked);
    if (!delay_ms || *delay_ms > 86'400'000) {
      return {ReasonCode::kImplementationSpecificError,
              "delay-ms is not a number of ms up to 86400000 (a day)"};
    }
  }
  const std::string* group_name = user_property(properties, "group");
  Outcome outcome;
  run(&shard, [&](Work& work) {
    Queue* queue = find_queue(queue_name);
    if (queue == nullptr) {
      outcome = {ReasonCode::kTopicNameInvalid, "unknown queue '" + std::string(queue_name) + "'"};
      return;
    }
    if (queue->stream != address.stream) {
      outcome = {ReasonCode::kTopicNameInvalid, misused_kind(*queue)};
      return;
    }
    if (what == Verb::kCommit) {
      outcome = commit(work, *queue, from, properties);
      return;
    }
    std::string unknown;
    std::size_t named = 0;
    for (const mqtt::UserProperty& property : properties.user_properties) {
      if (property.name != "message-id") continue;
      ++named;
      const auto held = held_by(*queue, from, property.value, group_name);
      if (!held) {
        if (!unknown.empty()) unknown += ", ";
        unknown += property.value;
        continue;
      }
      Group& group = *held->group;
      GroupPartition& state = group.partitions[held->partition];
      Pending& pending = state.pending[held->offset];
      if (what == Verb::kProgress) {  // the same holder, a new deadline
        state.leases.erase({pending.when, held->offset});
        pending.when = work.now + std::chrono::milliseconds(queue->config.options.lease_timeout_ms);
        state.leases.emplace(pending.when, held->offset);
        note_due(pending.when);
        continue;
      }
      end_lease(group, held->partition, held->offset);
      dispatch_soon(*queue);
      switch (what) {
        case Verb::kAck:
          acknowledge(work, *queue, group, held->partition, held->offset);
          break;
        case Verb::kNack:
          fail(work, *queue, group, held->partition, held->offset, delay_ms);
          break;
        case Verb::kRelease:  // given back without fault: offered again at once, not counted
          pending.leased = false;
          pending.consumer = 0;
          pending.when = work.now;
          state.due.emplace(pending.when, held->offset);
          break;
        case Verb::kReject:
          dead_letter(work, *queue, group, held->partition, held->offset, "rejected",
                      user_property(properties, "reason"));
          break;
        case Verb::kProgress:
        case Verb::kCommit:
          break;
      }
    }
    if (named == 0) {
      outcome = {ReasonCode::kImplementationSpecificError, "no message-id user property"};
    } else if (!unknown.empty()) {
      outcome = {ReasonCode::kImplementationSpecificError,
                 "no lease held by this client on " + unknown};
    }
  });
  return outcome;
}

// ---- timers -------------------------------------------------------------------------

void QueueService::expire_leases(Work& work) {
  for (auto& [name, queue] : queues_) {
    for (auto& [group_name, group] : queue->groups) {
      for (std::uint32_t p = 0; p < group->partitions.size(); ++p) {
        GroupPartition& state = group->partitions[p];
        while (!state.leases.empty() && state.leases.begin()->first <= work.now) {
          const std::uint64_t offset = state.leases.begin()->second;
          if (!end_lease(*group, p, offset)) {
            state.leases.erase(state.leases.begin());  // cannot happen; never loop on it
            continue;
          }
          // The consumer's late PUBACK now finds no lease and changes nothing.
          fail(work, *queue, *group, p, offset);
        }
      }
    }
  }
}

void QueueService::write_floors(Work& work) {
  for (const DirtyFloor& dirty : dirty_floors_) {
    if (dirty.queue->deleted) continue;
    GroupPartition& state = dirty.group->partitions[dirty.partition];
    state.floor_dirty = false;
    state.written_floor = state.floor;
    work.batch.add(store::WriteBatch::Put{
        store::Space::kQueues,
        keys::floor(dirty.queue->config.name, dirty.group->name, dirty.partition),
        encode_u64(state.floor)});
  }
  dirty_floors_.clear();
  floors_pending_.store(false, std::memory_order_relaxed);
}

void QueueService::poll(broker::Shard& shard, Clock::time_point now) {
  if (dispatch_pending_.load(std::memory_order_relaxed) ||
      floors_pending_.load(std::memory_order_relaxed)) {
    run(&shard, [&](Work& work) {
      std::vector<Queue*> queues;
      queues.swap(to_dispatch_);
      dispatch_pending_.store(false, std::memory_order_relaxed);
      for (Queue* queue : queues) {
        queue->dispatch_soon = false;
        for (auto& [name, group] : queue->groups) {
          for (auto& consumer : group->consumers)
            if (consumer->at_most_once) consumer->outstanding = 0;  // a new turn's pace
        }
        dispatch(work, *queue);
      }
      write_floors(work);
    });
  }
  if (now.time_since_epoch().count() < next_due_.load(std::memory_order_relaxed)) return;
  bool housekeeping = false;
  run(&shard, [&](Work& work) {
    if (work.now.time_since_epoch().count() < next_due_.load(std::memory_order_relaxed)) return;
    next_due_.store(Clock::time_point::max().time_since_epoch().count(), std::memory_order_relaxed);
    expire_leases(work);
    for (auto& [name, queue] : queues_)
      dispatch(work, *queue);
    if (work.now >= next_housekeeping_) {
      truncate_logs(work);
      next_housekeeping_ = work.now + kHousekeepingInterval;
      housekeeping = true;
    }
    // What is due next: the earliest lease deadline, and the earliest
    // redelivery that someone could take now (one that no one can take is
    // offered when a consumer comes, or gets credit back: not polled for).
    Clock::time_point next = next_housekeeping_;
    for (auto& [name, queue] : queues_) {
      for (auto& [group_name, group] : queue->groups) {
        const bool takers =
            std::any_of(group->consumers.begin(), group->consumers.end(), [](const auto& consumer) {
              return consumer->online && consumer->outstanding < consumer->credit;
            });
        for (const GroupPartition& state : group->partitions) {
          if (!state.leases.empty()) next = std::min(next, state.leases.begin()->first);
          if (takers && !state.due.empty()) next = std::min(next, state.due.begin()->first);
        }
      }
    }
    note_due(next);
  });
  if (housekeeping) compact(shard);
}

void QueueService::truncate_logs(Work& work) {
  // A work queue's log keeps what some group has not settled; with no group
  // at all, everything (the first consumers will want it).
  for (auto& [name, queue] : queues_) {
    if (queue->standby) continue;  // its leader decides
    forget_old_message_ids(work, *queue);
    apply_retention(work, *queue);
    if (queue->groups.empty() || queue->stream) continue;
    for (std::uint32_t p = 0; p < queue->partitions.size(); ++p) {
      Partition& log = queue->partitions[p];
      // Only below floors already written: entries gone while a floor in the
      // store is still below them would let a restart give their offsets again.
      std::uint64_t floor = std::numeric_limits<std::uint64_t>::max();
      for (auto& [group_name, group] : queue->groups)
        floor = std::min(floor, group->partitions[p].written_floor);
      floor = std::min(floor, log.visible);
      if (floor <= log.start) continue;
      if (queue->counts_bytes)
        log.bytes -= std::min(log.bytes, bytes_between(*queue, p, log.start, floor));
      work.batch.add(store::WriteBatch::EraseRange{
          store::Space::kQueues, keys::entry(name, p, log.start), keys::entry(name, p, floor)});
      log.start = floor;
      while (log.window_start < log.start && !log.window.empty())
        log.pop();
    }
  }
}

// ---- consumers ----------------------------------------------------------------------

template <class Visit>
void QueueService::for_each_consumer_of(broker::TargetRef session, Visit&& visit) {
  for (auto& [name, queue] : queues_) {
    for (auto& [group_name, group] : queue->groups) {
      for (std::size_t i = 0; i < group->consumers.size();) {
        if (group->consumers[i]->session == session && visit(*queue, *group, i)) continue;
        ++i;
      }
    }
  }
}

namespace {

void unpark(Group& group, Clock::time_point now) {
  for (GroupPartition& state : group.partitions) {
    for (const std::uint64_t offset : state.parked) {
      state.pending[offset].when = now;
      state.due.emplace(now, offset);
    }
    state.parked.clear();
  }
}

void remove_consumer(Group& group, std::size_t index) {
  group.consumers.erase(group.consumers.begin() + static_cast<std::ptrdiff_t>(index));
  if (group.next_consumer >= group.consumers.size()) group.next_consumer = 0;
}

}  // namespace

std::uint32_t QueueService::credit(const Consumer& consumer, const config::QueueOptions& options,
                                   std::uint16_t receive_maximum) const {
  const std::uint32_t window =
      std::min<std::uint32_t>(receive_maximum, broker_.config().limits.max_inflight_messages);
  const std::uint32_t asked = consumer.prefetch != 0 ? consumer.prefetch : options.prefetch;
  return std::max<std::uint32_t>(1, std::min(asked, window));
}

mqtt::ReasonCode QueueService::subscribe(broker::Shard& shard, const ConsumerSpec& spec) {
  const auto address = parse_address(spec.address);
  if (!address || !address->verb.empty()) return ReasonCode::kTopicFilterInvalid;
  if (auto elsewhere = consumer_not_home(shard, address->name)) {
    if (spec.refusal_reason != nullptr) *spec.refusal_reason = std::move(elsewhere->second);
    return elsewhere->first;
  }
  const mqtt::Properties& properties = *spec.properties;
  const std::string* named = user_property(properties, "group");
  if (named == nullptr) named = user_property(properties, "consumer-group");
  const bool grouped = named != nullptr || !spec.share_group.empty();
  std::string group_name = named != nullptr ? *named : std::string(spec.share_group);
  if (named != nullptr && !spec.share_group.empty() && *named != spec.share_group) {
    return ReasonCode::kImplementationSpecificError;  // two different groups named
  }
  if (group_name.empty()) group_name = "default";
  // Group names appear in $SYS topics and store keys: the queue names' characters.
  if (!valid_queue_name(group_name)) return ReasonCode::kImplementationSpecificError;
  bool manual = false;
  if (const std::string* mode = user_property(properties, "ack-mode")) {
    if (*mode != "auto" && *mode != "manual") return ReasonCode::kImplementationSpecificError;
    manual = *mode == "manual";
  }
  std::uint32_t prefetch = 0;
  if (const std::string* asked = user_property(properties, "prefetch")) {
    const auto value = whole_number<std::uint32_t>(*asked);
    if (!value || *value == 0 || *value > 65535) return ReasonCode::kImplementationSpecificError;
    prefetch = *value;
  }
  std::optional<StreamStart> start;
  if (const std::string* asked = user_property(properties, "stream-offset")) {
    start = parse_stream_start(*asked, wall_ms());
    if (!start) return ReasonCode::kImplementationSpecificError;
  }
  bool seek_group = false;
  if (const std::string* asked = user_property(properties, "stream-seek")) {
    if (*asked != "true" && *asked != "false") return ReasonCode::kImplementationSpecificError;
    seek_group = *asked == "true" && !spec.restored;  // it moved the group when it was made
  }
  ReasonCode granted = ReasonCode::kTopicFilterInvalid;
  run(&shard, [&](Work& work) {
    Queue* queue = find_or_create(work, address->name, address->stream);
    if (queue == nullptr || queue->stream != address->stream) return;
    // A replicated queue not led here takes only the consumers read back at
    // start (they are served if this node comes to lead it).
    if (queue->standby && !spec.restored) {
      granted = ReasonCode::kImplementationSpecificError;
      return;
    }
    if (start && !queue->stream) {  // a work queue has no offsets to start from
      granted = ReasonCode::kImplementationSpecificError;
      return;
    }
    // A stream subscriber without a group reads alone, in memory only.
    const bool anonymous = queue->stream && !grouped;
    const config::QueueOptions& options = queue->config.options;
    const bool at_most_once = spec.max_qos == mqtt::QoS::kAtMostOnce;
    if (at_most_once && !options.allow_at_most_once) {
      granted = ReasonCode::kImplementationSpecificError;
      return;
    }
    Group* existing_group = anonymous ? nullptr : find_group(*queue, group_name);
    const auto anonymous_readers = static_cast<std::size_t>(
        std::count_if(queue->groups.begin(), queue->groups.end(),
                      [](const auto& entry) { return entry.second->ephemeral; }));
    const std::size_t named_groups = queue->groups.size() - anonymous_readers;
    if (existing_group == nullptr &&
        (anonymous ? anonymous_readers >= kMostAnonymousReaders : named_groups >= kMostGroups)) {
      granted = ReasonCode::kQuotaExceeded;
      return;
    }
    // A second SUBSCRIBE to the same filter replaces the first
    // [MQTT-3.8.4-3]: in the same group, the consumer keeps what it holds
    // (its id and credit); in another, what it received goes back.
    Consumer* same = nullptr;
    for_each_consumer_of(spec.session, [&](Queue& old_queue, Group& old_group, std::size_t i) {
      if (old_group.consumers[i]->filter != spec.filter) return false;
      if (&old_group == existing_group) {
        same = old_group.consumers[i].get();
        return false;
      }
      const std::uint64_t old_id = old_group.consumers[i]->id;
      remove_consumer(old_group, i);
      fail_received(work, old_queue, old_group, old_id);
      dispatch_soon(old_queue);
      return true;
    });
    std::unique_ptr<Consumer> made;
    Consumer* consumer = same;
    if (consumer == nullptr) {
      made = std::make_unique<Consumer>();
      consumer = made.get();
      consumer->id = next_consumer_id_++;
    }
    if (anonymous) group_name = "$anonymous-" + std::to_string(consumer->id);
    Group& target =
        existing_group != nullptr ? *existing_group : group(work, *queue, group_name, anonymous);
    if (queue->stream) {
      // stream-offset places a new group (as Kafka's auto.offset.reset
      // does); an existing group keeps its committed offset, so that a
      // member reconnecting moves nothing, unless stream-seek asks to move
      // the whole group. `committed` (the default): a new group reads from
      // the start, an anonymous reader from the latest.
      StreamStart from = start.value_or(StreamStart{});
      if (anonymous && from.kind == StreamStart::Kind::kCommitted)
        from.kind = StreamStart::Kind::kLatest;
      if (existing_group != nullptr && !seek_group) from.kind = StreamStart::Kind::kCommitted;
      if (from.kind != StreamStart::Kind::kCommitted) {
        for (std::uint32_t p = 0; p < target.partitions.size(); ++p)
          seek(work, *queue, target, p, start_offset(*queue, p, from, target.partitions[p].floor));
      }
    }
    consumer->session = spec.session;
    consumer->filter = spec.filter;
    consumer->address = std::string(spec.address);
    consumer->whole_queue = !address->subtopic.has_value();
    consumer->v5 = spec.v5;
    if (consumer->at_most_once && !at_most_once) consumer->outstanding = 0;  // a pace, not leases
    consumer->at_most_once = at_most_once;
    consumer->manual = manual && !at_most_once;
    consumer->prefetch = prefetch;
    consumer->credit = credit(*consumer, options, spec.receive_maximum);
    consumer->online = !spec.restored;
    if (made) target.consumers.push_back(std::move(made));
    drop_anonymous_readers();  // one this subscription replaced
    unpark(target, work.now);
    dispatch(work, *queue, target);
    granted = at_most_once ? ReasonCode::kSuccess : ReasonCode::kGrantedQoS1;
  });
  return granted;
}

bool QueueService::unsubscribe(broker::Shard& shard, broker::TargetRef session,
                               std::string_view filter) {
  bool existed = false;
  run(&shard, [&](Work& work) {
    for_each_consumer_of(session, [&](Queue& queue, Group& group, std::size_t i) {
      if (group.consumers[i]->filter != filter) return false;
      // Deliveries still in the session stay leased: their PUBACKs settle
      // them. What a manual consumer received can no longer be settled by
      // it: offered again now.
      const std::uint64_t consumer = group.consumers[i]->id;
      remove_consumer(group, i);
      fail_received(work, queue, group, consumer);
      dispatch(work, queue, group);
      existed = true;
      return true;
    });
    drop_anonymous_readers();
  });
  return existed;
}

void QueueService::fail_received(Work& work, Queue& queue, Group& group, std::uint64_t consumer) {
  for (std::uint32_t p = 0; p < group.partitions.size(); ++p) {
    std::vector<std::uint64_t> received;
    for (const auto& [offset, pending] : group.partitions[p].pending) {
      if (pending.leased && pending.message == nullptr && pending.consumer == consumer)
        received.push_back(offset);
    }
    for (const std::uint64_t offset : received) {
      end_lease(group, p, offset);
      fail(work, queue, group, p, offset);
    }
  }
}

void QueueService::session_offline(broker::Shard& shard, broker::TargetRef session) {
  run(&shard, [&](Work& work) {
    // Deliveries still in the session come back as it lets go of them
    // (on_settled); what a manual consumer received and did not settle
    // comes back here. Each is a failed attempt.
    std::vector<std::tuple<Queue*, Group*, std::uint64_t>> left;
    for_each_consumer_of(session, [&](Queue& queue, Group& group, std::size_t i) {
      group.consumers[i]->online = false;
      if (group.consumers[i]->manual) left.emplace_back(&queue, &group, group.consumers[i]->id);
      return false;
    });
    for (auto [queue, group, consumer] : left) {
      fail_received(work, *queue, *group, consumer);
      dispatch(work, *queue, *group);
    }
  });
}

void QueueService::session_online(broker::Shard& shard, broker::TargetRef session, bool v5,
                                  std::uint16_t receive_maximum) {
  run(&shard, [&](Work& work) {
    std::vector<std::pair<Queue*, Group*>> woken;
    for_each_consumer_of(session, [&](Queue& queue, Group& group, std::size_t i) {
      Consumer& consumer = *group.consumers[i];
      consumer.online = true;
      // The client may come back with another version or receive maximum
      // (and a consumer made again at start-up knew neither).
      consumer.v5 = v5;
      consumer.credit = credit(consumer, queue.config.options, receive_maximum);
      woken.emplace_back(&queue, &group);
      return false;
    });
    for (auto [queue, group] : woken) {
      unpark(*group, work.now);
      dispatch(work, *queue, *group);
    }
  });
}

void QueueService::session_ended(broker::Shard& shard, broker::TargetRef session) {
  run(&shard, [&](Work&) {
    for_each_consumer_of(session, [&](Queue&, Group& group, std::size_t i) {
      remove_consumer(group, i);
      return true;
    });
    drop_anonymous_readers();
  });
}

}  // namespace sluice::queue
