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

// PUBLISH alone, into `out`, which may be one reused from the previous
// PUBLISH of any client and version: every field is overwritten, and its
// properties are cleared when it holds some. The broker's hot path: no `Packet` and no
// `Properties` are made and destroyed per message.
DecodeError decode_publish_into(const Frame& frame, ProtocolVersion version, Publish& out);

// A PUBACK, PUBREC or PUBCOMP that is only a packet identifier: reason
// Success, no properties, as nearly all are. True with its id in
// `packet_id`; false means the frame needs `decode_packet` (which also
// reports what is wrong with it, if anything).
bool decode_plain_ack(const Frame& frame, std::uint16_t& packet_id);

}  // namespace sluice::mqtt
