#include "broker/session_handover.hpp"

#include <algorithm>

#include "broker/client_protocol.hpp"
#include "broker/persistence.hpp"
#include "broker/queue_gateway.hpp"
#include "broker/shard.hpp"
#include "mqtt/topic.hpp"

namespace sluice::broker {

namespace {

constexpr std::uint32_t kHandoverGraceS = 30;

// Ends a session whose messages live on elsewhere (another node has it,
// or it never arrived here): what it held in flight or queued leaves this
// node's store undelivered.
void end_without_delivering(Shard& shard, Session& session) {
  store::WriteBatch batch;
  session.give_up_outbound(batch);
  if (!batch.empty()) shard.write_then(std::move(batch), nullptr);
  shard.end_session(session);
}

// Whether `filter` ($share/ or not) names a queue or a stream.
bool queue_filter(const std::string& filter) {
  const auto shared = mqtt::parse_shared_filter(filter);
  return QueueGateway::addresses(shared ? shared->filter : std::string_view(filter));
}

std::vector<HandedSubscription> ordinary_subscriptions(Session& session) {
  std::vector<HandedSubscription> out;
  for (const auto& [filter, record] : session.subscriptions()) {
    if (queue_filter(filter)) continue;
    out.push_back({filter, options_byte(record.options), record.identifier});
  }
  return out;
}

void subscribe(Shard& shard, Session& session, const HandedSubscription& subscription,
               store::WriteBatch& batch) {
  if (session.subscriptions().contains(subscription.filter)) return;
  const mqtt::SubscriptionOptions options = options_from_byte(subscription.options);
  shard.broker().index().subscribe(
      subscription.filter, {session.ref(), options, subscription.identifier}, session.tag());
  session.subscriptions()[subscription.filter] =
      SubscriptionRecord{options, subscription.identifier};
  if (session.stored()) {
    store::SubscriptionRecord record;
    record.client_id = session.client_id();
    record.filter = subscription.filter;
    record.options = subscription.options;
    record.identifier = subscription.identifier;
    batch.add(store::WriteBatch::PutSubscription{std::move(record)});
  }
}

}  // namespace

TakeOutcome take_session(Shard& shard, const std::string& client_id, const std::string* identity,
                         bool clean_start, std::vector<HandedSubscription>& subscriptions) {
  Session* session = shard.find_session(client_id);
  if (session == nullptr) return TakeOutcome::kNotHere;
  if (!session->belongs_to(identity)) return TakeOutcome::kRefused;
  if (ClientProtocol* owner = session->owner()) owner->on_taken_over();
  session = shard.find_session(client_id);  // it ended there if its expiry was 0
  if (session == nullptr) return TakeOutcome::kNotHere;
  if (clean_start) {
    shard.publish_will(*session);  // a pending will goes out when its session ends
    shard.end_session(*session);
    return TakeOutcome::kNotHere;
  }
  session->set_handing_over(true);
  subscriptions = ordinary_subscriptions(*session);
  return TakeOutcome::kTaken;
}

bool release_session(Shard& shard, const std::string& client_id, HandedSession& out) {
  Session* session = shard.find_session(client_id);
  if (session == nullptr) return false;
  if (ClientProtocol* owner = session->owner()) {
    owner->on_taken_over();  // a client that came back here meanwhile
    session = shard.find_session(client_id);
    if (session == nullptr) return false;
  }
  out.subscriptions = ordinary_subscriptions(*session);
  session->for_each_outbound(
      [&](const Delivery& delivery, std::uint16_t packet_id, store::OutboundRecord::Stage stage) {
        if (!delivery.message && stage != store::OutboundRecord::Stage::kAwaitingPubcomp) return;
        HandedOutbound handed;
        if (stage != store::OutboundRecord::Stage::kAwaitingPubcomp)
          handed.message = delivery.message;
        handed.qos = delivery.qos;
        handed.retain = delivery.retain;
        handed.identifiers = delivery.identifiers;
        handed.packet_id = packet_id;
        handed.stage = stage;
        out.outbound.push_back(std::move(handed));
      });
  session->for_each_inbound_qos2(
      [&](std::uint16_t packet_id) { out.inbound_qos2.push_back(packet_id); });
  session->take_will();  // it lives on elsewhere: no will goes out here
  end_without_delivering(shard, *session);
  return true;
}

void dispossess(Shard& shard, const std::string& client_id) {
  Session* session = shard.find_session(client_id);
  if (session == nullptr) return;
  if (ClientProtocol* owner = session->owner()) {
    owner->on_taken_over();
    session = shard.find_session(client_id);
    if (session == nullptr) return;
  }
  if (session->handing_over()) {
    // Its release is on its way; should it never come (the new owner died
    // or gave up waiting), the session does not outlive a short grace here.
    session->take_will();
    session->set_expiry_s(std::min(session->expiry_s(), kHandoverGraceS));
    return;
  }
  // The other node started it afresh (this one did not answer, or lost
  // its lease): its client is there now, so no will goes out from here.
  session->take_will();
  end_without_delivering(shard, *session);
}

std::vector<std::string> session_ids(const Shard& shard) {
  std::vector<std::string> ids;
  shard.for_each_session([&](const Session& session) { ids.push_back(session.client_id()); });
  return ids;
}

bool prepare_arrival(Shard& shard, const std::string& client_id,
                     const std::vector<HandedSubscription>& subscriptions, bool stored) {
  Session* session = shard.find_session(client_id);
  if (session == nullptr) session = shard.create_session(client_id);
  if (session == nullptr) return false;
  store::WriteBatch batch;
  if (stored && !session->stored()) {
    session->set_stored(true);
    batch = session_records(*session, 0);
  }
  for (const HandedSubscription& subscription : subscriptions)
    subscribe(shard, *session, subscription, batch);
  if (!batch.empty()) shard.write_then(std::move(batch), nullptr);
  return true;
}

void complete_arrival(Shard& shard, const std::string& client_id, HandedSession&& handed,
                      std::function<void(bool durable)> then) {
  Session* session = shard.find_session(client_id);
  if (session == nullptr) return then(false);
  store::WriteBatch batch;
  for (const HandedSubscription& subscription : handed.subscriptions)
    subscribe(shard, *session, subscription, batch);
  for (const std::uint16_t packet_id : handed.inbound_qos2) {
    if (session->begin_inbound_qos2(packet_id) && session->stored())
      batch.add(store::WriteBatch::PutInbound{client_id, packet_id});
  }
  std::vector<Session::Arriving> arriving;
  arriving.reserve(handed.outbound.size());
  for (HandedOutbound& out : handed.outbound) {
    Session::Arriving a;
    a.delivery.message = std::move(out.message);
    a.delivery.qos = out.qos;
    a.delivery.retain = out.retain;
    a.delivery.identifiers = std::move(out.identifiers);
    a.packet_id = out.packet_id;
    a.stage = out.stage;
    arriving.push_back(std::move(a));
  }
  session->adopt_outbound(std::move(arriving), batch);
  if (batch.empty()) return then(true);
  shard.write_then(std::move(batch), std::move(then));
}

void abandon_arrival(Shard& shard, const std::string& client_id) {
  Session* session = shard.find_session(client_id);
  if (session == nullptr || session->owner() != nullptr) return;
  end_without_delivering(shard, *session);
}

}  // namespace sluice::broker
