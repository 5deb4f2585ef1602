// What a publisher's acknowledgement waits for besides its own store write:
// the other nodes of the cluster that a QoS 1/2 message was forwarded to,
// each confirming that it routed the message and stored what it had to
// (docs/cluster.md). Shard::route makes one when it forwards such a message
// and makes itself the forwarded deliveries' listener; the cluster settles
// each delivery on the publisher's shard thread once its node answered.
// QueueService::write joins the parts of a write split between this node's
// journal and a replicated queue's group with it too (answer per part).
#pragma once

#include <cstdint>
#include <functional>
#include <memory>

#include "broker/delivery.hpp"

namespace sluice::broker {

class RemoteAcks final : public DeliveryListener, public std::enable_shared_from_this<RemoteAcks> {
 public:
  // One more answer to wait for. The first keeps this object alive until
  // the last answer came.
  void expect() {
    if (pending_++ == 0) self_ = shared_from_this();
  }
  // How a forwarded delivery ended: kSuccess, or the reason its node refused
  // it or could not be reached.
  void on_settled(const Delivery&, mqtt::ReasonCode reason) override {
    answer(static_cast<std::uint8_t>(reason) < 0x80);
  }
  // The publisher's own store write (or true when it had none).
  void answer(bool ok) {
    if (!ok) failed_ = true;
    if (--pending_ != 0) return;
    std::function<void(bool)> done = std::move(done_);
    auto keep = std::move(self_);  // this may go when `keep` does
    if (done) done(!failed_);
  }
  // Runs `done(all confirmed)` once every expected answer came: at once if
  // they all did already.
  void when_done(std::function<void(bool all_ok)> done) {
    if (pending_ == 0) return done(!failed_);
    done_ = std::move(done);
  }

 private:
  std::uint32_t pending_ = 0;
  bool failed_ = false;
  std::function<void(bool)> done_;
  std::shared_ptr<RemoteAcks> self_;
};

}  // namespace sluice::broker
