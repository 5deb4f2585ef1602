// The ordered release of acknowledgements.
#include "broker/ack_queue.hpp"

namespace sluice::broker {

void AckQueue::send(mqtt::Packet&& packet) {
  if (waiting_.empty()) {
    if (link_ != nullptr) link_->send(packet);
    return;
  }
  waiting_.push_back({0, std::move(packet), true});
}

std::uint64_t AckQueue::defer(mqtt::Packet&& packet) {
  const std::uint64_t id = next_id_++;
  waiting_.push_back({id, std::move(packet), false});
  return id;
}

void AckQueue::complete(std::uint64_t id, bool durable) {
  for (Entry& entry : waiting_) {
    if (entry.id != id) continue;
    entry.ready = true;
    if (durable) break;
    // 3.x has no negative acknowledgement, and PUBCOMP has no reason for a
    // failed write: the connection goes instead.
    if (!v5_ || std::holds_alternative<mqtt::Pubcomp>(entry.packet)) {
      if (link_ != nullptr) link_->close();
      link_ = nullptr;
      break;
    }
    std::visit(
        [](auto& ack) {
          constexpr auto kFailed = mqtt::ReasonCode::kImplementationSpecificError;
          if constexpr (requires { ack.reason; }) ack.reason = kFailed;
          if constexpr (requires { ack.reasons; }) {
            for (auto& reason : ack.reasons)
              reason = kFailed;  // SUBACK, UNSUBACK
          }
        },
        entry.packet);
  }
  flush();
}

void AckQueue::complete(std::uint64_t id, mqtt::ReasonCode reason,
                        const std::string& reason_string) {
  for (Entry& entry : waiting_) {
    if (entry.id != id) continue;
    entry.ready = true;
    if (!mqtt::is_error(reason)) break;
    if (!v5_) {
      if (link_ != nullptr) link_->close();
      link_ = nullptr;
      break;
    }
    std::visit(
        [&](auto& ack) {
          if constexpr (requires { ack.reason; }) {
            ack.reason = reason;
            if (!reason_string.empty()) ack.properties.reason_string = reason_string;
          }
        },
        entry.packet);
    break;
  }
  flush();
}

void AckQueue::flush() {
  std::size_t sent = 0;
  while (sent < waiting_.size() && waiting_[sent].ready) {
    if (link_ != nullptr) link_->send(waiting_[sent].packet);
    ++sent;
  }
  waiting_.erase(waiting_.begin(), waiting_.begin() + static_cast<std::ptrdiff_t>(sent));
}

}  // namespace sluice::broker
