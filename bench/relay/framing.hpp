// framing.hpp: the small part of the MQTT wire format the relay needs.
// Finding packet boundaries in a byte stream, reading fields, writing lengths,
// viewing a PUBLISH in place, and matching a topic against a filter.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string_view>

namespace relay {

namespace packet {
inline constexpr unsigned connect = 1;
inline constexpr unsigned publish = 3;
inline constexpr unsigned pubrel = 6;
inline constexpr unsigned subscribe = 8;
inline constexpr unsigned unsubscribe = 10;
inline constexpr unsigned pingreq = 12;
inline constexpr unsigned disconnect = 14;
}  // namespace packet

struct Frame {
  unsigned type = 0;
  unsigned flags = 0;
  std::size_t header_len = 0;  // type byte plus Remaining Length
  std::size_t total = 0;       // whole packet; 0 while the length is not yet known
};

enum class FrameStatus { complete, incomplete, malformed };

// Looks at the packet starting at p; never reads past p + n.
inline FrameStatus read_frame(const unsigned char* p, std::size_t n, Frame& f) {
  f = Frame{};
  std::size_t length = 0;
  std::size_t i = 1;
  for (unsigned shift = 0;; shift += 7, ++i) {
    if (i > 4) return FrameStatus::malformed;  // Remaining Length has at most 4 bytes
    if (i >= n) return FrameStatus::incomplete;
    length |= static_cast<std::size_t>(p[i] & 0x7Fu) << shift;
    if ((p[i] & 0x80u) == 0) break;
  }
  f.type = static_cast<unsigned>(p[0] >> 4);
  f.flags = p[0] & 0x0Fu;
  f.header_len = i + 1;
  f.total = f.header_len + length;
  return n >= f.total ? FrameStatus::complete : FrameStatus::incomplete;
}

// Bounds-checked field reader: a short packet makes ok() false instead of
// reading past its end, so handlers check once at the end.
class Reader {
 public:
  Reader(const unsigned char* p, std::size_t n) : p_(p), end_(p + n) {}

  bool ok() const { return ok_; }
  std::size_t remaining() const { return static_cast<std::size_t>(end_ - p_); }
  const unsigned char* position() const { return p_; }

  unsigned byte() { return need(1) ? *p_++ : 0u; }
  unsigned u16() {
    if (!need(2)) return 0;
    const unsigned v = (static_cast<unsigned>(p_[0]) << 8) | p_[1];
    p_ += 2;
    return v;
  }
  std::size_t varint() {
    std::size_t v = 0;
    for (unsigned shift = 0; shift < 28; shift += 7) {
      const unsigned b = byte();
      v |= static_cast<std::size_t>(b & 0x7Fu) << shift;
      if ((b & 0x80u) == 0) return v;
    }
    ok_ = false;
    return 0;
  }
  const unsigned char* skip(std::size_t n) {
    if (!need(n)) return nullptr;
    const unsigned char* q = p_;
    p_ += n;
    return q;
  }
  std::string_view str() {
    const std::size_t n = u16();
    const unsigned char* q = skip(n);
    return q ? std::string_view(reinterpret_cast<const char*>(q), n) : std::string_view{};
  }

 private:
  bool need(std::size_t n) {
    if (remaining() >= n) return true;
    ok_ = false;
    p_ = end_;
    return false;
  }

  const unsigned char* p_;
  const unsigned char* end_;
  bool ok_ = true;
};

inline void put_u16(unsigned char* p, unsigned v) {
  p[0] = static_cast<unsigned char>(v >> 8);
  p[1] = static_cast<unsigned char>(v);
}

inline std::size_t varint_size(std::size_t v) {
  std::size_t n = 1;
  for (; v >= 0x80; v >>= 7)
    ++n;
  return n;
}

inline std::size_t put_varint(unsigned char* p, std::size_t v) {
  std::size_t n = 0;
  do {
    unsigned char b = static_cast<unsigned char>(v & 0x7Fu);
    v >>= 7;
    if (v != 0) b = static_cast<unsigned char>(b | 0x80u);
    p[n++] = b;
  } while (v != 0);
  return n;
}

// A PUBLISH seen in place: every pointer points into the packet's bytes.
struct Publish {
  const unsigned char* packet = nullptr;
  std::size_t packet_len = 0;
  std::string_view topic;
  std::size_t id_offset = 0;             // where the packet id sits in `packet` (QoS > 0 only)
  const unsigned char* props = nullptr;  // v5 properties, without their length
  std::size_t props_len = 0;
  const unsigned char* payload = nullptr;
  std::size_t payload_len = 0;
  unsigned qos = 0;
  bool v5 = false;
};

inline bool parse_publish(const unsigned char* pkt, const Frame& f, bool v5, Publish& out) {
  out = Publish{};
  out.packet = pkt;
  out.packet_len = f.total;
  out.qos = (f.flags >> 1) & 3u;
  out.v5 = v5;
  if (out.qos == 3) return false;
  Reader r(pkt + f.header_len, f.total - f.header_len);
  out.topic = r.str();
  if (out.qos > 0) {
    out.id_offset = static_cast<std::size_t>(r.position() - pkt);
    r.u16();
  }
  if (v5) {
    out.props_len = r.varint();
    out.props = r.skip(out.props_len);
  }
  if (!r.ok()) return false;
  out.payload = r.position();
  out.payload_len = r.remaining();
  return true;
}

inline bool has_wildcard(std::string_view filter) {
  return filter.find_first_of("+#") != std::string_view::npos;
}

// Level by level; '#' also matches its parent level ("a/#" matches "a"), and
// wildcards in the first level do not match topics starting with '$'.
inline bool topic_matches(std::string_view filter, std::string_view topic) {
  if (!topic.empty() && topic.front() == '$' && !filter.empty() &&
      (filter.front() == '+' || filter.front() == '#'))
    return false;
  for (;;) {
    const std::size_t fe = filter.find('/');
    const std::string_view fl = filter.substr(0, fe);
    if (fl == "#") return true;
    const std::size_t te = topic.find('/');
    if (fl != "+" && fl != topic.substr(0, te)) return false;
    const bool filter_last = fe == std::string_view::npos;
    const bool topic_last = te == std::string_view::npos;
    if (filter_last || topic_last) return filter_last ? topic_last : filter.substr(fe + 1) == "#";
    filter.remove_prefix(fe + 1);
    topic.remove_prefix(te + 1);
  }
}

}  // namespace relay
