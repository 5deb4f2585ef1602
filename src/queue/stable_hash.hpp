// FNV-1a over a name or key: the same text hashes the same in every run and
// on every node (partitions of a key, Raft group numbers of a queue).
#pragma once

#include <cstdint>
#include <string_view>

namespace sluice::queue {

inline std::uint64_t stable_hash(std::string_view text) {
  std::uint64_t hash = 14695981039346656037ull;
  for (const char c : text) {
    hash ^= static_cast<std::uint8_t>(c);
    hash *= 1099511628211ull;
  }
  return hash;
}

}  // namespace sluice::queue
