// The outcome of decoding: success, or the reason code the broker must send and
// the normative statement of the specification that the input broke.
//
// Errors carry static strings only, so that reporting one never allocates.
#pragma once

#include "mqtt/reason_code.hpp"

namespace sluice::mqtt {

struct DecodeError {
  ReasonCode code = ReasonCode::kSuccess;
  // The statement broken: its conformance id ("MQTT-3.3.1-4", MQTT 5.0 numbering
  // unless the rule exists only in 3.1.1) or, for normative text the spec left
  // unnumbered, its section ("§3.8.3.1"). Empty when ok.
  const char* rule = "";
  const char* detail = "";  // what was wrong, for logs and reason strings

  bool ok() const { return code == ReasonCode::kSuccess; }
};

inline DecodeError malformed(const char* rule, const char* detail) {
  return {ReasonCode::kMalformedPacket, rule, detail};
}

inline DecodeError protocol_error(const char* rule, const char* detail) {
  return {ReasonCode::kProtocolError, rule, detail};
}

}  // namespace sluice::mqtt
