// A session handed over between nodes (broker/session_handover.hpp) as
// proto/peer.proto carries it, both ways. What a peer sends is checked as a
// client's packets would be: a subscription whose filter is not valid, or a
// message from_forwarded refuses, is left out (and counted in `skipped`).
#pragma once

#include <cstddef>
#include <vector>

#include "broker/session_handover.hpp"
#include "config/config.hpp"

namespace google::protobuf {
template <class T>
class RepeatedPtrField;
}

namespace sluice::cluster {

class HandedSubscription;
class ReleaseSessionReply;

void put_subscriptions(const std::vector<broker::HandedSubscription>& in,
                       google::protobuf::RepeatedPtrField<HandedSubscription>& out);
std::vector<broker::HandedSubscription> take_subscriptions(
    const google::protobuf::RepeatedPtrField<HandedSubscription>& in, std::size_t& skipped);

void put_session(const broker::HandedSession& in, broker::Clock::time_point now,
                 ReleaseSessionReply& out);
broker::HandedSession take_session(const ReleaseSessionReply& in, broker::Clock::time_point now,
                                   const config::Config& config, std::size_t& skipped);

}  // namespace sluice::cluster
