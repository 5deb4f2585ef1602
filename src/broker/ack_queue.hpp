// Acknowledgements of one client's PUBLISHes, sent in the order the
// PUBLISHes arrived [MQTT-4.6.0-2] even when some must wait for the store
// first: an acknowledgement that waits holds back those behind it.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "broker/client_link.hpp"
#include "mqtt/packets.hpp"

namespace sluice::broker {

class AckQueue {
 public:
  AckQueue(ClientLink& link, bool v5) : link_(&link), v5_(v5) {}

  // An acknowledgement that may go now (after those still waiting).
  void send(mqtt::Packet&& packet);
  // One that goes once `complete` is called with the returned id.
  std::uint64_t defer(mqtt::Packet&& packet);
  // `durable` false: the store failed, so the acknowledgement must not promise
  // anything: 5.0 gets reason 0x83, while 3.x (which has no negative
  // acknowledgement) and a PUBCOMP (which has no such reason) lose the
  // connection instead.
  void complete(std::uint64_t id, bool durable);
  // The same for a PUBACK/PUBREC whose reason is only known now: 5.0 gets
  // `reason` (and `reason_string`, if any); 3.x, which cannot be told of a
  // refusal, loses the connection when `reason` is an error.
  void complete(std::uint64_t id, mqtt::ReasonCode reason, const std::string& reason_string);
  // The connection is gone: nothing more is sent.
  void detach() { link_ = nullptr; }
  // True while acknowledgements wait here: a new one must queue behind them.
  bool holding() const { return !waiting_.empty(); }

 private:
  struct Entry {
    std::uint64_t id;
    mqtt::Packet packet;
    bool ready;
  };
  void flush();

  ClientLink* link_;
  const bool v5_;
  // Usually empty: a vector allocates nothing then (a deque would, for every
  // connection), and it is short when not.
  std::vector<Entry> waiting_;
  std::uint64_t next_id_ = 1;
};

}  // namespace sluice::broker
