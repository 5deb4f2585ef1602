// UTF-8 validation for MQTT strings [MQTT-1.5.4-1, MQTT-1.5.4-2]: well-formed
// UTF-8 (no overlong forms, no surrogates, nothing above U+10FFFF) and no U+0000.
#pragma once

#include <string_view>

namespace sluice::mqtt {

enum class Utf8Check {
  kValid,
  kIllFormed,  // not well-formed UTF-8, or a UTF-16 surrogate [MQTT-1.5.4-1]
  kNullChar,   // contains U+0000 [MQTT-1.5.4-2]
};

Utf8Check check_utf8(std::string_view text);

}  // namespace sluice::mqtt
