// Writes a property block with either writer of byte_writer.hpp: the properties
// in identifier order, preceded by their length. Internal to the encoder.
#pragma once

#include <type_traits>

#include "mqtt/byte_writer.hpp"
#include "mqtt/property_table.hpp"

namespace sluice::mqtt::detail {

// Which properties a block holds: all of them, or only those that are the same
// for every subscriber a message goes to (so they can be encoded once per message).
enum class PropertySelection { kAll, kSharedByDeliveries };

inline bool varies_per_delivery(PropertyId id) {
  return id == PropertyId::kSubscriptionIdentifier || id == PropertyId::kTopicAlias ||
         id == PropertyId::kMessageExpiryInterval;
}

template <class W>
void write_value(W& w, std::uint8_t id, const std::optional<std::uint8_t>& v) {
  if (v) {
    w.u8(id);
    w.u8(*v);
  }
}
template <class W>
void write_value(W& w, std::uint8_t id, const std::optional<std::uint16_t>& v) {
  if (v) {
    w.u8(id);
    w.u16(*v);
  }
}
template <class W>
void write_value(W& w, std::uint8_t id, const std::optional<std::uint32_t>& v) {
  if (v) {
    w.u8(id);
    w.u32(*v);
  }
}
template <class W>
void write_value(W& w, std::uint8_t id, const std::vector<std::uint32_t>& values) {
  for (auto v : values) {
    w.u8(id);
    w.varint(v);
  }
}
template <class W>
void write_value(W& w, std::uint8_t id, const std::optional<std::string>& v) {
  if (v) {
    w.u8(id);
    w.string(*v);
  }
}
template <class W>
void write_value(W& w, std::uint8_t id, const std::optional<Bytes>& v) {
  if (v) {
    w.u8(id);
    w.binary(*v);
  }
}
template <class W>
void write_value(W& w, std::uint8_t id, const std::vector<UserProperty>& pairs) {
  for (const auto& pair : pairs) {
    w.u8(id);
    w.string(pair.name);
    w.string(pair.value);
  }
}

// The properties themselves, without the length in front.
template <class W>
void write_property_list(W& w, const Properties& p, PropertySelection selection) {
  for_each_property_def([&](const auto& def) {
    if (selection == PropertySelection::kSharedByDeliveries && varies_per_delivery(def.id)) return;
    write_value(w, static_cast<std::uint8_t>(def.id), p.*def.member);
  });
}

inline std::size_t property_list_size(const Properties& p, PropertySelection selection) {
  SizeCounter counter;
  write_property_list(counter, p, selection);
  return counter.size();
}

// Length, then the properties.
template <class W>
void write_properties(W& w, const Properties& p) {
  const std::size_t size = property_list_size(p, PropertySelection::kAll);
  w.varint(static_cast<std::uint32_t>(size));
  if constexpr (std::is_same_v<W, SizeCounter>) {
    w.skip(size);  // already counted: no second walk
  } else {
    write_property_list(w, p, PropertySelection::kAll);
  }
}

}  // namespace sluice::mqtt::detail
