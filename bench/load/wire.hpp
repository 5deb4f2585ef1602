// The few MQTT packets a load generator sends and reads, written and parsed
// by hand: no allocation per message, and no code shared with the broker it
// measures (a bug shared by both would cancel out).
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string_view>
#include <vector>

namespace sluice::load {

using Buffer = std::vector<std::uint8_t>;

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
  kPingresp = 13,
  kDisconnect = 14,
};

// MQTT protocol levels: 4 is 3.1.1, 5 is 5.0. `keep_session`: Clean Session 0
// (3.1.1), or Clean Start 0 with the longest Session Expiry Interval (5.0).
void append_connect(Buffer& out, int version, std::string_view client_id,
                    bool keep_session = false);
// `properties`: a 5.0 property list without its length (ignored for 3.1.1).
void append_subscribe(Buffer& out, int version, std::uint16_t packet_id, std::string_view filter,
                      int qos, std::span<const std::uint8_t> properties = {});
void append_publish(Buffer& out, int version, std::string_view topic, int qos,
                    std::uint16_t packet_id, std::span<const std::uint8_t> payload,
                    std::span<const std::uint8_t> properties = {});
void append_user_property(Buffer& out, std::string_view name, std::string_view value);
// PUBACK, PUBREC, PUBREL or PUBCOMP: the two-byte form, valid in every version.
void append_ack(Buffer& out, PacketType type, std::uint16_t packet_id);
void append_disconnect(Buffer& out);

struct Frame {
  PacketType type;
  std::uint8_t flags;
  std::span<const std::uint8_t> body;
};

// The first whole packet in `input`, and how many bytes it takes; nullopt
// when more bytes are needed. `malformed` is set on a bad length.
std::optional<Frame> next_frame(std::span<const std::uint8_t> input, std::size_t& consumed,
                                bool& malformed);

struct PublishView {
  std::string_view topic;
  int qos = 0;
  std::uint16_t packet_id = 0;
  std::span<const std::uint8_t> properties;  // 5.0: the property list, less its length
  std::span<const std::uint8_t> payload;
};
std::optional<PublishView> parse_publish(const Frame& frame, int version);
// The value of the first user property `name` in a PUBLISH's properties.
std::optional<std::string_view> user_property(std::span<const std::uint8_t> properties,
                                              std::string_view name);

// The packet id of an acknowledgement or SUBACK (first two bytes of the body).
std::uint16_t packet_id_of(const Frame& frame);
// The CONNACK's return or reason code.
int connack_code(const Frame& frame);

}  // namespace sluice::load
