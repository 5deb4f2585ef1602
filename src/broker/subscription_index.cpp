// The trie behind SubscriptionIndex. Each node is one filter level; its
// literal children are keyed by the next level's text and '+' and '#' have
// slots of their own, so the match walk does one lookup per level whatever
// the fan-out.
#include "broker/subscription_index.hpp"

#include <algorithm>
#include <array>
#include <cstring>
#include <mutex>
#include <random>
#include <utility>

#include "broker/topic_trie.hpp"
#include "mqtt/topic.hpp"

namespace sluice::broker {
namespace {

std::uint32_t random_index(std::size_t size) {
  thread_local std::minstd_rand generator{std::random_device{}()};
  return static_cast<std::uint32_t>(generator() % size);
}

}  // namespace

// A subscription as the trie keeps it: the entry and its session's tag.
struct SubscriptionIndex::Member {
  Entry entry;
  std::shared_ptr<const SessionTag> session;
};

struct SubscriptionIndex::SharedGroup {
  std::string name;
  std::shared_ptr<const std::string> full_filter;
  std::vector<Member> members;
  std::uint32_t local_members = 0;  // this node's sessions (others are other nodes)
  mutable std::atomic<std::uint32_t> cursor{0};

  // The member to send to, or nullptr when `exclude` is the only member.
  // `local_only`: this node's sessions only (not another node); otherwise,
  // with `prefer_local`, an online session here before any other node.
  const Member* pick(config::SharedStrategy strategy, const Message& message, TargetRef exclude,
                     bool online_only, bool local_only = false, bool prefer_local = false) const;
};

struct SubscriptionIndex::Node {
  trie::Children<std::unique_ptr<Node>> children;  // literal levels
  std::unique_ptr<Node> plus;  // '+' and '#' apart: every publish looks for them at every level
  std::unique_ptr<Node> hash;
  std::vector<Member> entries;
  std::vector<std::unique_ptr<SharedGroup>> groups;
  // Entries of this node's own sessions (not other nodes' routes), for the
  // filter observer: it hears when this goes from 0 to 1 and back.
  std::uint32_t local_entries = 0;

  const Node* child(std::string_view level) const {
    if (level == "+") return plus.get();
    if (level == "#") return hash.get();
    const auto it = children.find(level);
    return it == children.end() ? nullptr : it->second.get();
  }
  Node* child(std::string_view level) {
    return const_cast<Node*>(std::as_const(*this).child(level));  // the const one does the work
  }
  Node& child_creating(std::string_view level) {
    std::unique_ptr<Node>* slot = level == "+" ? &plus : level == "#" ? &hash : nullptr;
    if (slot == nullptr) {
      auto it = children.find(level);
      if (it == children.end()) it = children.emplace(std::string(level), nullptr).first;
      slot = &it->second;
    }
    if (!*slot) *slot = std::make_unique<Node>();
    return **slot;
  }
  void erase_child(std::string_view level) {
    if (level == "+") {
      plus.reset();
    } else if (level == "#") {
      hash.reset();
    } else {
      children.erase(children.find(level));
    }
  }
  bool empty() const {
    return children.empty() && !plus && !hash && entries.empty() && groups.empty();
  }
};

const SubscriptionIndex::Member* SubscriptionIndex::SharedGroup::pick(
    config::SharedStrategy strategy, const Message& message, TargetRef exclude, bool online_only,
    bool local_only, bool prefer_local) const {
  const std::size_t n = members.size();
  if (n == 0) return nullptr;
  if (prefer_local && !local_only && local_members != 0 && local_members != n) {
    if (const Member* local = pick(strategy, message, exclude, true, true)) return local;
  }
  std::size_t start = 0;
  switch (strategy) {
    case config::SharedStrategy::kRoundRobin:
      start = cursor.fetch_add(1, std::memory_order_relaxed) % n;
      break;
    case config::SharedStrategy::kRandom:
      start = random_index(n);
      break;
    case config::SharedStrategy::kSticky:
      start = cursor.load(std::memory_order_relaxed) % n;
      break;
    case config::SharedStrategy::kHashClientId:
      start = message.origin_client_hash % n;
      break;
  }
  // The chosen member if it is online, else the next one that is; an offline
  // member only when no member is online (its session queues the message).
  const Member* fallback = nullptr;
  for (std::size_t i = 0; i < n; ++i) {
    const std::size_t index = (start + i) % n;
    const Member& member = members[index];
    if (member.entry.ref == exclude) continue;
    const bool here = member.entry.ref.kind == TargetKind::kSession;
    if (local_only && !here) continue;
    // Another node is a member while it has one there: it picks among its own.
    if (!here || member.session->online.load(std::memory_order_relaxed)) {
      if (strategy == config::SharedStrategy::kSticky && i != 0) {
        cursor.store(static_cast<std::uint32_t>(index), std::memory_order_relaxed);
      }
      return &member;
    }
    if (fallback == nullptr) fallback = &member;
  }
  return online_only ? nullptr : fallback;
}

// One per thread: the subscriptions its recent topics matched, direct-mapped
// by the topic's hash. Holding copies of the members (entry and session tag)
// keeps them valid without the lock.
struct SubscriptionIndex::MatchCache {
  static constexpr std::size_t kSlots = 4096;
  // Bounds on what it holds (a member is 48 bytes): a topic that reaches
  // more subscribers than this is walked every time, and the members of all
  // slots together stay under a few megabytes per thread.
  static constexpr std::size_t kMostMembersPerSlot = 1024;
  static constexpr std::size_t kMostMembers = 65'536;
  std::size_t members_held = 0;
  struct Slot {
    std::uint64_t index_id = 0;  // 0: nothing remembered
    std::uint64_t generation = 0;
    std::string topic;
    std::vector<Member> members;
    // No subscriber appears twice: nothing to merge (sorting 100 targets per
    // message cost 3 % of a fan-out to 100 subscribers).
    bool distinct = false;
  };
  std::vector<Slot> slots = std::vector<Slot>(kSlots);

