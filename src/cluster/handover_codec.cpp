#include "cluster/handover_codec.hpp"

#include <algorithm>

#include "cluster/message_codec.hpp"
#include "mqtt/topic.hpp"
#include "mqtt/utf8.hpp"
#include "peer.pb.h"

namespace sluice::cluster {

namespace {

using Stage = store::OutboundRecord::Stage;

constexpr std::uint32_t kMostStage = static_cast<std::uint32_t>(Stage::kAwaitingPubcomp);

}  // namespace

void put_subscriptions(const std::vector<broker::HandedSubscription>& in,
                       google::protobuf::RepeatedPtrField<HandedSubscription>& out) {
  for (const broker::HandedSubscription& subscription : in) {
    HandedSubscription* s = out.Add();
    s->set_filter(subscription.filter);
    s->set_options(subscription.options);
    s->set_identifier(subscription.identifier);
  }
}

std::vector<broker::HandedSubscription> take_subscriptions(
    const google::protobuf::RepeatedPtrField<HandedSubscription>& in, std::size_t& skipped) {
  std::vector<broker::HandedSubscription> out;
  for (const HandedSubscription& s : in) {
    const std::string& filter = s.filter();
    // The options byte as a SUBSCRIBE's: reserved bits and QoS 3 refused.
    const bool valid =
        filter.size() <= 0xFFFF && mqtt::check_utf8(filter) == mqtt::Utf8Check::kValid &&
        mqtt::check_topic_filter(filter).ok() && s.options() <= 0x3F &&
        (s.options() & 0x03) != 0x03 && (s.options() >> 4) != 0x03 && s.identifier() <= 268'435'455;
    if (!valid) {
      ++skipped;
      continue;
    }
    out.push_back({filter, static_cast<std::uint8_t>(s.options()), s.identifier()});
  }
  return out;
}

void put_session(const broker::HandedSession& in, broker::Clock::time_point now,
                 ReleaseSessionReply& out) {
  out.set_found(true);
  put_subscriptions(in.subscriptions, *out.mutable_subscriptions());
  for (const broker::HandedOutbound& o : in.outbound) {
    HandedMessage* m = out.add_outbound();
    if (o.message) to_forwarded(*o.message, now, *m->mutable_message());
    m->set_qos(static_cast<std::uint32_t>(o.qos));
    m->set_retain(o.retain);
    for (const std::uint32_t identifier : o.identifiers)
      m->add_identifiers(identifier);
    m->set_packet_id(o.packet_id);
    m->set_stage(static_cast<std::uint32_t>(o.stage));
  }
  for (const std::uint16_t packet_id : in.inbound_qos2)
    out.add_inbound_qos2(packet_id);
}

broker::HandedSession take_session(const ReleaseSessionReply& in, broker::Clock::time_point now,
                                   const config::Config& config, std::size_t& skipped) {
  broker::HandedSession out;
  out.subscriptions = take_subscriptions(in.subscriptions(), skipped);
  for (const HandedMessage& m : in.outbound()) {
    const bool released = m.stage() == static_cast<std::uint32_t>(Stage::kAwaitingPubcomp);
    // The stage must be one the QoS has (PUBACK for 1, PUBREC and PUBCOMP
    // for 2), and a Subscription Identifier 1 to 268,435,455.
    const auto stage = static_cast<Stage>(m.stage());
    const bool stage_fits =
        stage == Stage::kQueued || (stage == Stage::kAwaitingPuback ? m.qos() == 1 : m.qos() == 2);
    const bool identifiers_valid =
        std::all_of(m.identifiers().begin(), m.identifiers().end(),
                    [](std::uint32_t id) { return id >= 1 && id <= 268'435'455; });
    if (m.qos() > 2 || m.stage() > kMostStage || m.packet_id() > 0xFFFF || !stage_fits ||
        !identifiers_valid || (m.stage() != 0) != (m.packet_id() != 0)) {
      ++skipped;
      continue;
    }
    broker::HandedOutbound o;
    if (!released) {
      std::uint32_t reason = 0;
      o.message = from_forwarded(m.message(), now, config, reason);
      if (!o.message) {
        ++skipped;
        continue;
      }
    }
    o.qos = static_cast<mqtt::QoS>(m.qos());
    o.retain = m.retain();
    o.identifiers.assign(m.identifiers().begin(), m.identifiers().end());
    o.packet_id = static_cast<std::uint16_t>(m.packet_id());
    o.stage = static_cast<Stage>(m.stage());
    out.outbound.push_back(std::move(o));
  }
  for (const std::uint32_t packet_id : in.inbound_qos2()) {
    if (packet_id == 0 || packet_id > 0xFFFF) {
      ++skipped;
      continue;
    }
    out.inbound_qos2.push_back(static_cast<std::uint16_t>(packet_id));
  }
  return out;
}

}  // namespace sluice::cluster
