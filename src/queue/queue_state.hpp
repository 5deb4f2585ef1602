// What the queue layer holds in memory for each queue: its partitions' logs
// (the part appended this run that is still wanted, and where the log
// starts and ends) and, per consumer group and partition, what is settled,
// what is leased or waiting to be offered again, and where reading got to.
// Only what is pending lives here; the log itself is read from the store
// (QueueService), so a queue of millions of messages costs memory in
// proportion to what is in flight. Guarded by QueueService's mutex.
#pragma once

#include <array>
#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "broker/message.hpp"
#include "broker/subscriber.hpp"
#include "config/config.hpp"
#include "queue/log_codec.hpp"

namespace sluice::queue {

using broker::Clock;
using EntryPtr = std::shared_ptr<const LogEntry>;

// What a message counts for in byte limits and windows: payload and properties.
inline std::size_t entry_bytes(const LogEntry& entry) {
  return entry.payload.size() + entry.properties.size();
}

// What a compaction pass needs of one entry (stream_compaction.cpp).
struct CompactionEntry {
  std::uint64_t offset = 0;
  std::string key;
  std::int64_t timestamp_ms = 0;
  bool tombstone = false;
  std::size_t bytes = 0;
};

struct Partition {
  std::uint64_t start = 0;    // the first offset the log may still hold
  std::uint64_t next = 0;     // the next offset to give
  std::uint64_t visible = 0;  // offsets below are durable (or failed): they may be delivered
  // Offsets [window_start, next), appended this run and not yet let go of:
  // each `done` once its write finished, with a null entry if it failed.
  struct Slot {
    EntryPtr entry;
    bool done = false;
  };
  std::deque<Slot> window;
  std::uint64_t window_start = 0;
  std::size_t window_bytes = 0;  // the payloads the window holds
  // entry_bytes of every entry in [start, next) that was not lost to a failed
  // write: counted only for a queue with a byte limit (Queue::counts_bytes).
  std::uint64_t bytes = 0;
  // Compaction (streams): offsets below `compacted_to` were seen by the
  // last pass; one is running; when a pass would find more that was kept
  // only for its age (Unix ms, 0: never).
  std::uint64_t compacted_to = 0;
  // What the last pass kept, in offset order: with what was appended since,
  // all the partition holds below `visible`, so a pass reads only that.
  std::vector<CompactionEntry> compaction_kept;
  std::int64_t compacted_at_ms = 0;  // when the last pass ended
  bool compacting = false;
  std::int64_t compact_again_ms = 0;
  std::int64_t last_timestamp_ms = 0;  // of the newest append: timestamps never go back

