// Every packet type, for every protocol version, with every property its type
// may carry: encoded, framed, decoded, and compared with what went in.
#include <gtest/gtest.h>

#include "mqtt/packet_encoder.hpp"
#include "support/decode_bytes.hpp"
#include "support/sample_packets.hpp"

namespace sluice::mqtt {
namespace {

using testing::decode_bytes;
using testing::sample_packets;
using testing::SamplePacket;

struct RoundTripCase {
  ProtocolVersion version;
  SamplePacket sample;
};

void PrintTo(const RoundTripCase& c, std::ostream* os) {
  *os << to_string(c.version) << ' ' << c.sample.name;
}

std::vector<RoundTripCase> all_cases() {
  std::vector<RoundTripCase> cases;
  for (auto version : {ProtocolVersion::kV3_1, ProtocolVersion::kV3_1_1, ProtocolVersion::kV5}) {
    for (auto& sample : sample_packets(version))
      cases.push_back({version, std::move(sample)});
  }
  return cases;
}

std::string case_name(const ::testing::TestParamInfo<RoundTripCase>& info) {
  std::string version = to_string(info.param.version);
  for (char& c : version)
    c = c == '.' ? '_' : c;
  return "v" + version + "_" + info.param.sample.name;
}

class RoundTrip : public ::testing::TestWithParam<RoundTripCase> {};

TEST_P(RoundTrip, EncodeThenDecodeGivesThePacketBack) {
  const auto& [version, sample] = GetParam();
  std::vector<std::uint8_t> bytes;
  ASSERT_TRUE(encode_packet(sample.packet, version, bytes));
  EXPECT_EQ(bytes.size(), encoded_size(sample.packet, version));

  Packet decoded;
  const DecodeError error = decode_bytes(bytes, version, decoded);
  ASSERT_TRUE(error.ok()) << error.rule << ": " << error.detail;
  EXPECT_EQ(decoded.index(), sample.packet.index());
  EXPECT_TRUE(decoded == sample.packet);
}

TEST_P(RoundTrip, EncodingAppendsToWhatIsInTheBuffer) {
  const auto& [version, sample] = GetParam();
  std::vector<std::uint8_t> alone;
  ASSERT_TRUE(encode_packet(sample.packet, version, alone));
  std::vector<std::uint8_t> appended{0xAA, 0xBB};
  ASSERT_TRUE(encode_packet(sample.packet, version, appended));
  ASSERT_EQ(appended.size(), alone.size() + 2);
  EXPECT_TRUE(std::equal(alone.begin(), alone.end(), appended.begin() + 2));
}

INSTANTIATE_TEST_SUITE_P(AllPackets, RoundTrip, ::testing::ValuesIn(all_cases()), case_name);

// The gathered form of a PUBLISH (head, then the payload where it lies) must be
// byte for byte what the whole-packet encoder writes.
class PublishHeadTest : public ::testing::TestWithParam<ProtocolVersion> {};

TEST_P(PublishHeadTest, HeadPlusPayloadEqualsWholePacket) {
  const ProtocolVersion version = GetParam();
  for (const auto& sample : sample_packets(version)) {
    const auto* publish = std::get_if<Publish>(&sample.packet);
    if (publish == nullptr) continue;
    SCOPED_TRACE(sample.name);

    std::vector<std::uint8_t> whole;
    ASSERT_TRUE(encode_packet(*publish, version, whole));

    std::vector<std::uint8_t> shared;
    encode_shared_properties(publish->properties, shared);
    PublishHead head;
    head.topic = publish->topic;
    head.qos = publish->qos;
    head.retain = publish->retain;
    head.dup = publish->dup;
    head.packet_id = publish->packet_id;
    head.shared_properties = shared;
    head.subscription_identifiers = publish->properties.subscription_identifiers;
    head.topic_alias = publish->properties.topic_alias.value_or(0);
    head.message_expiry_interval = publish->properties.message_expiry_interval;
    head.payload_bytes = publish->payload.size();

    std::vector<std::uint8_t> gathered;
    ASSERT_TRUE(encode_publish_head(head, version, gathered));
    EXPECT_EQ(gathered.size() + publish->payload.size(), publish_wire_size(head, version));
    gathered.insert(gathered.end(), publish->payload.begin(), publish->payload.end());

    // Property order may differ; the decoded packets must not.
    Packet from_whole;
    Packet from_gathered;
    ASSERT_TRUE(testing::decode_bytes(whole, version, from_whole).ok());
    ASSERT_TRUE(testing::decode_bytes(gathered, version, from_gathered).ok());
    EXPECT_TRUE(from_whole == from_gathered);
    EXPECT_EQ(whole.size(), gathered.size());
  }
}

INSTANTIATE_TEST_SUITE_P(AllVersions, PublishHeadTest,
                         ::testing::Values(ProtocolVersion::kV3_1, ProtocolVersion::kV3_1_1,
                                           ProtocolVersion::kV5));

TEST(Encoder, RefusesAStringLongerThanItsLengthPrefix) {
  Publish publish;
  publish.topic = std::string(65'536, 'a');
  std::vector<std::uint8_t> out{1, 2, 3};
  EXPECT_FALSE(encode_packet(publish, ProtocolVersion::kV5, out));
  EXPECT_EQ(out.size(), 3u) << "nothing may be appended on failure";
  EXPECT_EQ(encoded_size(publish, ProtocolVersion::kV5), 0u);
}

TEST(Encoder, RefusesAuthBeforeMqtt5) {
  std::vector<std::uint8_t> out;
  EXPECT_FALSE(encode_packet(Auth{}, ProtocolVersion::kV3_1_1, out));
  EXPECT_TRUE(out.empty());
}

TEST(Encoder, V3SubackTurnsEveryFailureInto0x80) {
  Suback suback{5, {}, {ReasonCode::kNotAuthorized, ReasonCode::kGrantedQoS1}};
  std::vector<std::uint8_t> out;
  ASSERT_TRUE(encode_packet(suback, ProtocolVersion::kV3_1_1, out));
  EXPECT_EQ(out, (std::vector<std::uint8_t>{0x90, 4, 0, 5, 0x80, 0x01}));
}

TEST(Encoder, V3ConnackUsesTheNearestReturnCode) {
  std::vector<std::uint8_t> out;
  ASSERT_TRUE(encode_packet(Connack{false, ReasonCode::kUnsupportedProtocolVersion, {}},
                            ProtocolVersion::kV3_1_1, out));
  EXPECT_EQ(out, (std::vector<std::uint8_t>{0x20, 2, 0, 0x01}));
}

TEST(Encoder, V5AcknowledgementLeavesOutSuccessAndEmptyProperties) {
  std::vector<std::uint8_t> out;
  ASSERT_TRUE(encode_packet(Puback{0x0102, ReasonCode::kSuccess, {}}, ProtocolVersion::kV5, out));
  EXPECT_EQ(out, (std::vector<std::uint8_t>{0x40, 2, 0x01, 0x02}));
}

}  // namespace
}  // namespace sluice::mqtt
