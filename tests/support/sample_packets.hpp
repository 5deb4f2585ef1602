// Sample packets for tests, benchmarks and fuzz seeds: every packet type, for
// every protocol version, with every property its type may carry on MQTT 5.
#pragma once

#include <string>
#include <vector>

#include "mqtt/packets.hpp"

namespace sluice::mqtt::testing {

struct SamplePacket {
  std::string name;  // e.g. "PUBLISH_qos2"
  Packet packet;
};

// Every property allowed in `context`, each with a valid value (two of each
// repeatable one).
Properties all_properties(PropertyContext context);

// Samples of all packet types that exist in `version`, with every field and
// (on MQTT 5) every allowed property filled in.
std::vector<SamplePacket> sample_packets(ProtocolVersion version);

}  // namespace sluice::mqtt::testing
