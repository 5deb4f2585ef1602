// What streams add to the queue machinery: where a group starts reading
// (stream-offset), moving a group (seek), committing an offset ($commit),
// and the anonymous readers that subscribe without a group.
#include <algorithm>

#include "queue/properties.hpp"
#include "queue/queue_service.hpp"
#include "queue/stream_start.hpp"

namespace sluice::queue {
namespace {

std::optional<std::uint64_t> number(const std::string* text) {
  return text == nullptr ? std::nullopt : whole_number<std::uint64_t>(*text);
}

}  // namespace

std::string QueueService::misused_kind(const Queue& queue) {
  return queue.stream
             ? "'" + queue.config.name + "' is a stream: use $stream/" + queue.config.name
             : "'" + queue.config.name + "' is a work queue: use $queue/" + queue.config.name;
}

std::optional<std::pair<std::uint64_t, EntryPtr>> QueueService::first_at_or_after(
    const Queue& queue, std::uint32_t partition, std::uint64_t from, bool& failed) const {
  const Partition& log = queue.partitions[partition];
  from = std::max(from, log.start);
  if (from < log.window_start && store_ != nullptr) {
    std::optional<std::pair<std::uint64_t, EntryPtr>> found;
    const std::string& name = queue.config.name;
    const store::Status status =
        store_->scan(store::Space::kQueues, keys::entry(name, partition, from),
                     keys::entry(name, partition, log.window_start),
                     [&](std::string_view key, std::string_view value) {
                       auto decoded = decode_entry(value);
                       if (!decoded) return true;  // not this version's: not a place to start
                       found.emplace(keys::offset_of(key),
                                     std::make_shared<const LogEntry>(std::move(*decoded)));
                       return false;
                     });
    if (!status.ok) {
      failed = true;
      return std::nullopt;
    }
    if (found) return found;
  }
  for (std::uint64_t at = std::max(from, log.window_start); at < log.visible; ++at) {
    if (const EntryPtr& entry = log.window[at - log.window_start].entry) return {{at, entry}};
  }
  return std::nullopt;
}

std::uint64_t QueueService::start_offset(Queue& queue, std::uint32_t partition,
                                         const StreamStart& start, std::uint64_t committed) {
  const Partition& log = queue.partitions[partition];
  using Kind = StreamStart::Kind;
  switch (start.kind) {
    case Kind::kEarliest:
      return log.start;
    case Kind::kLatest:
      return log.next > log.start ? log.next - 1 : log.next;
    case Kind::kNext:
      return log.next;
    case Kind::kCommitted:
      return committed;
    case Kind::kOffset:
      return std::clamp(start.offset, log.start, log.next);
    case Kind::kTimestamp:
      break;
  }
  // The first offset from which every message was appended at or after
  // the time: a binary search over the partition, one read per step.
  std::uint64_t low = log.start, high = log.next;
  while (low < high) {
    const std::uint64_t middle = low + (high - low) / 2;
    bool failed = false;
    const auto found = first_at_or_after(queue, partition, middle, failed);
    if (failed) return low;  // the store cannot be read: from what is known to be before
    if (!found || found->first >= high || found->second->timestamp_ms >= start.timestamp_ms) {
      high = middle;
    } else {
      low = found->first + 1;
    }
  }
  return low;
}

void QueueService::seek(Work& work, Queue& queue, Group& group, std::uint32_t partition,
                        std::uint64_t to) {
  GroupPartition& state = group.partitions[partition];
  const Partition& log = queue.partitions[partition];
  to = std::clamp(to, log.start, log.next);
  // What the group had in flight here ends: late PUBACKs change nothing.
  for (const auto& [offset, pending] : state.pending) {
    if (pending.leased) end_lease(group, partition, offset);
  }
  GroupPartition moved;
  moved.floor = moved.cursor = moved.written_floor = to;
  moved.floor_dirty = state.floor_dirty;  // still in dirty_floors_: written as it is now
  state = std::move(moved);
  if (group.ephemeral) return;
  const std::string& name = queue.config.name;
  work.batch.add(store::WriteBatch::Put{store::Space::kQueues,
                                        keys::floor(name, group.name, partition), encode_u64(to)});
  const std::string settled = keys::settled_prefix(name, group.name, partition);
  work.batch.add(
      store::WriteBatch::EraseRange{store::Space::kQueues, settled, keys::prefix_end(settled)});
  const std::string failures = keys::failures_prefix(name, group.name, partition);
  work.batch.add(
      store::WriteBatch::EraseRange{store::Space::kQueues, failures, keys::prefix_end(failures)});
}

QueueService::Outcome QueueService::commit(Work& work, Queue& queue, broker::TargetRef from,
                                           const mqtt::Properties& properties) {
  using mqtt::ReasonCode;
  if (!queue.stream) return {ReasonCode::kTopicNameInvalid, "$commit is for streams"};
  const auto offset = number(user_property(properties, "offset"));
  if (!offset) {
    return {ReasonCode::kImplementationSpecificError,
            "$commit needs an offset user property: the next offset to read"};
  }
  std::uint64_t partition = 0;
  if (const std::string* asked = user_property(properties, "partition")) {
    const auto parsed = number(asked);
    if (!parsed || *parsed >= queue.partitions.size()) {
      return {ReasonCode::kImplementationSpecificError,
              "partition is not one of 0.." + std::to_string(queue.partitions.size() - 1)};
    }
    partition = *parsed;
  } else if (queue.partitions.size() > 1) {
    return {ReasonCode::kImplementationSpecificError,
            "$commit on a stream of several partitions needs a partition user property"};
  }
  // The group: the one named, or the one this client reads the stream in.
  // Only a consumer of a group moves its offset.
  const std::string* named = user_property(properties, "group");
  Group* chosen = nullptr;
  for (auto& [name, group] : queue.groups) {
    if (named != nullptr && name != *named) continue;
    const bool member =
        std::any_of(group->consumers.begin(), group->consumers.end(),
                    [&](const auto& consumer) { return consumer->session == from; });
    if (!member) continue;
    if (chosen != nullptr) {
      return {ReasonCode::kImplementationSpecificError,
              "this client reads the stream in several groups: name one (group)"};
    }
    chosen = group.get();
  }
  if (chosen == nullptr) {
    return {ReasonCode::kImplementationSpecificError,
            named != nullptr ? "this client is not a consumer of group '" + *named + "'"
                             : "this client does not read the stream"};
  }
  const auto p = static_cast<std::uint32_t>(partition);
  const Partition& log = queue.partitions[p];
  if (*offset > log.next) {
    return {ReasonCode::kImplementationSpecificError,
            "offset " + std::to_string(*offset) + " is past the end of partition " +
                std::to_string(p) + " (" + std::to_string(log.next) + ")"};
  }
  // A commit behind the committed offset changes nothing (rewinding is
  // stream-offset's); one ahead settles everything below it.
  if (*offset > chosen->partitions[p].floor) {
    skip_to(work, queue, *chosen, p, *offset, work.batch);
    dispatch_soon(queue);
  }
  return {};
}

void QueueService::drop_anonymous_readers() {
  if (anonymous_readers_ == 0) return;  // every unsubscribe and session end asks
  for (auto& [name, queue] : queues_) {
    for (auto it = queue->groups.begin(); it != queue->groups.end();) {
      Group& group = *it->second;
      if (!group.ephemeral || !group.consumers.empty()) {
        ++it;
        continue;
      }
      for (const GroupPartition& state : group.partitions) {
        for (const auto& [offset, pending] : state.pending) {
          if (pending.message != nullptr) leases_.erase(pending.message);
        }
      }
      it = queue->groups.erase(it);
      --anonymous_readers_;
    }
  }
}

}  // namespace sluice::queue
