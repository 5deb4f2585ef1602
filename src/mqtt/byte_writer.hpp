// The encoder's two writers, with one interface: `SizeCounter` adds up how many
// bytes an encoding takes, `ByteWriter` appends them to a buffer. Each packet's
// layout is written once, as a template over the writer, and run first with the
// counter (to learn the Remaining Length and reserve the buffer exactly) and
// then with the writer: no per-byte reallocation, no second copy of the layout.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string_view>
#include <vector>

namespace sluice::mqtt {

// Bytes that a Variable Byte Integer of `value` takes (1 to 4).
constexpr std::size_t varint_size(std::uint32_t value) {
  return value < 128 ? 1 : value < 16'384 ? 2 : value < 2'097'152 ? 3 : 4;
}

// The largest value a Variable Byte Integer can carry.
constexpr std::uint32_t kMaxVarint = 268'435'455;

class SizeCounter {
 public:
  std::size_t size() const { return size_; }
  // False when a string or binary field is longer than its two-byte length can say.
  bool fits() const { return fits_; }

  void u8(std::uint8_t) { size_ += 1; }
  void u16(std::uint16_t) { size_ += 2; }
  void u32(std::uint32_t) { size_ += 4; }
  void varint(std::uint32_t value) { size_ += varint_size(value); }
  void raw(std::span<const std::uint8_t> bytes) { size_ += bytes.size(); }
  void skip(std::size_t bytes) { size_ += bytes; }
  void binary(std::span<const std::uint8_t> bytes) { prefixed(bytes.size()); }
  void string(std::string_view text) { prefixed(text.size()); }

 private:
  void prefixed(std::size_t length) {
    if (length > 0xFFFF) fits_ = false;
    size_ += 2 + length;
  }

  std::size_t size_ = 0;
  bool fits_ = true;
};

class ByteWriter {
 public:
  explicit ByteWriter(std::vector<std::uint8_t>& out) : out_(out) {}

  void u8(std::uint8_t value) { out_.push_back(value); }
  void u16(std::uint16_t value) {
    out_.push_back(static_cast<std::uint8_t>(value >> 8));
    out_.push_back(static_cast<std::uint8_t>(value));
  }
  void u32(std::uint32_t value) {
    for (int shift = 24; shift >= 0; shift -= 8)
      out_.push_back(static_cast<std::uint8_t>(value >> shift));
  }
  void varint(std::uint32_t value) {
    do {
      auto byte = static_cast<std::uint8_t>(value & 0x7F);
      value >>= 7;
      if (value != 0) byte |= 0x80;
      out_.push_back(byte);
    } while (value != 0);
  }
  void raw(std::span<const std::uint8_t> bytes) {
    out_.insert(out_.end(), bytes.begin(), bytes.end());
  }
  void binary(std::span<const std::uint8_t> bytes) {
    u16(static_cast<std::uint16_t>(bytes.size()));
    raw(bytes);
  }
  void string(std::string_view text) {
    u16(static_cast<std::uint16_t>(text.size()));
    // As bytes: inserting chars into a byte vector converts them one by one.
    const auto* bytes = reinterpret_cast<const std::uint8_t*>(text.data());
    out_.insert(out_.end(), bytes, bytes + text.size());
  }

 private:
  std::vector<std::uint8_t>& out_;
};

}  // namespace sluice::mqtt
