// Fuzz target for the WebSocket layer (net/websocket.*): what a client sends
// before and after the upgrade, fed in pieces whose sizes come from the input.
// Nothing may crash; a session that said "close" must keep saying it; MQTT
// bytes come out only after a 101 reply.
#include <cstdint>
#include <cstdlib>
#include <span>
#include <string_view>
#include <vector>

#include "net/websocket.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0) return 0;
  sluice::config::WebSocketConfig config;
  config.allowed_origins = {"https://app.example.com", "*.example.net"};
  sluice::net::WebSocketSession session(config);
  const std::size_t piece = 1 + data[0] % 64;  // 1..64 bytes at a time
  std::span<const std::uint8_t> input(data + 1, size - 1);
  std::vector<std::uint8_t> mqtt, reply;
  bool closed = false;
  while (!input.empty()) {
    const std::size_t n = std::min(piece, input.size());
    const auto status = session.consume(input.first(n), mqtt, reply);
    input = input.subspan(n);
    if (closed && status != sluice::net::WebSocketSession::Status::kClose) std::abort();
    closed = status == sluice::net::WebSocketSession::Status::kClose;
  }
  const std::string_view answer(reinterpret_cast<const char*>(reply.data()), reply.size());
  if (!mqtt.empty() && !answer.starts_with("HTTP/1.1 101 ")) std::abort();
  return 0;
}
