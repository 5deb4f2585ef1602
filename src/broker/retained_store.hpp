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
  // `under_lock`, if given, runs with the result while the store is still
  // locked for the change: a caller that hands the change to the store's
  // committer there writes changes to one topic in the order memory took them.
  SetResult set(const MessagePtr& message,
                const std::function<void(SetResult)>& under_lock = nullptr);

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
