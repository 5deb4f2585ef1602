// Incremental MQTT framing: bytes in, whole packets out.
//
// A connection hands over what each read returned, split anywhere (one byte at
// a time works), and takes out `Frame`s: the fixed header's first byte and the
// packet's body. Frames that arrived whole point straight into the caller's
// bytes; only a packet split across reads is copied, into one buffer reused
// for the connection's life. The Remaining Length is checked against the
// maximum packet size as soon as it is read, before any of the body is kept.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

#include "mqtt/decode_error.hpp"
#include "mqtt/packet_type.hpp"

namespace sluice::mqtt {

// The largest packet the protocol can express: a 5-byte fixed header and a
// Remaining Length of 268,435,455.
constexpr std::uint32_t kProtocolMaxPacketBytes = 268'435'460;

struct Frame {
  std::uint8_t first_byte = 0;         // packet type << 4 | flags
  std::span<const std::uint8_t> body;  // variable header and payload
  std::size_t wire_bytes = 0;          // the whole packet, fixed header included

  PacketType type() const { return static_cast<PacketType>(first_byte >> 4); }
  std::uint8_t flags() const { return first_byte & 0x0F; }
};

class FrameDecoder {
 public:
  enum class Status { kFrame, kNeedMore, kError };

  explicit FrameDecoder(std::uint32_t max_packet_bytes = kProtocolMaxPacketBytes)
      : max_packet_bytes_(max_packet_bytes) {}

  // A limit of the whole packet, fixed header included [MQTT-3.1.2-24]. Takes
  // effect from the next packet on.
  void set_max_packet_bytes(std::uint32_t bytes) { max_packet_bytes_ = bytes; }

  // Adds bytes to decode. They must stay valid until `next` returns kNeedMore:
  // frames may point into them.
  void feed(std::span<const std::uint8_t> input) { input_ = input; }

  // The next whole frame, valid until the next call of `next` or `feed`.
  // kNeedMore once everything fed is used up (a partial packet is kept);
  // kError, for good, when the stream cannot be framed (see `error`).
  Status next(Frame& frame);

  const DecodeError& error() const { return error_; }

  // Bytes of a partial packet held between reads.
  std::size_t buffered_bytes() const { return partial_.size(); }

  // Fed bytes not yet framed, right after a kFrame: what a connection moving to
  // another thread must take with it.
  std::span<const std::uint8_t> unread_input() const { return input_; }

 private:
  struct Header {
    enum class State { kComplete, kIncomplete, kNotShortest, kTooLong } state;
    std::size_t length = 0;  // bytes of the fixed header
    std::uint32_t remaining_length = 0;
  };
  static Header parse_header(std::span<const std::uint8_t> bytes);

  Status next_from_input(Frame& frame);
  Status continue_partial(Frame& frame);
  Status fail(const DecodeError& error);
  // kFrame or kError for a complete or invalid header; kNeedMore otherwise.
  Status check_header(const Header& header);
  bool too_large(const Header& header) const;

  std::uint32_t max_packet_bytes_;
  std::span<const std::uint8_t> input_;
  std::vector<std::uint8_t> partial_;  // a packet split across reads
  bool partial_handed_out_ = false;    // `partial_` backs the last frame returned
  DecodeError error_;
};

}  // namespace sluice::mqtt
