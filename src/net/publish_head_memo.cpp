// Copying the PUBLISH head a message's earlier delivery encoded.
#include "net/publish_head_memo.hpp"

namespace sluice::net {
namespace {

// Only what every subscriber gets alike: no topic alias, no subscription
// identifiers, no Message Expiry Interval (it counts down), no traceparent
// (each delivery span has its own).
bool shared_form(const mqtt::PublishHead& head) {
  return head.topic_alias == 0 && head.subscription_identifiers.empty() &&
         !head.message_expiry_interval && head.traceparent.empty();
}

}  // namespace

bool PublishHeadMemo::holds(const mqtt::PublishHead& head, mqtt::ProtocolVersion version,
                            const broker::MessagePtr& message) const {
  return message_ == message && version_ == version && qos_ == head.qos && retain_ == head.retain &&
         dup_ == head.dup && shared_form(head);
}

void PublishHeadMemo::keep(const mqtt::PublishHead& head, mqtt::ProtocolVersion version,
                           const broker::MessagePtr& message,
                           std::span<const std::uint8_t> encoded) {
  message_ = message;
  version_ = version;
  qos_ = head.qos;
  retain_ = head.retain;
  dup_ = head.dup;
  bytes_.assign(encoded.begin(), encoded.end());
  // First byte, Remaining Length (1 to 4 bytes), topic length and topic.
  std::size_t length_bytes = 1;
  while (length_bytes < 4 && (encoded[length_bytes] & 0x80) != 0)
    ++length_bytes;
  packet_id_at_ = 1 + length_bytes + 2 + head.topic.size();
}

bool PublishHeadMemo::append(const mqtt::PublishHead& head, mqtt::ProtocolVersion version,
                             const broker::MessagePtr& message, std::vector<std::uint8_t>& out) {
  const std::size_t from = out.size();
  if (holds(head, version, message)) {
    out.insert(out.end(), bytes_.begin(), bytes_.end());
    if (head.qos != mqtt::QoS::kAtMostOnce) {
      out[from + packet_id_at_] = static_cast<std::uint8_t>(head.packet_id >> 8);
      out[from + packet_id_at_ + 1] = static_cast<std::uint8_t>(head.packet_id & 0xFF);
    }
    return true;
  }
  if (!mqtt::encode_publish_head(head, version, out)) return false;
  if (previous_ == message.get() && shared_form(head)) {
    keep(head, version, message, std::span<const std::uint8_t>(out).subspan(from));
  }
  previous_ = message.get();
  return true;
}

}  // namespace sluice::net
