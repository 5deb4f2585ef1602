#include "cluster/retained_catch_up.hpp"

#include <grpcpp/grpcpp.h>
#include <spdlog/spdlog.h>

#include <future>
#include <unordered_map>

#include "broker/persistence.hpp"
#include "cluster/message_codec.hpp"
#include "cluster/peer_channel.hpp"
#include "peer.grpc.pb.h"
#include "store/journal.hpp"

namespace sluice::cluster {

namespace {

// Another node's retained messages; false when it did not answer in full.
bool read_retained(const std::string& node_id, const std::string& address,
                   const std::shared_ptr<grpc::ChannelCredentials>& credentials,
                   std::chrono::milliseconds timeout, const config::Config& config,
                   std::vector<broker::MessagePtr>& out) {
  auto stub = Peer::NewStub(peer_channel(address, credentials));
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + timeout);
  context.set_wait_for_ready(true);
  RetainedRequest request;
  request.set_from_node(node_id);
  auto reader = stub->Retained(&context, request);
  ForwardedMessage m;
  const auto now = broker::Clock::now();
  while (reader->Read(&m)) {
    std::uint32_t reason = 0;
    broker::MessagePtr message = from_forwarded(m, now, config, reason);
    if (message && message->retain && !message->payload.empty()) out.push_back(std::move(message));
  }
  const grpc::Status status = reader->Finish();
  if (!status.ok())
    spdlog::warn("event=retained_catch_up_failed node_address={} error=\"{}\"", address,
                 status.error_message());
  return status.ok();
}

bool same(const broker::Message& a, const broker::Message& b) {
  return a.payload == b.payload && a.qos == b.qos && a.encoded_properties == b.encoded_properties &&
         a.expires_at.has_value() == b.expires_at.has_value();
}

}  // namespace

RetainedCatchUp catch_up_retained(broker::Broker& broker, const std::string& node_id,
                                  const std::vector<std::pair<std::string, std::string>>& peers,
                                  const std::shared_ptr<grpc::ChannelCredentials>& credentials,
                                  std::chrono::milliseconds timeout) {
  RetainedCatchUp result;
  std::vector<broker::MessagePtr> theirs;
  for (const auto& [id, address] : peers) {
    theirs.clear();
    if (read_retained(node_id, address, credentials, timeout, broker.config(), theirs)) {
      result.done = true;
      result.from = id;
      break;
    }
  }
  if (!result.done) return result;
  std::unordered_map<std::string, broker::MessagePtr> ours;
  broker.retained().for_each_match(
      "#", broker::Clock::now(),
      [&](const broker::MessagePtr& message) { ours.emplace(message->topic, message); });
  store::WriteBatch batch;
  const bool storing = broker.journal() != nullptr;
  broker.retained().locked([&](broker::RetainedStore::Writer& retained) {
    for (const broker::MessagePtr& message : theirs) {
      const auto it = ours.find(message->topic);
      const bool known = it != ours.end();
      if (known && same(*it->second, *message)) {
        ours.erase(it);
        continue;
      }
      if (known) ours.erase(it);
      if (retained.set(message) != broker::RetainedStore::SetResult::kStored) continue;
      ++result.set;
      if (storing) batch.add(store::WriteBatch::PutRetained{broker::to_record(*message)});
    }
    // What is left here, no other node holds any more: deleted meanwhile.
    for (const auto& [topic, message] : ours) {
      auto deletion = std::make_shared<broker::Message>();
      deletion->topic = topic;
      deletion->retain = true;
      retained.set(deletion);
      ++result.deleted;
      if (storing) batch.add(store::WriteBatch::DeleteRetained{topic});
    }
  });
  if (!batch.empty()) {
    auto written = std::make_shared<std::promise<bool>>();
    std::future<bool> done = written->get_future();
    broker.journal()->submit(std::move(batch), [written](const store::Status& status) {
      written->set_value(status.ok);
    });
    if (done.wait_for(timeout) != std::future_status::ready || !done.get())
      spdlog::warn(
          "event=retained_catch_up_not_stored note=\"kept in memory; the store write "
          "failed or is slow\"");
  }
  return result;
}

}  // namespace sluice::cluster
