// Acknowledgements leave in PUBLISH order even when some wait for the store
// [MQTT-4.6.0-2].
#include "broker/ack_queue.hpp"

#include <gtest/gtest.h>

namespace sluice::broker {
namespace {

struct AckLink : ClientLink {
  void send(const mqtt::Packet& packet) override { sent.push_back(packet); }
  void send_publish(const mqtt::PublishHead&, const MessagePtr&) override {}
  std::size_t unsent_bytes() const override { return 0; }
  void close() override { closed = true; }
  std::vector<std::uint16_t> ids() const {
    std::vector<std::uint16_t> out;
    for (const auto& p : sent)
      out.push_back(std::get<mqtt::Puback>(p).packet_id);
    return out;
  }
  std::vector<mqtt::Packet> sent;
  bool closed = false;
};

mqtt::Packet puback(std::uint16_t id) {
  return mqtt::Puback{id, mqtt::ReasonCode::kSuccess, {}};
}

TEST(AckQueue, MQTT_4_6_0_2_AcksBehindAWaitingOneWaitForIt) {
  AckLink link;
  AckQueue queue(link, true);
  queue.send(puback(1));
  const auto waiting = queue.defer(puback(2));
  queue.send(puback(3));
  const auto waiting_too = queue.defer(puback(4));
  EXPECT_EQ(link.ids(), (std::vector<std::uint16_t>{1}));
  queue.complete(waiting_too, true);  // out of order: still held behind 2
  EXPECT_EQ(link.ids(), (std::vector<std::uint16_t>{1}));
  queue.complete(waiting, true);
  EXPECT_EQ(link.ids(), (std::vector<std::uint16_t>{1, 2, 3, 4}));
  queue.send(puback(5));
  EXPECT_EQ(link.ids().back(), 5);
}

TEST(AckQueue, AFailedStoreWriteIsNotAcknowledgedAsSuccess) {
  AckLink v5;
  AckQueue queue5(v5, true);
  queue5.complete(queue5.defer(puback(7)), false);
  EXPECT_EQ(std::get<mqtt::Puback>(v5.sent.at(0)).reason,
            mqtt::ReasonCode::kImplementationSpecificError);

  AckLink v3;
  AckQueue queue3(v3, false);
  queue3.complete(queue3.defer(puback(7)), false);
  EXPECT_TRUE(v3.sent.empty());
  EXPECT_TRUE(v3.closed);
}

TEST(AckQueue, NothingIsSentAfterDetach) {
  AckLink link;
  AckQueue queue(link, true);
  const auto waiting = queue.defer(puback(1));
  queue.detach();
  queue.complete(waiting, true);
  EXPECT_TRUE(link.sent.empty());
}

}  // namespace
}  // namespace sluice::broker
