// Fuzz target for the configuration reader: any text must give a Config or
// a ConfigError, never a crash, a hang or an exception out of parse_config.
#include <cstdint>
#include <string_view>

#include "config/config_loader.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  const auto result = sluice::config::parse_config(text, "fuzz.yaml");
  if (const auto* error = std::get_if<sluice::config::ConfigError>(&result)) {
    if (error->message.empty()) __builtin_trap();  // every refusal says why
  }
  return 0;
}
