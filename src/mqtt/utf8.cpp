// A UTF-8 validator following the well-formed byte sequences of Unicode's
// table 3-7: the second byte's range depends on the first byte, which rules out
// overlong forms, surrogates and code points above U+10FFFF without decoding.
#include "mqtt/utf8.hpp"

#include <cstdint>
#include <cstring>

namespace sluice::mqtt {

Utf8Check check_utf8(std::string_view text) {
  const auto* p = reinterpret_cast<const std::uint8_t*>(text.data());
  const auto* end = p + text.size();
  while (p < end) {
    // Eight ASCII bytes at a time when none is NUL: topics nearly always are.
    if (end - p >= 8) {
      constexpr std::uint64_t kHighBits = 0x8080808080808080ULL;
      constexpr std::uint64_t kOnes = 0x0101010101010101ULL;
      std::uint64_t word;
      std::memcpy(&word, p, sizeof word);
      const bool any_high = (word & kHighBits) != 0;
      const bool any_zero = ((word - kOnes) & ~word & kHighBits) != 0;
      if (!any_high && !any_zero) {
        p += 8;
        continue;
      }
    }
    const std::uint8_t lead = *p;
    if (lead < 0x80) {
      if (lead == 0) return Utf8Check::kNullChar;
      ++p;
      continue;
    }
    int continuation = 0;
    std::uint8_t low = 0x80;  // allowed range of the second byte
    std::uint8_t high = 0xBF;
    if (lead >= 0xC2 && lead <= 0xDF) {
      continuation = 1;
    } else if (lead >= 0xE0 && lead <= 0xEF) {
      continuation = 2;
      if (lead == 0xE0) low = 0xA0;   // no overlong three-byte forms
      if (lead == 0xED) high = 0x9F;  // no surrogates U+D800..U+DFFF
    } else if (lead >= 0xF0 && lead <= 0xF4) {
      continuation = 3;
      if (lead == 0xF0) low = 0x90;   // no overlong four-byte forms
      if (lead == 0xF4) high = 0x8F;  // nothing above U+10FFFF
    } else {
      return Utf8Check::kIllFormed;  // 0x80..0xC1 and 0xF5..0xFF never lead
    }
    if (end - p <= continuation) return Utf8Check::kIllFormed;
    if (p[1] < low || p[1] > high) return Utf8Check::kIllFormed;
    for (int i = 2; i <= continuation; ++i) {
      if ((p[i] & 0xC0) != 0x80) return Utf8Check::kIllFormed;
    }
    p += continuation + 1;
  }
  return Utf8Check::kValid;
}

}  // namespace sluice::mqtt
