// A bounds-checked big-endian reader over one packet's bytes, with a sticky
// error: the first failure is kept, later reads return zero values, and the
// decoder checks `ok()` where a value steers what it does next. This keeps each
// packet's decoding a straight list of fields instead of a ladder of checks.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "mqtt/decode_error.hpp"
#include "mqtt/utf8.hpp"

namespace sluice::mqtt {

using Bytes = std::vector<std::uint8_t>;

class ByteReader {
 public:
  explicit ByteReader(std::span<const std::uint8_t> data) : data_(data) {}

  bool ok() const { return error_.ok(); }
  const DecodeError& error() const { return error_; }
  std::size_t remaining() const { return data_.size() - pos_; }
  bool at_end() const { return pos_ == data_.size(); }

  // Records `error` unless an earlier one is already recorded.
  void fail(const DecodeError& error) {
    if (error_.ok()) error_ = error;
  }

  std::uint8_t u8() {
    if (!need(1)) return 0;
    return data_[pos_++];
  }

  std::uint16_t u16() {
    if (!need(2)) return 0;
    const auto value = static_cast<std::uint16_t>((data_[pos_] << 8) | data_[pos_ + 1]);
    pos_ += 2;
    return value;
  }

  std::uint32_t u32() {
    if (!need(4)) return 0;
    const std::uint32_t value = (std::uint32_t{data_[pos_]} << 24) |
                                (std::uint32_t{data_[pos_ + 1]} << 16) |
                                (std::uint32_t{data_[pos_ + 2]} << 8) | data_[pos_ + 3];
    pos_ += 4;
    return value;
  }

  // Variable Byte Integer: at most four bytes, and in its shortest form
  // [MQTT-1.5.5-1].
  std::uint32_t varint() {
    std::uint32_t value = 0;
    for (int i = 0; i < 4; ++i) {
      if (!need(1)) return 0;
      const std::uint8_t byte = data_[pos_++];
      value |= std::uint32_t{byte & 0x7Fu} << (7 * i);
      if ((byte & 0x80) == 0) {
        if (i > 0 && byte == 0) {
          fail(malformed("MQTT-1.5.5-1", "variable byte integer not in its shortest form"));
          return 0;
        }
        return value;
      }
    }
    fail(malformed("§1.5.5", "variable byte integer longer than four bytes"));
    return 0;
  }

  // Two-byte length followed by that many bytes, returned as a view into the packet.
  std::span<const std::uint8_t> binary_view() {
    const std::uint16_t length = u16();
    if (!need(length)) return {};
    auto view = data_.subspan(pos_, length);
    pos_ += length;
    return view;
  }

  Bytes binary() {
    auto view = binary_view();
    return Bytes(view.begin(), view.end());
  }

  // A UTF-8 Encoded String, validated [MQTT-1.5.4-1, MQTT-1.5.4-2], as a view.
  std::string_view string_view() {
    auto view = binary_view();
    std::string_view text(reinterpret_cast<const char*>(view.data()), view.size());
    switch (check_utf8(text)) {
      case Utf8Check::kValid:
        return text;
      case Utf8Check::kIllFormed:
        fail(malformed("MQTT-1.5.4-1", "string is not well-formed UTF-8"));
        return {};
      case Utf8Check::kNullChar:
        fail(malformed("MQTT-1.5.4-2", "string contains U+0000"));
        return {};
    }
    return {};
  }

  std::string string() { return std::string(string_view()); }

  // The rest of the packet (a PUBLISH payload, for example).
  std::span<const std::uint8_t> rest() {
    auto view = data_.subspan(pos_);
    pos_ = data_.size();
    return view;
  }

  // A reader over the next `length` bytes, which this reader skips; used for
  // the property block, whose length is given up front.
  ByteReader sub_reader(std::size_t length) {
    if (!need(length)) return ByteReader({});
    ByteReader sub(data_.subspan(pos_, length));
    pos_ += length;
    return sub;
  }

 private:
  bool need(std::size_t count) {
    if (!error_.ok()) return false;
    if (remaining() < count) {
      fail(malformed("§4.13.1", "packet shorter than its fields require"));
      return false;
    }
    return true;
  }

  std::span<const std::uint8_t> data_;
  std::size_t pos_ = 0;
  DecodeError error_;
};

}  // namespace sluice::mqtt
