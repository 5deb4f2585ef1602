#include "cluster/test_pause.hpp"

#ifdef SLUICE_TEST_HOOKS

#include <spdlog/spdlog.h>

#include <charconv>
#include <chrono>
#include <cstdlib>
#include <optional>
#include <thread>

namespace sluice::cluster {

namespace {

// "<ms>" as a whole number; nullopt when it is not one.
std::optional<unsigned> milliseconds_in(std::string_view digits) {
  unsigned ms = 0;
  const auto [end, error] = std::from_chars(digits.data(), digits.data() + digits.size(), ms);
  if (error != std::errc() || end != digits.data() + digits.size()) return std::nullopt;
  return ms;
}

}  // namespace

void test_pause(std::string_view point, std::string_view node_id) {
  const char* spec = std::getenv("SLUICE_TEST_PAUSE");
  if (spec == nullptr) return;
  std::string_view rest(spec);
  while (!rest.empty()) {
    const std::size_t comma = rest.find(',');
    const std::string_view item = rest.substr(0, comma);
    rest = comma == std::string_view::npos ? std::string_view() : rest.substr(comma + 1);
    const std::size_t at = item.find('@');
    const std::size_t colon = item.rfind(':');
    if (at == std::string_view::npos || colon == std::string_view::npos || colon < at) continue;
    if (item.substr(0, at) != point || item.substr(at + 1, colon - at - 1) != node_id) continue;
    const std::optional<unsigned> ms = milliseconds_in(item.substr(colon + 1));
    if (!ms) continue;
    spdlog::info("event=test_pause point={} ms={}", point, *ms);
    std::this_thread::sleep_for(std::chrono::milliseconds(*ms));
    return;
  }
}

unsigned test_append_delay_ms(std::string_view node_id) {
  const char* spec = std::getenv("SLUICE_TEST_RAFT_APPEND_DELAY");
  if (spec == nullptr) return 0;
  const std::string_view item(spec);
  const std::size_t colon = item.rfind(':');
  if (colon == std::string_view::npos || item.substr(0, colon) != node_id) return 0;
  const std::optional<unsigned> ms = milliseconds_in(item.substr(colon + 1));
  if (!ms) return 0;
  spdlog::warn(
      "event=test_slow_raft_disk append_delay_ms={} note=\"a test build, slow where told\"", *ms);
  return *ms;
}

void log_test_pauses() {
  if (const char* spec = std::getenv("SLUICE_TEST_PAUSE"))
    spdlog::warn("event=test_pause_armed spec=\"{}\" note=\"a test build, pausing where told\"",
                 spec);
}

}  // namespace sluice::cluster

#endif
