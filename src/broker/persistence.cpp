// Message <-> record, and the start-up load.
#include "broker/persistence.hpp"

#include "broker/broker.hpp"

namespace sluice::broker {

std::int64_t wall_clock_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

store::MessageRecord to_record(const Message& message) {
  store::MessageRecord record;
  record.topic = message.topic;
  record.payload = message.payload;
  record.qos = static_cast<std::uint8_t>(message.qos);
  record.retain = message.retain;
  record.properties = message.encoded_properties;
  if (message.expires_at) {
    const auto left =
        std::chrono::duration_cast<std::chrono::milliseconds>(*message.expires_at - Clock::now());
    record.expires_at_ms = wall_clock_ms() + left.count();
  }
  return record;
}

MessagePtr from_record(store::MessageRecord&& record, Clock::time_point now,
                       std::int64_t wall_now_ms) {
  auto message = std::make_shared<Message>();
  message->topic = std::move(record.topic);
  message->payload = std::move(record.payload);
  message->qos = static_cast<mqtt::QoS>(record.qos);
  message->retain = record.retain;
  message->encoded_properties = std::move(record.properties);
  if (record.expires_at_ms != 0) {
    message->expires_at = now + std::chrono::milliseconds(record.expires_at_ms - wall_now_ms);
  }
  return message;
}

namespace {

class RetainedLoader final : public store::LoadVisitor {
 public:
  RetainedLoader(Broker& broker) : broker_(broker), now_(Clock::now()), wall_(wall_clock_ms()) {}
  std::size_t loaded = 0;

  void session(store::SessionRecord&&) override {}
  void subscription(store::SubscriptionRecord&&) override {}
  void outbound(store::OutboundRecord&&) override {}
  void inbound(const std::string&, std::uint16_t) override {}
  void message(std::uint64_t, store::MessageRecord&&) override {}
  void retained(store::MessageRecord&& record) override {
    MessagePtr message = from_record(std::move(record), now_, wall_);
    if (message->expired(now_)) return;
    if (broker_.retained().set(message) == RetainedStore::SetResult::kStored) ++loaded;
  }

 private:
  Broker& broker_;
  Clock::time_point now_;
  std::int64_t wall_;
};

}  // namespace

store::Status load_retained(store::Store& store, Broker& broker, std::size_t& loaded) {
  RetainedLoader loader(broker);
  const store::Status status = store.load(loader);
  loaded = loader.loaded;
  return status;
}

}  // namespace sluice::broker