  static MatchCache& of_this_thread() {
    thread_local MatchCache cache;
    return cache;
  }
  Slot& slot_for(std::string_view topic) {
    return slots[std::hash<std::string_view>{}(topic) % kSlots];
  }
};

// The filters of the last kEntries (un)subscribes, by generation, readable
// without the index's lock: each entry is a sequence lock over a filter kept
// in atomic words (a writer, under the exclusive lock, makes its sequence odd
// while it writes, then the entry's generation times two). A reader that sees
// the sequence move, or a filter too long to keep, takes the change as one
// that may touch its topic.
struct SubscriptionIndex::ChangeLog {
  static constexpr std::uint64_t kEntries = 1024;
  static constexpr std::size_t kWords = 16;  // filters of up to 128 bytes
  static constexpr std::uint32_t kTooLong = ~0u;
  struct Entry {
    std::atomic<std::uint64_t> sequence{0};
    std::atomic<std::uint32_t> length{0};
    std::array<std::atomic<std::uint64_t>, kWords> words{};
  };
  std::array<Entry, kEntries> entries;

  void write(std::uint64_t generation, std::string_view filter) {
    Entry& entry = entries[generation % kEntries];
    entry.sequence.store(generation * 2 + 1, std::memory_order_relaxed);
    std::atomic_thread_fence(std::memory_order_release);
    const bool fits = filter.size() <= kWords * 8;
    entry.length.store(fits ? static_cast<std::uint32_t>(filter.size()) : kTooLong,
                       std::memory_order_relaxed);
    for (std::size_t word = 0; fits && word * 8 < filter.size(); ++word) {
      std::uint64_t bits = 0;
      std::memcpy(&bits, filter.data() + word * 8,
                  std::min<std::size_t>(8, filter.size() - word * 8));
      entry.words[word].store(bits, std::memory_order_relaxed);
    }
    entry.sequence.store(generation * 2, std::memory_order_release);
  }

