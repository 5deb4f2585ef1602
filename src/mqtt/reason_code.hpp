// MQTT 5 reason codes, the packets each may appear in, and the mapping to the
// MQTT 3.1/3.1.1 CONNACK return codes. The broker speaks in MQTT 5 reason codes
// internally; the encoder turns them into the 3.x forms where a 3.x client is on
// the other end.
#pragma once

#include <cstdint>

#include "mqtt/packet_type.hpp"

namespace sluice::mqtt {

enum class ReasonCode : std::uint8_t {
  kSuccess = 0x00,  // also "Normal disconnection" and "Granted QoS 0"
  kGrantedQoS1 = 0x01,
  kGrantedQoS2 = 0x02,
  kDisconnectWithWillMessage = 0x04,
  kNoMatchingSubscribers = 0x10,
  kNoSubscriptionExisted = 0x11,
  kContinueAuthentication = 0x18,
  kReAuthenticate = 0x19,
  kUnspecifiedError = 0x80,
  kMalformedPacket = 0x81,
  kProtocolError = 0x82,
  kImplementationSpecificError = 0x83,
  kUnsupportedProtocolVersion = 0x84,
  kClientIdentifierNotValid = 0x85,
  kBadUserNameOrPassword = 0x86,
  kNotAuthorized = 0x87,
  kServerUnavailable = 0x88,
  kServerBusy = 0x89,
  kBanned = 0x8A,
  kServerShuttingDown = 0x8B,
  kBadAuthenticationMethod = 0x8C,
  kKeepAliveTimeout = 0x8D,
  kSessionTakenOver = 0x8E,
  kTopicFilterInvalid = 0x8F,
  kTopicNameInvalid = 0x90,
  kPacketIdentifierInUse = 0x91,
  kPacketIdentifierNotFound = 0x92,
  kReceiveMaximumExceeded = 0x93,
  kTopicAliasInvalid = 0x94,
  kPacketTooLarge = 0x95,
  kMessageRateTooHigh = 0x96,
  kQuotaExceeded = 0x97,
  kAdministrativeAction = 0x98,
  kPayloadFormatInvalid = 0x99,
  kRetainNotSupported = 0x9A,
  kQoSNotSupported = 0x9B,
  kUseAnotherServer = 0x9C,
  kServerMoved = 0x9D,
  kSharedSubscriptionsNotSupported = 0x9E,
  kConnectionRateExceeded = 0x9F,
  kMaximumConnectTime = 0xA0,
  kSubscriptionIdentifiersNotSupported = 0xA1,
  kWildcardSubscriptionsNotSupported = 0xA2,
};

// Human-readable name, e.g. "Packet too large"; "Unknown" for values outside the table.
const char* to_string(ReasonCode code);

// Whether `code` is defined for packets of `type` in MQTT 5 (spec section 2.4).
bool reason_code_allowed(ReasonCode code, PacketType type);

// Whether `code` reports a failure: every code from 0x80 up does [MQTT-2.4].
inline bool is_error(ReasonCode code) {
  return static_cast<std::uint8_t>(code) >= 0x80;
}

// MQTT 3.1/3.1.1 CONNACK return codes (0 accepted, 1..5 refused for a reason).
std::uint8_t to_v3_connack_code(ReasonCode code);
ReasonCode from_v3_connack_code(std::uint8_t code);

}  // namespace sluice::mqtt
