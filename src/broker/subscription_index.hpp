// The subscription index: every subscription of every session, as a trie of
// topic-filter levels, shared by all workers.
//
// A publish walks the trie once along its topic's levels, following the exact
// level, '+' and '#' at each step [MQTT-4.7], and collects one target per
// matching subscription; for each `$share` group on the way it picks one
// member by the configured strategy. Reads take a shared lock, so publishes
// on different workers never wait for each other; (un)subscribes take it
// exclusively.
//
// Publishers repeat their topics. Each thread remembers which subscriptions
// its recent topics matched, and walks the trie again only for a topic it
// has not seen lately, or after an (un)subscribe whose filter matches it: a
// generation counter says that something changed, and a log of the last
// changes' filters says whether it could have been this topic's answer.
// Topics that reach a shared group are always walked: the group picks a
// member per message under the lock.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <optional>
#include <shared_mutex>
#include <string>
#include <string_view>
#include <vector>

#include "broker/message.hpp"
#include "broker/subscriber.hpp"
#include "config/config.hpp"
#include "mqtt/packets.hpp"

namespace sluice::broker {

// One subscriber reached by one publish.
struct Target {
  TargetRef ref;
  mqtt::QoS max_qos = mqtt::QoS::kAtMostOnce;  // granted; the delivery uses min(this, message)
  bool retain_as_published = false;
  std::vector<std::uint32_t> identifiers;            // Subscription Identifiers to send
  std::shared_ptr<const std::string> shared_filter;  // "$share/g/f" for a shared delivery
  // The subscriber's session when the store keeps it and this is QoS 1/2:
  // the publisher then stores the message in that session's queue.
  std::shared_ptr<const SessionTag> stored_session;
  // The subscriber's session for a QoS 1/2 message when targets carry theirs
  // (set_targets_carry_sessions): a place in its queue is reserved with it.
  std::shared_ptr<const SessionTag> session;
};

// Told when a filter gains its first subscriber among this node's sessions,
// or loses its last (for a `$share/<group>/<filter>`: the group its first or
// last member here): the cluster announces the filters a node has, not its
// subscriptions (cluster/route_announcer.hpp). Called under the index's
// exclusive lock, so it must only take note.
class FilterObserver {
 public:
  virtual ~FilterObserver() = default;
  virtual void on_filter(std::string_view filter, bool present) = 0;
};

class SubscriptionIndex {
 public:
  struct Entry {
    TargetRef ref;
    mqtt::SubscriptionOptions options;
    std::uint32_t identifier = 0;  // 0: none
  };

  SubscriptionIndex();
  ~SubscriptionIndex();
  SubscriptionIndex(const SubscriptionIndex&) = delete;
  SubscriptionIndex& operator=(const SubscriptionIndex&) = delete;

  // Adds the subscription, or replaces this subscriber's earlier one to the
  // same filter [MQTT-3.8.4-3]. Returns true when there was none before.
  // `session` tells shared groups whether the member can take messages now,
  // and publishers whether the session is stored.
  bool subscribe(std::string_view filter, const Entry& entry,
                 std::shared_ptr<const SessionTag> session);

  // Returns true when the subscription existed.
  bool unsubscribe(std::string_view filter, TargetRef ref);

  // Appends the targets of `message` to `out`: non-shared ones merged per
  // subscriber [MQTT-3.3.4-2] (highest QoS, all identifiers), then one per
  // shared group (none for a forwarded message: its node picked). No Local
  // subscriptions of the publisher are left out. A group's member may be
  // another node (its routes); with `prefer_local`, an online member here
  // goes first.
  void match(const Message& message, config::SharedStrategy strategy, std::vector<Target>& out,
             bool prefer_local = false) const;

  // Picks a member of the shared group `shared_filter` other than `exclude`
  // (only an online one if `online_only`), for a message whose first receiver
  // went away without acknowledging it, or (`local_only`: among this node's
  // sessions) for one another node picked this node for.
  std::optional<Target> pick_shared(std::string_view shared_filter, const Message& message,
                                    config::SharedStrategy strategy, TargetRef exclude,
                                    bool online_only, bool local_only = false) const;

  std::size_t size() const;

  // One level of the filter tree, for the admin API's topic browser.
  struct LevelView {
    std::string level;              // a literal level, "+" or "#"
    std::size_t subscribers = 0;    // ordinary subscriptions to exactly this filter
    std::size_t shared_groups = 0;  // $share groups on exactly this filter
    bool has_children = false;
  };
  // The levels just below the filter `prefix` ("" for the top); nullopt when
  // no subscribed filter starts with it.
  std::optional<std::vector<LevelView>> levels_below(std::string_view prefix) const;

  // Whether match() puts each QoS 1/2 target's session in Target::session
  // (queue_full_policy refuse_publish needs it; others pay nothing). Set
  // before the index is used.
  void set_targets_carry_sessions(bool carry) { carry_sessions_ = carry; }

  // Set before any subscription is made, or not at all.
  void set_filter_observer(FilterObserver* observer) { observer_ = observer; }

 private:
  struct Member;
  struct Node;
  struct SharedGroup;
  struct MatchCache;

  // Counts (un)subscribes, and remembers the filters of the latest of them,
  // so that a thread's cached answer for a topic outlives changes that cannot
  // touch it: churn elsewhere in the tree costs a check against the changed
  // filters, not a walk. Written under the exclusive lock.
  void log_change(std::string_view filter);
  // Whether none of the changes after generation `since`, up to `now`, has a
  // filter matching `topic`. Reads the log without the lock; false (walk
  // again) whenever it cannot be sure.
  bool unchanged_for(std::string_view topic, std::uint64_t since, std::uint64_t now) const;

  // This index among all made in the process, for the per-thread cache.
  const std::uint64_t id_;
  std::atomic<std::uint64_t> generation_{0};
  struct ChangeLog;
  std::unique_ptr<ChangeLog> changes_;
  mutable std::shared_mutex mutex_;
  std::unique_ptr<Node> root_;
  std::size_t size_ = 0;
  bool carry_sessions_ = false;
  FilterObserver* observer_ = nullptr;
};

}  // namespace sluice::broker
