// The decoded form of every MQTT control packet, one struct each, and `Packet`,
// the variant of them all. The same structs serve 3.1, 3.1.1 and 5.0: fields a
// version lacks (properties, reason codes on acknowledgements) keep their
// defaults there and are neither read nor written for it.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <type_traits>
#include <variant>
#include <vector>

#include "mqtt/packet_type.hpp"
#include "mqtt/property.hpp"
#include "mqtt/protocol_version.hpp"
#include "mqtt/reason_code.hpp"

namespace sluice::mqtt {

struct Will {
  std::string topic;
  Bytes payload;
  QoS qos = QoS::kAtMostOnce;
  bool retain = false;
  Properties properties;  // MQTT 5 will properties
  bool operator==(const Will&) const = default;
};

struct Connect {
  ProtocolVersion version = ProtocolVersion::kV5;
  bool clean_start = true;  // "clean session" in 3.1/3.1.1
  std::uint16_t keep_alive_s = 0;
  std::string client_id;
  std::optional<Will> will;
  std::optional<std::string> username;
  std::optional<Bytes> password;
  Properties properties;
  bool operator==(const Connect&) const = default;
};

struct Connack {
  bool session_present = false;
  // An MQTT 5 reason code; on 3.x it travels as the nearest return code.
  ReasonCode reason = ReasonCode::kSuccess;
  Properties properties;
  bool operator==(const Connack&) const = default;
};

struct Publish {
  std::string topic;  // may be empty on MQTT 5 when a Topic Alias stands for it
  QoS qos = QoS::kAtMostOnce;
  bool retain = false;
  bool dup = false;
  std::uint16_t packet_id = 0;  // present only for QoS 1 and 2
  Properties properties;
  Bytes payload;
  bool operator==(const Publish&) const = default;
};

// PUBACK, PUBREC, PUBREL and PUBCOMP share one layout; the template parameter
// keeps them distinct types in `Packet`.
template <PacketType kType>
struct PublishResponse {
  static constexpr PacketType kPacketType = kType;
  std::uint16_t packet_id = 0;
  ReasonCode reason = ReasonCode::kSuccess;
  Properties properties;
  bool operator==(const PublishResponse&) const = default;
};
using Puback = PublishResponse<PacketType::kPuback>;
using Pubrec = PublishResponse<PacketType::kPubrec>;
using Pubrel = PublishResponse<PacketType::kPubrel>;
using Pubcomp = PublishResponse<PacketType::kPubcomp>;

enum class RetainHandling : std::uint8_t {
  kSendOnSubscribe = 0,
  kSendOnNewSubscribe = 1,
  kDoNotSend = 2,
};

struct SubscriptionOptions {
  QoS max_qos = QoS::kAtMostOnce;
  bool no_local = false;                                              // MQTT 5
  bool retain_as_published = false;                                   // MQTT 5
  RetainHandling retain_handling = RetainHandling::kSendOnSubscribe;  // MQTT 5
  bool operator==(const SubscriptionOptions&) const = default;
};

struct Subscription {
  std::string filter;
  SubscriptionOptions options;
  bool operator==(const Subscription&) const = default;
};

struct Subscribe {
  std::uint16_t packet_id = 0;
  Properties properties;
  std::vector<Subscription> subscriptions;
  bool operator==(const Subscribe&) const = default;
};

struct Suback {
  std::uint16_t packet_id = 0;
  Properties properties;
  // One per subscription: a granted QoS (0x00..0x02) or a failure (0x80 and up;
  // 3.1.1 knows only 0x80, and 3.1 no failure at all).
  std::vector<ReasonCode> reasons;
  bool operator==(const Suback&) const = default;
};

struct Unsubscribe {
  std::uint16_t packet_id = 0;
  Properties properties;
  std::vector<std::string> filters;
  bool operator==(const Unsubscribe&) const = default;
};

struct Unsuback {
  std::uint16_t packet_id = 0;
  Properties properties;
  std::vector<ReasonCode> reasons;  // MQTT 5 only; empty on 3.x
  bool operator==(const Unsuback&) const = default;
};

struct Pingreq {
  bool operator==(const Pingreq&) const = default;
};

struct Pingresp {
  bool operator==(const Pingresp&) const = default;
};

struct Disconnect {
  ReasonCode reason = ReasonCode::kSuccess;  // MQTT 5 only
  Properties properties;
  bool operator==(const Disconnect&) const = default;
};

struct Auth {  // MQTT 5 only
  ReasonCode reason = ReasonCode::kSuccess;
  Properties properties;
  bool operator==(const Auth&) const = default;
};

using Packet = std::variant<Connect, Connack, Publish, Puback, Pubrec, Pubrel, Pubcomp, Subscribe,
                            Suback, Unsubscribe, Unsuback, Pingreq, Pingresp, Disconnect, Auth>;

// The variant's alternatives are in packet type order, so the index says the type.
inline PacketType type_of(const Packet& packet) {
  return static_cast<PacketType>(packet.index() + 1);
}

namespace detail {
template <class T, class... Ts>
constexpr std::size_t index_in(const std::variant<Ts...>*) {
  std::size_t index = 0;
  const bool found = ((std::is_same_v<T, Ts> || (++index, false)) || ...);
  return found ? index : sizeof...(Ts);
}
}  // namespace detail

// The packet type of each packet struct, at compile time.
template <class T>
constexpr PacketType kPacketTypeOf =
    static_cast<PacketType>(detail::index_in<T>(static_cast<const Packet*>(nullptr)) + 1);

}  // namespace sluice::mqtt
