// The fifteen MQTT control packet types (the high nibble of the first byte) and
// the quality-of-service levels.
#pragma once

#include <cstdint>
#include <iterator>

namespace sluice::mqtt {

enum class PacketType : std::uint8_t {
  kConnect = 1,
  kConnack = 2,
  kPublish = 3,
  kPuback = 4,
  kPubrec = 5,
  kPubrel = 6,
  kPubcomp = 7,
  kSubscribe = 8,
  kSuback = 9,
  kUnsubscribe = 10,
  kUnsuback = 11,
  kPingreq = 12,
  kPingresp = 13,
  kDisconnect = 14,
  kAuth = 15,  // MQTT 5 only
};

inline const char* to_string(PacketType type) {
  constexpr const char* kNames[] = {"reserved",  "CONNECT",  "CONNACK",     "PUBLISH",
                                    "PUBACK",    "PUBREC",   "PUBREL",      "PUBCOMP",
                                    "SUBSCRIBE", "SUBACK",   "UNSUBSCRIBE", "UNSUBACK",
                                    "PINGREQ",   "PINGRESP", "DISCONNECT",  "AUTH"};
  const auto index = static_cast<unsigned>(type);
  return index < std::size(kNames) ? kNames[index] : "reserved";
}

enum class QoS : std::uint8_t {
  kAtMostOnce = 0,
  kAtLeastOnce = 1,
  kExactlyOnce = 2,
};

}  // namespace sluice::mqtt
