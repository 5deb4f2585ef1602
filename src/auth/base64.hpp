// Base64 as password files, SCRAM and the WebSocket upgrade write it
// (standard alphabet, with padding), over OpenSSL's block coder; and
// lowercase hex, as digests, ids and trace contexts are written.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace sluice::auth {

std::string to_base64(std::span<const std::uint8_t> bytes);
std::string to_hex(std::span<const std::uint8_t> bytes);
// nullopt when `text` is not padded base64.
std::optional<std::vector<std::uint8_t>> from_base64(std::string_view text);

}  // namespace sluice::auth
