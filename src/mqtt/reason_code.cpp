// The MQTT 5 reason code table (spec section 2.4): the name of each code and
// the packets it is defined for, as one row per code.
#include "mqtt/reason_code.hpp"

#include <array>

namespace sluice::mqtt {
namespace {

constexpr std::uint16_t bit(PacketType type) {
  return static_cast<std::uint16_t>(1u << static_cast<unsigned>(type));
}

constexpr std::uint16_t kConnack = bit(PacketType::kConnack);
constexpr std::uint16_t kPuback = bit(PacketType::kPuback);
constexpr std::uint16_t kPubrec = bit(PacketType::kPubrec);
constexpr std::uint16_t kPubrel = bit(PacketType::kPubrel);
constexpr std::uint16_t kPubcomp = bit(PacketType::kPubcomp);
constexpr std::uint16_t kSuback = bit(PacketType::kSuback);
constexpr std::uint16_t kUnsuback = bit(PacketType::kUnsuback);
constexpr std::uint16_t kDisconnect = bit(PacketType::kDisconnect);
constexpr std::uint16_t kAuth = bit(PacketType::kAuth);

// Codes that report a failed publish, subscribe or unsubscribe in general terms.
constexpr std::uint16_t kGeneralFailure =
    kConnack | kPuback | kPubrec | kSuback | kUnsuback | kDisconnect;

struct ReasonCodeInfo {
  ReasonCode code;
  const char* name;
  std::uint16_t packets;  // bit set of PacketType values
};

constexpr ReasonCodeInfo kTable[] = {
    {ReasonCode::kSuccess, "Success",
     kConnack | kPuback | kPubrec | kPubrel | kPubcomp | kSuback | kUnsuback | kDisconnect | kAuth},
    {ReasonCode::kGrantedQoS1, "Granted QoS 1", kSuback},
    {ReasonCode::kGrantedQoS2, "Granted QoS 2", kSuback},
    {ReasonCode::kDisconnectWithWillMessage, "Disconnect with Will Message", kDisconnect},
    {ReasonCode::kNoMatchingSubscribers, "No matching subscribers", kPuback | kPubrec},
    {ReasonCode::kNoSubscriptionExisted, "No subscription existed", kUnsuback},
    {ReasonCode::kContinueAuthentication, "Continue authentication", kAuth},
    {ReasonCode::kReAuthenticate, "Re-authenticate", kAuth},
    {ReasonCode::kUnspecifiedError, "Unspecified error", kGeneralFailure},
    {ReasonCode::kMalformedPacket, "Malformed Packet", kConnack | kDisconnect},
    {ReasonCode::kProtocolError, "Protocol Error", kConnack | kDisconnect},
    {ReasonCode::kImplementationSpecificError, "Implementation specific error", kGeneralFailure},
    {ReasonCode::kUnsupportedProtocolVersion, "Unsupported Protocol Version", kConnack},
    {ReasonCode::kClientIdentifierNotValid, "Client Identifier not valid", kConnack},
    {ReasonCode::kBadUserNameOrPassword, "Bad User Name or Password", kConnack},
    {ReasonCode::kNotAuthorized, "Not authorized", kGeneralFailure},
    {ReasonCode::kServerUnavailable, "Server unavailable", kConnack},
    {ReasonCode::kServerBusy, "Server busy", kConnack | kDisconnect},
    {ReasonCode::kBanned, "Banned", kConnack},
    {ReasonCode::kServerShuttingDown, "Server shutting down", kDisconnect},
    {ReasonCode::kBadAuthenticationMethod, "Bad authentication method", kConnack | kDisconnect},
    {ReasonCode::kKeepAliveTimeout, "Keep Alive timeout", kDisconnect},
    {ReasonCode::kSessionTakenOver, "Session taken over", kDisconnect},
    {ReasonCode::kTopicFilterInvalid, "Topic Filter invalid", kSuback | kUnsuback | kDisconnect},
    {ReasonCode::kTopicNameInvalid, "Topic Name invalid",
     kConnack | kPuback | kPubrec | kDisconnect},
    {ReasonCode::kPacketIdentifierInUse, "Packet Identifier in use",
     kPuback | kPubrec | kSuback | kUnsuback},
    {ReasonCode::kPacketIdentifierNotFound, "Packet Identifier not found", kPubrel | kPubcomp},
    {ReasonCode::kReceiveMaximumExceeded, "Receive Maximum exceeded", kDisconnect},
    {ReasonCode::kTopicAliasInvalid, "Topic Alias invalid", kDisconnect},
    {ReasonCode::kPacketTooLarge, "Packet too large", kConnack | kDisconnect},
    {ReasonCode::kMessageRateTooHigh, "Message rate too high", kDisconnect},
    {ReasonCode::kQuotaExceeded, "Quota exceeded",
     kConnack | kPuback | kPubrec | kSuback | kDisconnect},
    {ReasonCode::kAdministrativeAction, "Administrative action", kDisconnect},
    {ReasonCode::kPayloadFormatInvalid, "Payload format invalid",
     kConnack | kPuback | kPubrec | kDisconnect},
    {ReasonCode::kRetainNotSupported, "Retain not supported", kConnack | kDisconnect},
    {ReasonCode::kQoSNotSupported, "QoS not supported", kConnack | kDisconnect},
    {ReasonCode::kUseAnotherServer, "Use another server", kConnack | kDisconnect},
    {ReasonCode::kServerMoved, "Server moved", kConnack | kDisconnect},
    {ReasonCode::kSharedSubscriptionsNotSupported, "Shared Subscriptions not supported",
     kSuback | kDisconnect},
    {ReasonCode::kConnectionRateExceeded, "Connection rate exceeded", kConnack | kDisconnect},
    {ReasonCode::kMaximumConnectTime, "Maximum connect time", kDisconnect},
    {ReasonCode::kSubscriptionIdentifiersNotSupported, "Subscription Identifiers not supported",
     kSuback | kDisconnect},
    {ReasonCode::kWildcardSubscriptionsNotSupported, "Wildcard Subscriptions not supported",
     kSuback | kDisconnect},
};

// Index by the code's value, built once at compile time.
constexpr std::array<const ReasonCodeInfo*, 256> make_index() {
  std::array<const ReasonCodeInfo*, 256> index{};
  for (const auto& info : kTable)
    index[static_cast<std::uint8_t>(info.code)] = &info;
  return index;
}
constexpr auto kIndex = make_index();

}  // namespace

const char* to_string(ReasonCode code) {
  const ReasonCodeInfo* info = kIndex[static_cast<std::uint8_t>(code)];
  return info != nullptr ? info->name : "Unknown";
}

bool reason_code_allowed(ReasonCode code, PacketType type) {
  const ReasonCodeInfo* info = kIndex[static_cast<std::uint8_t>(code)];
  return info != nullptr && (info->packets & bit(type)) != 0;
}

std::uint8_t to_v3_connack_code(ReasonCode code) {
  switch (code) {
    case ReasonCode::kSuccess:
      return 0;
    case ReasonCode::kUnsupportedProtocolVersion:
      return 1;
    case ReasonCode::kClientIdentifierNotValid:
      return 2;
    case ReasonCode::kBadUserNameOrPassword:
      return 4;
    case ReasonCode::kNotAuthorized:
    case ReasonCode::kBanned:
      return 5;
    default:
      // 3.x has no finer words for a refusal: "server unavailable" is the
      // closest to every other reason the broker may have.
      return 3;
  }
}

ReasonCode from_v3_connack_code(std::uint8_t code) {
  switch (code) {
    case 0:
      return ReasonCode::kSuccess;
    case 1:
      return ReasonCode::kUnsupportedProtocolVersion;
    case 2:
      return ReasonCode::kClientIdentifierNotValid;
    case 3:
      return ReasonCode::kServerUnavailable;
    case 4:
      return ReasonCode::kBadUserNameOrPassword;
    case 5:
      return ReasonCode::kNotAuthorized;
    default:
      return ReasonCode::kUnspecifiedError;
  }
}

}  // namespace sluice::mqtt
