// Decodes one packet from a whole byte string, through the frame decoder and
// the packet decoder, as a connection would.
#pragma once

#include <span>

#include "mqtt/frame_decoder.hpp"
#include "mqtt/packet_decoder.hpp"

namespace sluice::mqtt::testing {

// The error of framing or decoding `bytes` as exactly one packet. Leftover or
// missing bytes are reported as kImplementationSpecificError with rule "test".
inline DecodeError decode_bytes(std::span<const std::uint8_t> bytes, ProtocolVersion version,
                                Packet& out,
                                std::uint32_t max_packet_bytes = kProtocolMaxPacketBytes) {
  FrameDecoder decoder(max_packet_bytes);
  decoder.feed(bytes);
  Frame frame;
  switch (decoder.next(frame)) {
    case FrameDecoder::Status::kError:
      return decoder.error();
    case FrameDecoder::Status::kNeedMore:
      return {ReasonCode::kImplementationSpecificError, "test", "incomplete packet"};
    case FrameDecoder::Status::kFrame:
      break;
  }
  if (frame.wire_bytes != bytes.size()) {
    return {ReasonCode::kImplementationSpecificError, "test", "bytes after the packet"};
  }
  return decode_packet(frame, version, out);
}

}  // namespace sluice::mqtt::testing
