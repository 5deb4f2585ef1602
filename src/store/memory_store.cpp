// The memory store: ordered maps laid out like the RocksDB key space, so both
// stores load in the same order and pass the same tests.
#include <array>
#include <map>
#include <mutex>
#include <set>

#include "store/store.hpp"

namespace sluice::store {
namespace {

class MemoryStore final : public Store {
 public:
  Status write(const WriteBatch& batch, bool) override {
    std::lock_guard lock(mutex_);
    for (const auto& operation : batch.operations())
      std::visit([&](const auto& op) { apply(op); }, operation);
    return {};
  }

  Status load(LoadVisitor& visitor) override {
    std::lock_guard lock(mutex_);
    for (const auto& [key, record] : sessions_)
      visitor.session(SessionRecord(record));
    for (const auto& [client_id, record] : wills_)
      visitor.will(client_id, WillRecord(record));
    for (const auto& [key, record] : subscriptions_)
      visitor.subscription(SubscriptionRecord(record));
    for (const auto& [key, record] : outbound_)
      visitor.outbound(OutboundRecord(record));
    for (const auto& [client_id, packet_id] : inbound_)
      visitor.inbound(client_id, packet_id);
    for (const auto& [id, record] : messages_)
      visitor.message(id, MessageRecord(record));
    for (const auto& [topic, record] : retained_)
      visitor.retained(MessageRecord(record));
    return {};
  }

  Status sync() override { return {}; }

  Status scan(Space space, std::string_view from, std::string_view to,
              const std::function<bool(std::string_view, std::string_view)>& visit) override {
    std::lock_guard lock(mutex_);
    const auto& entries = spaces_[static_cast<std::size_t>(space)];
    for (auto it = entries.lower_bound(from); it != entries.end(); ++it) {
      if (!to.empty() && it->first >= to) break;
      if (!visit(it->first, it->second)) break;
    }
    return {};
  }

  Status scan_back(Space space, std::string_view from, std::string_view to,
                   const std::function<bool(std::string_view, std::string_view)>& visit) override {
    std::lock_guard lock(mutex_);
    const auto& entries = spaces_[static_cast<std::size_t>(space)];
    auto it = to.empty() ? entries.end() : entries.lower_bound(to);
    while (it != entries.begin()) {
      --it;
      if (it->first < from) break;
      if (!visit(it->first, it->second)) break;
    }
    return {};
  }

 private:
  template <class Map>
  static void erase_prefix(Map& map, const std::string& client_id) {
    for (auto it = map.lower_bound(typename Map::key_type{client_id, {}});
         it != map.end() && key_client(*it) == client_id;) {
      it = map.erase(it);
    }
  }
  template <class Entry>
  static const std::string& key_client(const Entry& entry) {
    if constexpr (requires { entry.first.first; }) {
      return entry.first.first;
    } else {
      return entry.first;
    }
  }

  void apply(const WriteBatch::PutSession& op) { sessions_[op.record.client_id] = op.record; }
  void apply(const WriteBatch::DeleteSession& op) {
    sessions_.erase(op.client_id);
    wills_.erase(op.client_id);
    erase_prefix(subscriptions_, op.client_id);
    erase_prefix(outbound_, op.client_id);
    erase_prefix(inbound_, op.client_id);
  }
  void apply(const WriteBatch::PutSubscription& op) {
    subscriptions_[{op.record.client_id, op.record.filter}] = op.record;
  }
  void apply(const WriteBatch::DeleteSubscription& op) {
    subscriptions_.erase({op.client_id, op.filter});
  }
  void apply(const WriteBatch::PutMessage& op) { messages_[op.id] = op.record; }
  void apply(const WriteBatch::DeleteMessage& op) { messages_.erase(op.id); }
  void apply(const WriteBatch::PutOutbound& op) {
    outbound_[{op.record.client_id, op.record.message_id}] = op.record;
  }
  void apply(const WriteBatch::DeleteOutbound& op) {
    outbound_.erase({op.client_id, op.message_id});
  }
  void apply(const WriteBatch::PutInbound& op) { inbound_.insert({op.client_id, op.packet_id}); }
  void apply(const WriteBatch::DeleteInbound& op) { inbound_.erase({op.client_id, op.packet_id}); }
  void apply(const WriteBatch::PutRetained& op) { retained_[op.record.topic] = op.record; }
  void apply(const WriteBatch::DeleteRetained& op) { retained_.erase(op.topic); }
  void apply(const WriteBatch::PutWill& op) { wills_[op.client_id] = op.record; }
  void apply(const WriteBatch::DeleteWill& op) { wills_.erase(op.client_id); }
  void apply(const WriteBatch::Put& op) { space(op.space)[op.key] = op.value; }
  void apply(const WriteBatch::Erase& op) { space(op.space).erase(op.key); }
  void apply(const WriteBatch::EraseRange& op) {
    auto& entries = space(op.space);
    entries.erase(entries.lower_bound(op.from), entries.lower_bound(op.to));
  }
  std::map<std::string, std::string, std::less<>>& space(Space which) {
    return spaces_[static_cast<std::size_t>(which)];
  }

  std::mutex mutex_;
  std::map<std::string, SessionRecord> sessions_;
  std::map<std::pair<std::string, std::string>, SubscriptionRecord> subscriptions_;
  std::map<std::pair<std::string, std::uint64_t>, OutboundRecord> outbound_;
  std::set<std::pair<std::string, std::uint16_t>> inbound_;
  std::map<std::uint64_t, MessageRecord> messages_;
  std::map<std::string, MessageRecord> retained_;
  std::map<std::string, WillRecord> wills_;
  std::array<std::map<std::string, std::string, std::less<>>, 1> spaces_;  // by Space
};

}  // namespace

std::unique_ptr<Store> make_memory_store() {
  return std::make_unique<MemoryStore>();
}

}  // namespace sluice::store
