// MQTT over WebSocket (RFC 6455, MQTT section 6), server side, as a layer
// between the byte stream (TCP or TLS) and the MQTT frame decoder: the HTTP
// upgrade, then binary frames in, unmasked into MQTT bytes however they
// split or join packets, and the broker's output wrapped in binary frames.
// Its state is plain data, so it moves with its connection to another worker.
#pragma once

#include <array>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "config/config.hpp"

namespace sluice::net {

class WebSocketSession {
 public:
  explicit WebSocketSession(const config::WebSocketConfig& config) : config_(&config) {}

  enum class Status { kOpen, kClose };
  // Takes bytes from the client. MQTT bytes are appended to `mqtt`; what
  // must go back as it is (the HTTP response, pong and close frames) to
  // `reply`. kClose: send `reply`, then close the connection.
  Status consume(std::span<const std::uint8_t> input, std::vector<std::uint8_t>& mqtt,
                 std::vector<std::uint8_t>& reply);

  bool open() const { return state_ == State::kOpen; }
  // Appends the header of a binary frame carrying `payload_bytes` (the server
  // does not mask).
  static void append_frame_header(std::vector<std::uint8_t>& out, std::size_t payload_bytes);

  // "https://app.example.com" matches an entry of exactly that, or
  // "*.example.com" (any subdomain, at any depth).
  static bool origin_allowed(const std::vector<std::string>& allowed, std::string_view origin);

 private:
  enum class State { kHandshake, kOpen, kClosed };
  Status handshake(std::vector<std::uint8_t>& reply);
  Status frames(std::vector<std::uint8_t>& mqtt, std::vector<std::uint8_t>& reply);

  const config::WebSocketConfig* config_;
  State state_ = State::kHandshake;
  // Bytes not yet used: the HTTP request until it is whole, then the start
  // of a frame that has not fully arrived.
  std::vector<std::uint8_t> pending_;
  // The data frame being read: payload bytes still to come, and its mask.
  std::uint64_t data_left_ = 0;
  std::array<std::uint8_t, 4> mask_{};
  std::uint64_t mask_offset_ = 0;
};

}  // namespace sluice::net
