// The property table shared by the property decoder and encoder: for each
// property, the member of `Properties` that holds it. The member's C++ type
// says the wire type (optional<uint32_t> a Four Byte Integer, vector<uint32_t>
// Variable Byte Integers, optional<Bytes> Binary Data, and so on).
#pragma once

#include <span>
#include <variant>

#include "mqtt/property.hpp"

namespace sluice::mqtt {

using PropertyField = std::variant<std::optional<std::uint8_t> Properties::*,
                                   std::optional<std::uint16_t> Properties::*,
                                   std::optional<std::uint32_t> Properties::*,
                                   std::vector<std::uint32_t> Properties::*,
                                   std::optional<std::string> Properties::*,
                                   std::optional<Bytes> Properties::*,
                                   std::vector<UserProperty> Properties::*>;

struct PropertyRow {
  PropertyInfo info;
  PropertyField field;
  std::uint16_t contexts;  // bit set of PropertyContext values
};

// Every property, in identifier order.
std::span<const PropertyRow> property_rows();

}  // namespace sluice::mqtt
