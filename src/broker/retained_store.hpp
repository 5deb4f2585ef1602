// Retained messages, one per topic, as a trie of topic levels shared by all
// workers. A SUBSCRIBE's filter walks it to find what to send [MQTT-3.3.1-6];
// a PUBLISH with RETAIN sets or, with an empty payload, deletes [MQTT-3.3.1-10].
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <shared_mutex>
#include <string_view>

#include "broker/message.hpp"

namespace sluice::broker {

class RetainedStore {
 public:
  enum class SetResult { kStored, kDeleted, kLimitReached };

  explicit RetainedStore(std::uint32_t max_messages);
  ~RetainedStore();
  RetainedStore(const RetainedStore&) = delete;
  RetainedStore& operator=(const RetainedStore&) = delete;

  // Stores `message` as its topic's retained message, or deletes the topic's
  // when the payload is empty. A new topic beyond the limit is refused.
  SetResult set(const MessagePtr& message);

  // set() for a caller that does more while the store is locked for writing
  // (see locked()).
  class Writer {
   public:
    SetResult set(const MessagePtr& message) { return store_.set_locked(message); }
    bool has(std::string_view topic) const { return store_.has_message(topic); }

   private:
    friend class RetainedStore;
    explicit Writer(RetainedStore& store) : store_(store) {}
    RetainedStore& store_;
  };
  // Runs `change` with the store locked for writing. A caller that routes
  // the message and hands the change to the journal in there writes changes
  // to one topic in the order memory took them, and a client subscribing
  // meanwhile either was matched or reads the new message after the lock.
  void locked(const std::function<void(Writer&)>& change);

  // Calls `f` with every retained message whose topic matches `filter` (a
  // valid, non-shared filter), skipping expired ones.
  void for_each_match(std::string_view filter, Clock::time_point now,
                      const std::function<void(const MessagePtr&)>& f) const;

  std::size_t size() const;

  // Removes messages whose Message Expiry Interval has passed, telling
  // `on_purged` (if given) of each; returns how many.
  // `under_lock`, if given, runs after the last one while the store is still
  // locked (for the same reason as set's).
  std::size_t purge_expired(Clock::time_point now,
                            const std::function<void(const Message&)>& on_purged = nullptr,
                            const std::function<void()>& under_lock = nullptr);

 private:
  bool has_message(std::string_view topic) const;  // with the lock held
  SetResult set_locked(const MessagePtr& message);

  struct Node;
  mutable std::shared_mutex mutex_;
  std::unique_ptr<Node> root_;
  std::size_t size_ = 0;
  std::uint32_t max_messages_;
};

}  // namespace sluice::broker
