// A small binary encoding: fixed-width big-endian integers, and strings and
// byte strings with a four-byte length in front.
#include "store/record_codec.hpp"

#include <cstring>

namespace sluice::store::codec {
namespace {

// The layout of each value. 1: the first. 2: a session record ends with an
// optional identity after its will (written only by a development build).
// 3: a session record holds its owner instead of its will (wills are records
// of their own). Session records of layouts 1 and 2 still read: the store's
// migration rewrites them; other records have not changed since 1.
constexpr std::uint8_t kFormat = 3;
constexpr std::uint8_t kOldestFormat = 1;

class Writer {
 public:
  Writer() { out_.push_back(static_cast<char>(kFormat)); }
  template <class Int>
  void integer(Int value) {
    for (int shift = (sizeof(Int) - 1) * 8; shift >= 0; shift -= 8) {
      out_.push_back(static_cast<char>((static_cast<std::uint64_t>(value) >> shift) & 0xFF));
    }
  }
  void bytes(const void* data, std::size_t size) {
    integer(static_cast<std::uint32_t>(size));
    out_.append(static_cast<const char*>(data), size);
  }
  void text(std::string_view s) { bytes(s.data(), s.size()); }
  void blob(const Bytes& b) { bytes(b.data(), b.size()); }
  std::string take() { return std::move(out_); }

 private:
  std::string out_;
};

class Reader {
 public:
  explicit Reader(std::string_view in) : in_(in) {
    format_ = in_.empty() ? 0 : static_cast<std::uint8_t>(in_[0]);
    if (format_ < kOldestFormat || format_ > kFormat) ok_ = false;
    pos_ = 1;
  }
  std::uint8_t format() const { return format_; }
  template <class Int>
  Int integer() {
    if (!ok_ || in_.size() - pos_ < sizeof(Int)) {
      ok_ = false;
      return 0;
    }
    std::uint64_t value = 0;
    for (std::size_t i = 0; i < sizeof(Int); ++i) {
      value = (value << 8) | static_cast<std::uint8_t>(in_[pos_ + i]);
    }
    pos_ += sizeof(Int);
    return static_cast<Int>(value);
  }
  std::string_view span() {
    const auto size = integer<std::uint32_t>();
    if (!ok_ || in_.size() - pos_ < size) {
      ok_ = false;
      return {};
    }
    const std::string_view view = in_.substr(pos_, size);
    pos_ += size;
    return view;
  }
  std::string text() { return std::string(span()); }
  Bytes blob() {
    const std::string_view view = span();
    return Bytes(view.begin(), view.end());
  }
  bool done() const { return ok_ && pos_ == in_.size(); }
  bool ok() const { return ok_; }

