// The decoders and encoder of the hot path (a PUBLISH into a reused Publish,
// a bare acknowledgement as its packet id, a Success acknowledgement as four
// bytes) against the general ones they stand in for.
#include <gtest/gtest.h>

#include <algorithm>

#include "mqtt/packet_encoder.hpp"
#include "mqtt/property.hpp"
#include "support/decode_bytes.hpp"
#include "support/sample_packets.hpp"

namespace sluice::mqtt {
namespace {

using testing::sample_packets;

constexpr ProtocolVersion kVersions[] = {ProtocolVersion::kV3_1, ProtocolVersion::kV3_1_1,
                                         ProtocolVersion::kV5};

Frame frame_of(const std::vector<std::uint8_t>& bytes) {
  FrameDecoder decoder;
  decoder.feed(bytes);
  Frame frame;
  EXPECT_EQ(decoder.next(frame), FrameDecoder::Status::kFrame);
  return frame;
}

std::vector<std::uint8_t> encoded(const Packet& packet, ProtocolVersion version) {
  std::vector<std::uint8_t> bytes;
  EXPECT_TRUE(encode_packet(packet, version, bytes));
  return bytes;
}

// Every sample PUBLISH decoded into one Publish, reused in turn, richest
// first: each comes out as decode_packet says, nothing left over from the
// one before (properties, packet id).
TEST(HotPath, APublishDecodedIntoAReusedOneEqualsTheGeneralDecoding) {
  for (ProtocolVersion version : kVersions) {
    std::vector<Packet> publishes;
    for (auto& sample : sample_packets(version)) {
      if (std::holds_alternative<Publish>(sample.packet)) publishes.push_back(sample.packet);
    }
    ASSERT_GE(publishes.size(), 2u);
    std::stable_sort(publishes.begin(), publishes.end(), [](const Packet& a, const Packet& b) {
      return has_any(std::get<Publish>(a).properties) > has_any(std::get<Publish>(b).properties);
    });
    Publish reused;
    for (const Packet& packet : publishes) {
      const auto bytes = encoded(packet, version);
      const Frame frame = frame_of(bytes);
      ASSERT_TRUE(decode_publish_into(frame, version, reused).ok());
      Packet general;
      ASSERT_TRUE(decode_packet(frame, version, general).ok());
      EXPECT_EQ(reused, std::get<Publish>(general)) << to_string(version);
      reused.topic.clear();  // as a handler that moved them out leaves them
      reused.payload.clear();
    }
  }
}

// One Publish serves every connection of a worker: a 3.x PUBLISH decoded
// after a 5.0 one with properties has none.
TEST(HotPath, A3xPublishAfterA5PublishWithPropertiesHasNone) {
  Publish reused;
  for (auto& sample : sample_packets(ProtocolVersion::kV5)) {
    const auto* publish = std::get_if<Publish>(&sample.packet);
    if (publish == nullptr || !has_any(publish->properties)) continue;
    ASSERT_TRUE(decode_publish_into(frame_of(encoded(sample.packet, ProtocolVersion::kV5)),
                                    ProtocolVersion::kV5, reused)
                    .ok());
    break;
  }
  ASSERT_TRUE(has_any(reused.properties));
  Publish v3;
  v3.topic = "a/b";
  v3.payload = {1, 2};
  const auto bytes = encoded(v3, ProtocolVersion::kV3_1_1);
  ASSERT_TRUE(decode_publish_into(frame_of(bytes), ProtocolVersion::kV3_1_1, reused).ok());
  EXPECT_FALSE(has_any(reused.properties));
  EXPECT_EQ(reused, v3);
}

TEST(HotPath, AMalformedPublishIsRefusedWithTheSameRule) {
  // QoS 3, and a QoS 0 PUBLISH with DUP set.
  for (std::uint8_t first : {std::uint8_t{0x36}, std::uint8_t{0x38}}) {
    const std::vector<std::uint8_t> bytes{first, 5, 0, 1, 'a', 0, 1};
    const Frame frame = frame_of(bytes);
    Publish reused;
    Packet general;
    const DecodeError fast = decode_publish_into(frame, ProtocolVersion::kV3_1_1, reused);
    const DecodeError slow = decode_packet(frame, ProtocolVersion::kV3_1_1, general);
    EXPECT_FALSE(fast.ok());
    EXPECT_STREQ(fast.rule, slow.rule);
  }
}

TEST(HotPath, ABareAcknowledgementIsItsPacketId) {
  for (ProtocolVersion version : kVersions) {
    for (Packet packet : {Packet{Puback{0x1234, ReasonCode::kSuccess, {}}},
                          Packet{Pubrec{0x1234, ReasonCode::kSuccess, {}}},
                          Packet{Pubcomp{0x1234, ReasonCode::kSuccess, {}}}}) {
      const auto bytes = encoded(packet, version);
      std::uint16_t id = 0;
      EXPECT_TRUE(decode_plain_ack(frame_of(bytes), id));
      EXPECT_EQ(id, 0x1234);
    }
  }
}

TEST(HotPath, AnythingMoreThanAPacketIdTakesTheGeneralDecoder) {
  std::uint16_t id = 0;
  // A reason code (5.0 only), packet id 0, a PUBREL, a PUBACK with flags set.
  for (const std::vector<std::uint8_t>& bytes : {std::vector<std::uint8_t>{0x40, 3, 0, 1, 0x10},
                                                 {0x40, 2, 0, 0},
                                                 {0x62, 2, 0, 1},
                                                 {0x41, 2, 0, 1}}) {
    EXPECT_FALSE(decode_plain_ack(frame_of(bytes), id));
  }
  EXPECT_FALSE(decode_plain_ack(frame_of(encoded(Pingreq{}, ProtocolVersion::kV5)), id));
}

TEST(HotPath, APlainAcknowledgementIsEncodedAsTheGeneralEncoderDoes) {
  for (ProtocolVersion version : kVersions) {
    const std::pair<PacketType, Packet> cases[] = {
        {PacketType::kPuback, Puback{513, ReasonCode::kSuccess, {}}},
        {PacketType::kPubrec, Pubrec{513, ReasonCode::kSuccess, {}}},
        {PacketType::kPubrel, Pubrel{513, ReasonCode::kSuccess, {}}},
        {PacketType::kPubcomp, Pubcomp{513, ReasonCode::kSuccess, {}}}};
    for (const auto& [type, packet] : cases) {
      std::vector<std::uint8_t> plain{0xAA};  // appended, not overwritten
      encode_plain_ack(type, 513, plain);
      auto expected = encoded(packet, version);
      expected.insert(expected.begin(), 0xAA);
      EXPECT_EQ(plain, expected) << to_string(version);
    }
  }
}

}  // namespace
}  // namespace sluice::mqtt
