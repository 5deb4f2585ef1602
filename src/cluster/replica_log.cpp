#include "cluster/replica_log.hpp"

#include <spdlog/spdlog.h>

#include <cstdlib>

#include "queue/log_codec.hpp"
#include "store/store.hpp"

namespace sluice::cluster {

namespace {

constexpr char kPut = 'P', kErase = 'E', kEraseRange = 'R';

void put_bytes(std::string& out, std::string_view bytes) {
  out += queue::encode_u32(static_cast<std::uint32_t>(bytes.size()));
  out.append(bytes);
}

bool take_bytes(std::string_view& in, std::string& out) {
  if (in.size() < 4) return false;
  const std::uint32_t size = queue::decode_u32(in.substr(0, 4));
  in.remove_prefix(4);
  if (in.size() < size) return false;
  out.assign(in.substr(0, size));
  in.remove_prefix(size);
  return true;
}

void put_entry(std::string& out, std::string_view key, std::string_view value) {
  out.push_back(kPut);
  put_bytes(out, key);
  put_bytes(out, value);
}

}  // namespace

std::string encode_queue_writes(const store::WriteBatch& writes) {
  std::string out;
  for (const store::WriteBatch::Operation& operation : writes.operations()) {
    if (const auto* put = std::get_if<store::WriteBatch::Put>(&operation)) {
      put_entry(out, put->key, put->value);
    } else if (const auto* erase = std::get_if<store::WriteBatch::Erase>(&operation)) {
      out.push_back(kErase);
      put_bytes(out, erase->key);
    } else if (const auto* range = std::get_if<store::WriteBatch::EraseRange>(&operation)) {
      out.push_back(kEraseRange);
      put_bytes(out, range->from);
      put_bytes(out, range->to);
    }
  }
  return out;
}

std::optional<store::WriteBatch> decode_queue_writes(std::string_view entry) {
  store::WriteBatch writes;
  while (!entry.empty()) {
    const char kind = entry.front();
    entry.remove_prefix(1);
    std::string first, second;
    if (!take_bytes(entry, first)) return std::nullopt;
    if (kind != kErase && !take_bytes(entry, second)) return std::nullopt;
    switch (kind) {
      case kPut:
        writes.add(
            store::WriteBatch::Put{store::Space::kQueues, std::move(first), std::move(second)});
        break;
      case kErase:
        writes.add(store::WriteBatch::Erase{store::Space::kQueues, std::move(first)});
        break;
      case kEraseRange:
        writes.add(store::WriteBatch::EraseRange{store::Space::kQueues, std::move(first),
                                                 std::move(second)});
        break;
      default:
        return std::nullopt;
    }
  }
  return writes;
}

QueueLogMachine::QueueLogMachine(store::Store& store, std::vector<std::string> queues)
    : store_(store), queues_(std::move(queues)) {}

void QueueLogMachine::apply(std::uint64_t index, std::string_view entry) {
  const std::optional<store::WriteBatch> writes = decode_queue_writes(entry);
  if (!writes) {
    // Every member would skip it alike, but the queue would no longer be
    // what was acknowledged: stop rather than serve it.
    spdlog::critical("event=replica_entry_unreadable queue=\"{}\" index={}", queues_.front(),
                     index);
    std::abort();
  }
  if (const store::Status status = store_.write(*writes, false); !status.ok) {
    // The store refuses writes only when its disk does: this member cannot
    // keep the queue, and Raft must not count it as having applied it.
    spdlog::critical("event=replica_apply_failed queue=\"{}\" index={} error=\"{}\"",
                     queues_.front(), index, status.message);
    std::abort();
  }
}

std::string QueueLogMachine::snapshot() {
  // Every key as a put, written straight into an entry's encoding.
  std::string everything;
  for (const std::string& name : queues_) {
    for (const std::string& prefix : queue::keys::every_prefix(name)) {
      const store::Status status =
          store_.scan(store::Space::kQueues, prefix, queue::keys::prefix_end(prefix),
                      [&](std::string_view key, std::string_view value) {
                        put_entry(everything, key, value);
                        return true;
                      });
      if (!status.ok) {
        spdlog::critical("event=replica_snapshot_failed queue=\"{}\" error=\"{}\"", queues_.front(),
                         status.message);
        std::abort();
      }
    }
  }
  return everything;
}

void QueueLogMachine::restore(std::string_view snapshot) {
  std::optional<store::WriteBatch> writes = decode_queue_writes(snapshot);
  if (!writes) {
    spdlog::critical("event=replica_snapshot_unreadable queue=\"{}\"", queues_.front());
    std::abort();
  }
  // Everything the group's queues held here goes, then the snapshot's keys.
  store::WriteBatch replace;
  for (const std::string& name : queues_) {
    for (std::string& prefix : queue::keys::every_prefix(name)) {
      std::string end = queue::keys::prefix_end(prefix);
      replace.add(
          store::WriteBatch::EraseRange{store::Space::kQueues, std::move(prefix), std::move(end)});
    }
  }
  replace.append(std::move(*writes));
  if (const store::Status status = store_.write(replace, true); !status.ok) {
    spdlog::critical("event=replica_restore_failed queue=\"{}\" error=\"{}\"", queues_.front(),
                     status.message);
    std::abort();
  }
  spdlog::info("event=queue_replica_restored queue=\"{}\" snapshot_bytes={}", queues_.front(),
               snapshot.size());
}

}  // namespace sluice::cluster
