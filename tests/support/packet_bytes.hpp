// Helpers to write raw packets in tests, field by field, so that a malformed
// packet reads like the layout it breaks.
#pragma once

#include <cstdint>
#include <initializer_list>
#include <string_view>
#include <vector>

#include "mqtt/byte_writer.hpp"

namespace sluice::mqtt::testing {

using Bytes = std::vector<std::uint8_t>;

// Raw bytes.
inline Bytes raw(std::initializer_list<int> bytes) {
  Bytes out;
  for (int b : bytes)
    out.push_back(static_cast<std::uint8_t>(b));
  return out;
}

// A two-byte length and the string's bytes (not checked: tests need bad ones).
inline Bytes str(std::string_view text) {
  Bytes out;
  ByteWriter(out).string(text);
  return out;
}

inline Bytes u16(std::uint16_t value) {
  Bytes out;
  ByteWriter(out).u16(value);
  return out;
}

inline Bytes cat(std::initializer_list<Bytes> parts) {
  Bytes out;
  for (const Bytes& part : parts)
    out.insert(out.end(), part.begin(), part.end());
  return out;
}

// A property block: its length as a Variable Byte Integer, then `properties`.
inline Bytes props(Bytes properties) {
  Bytes out;
  ByteWriter(out).varint(static_cast<std::uint32_t>(properties.size()));
  out.insert(out.end(), properties.begin(), properties.end());
  return out;
}

// A whole packet: `first_byte`, the Remaining Length, then `body`.
inline Bytes packet(std::uint8_t first_byte, Bytes body) {
  Bytes out{first_byte};
  ByteWriter(out).varint(static_cast<std::uint32_t>(body.size()));
  out.insert(out.end(), body.begin(), body.end());
  return out;
}

}  // namespace sluice::mqtt::testing