 private:
  std::string_view in_;
  std::size_t pos_ = 0;
  std::uint8_t format_ = 0;
  bool ok_ = true;
};

void write_message(Writer& w, const MessageRecord& m) {
  w.text(m.topic);
  w.blob(m.payload);
  w.integer(m.qos);
  w.integer(static_cast<std::uint8_t>(m.retain));
  w.blob(m.properties);
  w.integer(m.expires_at_ms);
}

void read_message(Reader& r, MessageRecord& m) {
  m.topic = r.text();
  m.payload = r.blob();
  m.qos = r.integer<std::uint8_t>();
  m.retain = r.integer<std::uint8_t>() != 0;
  m.properties = r.blob();
  m.expires_at_ms = r.integer<std::int64_t>();
}

std::string with_separator(std::string_view client_id, char separator) {
  std::string key(client_id);
  key.push_back(separator);
  return key;
}

template <class Int>
void append_big_endian(std::string& key, Int value) {
  for (int shift = (sizeof(Int) - 1) * 8; shift >= 0; shift -= 8) {
    key.push_back(static_cast<char>((static_cast<std::uint64_t>(value) >> shift) & 0xFF));
  }
}

template <class Int>
Int read_big_endian(std::string_view bytes) {
  std::uint64_t value = 0;
  for (char c : bytes)
    value = (value << 8) | static_cast<std::uint8_t>(c);
  return static_cast<Int>(value);
}

}  // namespace

std::string encode(const SessionRecord& r) {
  Writer w;
  w.text(r.client_id);
  w.integer(r.protocol_version);
  w.integer(r.expiry_s);
  w.integer(r.disconnected_at_ms);
  w.integer(static_cast<std::uint8_t>(r.owner));
  if (r.owner == SessionOwner::kNamed) w.text(r.identity);
  return w.take();
}

bool decode(std::string_view bytes, SessionRecord& r, std::optional<WillRecord>* legacy_will) {
  Reader reader(bytes);
  r.client_id = reader.text();
  r.protocol_version = reader.integer<std::uint8_t>();
  r.expiry_s = reader.integer<std::uint32_t>();
  r.disconnected_at_ms = reader.integer<std::int64_t>();
  if (reader.format() < 3) {  // the will was inside; the owner is not known
    if (reader.integer<std::uint8_t>() != 0) {
      WillRecord will;
      read_message(reader, will.message);
      will.delay_s = reader.integer<std::uint32_t>();
      if (legacy_will != nullptr) *legacy_will = std::move(will);
    }
    if (reader.format() == 2 && reader.integer<std::uint8_t>() != 0) reader.text();
    r.owner = SessionOwner::kUnknown;
    return reader.done();
  }
  const auto owner = reader.integer<std::uint8_t>();
  if (owner > static_cast<std::uint8_t>(SessionOwner::kNamed)) return false;
  r.owner = static_cast<SessionOwner>(owner);
  if (r.owner == SessionOwner::kNamed) r.identity = reader.text();
  return reader.done();
}

std::string encode(const WillRecord& r) {
  Writer w;
  write_message(w, r.message);
  w.integer(r.delay_s);
  return w.take();
}

bool decode(std::string_view bytes, WillRecord& r) {
  Reader reader(bytes);
  read_message(reader, r.message);
  r.delay_s = reader.integer<std::uint32_t>();
  return reader.done();
}

std::string encode(const SubscriptionRecord& r) {
  Writer w;
  w.text(r.client_id);
  w.text(r.filter);
  w.integer(r.options);
  w.integer(r.identifier);
  // Optional and last, so that records without it read as before.
  if (!r.queue_properties.empty()) w.blob(r.queue_properties);
  return w.take();
}

bool decode(std::string_view bytes, SubscriptionRecord& r) {
  Reader reader(bytes);
  r.client_id = reader.text();
  r.filter = reader.text();
  r.options = reader.integer<std::uint8_t>();
  r.identifier = reader.integer<std::uint32_t>();
  if (reader.ok() && !reader.done()) r.queue_properties = reader.blob();
  return reader.done();
}

std::string encode(const OutboundRecord& r) {
  Writer w;
  w.text(r.client_id);
  w.integer(r.message_id);
  w.integer(r.qos);
  w.integer(static_cast<std::uint8_t>(r.retain));
  w.integer(static_cast<std::uint32_t>(r.identifiers.size()));
  for (std::uint32_t id : r.identifiers)
    w.integer(id);
  w.integer(r.packet_id);
  w.integer(static_cast<std::uint8_t>(r.stage));
  return w.take();
}

bool decode(std::string_view bytes, OutboundRecord& r) {
  Reader reader(bytes);
  r.client_id = reader.text();
  r.message_id = reader.integer<std::uint64_t>();
  r.qos = reader.integer<std::uint8_t>();
  r.retain = reader.integer<std::uint8_t>() != 0;
  const auto count = reader.integer<std::uint32_t>();
  for (std::uint32_t i = 0; i < count && reader.ok(); ++i) {
    r.identifiers.push_back(reader.integer<std::uint32_t>());
  }
  r.packet_id = reader.integer<std::uint16_t>();
  const auto stage = reader.integer<std::uint8_t>();
  if (stage > static_cast<std::uint8_t>(OutboundRecord::Stage::kAwaitingPubcomp)) return false;
  r.stage = static_cast<OutboundRecord::Stage>(stage);
  return reader.done();
}

std::string encode(const MessageRecord& r) {
  Writer w;
  write_message(w, r);
  return w.take();
}

bool decode(std::string_view bytes, MessageRecord& r) {
  Reader reader(bytes);
  read_message(reader, r);
  return reader.done();
}

std::string client_prefix(std::string_view client_id) {
  return with_separator(client_id, '\0');
}
std::string client_prefix_end(std::string_view client_id) {
  return with_separator(client_id, '\1');
}

std::string subscription_key(std::string_view client_id, std::string_view filter) {
  std::string key = client_prefix(client_id);
  key.append(filter);
  return key;
}

std::string outbound_key(std::string_view client_id, std::uint64_t message_id) {
  std::string key = client_prefix(client_id);
  append_big_endian(key, message_id);
  return key;
}

std::string inbound_key(std::string_view client_id, std::uint16_t packet_id) {
  std::string key = client_prefix(client_id);
  append_big_endian(key, packet_id);
  return key;
}

std::string message_key(std::uint64_t id) {
  std::string key;
  append_big_endian(key, id);
  return key;
}

std::optional<std::pair<std::string, std::uint16_t>> parse_inbound_key(std::string_view key) {
  if (key.size() < 3 || key[key.size() - 3] != '\0') return std::nullopt;
  return std::make_pair(std::string(key.substr(0, key.size() - 3)),
                        read_big_endian<std::uint16_t>(key.substr(key.size() - 2)));
}

std::optional<std::uint64_t> parse_message_key(std::string_view key) {
  if (key.size() != 8) return std::nullopt;
  return read_big_endian<std::uint64_t>(key);
}

}  // namespace sluice::store::codec
