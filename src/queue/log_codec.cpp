#include "queue/log_codec.hpp"

namespace sluice::queue {
namespace {

void put_u64(std::string& out, std::uint64_t value) {
  for (int shift = 56; shift >= 0; shift -= 8)
    out.push_back(static_cast<char>((value >> shift) & 0xFF));
}

void put_u32(std::string& out, std::uint32_t value) {
  for (int shift = 24; shift >= 0; shift -= 8)
    out.push_back(static_cast<char>((value >> shift) & 0xFF));
}

std::uint64_t read_be(std::string_view bytes) {
  std::uint64_t value = 0;
  for (const char c : bytes)
    value = (value << 8) | static_cast<std::uint8_t>(c);
  return value;
}

void put_bytes(std::string& out, std::string_view bytes) {
  put_u32(out, static_cast<std::uint32_t>(bytes.size()));
  out.append(bytes);
}

std::string name_key(char kind, std::string_view name) {
  std::string key(1, kind);
  key.append(name);
  key.push_back('\0');
  return key;
}

std::string group_key(char kind, std::string_view queue, std::string_view group) {
  std::string key = name_key(kind, queue);
  key.append(group);
  key.push_back('\0');
  return key;
}

// A group's key of one partition, and of one offset in it.
std::string partition_key(char kind, std::string_view queue, std::string_view group,
                          std::uint32_t partition) {
  std::string key = group_key(kind, queue, group);
  put_u32(key, partition);
  return key;
}

std::string offset_key(char kind, std::string_view queue, std::string_view group,
                       std::uint32_t partition, std::uint64_t offset) {
  std::string key = partition_key(kind, queue, group, partition);
  put_u64(key, offset);
  return key;
}

class Reader {
 public:
  explicit Reader(std::string_view data) : data_(data) {}
  bool ok() const { return ok_; }
  bool at_end() const { return data_.empty(); }
  std::uint64_t u64() { return read_be(take(8)); }
  std::uint32_t u32() { return static_cast<std::uint32_t>(read_be(take(4))); }
  std::uint8_t u8() {
    const std::string_view b = take(1);
    return b.empty() ? 0 : static_cast<std::uint8_t>(b[0]);
  }
  std::string_view bytes() { return take(u32()); }

