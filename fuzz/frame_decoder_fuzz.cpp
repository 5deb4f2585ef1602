// Fuzz target for the decoder: the input is a protocol version byte and then a
// byte stream, fed in pieces whose sizes come from the input too. Every frame is
// decoded; every packet that decodes is encoded again and must decode to the
// same packet, so the target checks the encoder as well as the decoder.
#include <cstdint>
#include <cstdlib>
#include <span>
#include <vector>

#include "mqtt/frame_decoder.hpp"
#include "mqtt/packet_decoder.hpp"
#include "mqtt/packet_encoder.hpp"

namespace {

using namespace sluice::mqtt;

void check_round_trip(const Packet& packet, ProtocolVersion version) {
  // A CONNECT is encoded in the version it names, which is how it decodes too.
  std::vector<std::uint8_t> bytes;
  if (!encode_packet(packet, version, bytes)) return;  // e.g. over the protocol's size limit
  FrameDecoder decoder;
  decoder.feed(bytes);
  Frame frame;
  if (decoder.next(frame) != FrameDecoder::Status::kFrame) std::abort();
  Packet again;
  if (!decode_packet(frame, version, again).ok()) std::abort();
  if (!(again == packet)) std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size < 2) return 0;
  const auto version = static_cast<ProtocolVersion>(3 + data[0] % 3);
  const std::size_t chunk = 1 + data[1] % 64;  // 1..64 bytes per read
  std::span<const std::uint8_t> stream(data + 2, size - 2);

  FrameDecoder decoder(4096);
  while (!stream.empty()) {
    const std::size_t n = std::min(chunk, stream.size());
    decoder.feed(stream.first(n));
    stream = stream.subspan(n);
    Frame frame;
    FrameDecoder::Status status;
    while ((status = decoder.next(frame)) == FrameDecoder::Status::kFrame) {
      Packet packet;
      if (decode_packet(frame, version, packet).ok()) check_round_trip(packet, version);
    }
    if (status == FrameDecoder::Status::kError) return 0;
  }
  return 0;
}
