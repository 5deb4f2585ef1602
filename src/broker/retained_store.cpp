// The retained-message trie. A filter walk follows literal levels directly,
// fans out over all children at '+', and takes a whole subtree at '#'.
#include "broker/retained_store.hpp"

#include <mutex>
#include <vector>

#include "broker/topic_trie.hpp"

namespace sluice::broker {

struct RetainedStore::Node {
  trie::Children<std::unique_ptr<Node>> children;
  MessagePtr message;
  bool empty() const { return children.empty() && !message; }
};

RetainedStore::RetainedStore(std::uint32_t max_messages)
    : root_(std::make_unique<Node>()), max_messages_(max_messages) {}
RetainedStore::~RetainedStore() = default;

RetainedStore::SetResult RetainedStore::set(const MessagePtr& message) {
  std::unique_lock lock(mutex_);
  return set_locked(message);
}

void RetainedStore::locked(const std::function<void(Writer&)>& change) {
  std::unique_lock lock(mutex_);
  Writer writer(*this);
  change(writer);
}

RetainedStore::SetResult RetainedStore::set_locked(const MessagePtr& message) {
  std::string_view rest = message->topic;
  if (message->payload.empty()) {
    std::vector<std::pair<Node*, std::string_view>> path;
    Node* node = root_.get();
    for (bool done = false; !done;) {
      const auto it = node->children.find(trie::next_level(rest, done));
      if (it == node->children.end()) return SetResult::kDeleted;
      path.emplace_back(node, it->first);
      node = it->second.get();
    }
    if (node->message) --size_;
    node->message.reset();
    for (auto step = path.rbegin(); step != path.rend() && node->empty(); ++step) {
      step->first->children.erase(step->first->children.find(step->second));
      node = step->first;
    }
    return SetResult::kDeleted;
  }

  // Only an existing topic may be replaced at the limit, and a refused topic
  // must leave no nodes behind: look before building the path.
  if (size_ >= max_messages_ && !has_message(message->topic)) return SetResult::kLimitReached;
  Node* node = &trie::descend_creating(*root_, rest);
  if (!node->message) ++size_;
  node->message = message;
  return SetResult::kStored;
}

bool RetainedStore::has_message(std::string_view topic) const {
  const Node* node = trie::descend(*root_, topic);
  return node != nullptr && node->message != nullptr;
}

std::size_t RetainedStore::purge_expired(Clock::time_point now,
                                         const std::function<void(const Message&)>& on_purged,
                                         const std::function<void()>& under_lock) {
  std::unique_lock lock(mutex_);
  std::size_t purged = 0;
  // Returns whether `node` is left empty, so its parent can drop it.
  auto purge = [&](auto& self, Node& node) -> bool {
    if (node.message && node.message->expired(now)) {
      if (on_purged) on_purged(*node.message);
      node.message.reset();
      ++purged;
    }
    std::erase_if(node.children, [&](auto& entry) { return self(self, *entry.second); });
    return node.empty();
  };
  purge(purge, *root_);
  size_ -= purged;
  if (under_lock) under_lock();
  return purged;
}

void RetainedStore::for_each_match(std::string_view filter, Clock::time_point now,
                                   const std::function<void(const MessagePtr&)>& f) const {
  auto emit = [&](const Node& node) {
    if (node.message && !node.message->expired(now)) f(node.message);
  };
  auto subtree = [&](auto& self, const Node& node) -> void {
    emit(node);
    for (const auto& [level, child] : node.children)
      self(self, *child);
  };
  // [MQTT-4.7.2-1]: wildcards at the first level skip topics starting with '$'.
  auto walk = [&](auto& self, const Node& node, std::string_view rest, bool first_level) -> void {
    bool done = false;
    const std::string_view level = trie::next_level(rest, done);
    auto visit = [&](const Node& child) {
      if (done) {
        emit(child);
      } else {
        self(self, child, rest, false);
      }
    };
    if (level == "#") {
      if (!first_level) emit(node);  // '#' includes the parent level
      for (const auto& [name, child] : node.children) {
        if (!(first_level && name.starts_with('$'))) subtree(subtree, *child);
      }
    } else if (level == "+") {
      for (const auto& [name, child] : node.children) {
        if (!(first_level && name.starts_with('$'))) visit(*child);
      }
    } else if (const auto it = node.children.find(level); it != node.children.end()) {
      visit(*it->second);
    }
  };
  std::shared_lock lock(mutex_);
  walk(walk, *root_, filter, true);
}

std::size_t RetainedStore::size() const {
  std::shared_lock lock(mutex_);
  return size_;
}

}  // namespace sluice::broker
