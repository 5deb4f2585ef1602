// A list of changes that a store applies atomically: all of them or none.
#pragma once

#include <string>
#include <utility>
#include <variant>
#include <vector>

#include "store/records.hpp"

namespace sluice::store {

class WriteBatch {
 public:
  struct PutSession {
    SessionRecord record;
  };
  struct DeleteSession {
    std::string client_id;
  };  // and every record of the session
  struct PutSubscription {
    SubscriptionRecord record;
  };
  struct DeleteSubscription {
    std::string client_id, filter;
  };
  struct PutMessage {
    std::uint64_t id;
    MessageRecord record;
  };
  struct DeleteMessage {
    std::uint64_t id;
  };
  struct PutOutbound {
    OutboundRecord record;
  };
  struct DeleteOutbound {
    std::string client_id;
    std::uint64_t message_id;
  };
  struct PutInbound {
    std::string client_id;
    std::uint16_t packet_id;
  };
  struct DeleteInbound {
    std::string client_id;
    std::uint16_t packet_id;
  };
  struct PutRetained {
    MessageRecord record;
  };
  struct DeleteRetained {
    std::string topic;
  };
  struct PutWill {
    std::string client_id;
    WillRecord record;
  };
  struct DeleteWill {
    std::string client_id;
  };
  // Raw entries of a key space read by range (store.hpp, Space): the layer
  // that owns the space encodes its keys and values.
  struct Put {
    Space space;
    std::string key, value;
  };
  struct Erase {
    Space space;
    std::string key;
  };
  struct EraseRange {  // [from, to)
    Space space;
    std::string from, to;
  };

  using Operation =
      std::variant<PutSession, DeleteSession, PutSubscription, DeleteSubscription, PutMessage,
                   DeleteMessage, PutOutbound, DeleteOutbound, PutInbound, DeleteInbound,
                   PutRetained, DeleteRetained, PutWill, DeleteWill, Put, Erase, EraseRange>;

  template <class T>
  WriteBatch& add(T&& operation) {
    operations_.emplace_back(std::forward<T>(operation));
    return *this;
  }

  // Appends another batch's operations after this one's.
  void append(WriteBatch&& other);

  bool empty() const { return operations_.empty(); }
  std::size_t size() const { return operations_.size(); }
  const std::vector<Operation>& operations() const { return operations_; }
  // Takes the operations out, leaving the batch empty.
  std::vector<Operation> take_operations() { return std::exchange(operations_, {}); }

 private:
  std::vector<Operation> operations_;
};

}  // namespace sluice::store
