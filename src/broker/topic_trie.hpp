// Helpers shared by the two tries of topic levels (the subscription index and
// the retained store): walking a topic level by level, and child maps that
// can be searched with a string_view without building a string.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>

namespace sluice::broker::trie {

struct StringHash {
  using is_transparent = void;
  std::size_t operator()(std::string_view text) const {
    return std::hash<std::string_view>{}(text);
  }
};

template <class Node>
using Children = std::unordered_map<std::string, Node, StringHash, std::equal_to<>>;

// Splits off the first level of `rest`; `rest` keeps what follows the '/'.
// `done` is set when that level was the last.
inline std::string_view next_level(std::string_view& rest, bool& done) {
  const std::size_t slash = rest.find('/');
  const std::string_view level = rest.substr(0, slash);
  done = slash == std::string_view::npos;
  rest = done ? std::string_view() : rest.substr(slash + 1);
  return level;
}

// The node for the levels of `topic` under `root`, created on the way as needed.
// `Node` has `Children<std::unique_ptr<Node>> children`.
template <class Node>
Node& descend_creating(Node& root, std::string_view topic) {
  Node* node = &root;
  for (bool done = false; !done;) {
    const std::string_view level = next_level(topic, done);
    auto it = node->children.find(level);
    if (it == node->children.end()) {
      it = node->children.emplace(std::string(level), std::make_unique<Node>()).first;
    }
    node = it->second.get();
  }
  return *node;
}

// The node for the levels of `topic` under `root`, or nullptr.
template <class Node>
const Node* descend(const Node& root, std::string_view topic) {
  const Node* node = &root;
  for (bool done = false; !done && node != nullptr;) {
    const auto it = node->children.find(next_level(topic, done));
    node = it == node->children.end() ? nullptr : it->second.get();
  }
  return node;
}

}  // namespace sluice::broker::trie