  void push(EntryPtr entry) {
    window_bytes += entry_bytes(*entry);
    window.push_back({std::move(entry), false});
  }
  // The entry at `offset` (in the window) is gone: a failed write, or moved.
  void forget(std::uint64_t offset) {
    EntryPtr& entry = window[offset - window_start].entry;
    if (entry) window_bytes -= entry_bytes(*entry);
    entry.reset();
  }
  void pop() {
    if (const EntryPtr& entry = window.front().entry) window_bytes -= entry_bytes(*entry);
    window.pop_front();
    ++window_start;
  }
};

// A message of a group that was offered and is not settled: leased to a
// consumer, waiting to be offered again, or parked (no consumer's filter
// takes it).
struct Pending {
  std::uint32_t failures = 0;  // failed attempts so far
  bool leased = false;
  std::uint64_t consumer = 0;            // the holder, while leased
  Clock::time_point when{};              // the lease's deadline, or when it is due again
  std::vector<std::uint64_t> failed_by;  // consumers that failed it, to prefer others
  // The leased delivery's message, until the consumer's PUBACK; a manual
  // consumer then still holds the lease (nullptr here) until a verb settles it.
  const broker::Message* message = nullptr;
  std::string key;      // ordering key: holds its key busy until settled
  bool manual = false;  // leased to a manual consumer: its PUBACK only says received
};

struct GroupPartition {
  std::uint64_t floor = 0;          // every offset below is settled
  std::uint64_t cursor = 0;         // the next offset never offered
  std::set<std::uint64_t> settled;  // settled at or above the floor
  std::map<std::uint64_t, Pending> pending;
  // Failed attempts read back at start for offsets not offered again yet.
  std::map<std::uint64_t, std::uint32_t> failures_before;
  std::set<std::pair<Clock::time_point, std::uint64_t>> due;     // waiting to be offered again
  std::set<std::pair<Clock::time_point, std::uint64_t>> leases;  // by deadline
  std::set<std::uint64_t> parked;
  bool floor_dirty = false;         // moved since it was last written
  std::uint64_t written_floor = 0;  // the floor as the store has it (or will, in order)
  // ordering key: the offset each key has in flight (leased or waiting to
  // be offered again), and the offsets of that key behind it, in order.
  std::map<std::string, std::uint64_t, std::less<>> key_busy;
  std::map<std::string, std::deque<std::uint64_t>, std::less<>> key_waiting;
  // ordering partition: the one consumer the partition is leased to.
  std::uint64_t holder = 0;
  // Entries read from the store ahead of the cursor, for a group behind the window.
  std::deque<std::pair<std::uint64_t, EntryPtr>> read_ahead;
};

struct Consumer {
  std::uint64_t id = 0;
  broker::TargetRef session;
  std::string filter;   // as subscribed, $share/<group>/ included: UNSUBSCRIBE names it so
  std::string address;  // less $share/<group>/
  // "$queue/<name>" itself: every message of the queue, delivered on that
  // topic (the subtopic in a user property), so that the topic matches the filter.
  bool whole_queue = false;
  bool v5 = true;
  bool at_most_once = false;  // a QoS 0 consumer: settled once written to it
  // ack-mode manual: a PUBACK means received; $ack, $nack, ... settle.
  bool manual = false;
  std::uint32_t prefetch = 0;  // as the subscription asked; 0: the queue's
  std::uint32_t credit = 1;    // most leased at once
  std::uint32_t outstanding = 0;
  bool online = true;
};

struct Group {
  std::string name;
  // A stream's anonymous reader (a subscriber without a group): in memory
  // only, nothing of it stored, gone with its consumer.
  bool ephemeral = false;
  std::vector<GroupPartition> partitions;
  std::vector<std::unique_ptr<Consumer>> consumers;
  std::size_t next_consumer = 0;  // round robin
  std::uint32_t next_partition = 0;
};

struct QueueCounters {
  std::uint64_t enqueued = 0;
  std::uint64_t delivered = 0;
  std::uint64_t acknowledged = 0;
  std::uint64_t failed = 0;  // nacks, expired leases, consumers gone
  std::uint64_t dead_lettered = 0;
  std::uint64_t discarded = 0;   // failed for good with dead_letter: none
  std::uint64_t duplicates = 0;  // publishes whose msg-id was seen within dedup_window
  std::uint64_t rejected = 0;    // publishes refused at max_depth
  std::uint64_t dropped = 0;     // deleted unsettled: overflow drop_oldest, retention
  std::uint64_t compacted = 0;   // removed by compaction (streams)
  std::uint64_t purged = 0;      // removed by an operator's purge (admin API)

  // Each counter with its name, in one order for $SYS, /metrics and the
  // admin API.
  std::array<std::pair<const char*, std::uint64_t>, 11> named() const {
    return {{{"enqueued", enqueued},
             {"delivered", delivered},
             {"acknowledged", acknowledged},
             {"failed", failed},
             {"dead_lettered", dead_lettered},
             {"discarded", discarded},
             {"dropped", dropped},
             {"duplicates", duplicates},
             {"rejected", rejected},
             {"compacted", compacted},
             {"purged", purged}}};
  }
};

enum class Ordering { kNone, kPartition, kKey };

struct Queue {
  config::QueueConfig config;
  // A stream: groups read in offset order (ordering partition) and commit
  // an offset; the log is cut by retention (and compaction) only.
  bool stream = false;
  std::string prefix;  // "$queue/<name>" or "$stream/<name>": the delivery topics'
  // retention max_bytes or max_depth_bytes: Partition::bytes is kept.
  bool counts_bytes = false;
  Ordering ordering = Ordering::kNone;
  std::vector<Partition> partitions;
  std::map<std::string, std::unique_ptr<Group>, std::less<>> groups;
  Queue* dead_letter = nullptr;    // nullptr: dead_letter none
  std::uint32_t next_keyless = 0;  // round robin for messages without a key
  bool dispatch_soon = false;      // in QueueService's list for the next poll
  // msg-ids seen within dedup_window, oldest first.
  std::unordered_map<std::string, Clock::time_point> seen_ids;
  std::deque<std::pair<Clock::time_point, std::string>> seen_order;
  QueueCounters counters;
  // Made or changed through the admin API: its Q record holds its options,
  // which it keeps across restarts (others take queue_defaults or their
  // declaration in the file at each start).
  bool options_in_record = false;
  // Deleted through the admin API: kept in memory (a write in flight may
  // still confirm into it) but out of every list, and never written again.
  bool deleted = false;
  // Replicated, and its group is not led here: not served, nothing of it
  // runs (QueueService::lead reads it back from the store when it is).
  bool standby = false;
};

}  // namespace sluice::queue
