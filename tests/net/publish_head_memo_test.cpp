// The memo of PUBLISH heads against encode_publish_head: whatever mix of
// messages, forms and packet ids comes, every head is the one encoding would
// have written.
#include "net/publish_head_memo.hpp"

#include <gtest/gtest.h>

#include <string>

namespace sluice::net {
namespace {

broker::MessagePtr make(std::string topic, std::vector<std::uint8_t> properties = {}) {
  auto message = std::make_shared<broker::Message>();
  message->topic = std::move(topic);
  message->payload = {1, 2, 3};
  message->encoded_properties = std::move(properties);
  return message;
}

mqtt::PublishHead head_of(const broker::Message& message, mqtt::QoS qos, std::uint16_t packet_id) {
  mqtt::PublishHead head;
  head.topic = message.topic;
  head.qos = qos;
  head.packet_id = packet_id;
  head.shared_properties = message.encoded_properties;
  head.payload_bytes = message.payload.size();
  return head;
}

std::vector<std::uint8_t> encoded(const mqtt::PublishHead& head, mqtt::ProtocolVersion version) {
  std::vector<std::uint8_t> bytes;
  EXPECT_TRUE(mqtt::encode_publish_head(head, version, bytes));
  return bytes;
}

// Appends through the memo after `before` bytes already in the buffer.
std::vector<std::uint8_t> through(PublishHeadMemo& memo, const mqtt::PublishHead& head,
                                  mqtt::ProtocolVersion version,
                                  const broker::MessagePtr& message) {
  std::vector<std::uint8_t> bytes{0xEE};
  EXPECT_TRUE(memo.append(head, version, message, bytes));
  return {bytes.begin() + 1, bytes.end()};
}

TEST(PublishHeadMemo, ManyDeliveriesOfOneMessageGetTheirOwnPacketIds) {
  // A 200-byte topic: the Remaining Length takes two bytes.
  for (const std::string& topic : {std::string("a/b"), std::string(200, 't')}) {
    for (auto version : {mqtt::ProtocolVersion::kV3_1_1, mqtt::ProtocolVersion::kV5}) {
      PublishHeadMemo memo;
      // A Content Type property, as encode_shared_properties would write it.
      const auto message = make(topic, {0x03, 0x00, 0x01, 'x'});
      for (std::uint16_t id = 1; id <= 5; ++id) {
        for (auto qos : {mqtt::QoS::kAtLeastOnce, mqtt::QoS::kExactlyOnce}) {
          const auto head = head_of(*message, qos, static_cast<std::uint16_t>(id * 257));
          EXPECT_EQ(through(memo, head, version, message), encoded(head, version));
        }
      }
    }
  }
}

TEST(PublishHeadMemo, EveryOtherFormIsEncodedAsItIs) {
  PublishHeadMemo memo;
  const auto message = make("sensors/1");
  const auto other = make("sensors/2");
  const auto v5 = mqtt::ProtocolVersion::kV5;
  std::vector<std::pair<mqtt::PublishHead, broker::MessagePtr>> sequence;
  auto plain = head_of(*message, mqtt::QoS::kAtMostOnce, 0);
  sequence.push_back({plain, message});
  sequence.push_back({plain, message});  // now kept
  auto retained = plain;
  retained.retain = true;
  sequence.push_back({retained, message});
  auto dup = head_of(*message, mqtt::QoS::kAtLeastOnce, 9);
  dup.dup = true;
  sequence.push_back({dup, message});
  auto aliased = plain;
  aliased.topic_alias = 3;
  sequence.push_back({aliased, message});
  const std::uint32_t identifiers[] = {7};
  auto identified = plain;
  identified.subscription_identifiers = identifiers;
  sequence.push_back({identified, message});
  auto expiring = plain;
  expiring.message_expiry_interval = 30;
  sequence.push_back({expiring, message});
  // Each delivery span has its own traceparent: two in a row differ.
  auto traced = plain;
  traced.traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
  sequence.push_back({traced, message});
  sequence.push_back({traced, message});
  auto traced_again = plain;
  traced_again.traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-1111111111111111-01";
  sequence.push_back({traced_again, message});
  sequence.push_back({head_of(*other, mqtt::QoS::kAtMostOnce, 0), other});
  sequence.push_back({plain, message});
  for (const auto& [head, of] : sequence) {
    EXPECT_EQ(through(memo, head, v5, of), encoded(head, v5));
    EXPECT_EQ(through(memo, head, mqtt::ProtocolVersion::kV3_1_1, of),
              encoded(head, mqtt::ProtocolVersion::kV3_1_1));
  }
}

}  // namespace
}  // namespace sluice::net
