// The MQTT protocol versions Sluice speaks, named by the protocol level byte of
// CONNECT. One port serves all three; the version is fixed by the CONNECT packet
// and every later packet of the connection is decoded and encoded for it.
#pragma once

#include <cstdint>

namespace sluice::mqtt {

enum class ProtocolVersion : std::uint8_t {
  kV3_1 = 3,    // protocol name "MQIsdp"
  kV3_1_1 = 4,  // protocol name "MQTT"
  kV5 = 5,      // protocol name "MQTT"
};

inline bool is_v5(ProtocolVersion version) {
  return version == ProtocolVersion::kV5;
}

inline const char* to_string(ProtocolVersion version) {
  switch (version) {
    case ProtocolVersion::kV3_1:
      return "3.1";
    case ProtocolVersion::kV3_1_1:
      return "3.1.1";
    case ProtocolVersion::kV5:
      return "5.0";
  }
  return "unknown";
}

}  // namespace sluice::mqtt
