// Turns a `Frame` into a `Packet`, checking everything the specification says
// a receiver must check of a packet on its own: flags, lengths, strings,
// property placement and values, packet identifiers, topic syntax. Rules that
// need the connection's state (topic alias mappings, Receive Maximum, a second
// CONNECT) are the broker's.
#pragma once

#include "mqtt/decode_error.hpp"
#include "mqtt/frame_decoder.hpp"
#include "mqtt/packets.hpp"
#include "mqtt/protocol_version.hpp"

namespace sluice::mqtt {

// Decodes `frame` for a connection that speaks `version`. A CONNECT is decoded
// whatever `version` says: it names its own. On error `out` is unspecified.
DecodeError decode_packet(const Frame& frame, ProtocolVersion version, Packet& out);

// CONNECT alone. On an unsupported protocol level the error is
// kUnsupportedProtocolVersion and `out.version` holds the nearest version the
// broker can answer in (3.1.1 for anything it does not know).
DecodeError decode_connect(const Frame& frame, Connect& out);

}  // namespace sluice::mqtt