  // The filter of change `generation` into `out`; false when it is not there
  // whole (overwritten, being written, or too long).
  bool read(std::uint64_t generation, std::array<char, kWords * 8>& out,
            std::string_view& filter) const {
    const Entry& entry = entries[generation % kEntries];
    if (entry.sequence.load(std::memory_order_acquire) != generation * 2) return false;
    const std::uint32_t length = entry.length.load(std::memory_order_relaxed);
    if (length == kTooLong) return false;
    for (std::size_t word = 0; word * 8 < length; ++word) {
      const std::uint64_t bits = entry.words[word].load(std::memory_order_relaxed);
      std::memcpy(out.data() + word * 8, &bits, 8);
    }
    std::atomic_thread_fence(std::memory_order_acquire);
    if (entry.sequence.load(std::memory_order_relaxed) != generation * 2) return false;
    filter = std::string_view(out.data(), length);
    return true;
  }
};

namespace {
std::atomic<std::uint64_t> next_index_id{1};
}  // namespace

SubscriptionIndex::SubscriptionIndex()
    : id_(next_index_id.fetch_add(1, std::memory_order_relaxed)),
      changes_(std::make_unique<ChangeLog>()),
      root_(std::make_unique<Node>()) {}
SubscriptionIndex::~SubscriptionIndex() = default;

bool SubscriptionIndex::subscribe(std::string_view filter, const Entry& entry,
                                  std::shared_ptr<const SessionTag> session) {
  const auto shared = mqtt::parse_shared_filter(filter);
  std::string_view rest = shared ? shared->filter : filter;

  std::unique_lock lock(mutex_);
  log_change(rest);
  Node* node = root_.get();
  for (bool done = false; !done;)
    node = &node->child_creating(trie::next_level(rest, done));

  if (!shared) {
    for (Member& existing : node->entries) {
      if (existing.entry.ref == entry.ref) {
        existing = {entry, std::move(session)};
        return false;
      }
    }
    node->entries.push_back({entry, std::move(session)});
    ++size_;
    if (entry.ref.kind == TargetKind::kSession && node->local_entries++ == 0 && observer_)
      observer_->on_filter(filter, true);
    return true;
  }

  auto group_it = std::find_if(node->groups.begin(), node->groups.end(),
                               [&](const auto& g) { return g->name == shared->group; });
  if (group_it == node->groups.end()) {
    auto group = std::make_unique<SharedGroup>();
    group->name = std::string(shared->group);
    group->full_filter = std::make_shared<const std::string>(filter);
    node->groups.push_back(std::move(group));
    group_it = std::prev(node->groups.end());
  }
  for (auto& member : (*group_it)->members) {
    if (member.entry.ref == entry.ref) {
      member = {entry, std::move(session)};
      return false;
    }
  }
  (*group_it)->members.push_back({entry, std::move(session)});
  ++size_;
  // The cluster announces a group's filter while this node has a member.
  if (entry.ref.kind == TargetKind::kSession && (*group_it)->local_members++ == 0 && observer_)
    observer_->on_filter(filter, true);
  return true;
}

bool SubscriptionIndex::unsubscribe(std::string_view filter, TargetRef ref) {
  const auto shared = mqtt::parse_shared_filter(filter);
  std::string_view rest = shared ? shared->filter : filter;

  std::unique_lock lock(mutex_);
  log_change(rest);
  std::vector<std::pair<Node*, std::string_view>> path;  // for pruning empty nodes
  Node* node = root_.get();
  for (bool done = false; !done;) {
    const std::string_view level = trie::next_level(rest, done);
    Node* next = node->child(level);
    if (next == nullptr) return false;
    path.emplace_back(node, level);
    node = next;
  }

  bool removed = false;
  if (!shared) {
    removed = std::erase_if(node->entries, [&](const Member& m) { return m.entry.ref == ref; }) > 0;
    if (removed && ref.kind == TargetKind::kSession && --node->local_entries == 0 && observer_)
      observer_->on_filter(filter, false);
  } else {
    for (auto it = node->groups.begin(); it != node->groups.end(); ++it) {
      if ((*it)->name != shared->group) continue;
      removed =
          std::erase_if((*it)->members, [&](const auto& m) { return m.entry.ref == ref; }) > 0;
      if (removed && ref.kind == TargetKind::kSession && --(*it)->local_members == 0 && observer_)
        observer_->on_filter(filter, false);
      if ((*it)->members.empty()) node->groups.erase(it);
      break;
    }
  }
  if (!removed) return false;
  --size_;
  for (auto step = path.rbegin(); step != path.rend() && node->empty(); ++step) {
    Node* parent = step->first;
    parent->erase_child(step->second);
    node = parent;
  }
  return true;
}

namespace {

Target target_of(const SubscriptionIndex::Entry& entry,
                 const std::shared_ptr<const SessionTag>& session, const Message& message,
                 bool carry_session) {
  Target target;
  target.ref = entry.ref;
  target.max_qos = entry.options.max_qos;
  target.retain_as_published = entry.options.retain_as_published;
  if (entry.identifier != 0) target.identifiers.push_back(entry.identifier);
  // Only QoS 1/2 is queued, or goes into a stored queue; the tag is copied only then.
  if (message.qos != mqtt::QoS::kAtMostOnce && entry.options.max_qos != mqtt::QoS::kAtMostOnce &&
      session) {
    if (session->stored.load(std::memory_order_relaxed)) target.stored_session = session;
    if (carry_session) target.session = session;
  }
  return target;
}

// True when no subscriber has two of `members` (SubscriptionIndex::Member).
template <class Members>
bool distinct_subscribers(const Members& members) {
  std::vector<TargetRef> refs;
  refs.reserve(members.size());
  for (const auto& member : members)
    refs.push_back(member.entry.ref);
  std::sort(refs.begin(), refs.end());
  return std::adjacent_find(refs.begin(), refs.end()) == refs.end();
}

// Merges targets of one subscriber into one [MQTT-3.3.4-2]: the highest
// QoS, every distinct subscription identifier [MQTT-3.3.4-3],
// retain-as-published if any asked.
void merge_per_subscriber(std::vector<Target>& targets, std::size_t from) {
  auto begin = targets.begin() + static_cast<std::ptrdiff_t>(from);
  if (targets.end() - begin < 2) return;
  std::sort(begin, targets.end(), [](const Target& a, const Target& b) { return a.ref < b.ref; });
  auto out = begin;
  bool merged = false;  // whether `out` took another target's identifiers
  auto finish = [&] {
    if (!merged) return;
    std::sort(out->identifiers.begin(), out->identifiers.end());
    out->identifiers.erase(std::unique(out->identifiers.begin(), out->identifiers.end()),
                           out->identifiers.end());
  };
  for (auto it = begin + 1; it != targets.end(); ++it) {
    if (it->ref == out->ref) {
      out->max_qos = std::max(out->max_qos, it->max_qos);
      out->retain_as_published = out->retain_as_published || it->retain_as_published;
      if (!out->session) out->session = std::move(it->session);
      out->identifiers.insert(out->identifiers.end(), it->identifiers.begin(),
                              it->identifiers.end());
      if (!out->stored_session) out->stored_session = std::move(it->stored_session);
      merged = true;
      continue;
    }
    finish();
    merged = false;
    // Never onto itself: a vector moved onto itself is emptied, and this
    // subscriber's identifiers with it.
    if (++out != it) *out = std::move(*it);
  }
  finish();
  targets.erase(out + 1, targets.end());
}

}  // namespace

void SubscriptionIndex::log_change(std::string_view filter) {
  // With the lock held exclusively: the log entry, then the generation, then
  // the trie. A reader that sees the generation finds its entry whole.
  const std::uint64_t generation = generation_.load(std::memory_order_relaxed) + 1;
  changes_->write(generation, filter);
  generation_.store(generation, std::memory_order_release);
}

bool SubscriptionIndex::unchanged_for(std::string_view topic, std::uint64_t since,
                                      std::uint64_t now) const {
  // A change whose filter does not match the topic cannot have changed what
  // the topic matches.
  if (now - since >= ChangeLog::kEntries) return false;  // no longer all in the log
  std::array<char, ChangeLog::kWords * 8> buffer;
  std::string_view filter;
  for (std::uint64_t generation = since + 1; generation <= now; ++generation) {
    if (!changes_->read(generation, buffer, filter)) return false;
    if (mqtt::topic_matches(filter, topic)) return false;
  }
  return true;
}

void SubscriptionIndex::match(const Message& message, config::SharedStrategy strategy,
                              std::vector<Target>& out, bool prefer_local) const {
  const std::size_t first = out.size();
  // Read without the lock: a writer moves it before it changes the trie, so
  // while it is the slot's, nothing changed since the slot was checked.
  const std::uint64_t generation = generation_.load(std::memory_order_acquire);
  MatchCache& cache = MatchCache::of_this_thread();
  MatchCache::Slot& slot = cache.slot_for(message.topic);
  auto add_targets = [&] {
    for (const Member& member : slot.members) {
      const Entry& entry = member.entry;
      if (entry.options.no_local && entry.ref.kind == TargetKind::kSession &&
          entry.ref.id == message.origin_session) {
        continue;
      }
      out.push_back(target_of(entry, member.session, message, carry_sessions_));
    }
    if (!slot.distinct) merge_per_subscriber(out, first);
  };
  const bool held = slot.index_id == id_ && slot.topic == message.topic;
  if (held && (slot.generation == generation ||
               unchanged_for(message.topic, slot.generation, generation))) {
    // Nothing changed, or only elsewhere in the tree: still this topic's answer.
    slot.generation = generation;
    return add_targets();
  }

  std::shared_lock lock(mutex_);
  // Stable while the lock is held; what a walk finds belongs to it.
  const std::uint64_t now = generation_.load(std::memory_order_relaxed);

  if (slot.index_id != 0) cache.members_held -= slot.members.size();
  slot.index_id = 0;
  slot.distinct = false;
  slot.members.clear();
  std::vector<const SharedGroup*> groups;
  const bool dollar_topic = !message.topic.empty() && message.topic[0] == '$';

  auto collect = [&](const Node& node) {
    slot.members.insert(slot.members.end(), node.entries.begin(), node.entries.end());
    for (const auto& group : node.groups)
      groups.push_back(group.get());
  };

  // Walks `node` with the topic levels in `rest` still to match.
  auto walk = [&](auto& self, const Node& node, std::string_view rest, bool at_end,
                  bool first_level) -> void {
    const bool wildcards = !(first_level && dollar_topic);  // [MQTT-4.7.2-1]
    if (wildcards) {
      if (node.hash) collect(*node.hash);  // includes the parent level
    }
    if (at_end) return collect(node);
    bool done = false;
    const std::string_view level = trie::next_level(rest, done);
    if (const auto exact = node.children.find(level); exact != node.children.end()) {
      self(self, *exact->second, rest, done, false);
    }
    if (wildcards && node.plus) self(self, *node.plus, rest, done, false);
  };

  walk(walk, *root_, message.topic, false, true);
  add_targets();
  if (groups.empty() && slot.members.size() <= MatchCache::kMostMembersPerSlot &&
      cache.members_held + slot.members.size() <= MatchCache::kMostMembers) {
    slot.distinct = distinct_subscribers(slot.members);
    slot.index_id = id_;
    slot.generation = now;
    slot.topic = message.topic;
    cache.members_held += slot.members.size();
  } else {
    // Walked every time: let go of the session tags, and of a large list.
    std::vector<Member>().swap(slot.members);
  }
  // A forwarded message's groups were picked on the node it was published
  // on (the member there may be this node: Message::for_shared_group).
  if (message.forwarded) groups.clear();
  for (const SharedGroup* group : groups) {
    const Member* member = group->pick(
        strategy, message, TargetRef{0, ~0u, 0, TargetKind::kSession}, false, false, prefer_local);
    if (member == nullptr) continue;
    Target target = target_of(member->entry, member->session, message, carry_sessions_);
    target.shared_filter = group->full_filter;
    out.push_back(std::move(target));
  }
}

std::optional<Target> SubscriptionIndex::pick_shared(std::string_view shared_filter,
                                                     const Message& message,
                                                     config::SharedStrategy strategy,
                                                     TargetRef exclude, bool online_only,
                                                     bool local_only) const {
  const auto shared = mqtt::parse_shared_filter(shared_filter);
  if (!shared) return std::nullopt;
  std::shared_lock lock(mutex_);
  const Node* node = root_.get();
  std::string_view rest = shared->filter;
  for (bool done = false; !done && node != nullptr;)
    node = node->child(trie::next_level(rest, done));
  if (node == nullptr) return std::nullopt;
  for (const auto& group : node->groups) {
    if (group->name != shared->group) continue;
    const Member* member = group->pick(strategy, message, exclude, online_only, local_only);
    if (member == nullptr) return std::nullopt;
    Target target = target_of(member->entry, member->session, message, carry_sessions_);
    target.shared_filter = group->full_filter;
    return target;
  }
  return std::nullopt;
}

std::size_t SubscriptionIndex::size() const {
  std::shared_lock lock(mutex_);
  return size_;
}

std::optional<std::vector<SubscriptionIndex::LevelView>> SubscriptionIndex::levels_below(
    std::string_view prefix) const {
  std::shared_lock lock(mutex_);
  const Node* node = root_.get();
  if (!prefix.empty()) {
    bool done = false;
    while (node != nullptr && !done)
      node = node->child(trie::next_level(prefix, done));
  }
  if (node == nullptr) return std::nullopt;
  std::vector<LevelView> out;
  const auto view = [&](std::string level, const Node& child) {
    out.push_back({std::move(level), child.entries.size(), child.groups.size(),
                   !child.children.empty() || child.plus || child.hash});
  };
  for (const auto& [level, child] : node->children)
    view(std::string(level), *child);
  std::sort(out.begin(), out.end(), [](const auto& a, const auto& b) { return a.level < b.level; });
  if (node->plus) view("+", *node->plus);
  if (node->hash) view("#", *node->hash);
  return out;
}

}  // namespace sluice::broker
