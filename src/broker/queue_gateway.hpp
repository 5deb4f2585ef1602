// Where the broker hands what concerns durable queues ($queue/<name>/...):
// publishes to a queue, its consumers' subscriptions, and the comings and
// goings of their sessions. The queue layer (src/queue/) implements it; the
// broker knows only this interface, so the queues can move behind a cluster
// without the broker changing.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "broker/message.hpp"
#include "broker/subscriber.hpp"
#include "mqtt/packets.hpp"
#include "mqtt/reason_code.hpp"
#include "store/write_batch.hpp"

namespace sluice::broker {

class Shard;

class QueueGateway {
 public:
  virtual ~QueueGateway() = default;

  // Whether a PUBLISH topic, or a SUBSCRIBE filter (less any $share/<group>/),
  // is the queue layer's: it starts with "$queue/" or "$stream/".
  static bool addresses(std::string_view topic) {
    return topic.starts_with("$queue/") || topic.starts_with("$stream/") || topic == "$queue" ||
           topic == "$stream";
  }

  // How a publish to a queue ended: the PUBACK's reason code, with a Reason
  // String for MQTT 5 when there is something to explain.
  using Acknowledge = std::function<void(mqtt::ReasonCode reason, std::string reason_string)>;

  struct Outcome {
    mqtt::ReasonCode reason = mqtt::ReasonCode::kSuccess;
    std::string reason_string;
    // Refused for want of room (max_depth): the same publish may be taken
    // later, so a 3.x publisher, which cannot be told, is held until then.
    bool full = false;
  };
  // A client's PUBLISH to a queue address, on `shard`'s thread. `with` holds
  // the caller's own changes, written in the same batch as the append.
  // Refused at once: returns why (0x90 unknown queue or misused address,
  // ...), and `acknowledge` is never called. Otherwise returns kSuccess, and
  // `acknowledge` runs on `shard`'s thread once the append is durable (or
  // failed: 0x83).
  // `from` is the publisher's session: a verb ($ack, ...) settles what
  // that session's consumers hold. A publish another node forwarded to this
  // one, the queue's home, has none (a default TargetRef, id 0), and may not
  // be a verb. `publish` is taken when accepted; when
  // refused at once, its topic and payload are left for another try.
  virtual Outcome publish(Shard& shard, TargetRef from, mqtt::Publish& publish,
                          store::WriteBatch&& with, Acknowledge acknowledge) = 0;

  // A subscription to a queue address.
  struct ConsumerSpec {
    TargetRef session;
    std::string filter;            // as the client sent it, $share/<group>/ included
    std::string_view address;      // the filter less any $share/<group>/
    std::string_view share_group;  // the <group> of $share/<group>/..., or empty
    const mqtt::Properties* properties = nullptr;  // the SUBSCRIBE's (user properties)
    mqtt::QoS max_qos = mqtt::QoS::kAtLeastOnce;
    bool v5 = true;
    std::uint16_t receive_maximum = 65535;  // the client's, from its CONNECT
    // Made again at start-up from a stored session: the consumer starts
    // offline (until session_online), and stream-seek moves nothing, as the
    // group's committed offsets are where it left off.
    bool restored = false;
    // Set: takes a Reason String for a refusal, when there is one to give.
    std::string* refusal_reason = nullptr;
  };
  // Returns the SUBACK reason: the granted QoS, or why not (0x8F unknown
  // queue or misused address, 0x83 a QoS 0 consumer where none is allowed...).
  virtual mqtt::ReasonCode subscribe(Shard& shard, const ConsumerSpec& consumer) = 0;
  // False when the session had no such queue subscription.
  virtual bool unsubscribe(Shard& shard, TargetRef session, std::string_view filter) = 0;

  // The session's connection went away: what its consumers hold is offered
  // again (a failed attempt each), and nothing more goes to them until
  // sessions_back.
  virtual void session_offline(Shard& shard, TargetRef session) = 0;
  // A connection resumed the session: its consumers receive again, at the
  // pace and in the form this connection asked for.
  virtual void session_online(Shard& shard, TargetRef session, bool v5,
                              std::uint16_t receive_maximum) = 0;
  // The session ended: its consumers are gone.
  virtual void session_ended(Shard& shard, TargetRef session) = 0;

  // An ordinary publish, routed on `shard`: queues whose `capture` filters
  // match it append it, adding their writes to `batch` (the write the
  // publisher's PUBACK waits for). Returns what the caller runs once that
  // batch is durable, or nothing when no queue captured it.
  virtual std::function<void(bool durable)> capture(Shard& shard, const Message& message,
                                                    store::WriteBatch& batch) = 0;

  // Each loop turn and tick of every worker: leases that expired,
  // redeliveries that are due, housekeeping. Cheap when nothing is due.
  virtual void poll(Shard& shard, Clock::time_point now) = 0;

  // Every queue this node knows, with the filters it captures: in a
  // cluster, each is claimed as this node's when no other node is its home,
  // and a home announces its queues' capture filters as routes.
  struct Known {
    std::string name;
    std::vector<std::string> capture;
    std::string dead_letter;  // its dead-letter queue's name; empty: none
  };
  virtual std::vector<Known> known_queues() const = 0;

  // Topics and values for $SYS/broker/queues/..., published with the others.
  virtual void sys_topics(std::vector<std::pair<std::string, std::string>>& out) const = 0;

  // A replicated queue (docs/replication.md) is served only where its
  // replica group is led. lead: the group is led here now, and everything
  // it committed is in this node's store: read the queue (with its
  // dead-letter queue) back from there and serve it (false: the store could
  // not be read, and it is not served). stand_by: not led here (any more):
  // what was in memory goes, and its consumers' connections are closed.
  // Any thread but a worker's (they read the store).
  virtual bool lead(std::string_view name) = 0;
  virtual void stand_by(std::string_view name) = 0;
};

}  // namespace sluice::broker
