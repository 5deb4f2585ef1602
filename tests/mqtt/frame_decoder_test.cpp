// The frame decoder must yield the same packets however the stream is split:
// at every single split point, three ways, and one byte at a time.
#include "mqtt/frame_decoder.hpp"

#include <gtest/gtest.h>

#include "mqtt/packet_decoder.hpp"
#include "mqtt/packet_encoder.hpp"
#include "support/packet_bytes.hpp"
#include "support/sample_packets.hpp"

namespace sluice::mqtt {
namespace {

using testing::Bytes;

struct Stream {
  Bytes bytes;
  std::vector<Packet> packets;
};

Stream sample_stream(ProtocolVersion version) {
  Stream stream;
  for (auto& sample : testing::sample_packets(version)) {
    EXPECT_TRUE(encode_packet(sample.packet, version, stream.bytes));
    stream.packets.push_back(std::move(sample.packet));
  }
  return stream;
}

// Feeds `chunks` in order; returns the decoded packets, failing the test on any error.
std::vector<Packet> decode_chunks(const std::vector<std::span<const std::uint8_t>>& chunks,
                                  ProtocolVersion version) {
  FrameDecoder decoder;
  std::vector<Packet> packets;
  for (auto chunk : chunks) {
    decoder.feed(chunk);
    Frame frame;
    FrameDecoder::Status status;
    while ((status = decoder.next(frame)) == FrameDecoder::Status::kFrame) {
      Packet packet;
      const DecodeError error = decode_packet(frame, version, packet);
      EXPECT_TRUE(error.ok()) << error.rule << ": " << error.detail;
      packets.push_back(std::move(packet));
    }
    EXPECT_EQ(status, FrameDecoder::Status::kNeedMore);
  }
  EXPECT_EQ(decoder.buffered_bytes(), 0u) << "a whole stream leaves nothing behind";
  return packets;
}

class SplitStream : public ::testing::TestWithParam<ProtocolVersion> {};

TEST_P(SplitStream, EverySplitPointYieldsTheSamePackets) {
  const Stream stream = sample_stream(GetParam());
  const std::span<const std::uint8_t> all(stream.bytes);
  for (std::size_t split = 0; split <= all.size(); ++split) {
    const auto packets = decode_chunks({all.first(split), all.subspan(split)}, GetParam());
    ASSERT_TRUE(packets == stream.packets) << "split at byte " << split;
  }
}

TEST_P(SplitStream, ThreeWaySplitsYieldTheSamePackets) {
  const Stream stream = sample_stream(GetParam());
  const std::span<const std::uint8_t> all(stream.bytes);
  // About a hundred split points, every pair of them.
  const std::size_t step = std::max<std::size_t>(1, all.size() / 100);
  for (std::size_t a = 0; a <= all.size(); a += step) {
    for (std::size_t b = a; b <= all.size(); b += step) {
      const auto packets =
          decode_chunks({all.first(a), all.subspan(a, b - a), all.subspan(b)}, GetParam());
      ASSERT_TRUE(packets == stream.packets) << "splits at " << a << " and " << b;
    }
  }
}

TEST_P(SplitStream, OneByteAtATimeYieldsTheSamePackets) {
  const Stream stream = sample_stream(GetParam());
  std::vector<std::span<const std::uint8_t>> chunks;
  for (std::size_t i = 0; i < stream.bytes.size(); ++i)
    chunks.emplace_back(&stream.bytes[i], 1);
  EXPECT_TRUE(decode_chunks(chunks, GetParam()) == stream.packets);
}

INSTANTIATE_TEST_SUITE_P(AllVersions, SplitStream,
                         ::testing::Values(ProtocolVersion::kV3_1, ProtocolVersion::kV3_1_1,
                                           ProtocolVersion::kV5));

TEST(FrameDecoder, WholeFramesPointIntoTheCallersBytes) {
  const Bytes bytes = testing::packet(0xC0, {});  // PINGREQ
  FrameDecoder decoder;
  decoder.feed(bytes);
  Frame frame;
  ASSERT_EQ(decoder.next(frame), FrameDecoder::Status::kFrame);
  EXPECT_EQ(frame.type(), PacketType::kPingreq);
  EXPECT_EQ(frame.wire_bytes, 2u);
  EXPECT_EQ(decoder.buffered_bytes(), 0u);
}

TEST(FrameDecoder, MQTT_3_2_2_15_TooLargeIsRefusedBeforeTheBodyArrives) {
  // A PUBLISH announcing 1,000 bytes to a decoder that accepts 100: only the
  // fixed header is fed, and the error comes at once.
  Bytes header{0x30};
  ByteWriter(header).varint(1000);
  FrameDecoder decoder(100);
  decoder.feed(header);
  Frame frame;
  ASSERT_EQ(decoder.next(frame), FrameDecoder::Status::kError);
  EXPECT_EQ(decoder.error().code, ReasonCode::kPacketTooLarge);
  EXPECT_STREQ(decoder.error().rule, "MQTT-3.2.2-15");
  EXPECT_EQ(decoder.buffered_bytes(), 0u);
}

TEST(FrameDecoder, MaximumCountsTheWholePacket) {
  const Bytes at_limit = testing::packet(0x30, Bytes(98, 0));  // 2 + 98 = 100 bytes
  const Bytes over_limit = testing::packet(0x30, Bytes(99, 0));
  Frame frame;
  FrameDecoder ok(100);
  ok.feed(at_limit);
  EXPECT_EQ(ok.next(frame), FrameDecoder::Status::kFrame);
  FrameDecoder too_big(100);
  too_big.feed(over_limit);
  EXPECT_EQ(too_big.next(frame), FrameDecoder::Status::kError);
}

TEST(FrameDecoder, TooLargeIsDetectedWhenTheHeaderItselfIsSplit) {
  Bytes header{0x30};
  ByteWriter(header).varint(1'000'000);  // three length bytes
  FrameDecoder decoder(1000);
  Frame frame;
  for (std::size_t i = 0; i + 1 < header.size(); ++i) {
    decoder.feed(std::span<const std::uint8_t>(&header[i], 1));
    ASSERT_EQ(decoder.next(frame), FrameDecoder::Status::kNeedMore);
  }
  decoder.feed(std::span<const std::uint8_t>(&header.back(), 1));
  ASSERT_EQ(decoder.next(frame), FrameDecoder::Status::kError);
  EXPECT_EQ(decoder.error().code, ReasonCode::kPacketTooLarge);
}

TEST(FrameDecoder, ErrorsAreFinal) {
  FrameDecoder decoder;
  const Bytes bad{0x30, 0x80, 0x80, 0x80, 0x80, 0x01};
  decoder.feed(bad);
  Frame frame;
  ASSERT_EQ(decoder.next(frame), FrameDecoder::Status::kError);
  const Bytes good = testing::packet(0xC0, {});
  decoder.feed(good);
  EXPECT_EQ(decoder.next(frame), FrameDecoder::Status::kError);
}

TEST(FrameDecoder, ALargeSplitPacketDoesNotPinItsBuffer) {
  const Bytes big = testing::packet(0x30, Bytes(100'000, 7));
  const Bytes ping = testing::packet(0xC0, {});
  FrameDecoder decoder;
  Frame frame;
  decoder.feed(std::span<const std::uint8_t>(big).first(10));
  ASSERT_EQ(decoder.next(frame), FrameDecoder::Status::kNeedMore);
  decoder.feed(std::span<const std::uint8_t>(big).subspan(10));
  ASSERT_EQ(decoder.next(frame), FrameDecoder::Status::kFrame);
  EXPECT_EQ(frame.body.size(), 100'000u);
  ASSERT_EQ(decoder.next(frame), FrameDecoder::Status::kNeedMore);
  EXPECT_EQ(decoder.buffered_bytes(), 0u);
  decoder.feed(ping);
  EXPECT_EQ(decoder.next(frame), FrameDecoder::Status::kFrame);
}

}  // namespace
}  // namespace sluice::mqtt
