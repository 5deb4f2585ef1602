// Helpers shared by the two tries of topic levels (the subscription index and
// the retained store): walking a topic level by level, and child maps that
// can be searched with a string_view without building a string.
#pragma once

#include <functional>
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

}  // namespace sluice::broker::trie