 private:
  std::string_view take(std::size_t n) {
    if (!ok_ || data_.size() < n) {
      ok_ = false;
      return {};
    }
    const std::string_view part = data_.substr(0, n);
    data_.remove_prefix(n);
    return part;
  }
  std::string_view data_;
  bool ok_ = true;
};

constexpr std::uint8_t kEntryVersion = 1;

}  // namespace

std::string encode_u64(std::uint64_t value) {
  std::string out;
  put_u64(out, value);
  return out;
}

std::uint64_t decode_u64(std::string_view bytes) {
  return bytes.size() == 8 ? read_be(bytes) : 0;
}

std::string encode_u32(std::uint32_t value) {
  std::string out;
  put_u32(out, value);
  return out;
}

std::uint32_t decode_u32(std::string_view bytes) {
  return bytes.size() == 4 ? static_cast<std::uint32_t>(read_be(bytes)) : 0;
}

std::string encode_entry(const LogEntry& entry) {
  std::string out;
  out.reserve(32 + entry.key.size() + entry.properties.size() + entry.payload.size() +
              (entry.subtopic ? entry.subtopic->size() : 0));
  out.push_back(static_cast<char>(kEntryVersion));
  put_u64(out, static_cast<std::uint64_t>(entry.timestamp_ms));
  put_u64(out, static_cast<std::uint64_t>(entry.expires_at_ms));
  out.push_back(entry.subtopic ? 1 : 0);
  put_bytes(out, entry.subtopic ? *entry.subtopic : std::string_view());
  put_bytes(out, entry.key);
  put_bytes(out, {reinterpret_cast<const char*>(entry.properties.data()), entry.properties.size()});
  put_bytes(out, {reinterpret_cast<const char*>(entry.payload.data()), entry.payload.size()});
  return out;
}

std::optional<LogEntry> decode_entry(std::string_view value) {
  Reader in(value);
  if (in.u8() != kEntryVersion) return std::nullopt;
  LogEntry entry;
  entry.timestamp_ms = static_cast<std::int64_t>(in.u64());
  entry.expires_at_ms = static_cast<std::int64_t>(in.u64());
  const bool has_subtopic = in.u8() == 1;
  const std::string_view subtopic = in.bytes();
  if (has_subtopic) entry.subtopic = std::string(subtopic);
  entry.key = std::string(in.bytes());
  const std::string_view properties = in.bytes();
  entry.properties.assign(properties.begin(), properties.end());
  const std::string_view payload = in.bytes();
  entry.payload.assign(payload.begin(), payload.end());
  if (!in.ok() || !in.at_end()) return std::nullopt;
  return entry;
}

namespace keys {

std::string queue(std::string_view queue) {
  return name_key('Q', queue);
}

std::string entry(std::string_view queue, std::uint32_t partition, std::uint64_t offset) {
  std::string key = name_key('L', queue);
  put_u32(key, partition);
  put_u64(key, offset);
  return key;
}

std::string entries_end(std::string_view queue, std::uint32_t partition) {
  std::string key = name_key('L', queue);
  put_u32(key, partition + 1);  // partitions are far below 2^32
  return key;
}

std::string log_start(std::string_view queue, std::uint32_t partition) {
  std::string key = name_key('S', queue);
  put_u32(key, partition);
  return key;
}

std::string group(std::string_view queue, std::string_view group) {
  return group_key('G', queue, group);
}

std::string floor(std::string_view queue, std::string_view group, std::uint32_t partition) {
  return partition_key('F', queue, group, partition);
}

std::string settled_prefix(std::string_view queue, std::string_view group,
                           std::uint32_t partition) {
  return partition_key('A', queue, group, partition);
}

std::string settled(std::string_view queue, std::string_view group, std::uint32_t partition,
                    std::uint64_t offset) {
  return offset_key('A', queue, group, partition, offset);
}

std::string failures_prefix(std::string_view queue, std::string_view group,
                            std::uint32_t partition) {
  return partition_key('C', queue, group, partition);
}

std::string failures(std::string_view queue, std::string_view group, std::uint32_t partition,
                     std::uint64_t offset) {
  return offset_key('C', queue, group, partition, offset);
}

std::string dedup(std::string_view queue, std::string_view message_id) {
  std::string key = name_key('D', queue);
  key.append(message_id);
  return key;
}

std::string dedup_prefix(std::string_view queue) {
  return name_key('D', queue);
}

std::vector<std::string> every_prefix(std::string_view queue) {
  std::vector<std::string> prefixes;
  for (const char kind : {'Q', 'L', 'S', 'G', 'F', 'A', 'C', 'D'})
    prefixes.push_back(name_key(kind, queue));
  return prefixes;
}

std::string queues_prefix() {
  return "Q";
}

std::string groups_prefix(std::string_view queue) {
  return name_key('G', queue);
}

std::string prefix_end(std::string prefix) {
  // The shortest key above every key with this prefix: drop trailing 0xFF
  // bytes, then raise the last one.
  while (!prefix.empty() && static_cast<std::uint8_t>(prefix.back()) == 0xFF)
    prefix.pop_back();
  if (!prefix.empty())
    prefix.back() = static_cast<char>(static_cast<std::uint8_t>(prefix.back()) + 1);
  return prefix;  // empty: to the end of the space
}

std::uint64_t offset_of(std::string_view key) {
  return key.size() >= 8 ? read_be(key.substr(key.size() - 8)) : 0;
}

std::string_view queue_of(std::string_view key) {
  if (key.size() < 2) return {};
  const std::size_t end = key.find('\0', 1);
  return end == std::string_view::npos ? std::string_view() : key.substr(1, end - 1);
}

std::string_view last_name(std::string_view key, std::size_t prefix_size) {
  if (key.size() <= prefix_size) return {};
  key.remove_prefix(prefix_size);
  if (!key.empty() && key.back() == '\0') key.remove_suffix(1);
  return key;
}

}  // namespace keys

}  // namespace sluice::queue
