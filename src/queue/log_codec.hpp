// How queue state is laid out in the store's queue key space (store::Space::
// kQueues): keys that sort as the queue layer reads them, and the value of
// a log entry. Numbers in keys are big-endian so that byte order is numeric
// order; a name ends with a 0 byte, which no queue or group name contains.
//
//   Q <queue>                           -> the queue exists: partitions (u32), then
//                                          1 byte of flags (1: it keeps no dead letters,
//                                          2: it is a stream, 4: options follow), then its
//                                          dead-letter queue's name if not the default;
//                                          with flag 4 that name's length (u32) first, and
//                                          after it the queue's options as text (made or
//                                          changed through the admin API). A binary older
//                                          than flag 4 misreads such a record: no downgrade
//                                          past it with queues made by the API
//   L <queue> <partition> <offset>      -> a log entry (LogEntry)
//   S <queue> <partition>               -> where the log starts (u64), written when
//                                          retention cuts it: offsets below are never
//                                          given again, even once the log is empty
//   G <queue> <group>                   -> (empty): the group exists
//   F <queue> <group> <partition>       -> the group's floor: all below are settled (u64)
//
// A partition's next offset is not written with every append: at start it
// is one past the last entry, or the highest floor when the log was
// emptied (entries go only once every group's floor passed them).
//   A <queue> <group> <partition> <off> -> (empty): settled above the floor
//   C <queue> <group> <partition> <off> -> failed delivery attempts so far (u32)
//   D <queue> <msg-id>                  -> when it was first seen (Unix ms, u64): dedup_window
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace sluice::queue {

// One message in a partition's log, as stored.
struct LogEntry {
  std::int64_t timestamp_ms = 0;         // Unix time of the append
  std::int64_t expires_at_ms = 0;        // Unix time; 0: never (MQTT 5 Message Expiry)
  std::optional<std::string> subtopic;   // what followed "$queue/<name>/"
  std::string key;                       // ordering, partition and compaction key
  std::vector<std::uint8_t> properties;  // the PUBLISH's property block as published
  std::vector<std::uint8_t> payload;
};

std::string encode_entry(const LogEntry& entry);
// nullopt when `value` is not an entry this version wrote.
std::optional<LogEntry> decode_entry(std::string_view value);

namespace keys {

std::string queue(std::string_view queue);
std::string entry(std::string_view queue, std::uint32_t partition, std::uint64_t offset);
// The first key after every entry of the partition.
std::string entries_end(std::string_view queue, std::uint32_t partition);
std::string log_start(std::string_view queue, std::uint32_t partition);
std::string group(std::string_view queue, std::string_view group);
std::string floor(std::string_view queue, std::string_view group, std::uint32_t partition);
std::string settled(std::string_view queue, std::string_view group, std::uint32_t partition,
                    std::uint64_t offset);
std::string failures(std::string_view queue, std::string_view group, std::uint32_t partition,
                     std::uint64_t offset);
std::string dedup(std::string_view queue, std::string_view message_id);
// Prefixes, for reading a range: every key that starts with the prefix.
std::string dedup_prefix(std::string_view queue);
std::string queues_prefix();
std::string groups_prefix(std::string_view queue);
std::string settled_prefix(std::string_view queue, std::string_view group, std::uint32_t partition);
std::string failures_prefix(std::string_view queue, std::string_view group,
                            std::uint32_t partition);
// The prefix of each kind of key the queue has (its record, log, starts,
// groups, floors, settlements, failures, msg-ids): deleting the ranges
// they start deletes the queue.
std::vector<std::string> every_prefix(std::string_view queue);
// The first key after every key that starts with `prefix`.
std::string prefix_end(std::string prefix);

// The offset at the end of a key made by entry, settled or failures.
std::uint64_t offset_of(std::string_view key);
// The queue a key of any kind above belongs to (empty when none).
std::string_view queue_of(std::string_view key);
// The name at the end of a key made by queue or group.
std::string_view last_name(std::string_view key, std::size_t prefix_size);

}  // namespace keys

std::string encode_u64(std::uint64_t value);
std::uint64_t decode_u64(std::string_view bytes);  // 0 when not 8 bytes
std::string encode_u32(std::uint32_t value);
std::uint32_t decode_u32(std::string_view bytes);  // 0 when not 4 bytes

}  // namespace sluice::queue
