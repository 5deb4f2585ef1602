// Encoding and parsing of the load generator's packets.
#include "wire.hpp"

namespace sluice::load {
namespace {

void append_u16(Buffer& out, std::size_t value) {
  out.push_back(static_cast<std::uint8_t>(value >> 8));
  out.push_back(static_cast<std::uint8_t>(value & 0xFF));
}

void append_string(Buffer& out, std::string_view text) {
  append_u16(out, text.size());
  out.insert(out.end(), text.begin(), text.end());
}

void append_length(Buffer& out, std::size_t length) {
  do {
    std::uint8_t byte = static_cast<std::uint8_t>(length % 128);
    length /= 128;
    if (length > 0) byte |= 0x80;
    out.push_back(byte);
  } while (length > 0);
}

std::uint16_t read_u16(std::span<const std::uint8_t> bytes, std::size_t at) {
  return static_cast<std::uint16_t>((bytes[at] << 8) | bytes[at + 1]);
}

}  // namespace

void append_connect(Buffer& out, int version, std::string_view client_id, bool keep_session) {
  const bool v5 = version == 5;
  // 5.0 ends a session when the connection does unless the Session Expiry
  // Interval (property 0x11) says otherwise: 0xFFFFFFFF, never.
  const std::size_t properties = v5 && keep_session ? 5 : 0;
  const std::size_t length = 10 + (v5 ? 1 + properties : 0) + 2 + client_id.size();
  out.push_back(0x10);
  append_length(out, length);
  append_string(out, "MQTT");
  out.push_back(static_cast<std::uint8_t>(version));
  // Clean Session (3.1.1) / Clean Start (5.0), unless the session is kept.
  out.push_back(keep_session ? 0x00 : 0x02);
  append_u16(out, 0);  // no keep alive: a benchmark run has no idle time
  if (v5) {
    out.push_back(static_cast<std::uint8_t>(properties));
    if (properties > 0) {
      out.push_back(0x11);
      append_u16(out, 0xFFFF);
      append_u16(out, 0xFFFF);
    }
  }
  append_string(out, client_id);
}

void append_user_property(Buffer& out, std::string_view name, std::string_view value) {
  out.push_back(0x26);
  append_string(out, name);
  append_string(out, value);
}

void append_subscribe(Buffer& out, int version, std::uint16_t packet_id, std::string_view filter,
                      int qos, std::span<const std::uint8_t> properties) {
  const bool v5 = version == 5;
  Buffer length_of_properties;
  if (v5) append_length(length_of_properties, properties.size());
  out.push_back(0x82);
  append_length(
      out, 2 + (v5 ? length_of_properties.size() + properties.size() : 0) + 2 + filter.size() + 1);
  append_u16(out, packet_id);
  if (v5) {
    out.insert(out.end(), length_of_properties.begin(), length_of_properties.end());
    out.insert(out.end(), properties.begin(), properties.end());
  }
  append_string(out, filter);
  out.push_back(static_cast<std::uint8_t>(qos));
}

void append_publish(Buffer& out, int version, std::string_view topic, int qos,
                    std::uint16_t packet_id, std::span<const std::uint8_t> payload,
                    std::span<const std::uint8_t> properties) {
  const bool v5 = version == 5;
  Buffer length_of_properties;
  if (v5) append_length(length_of_properties, properties.size());
  const std::size_t length = 2 + topic.size() + (qos > 0 ? 2 : 0) +
                             (v5 ? length_of_properties.size() + properties.size() : 0) +
                             payload.size();
  out.push_back(static_cast<std::uint8_t>(0x30 | (qos << 1)));
  append_length(out, length);
  append_string(out, topic);
  if (qos > 0) append_u16(out, packet_id);
  if (v5) {
    out.insert(out.end(), length_of_properties.begin(), length_of_properties.end());
    out.insert(out.end(), properties.begin(), properties.end());
  }
  out.insert(out.end(), payload.begin(), payload.end());
}

void append_ack(Buffer& out, PacketType type, std::uint16_t packet_id) {
  const bool pubrel = type == PacketType::kPubrel;  // the one with required flags
  out.push_back(static_cast<std::uint8_t>((static_cast<int>(type) << 4) | (pubrel ? 0x02 : 0)));
  out.push_back(2);
  append_u16(out, packet_id);
}

void append_disconnect(Buffer& out) {
  out.push_back(0xE0);
  out.push_back(0);
}

std::optional<Frame> next_frame(std::span<const std::uint8_t> input, std::size_t& consumed,
                                bool& malformed) {
  std::size_t length = 0;
  std::size_t at = 1;
  for (int shift = 0;; shift += 7, ++at) {
    if (at >= input.size()) return std::nullopt;
    if (shift > 21) {
      malformed = true;
      return std::nullopt;
    }
    length |= static_cast<std::size_t>(input[at] & 0x7F) << shift;
    if ((input[at] & 0x80) == 0) break;
  }
  ++at;
  if (input.size() - at < length) return std::nullopt;
  consumed = at + length;
  return Frame{static_cast<PacketType>(input[0] >> 4), static_cast<std::uint8_t>(input[0] & 0x0F),
               input.subspan(at, length)};
}

std::optional<PublishView> parse_publish(const Frame& frame, int version) {
  const auto body = frame.body;
  PublishView view;
  view.qos = (frame.flags >> 1) & 0x03;
  if (body.size() < 2) return std::nullopt;
  const std::size_t topic_length = read_u16(body, 0);
  std::size_t at = 2 + topic_length;
  if (body.size() < at) return std::nullopt;
  view.topic = {reinterpret_cast<const char*>(body.data() + 2), topic_length};
  if (view.qos > 0) {
    if (body.size() < at + 2) return std::nullopt;
    view.packet_id = read_u16(body, at);
    at += 2;
  }
  if (version == 5) {
    std::size_t properties = 0;
    for (int shift = 0;; shift += 7, ++at) {
      if (at >= body.size() || shift > 21) return std::nullopt;
      properties |= static_cast<std::size_t>(body[at] & 0x7F) << shift;
      if ((body[at] & 0x80) == 0) break;
    }
    ++at;
    if (body.size() < at + properties) return std::nullopt;
    view.properties = body.subspan(at, properties);
    at += properties;
  }
  view.payload = body.subspan(at);
  return view;
}

std::optional<std::string_view> user_property(std::span<const std::uint8_t> properties,
                                              std::string_view name) {
  // Only what a queue's deliveries carry is walked over: user properties
  // (0x26) and the few fixed-size or string properties before them.
  std::size_t at = 0;
  const auto string_at = [&](std::size_t& i) -> std::optional<std::string_view> {
    if (i + 2 > properties.size()) return std::nullopt;
    const std::size_t n = read_u16(properties, i);
    if (i + 2 + n > properties.size()) return std::nullopt;
    const std::string_view text(reinterpret_cast<const char*>(properties.data() + i + 2), n);
    i += 2 + n;
    return text;
  };
  while (at < properties.size()) {
    const std::uint8_t id = properties[at++];
    if (id == 0x26) {
      const auto key = string_at(at);
      const auto value = string_at(at);
      if (!key || !value) return std::nullopt;
      if (*key == name) return value;
    } else if (id == 0x01) {
      ++at;  // payload format indicator
    } else if (id == 0x02) {
      at += 4;                                            // message expiry interval
    } else if (id == 0x03 || id == 0x08 || id == 0x09) {  // content type, response topic, data
      if (!string_at(at)) return std::nullopt;
    } else {
      return std::nullopt;  // not one a queue delivery carries here
    }
  }
  return std::nullopt;
}

std::uint16_t packet_id_of(const Frame& frame) {
  return frame.body.size() >= 2 ? read_u16(frame.body, 0) : 0;
}

int connack_code(const Frame& frame) {
  return frame.body.size() >= 2 ? frame.body[1] : -1;
}

}  // namespace sluice::load
