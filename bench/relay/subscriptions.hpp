// subscriptions.hpp: which connections want which topics; one index shared by
// all worker threads. Exact filters live in a hash map, wildcard filters in a
// list that every publish walks (cheap while there are few of them).
#pragma once

#include <pthread.h>

#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

namespace relay {

// A connection anywhere in the process. `gen` changes when a slot is reused,
// so a late delivery to a closed connection is recognised and dropped.
struct ConnKey {
  std::uint32_t worker = 0;
  std::uint32_t slot = 0;
  std::uint32_t gen = 0;
  bool operator==(const ConnKey&) const = default;
};

struct SubRef {
  ConnKey conn;
  unsigned qos = 0;  // granted
};

using FilterList = std::vector<std::pair<std::string, unsigned>>;

// glibc's default rwlock prefers readers, and workers take the read side for
// a whole socket read: a subscribing thread could wait forever under load.
class RwLock {
 public:
  RwLock();
  ~RwLock();
  RwLock(const RwLock&) = delete;
  RwLock& operator=(const RwLock&) = delete;
  void lock_shared() { pthread_rwlock_rdlock(&lock_); }
  void unlock_shared() { pthread_rwlock_unlock(&lock_); }
  void lock() { pthread_rwlock_wrlock(&lock_); }
  void unlock() { pthread_rwlock_unlock(&lock_); }

 private:
  pthread_rwlock_t lock_;
};

class SubscriptionIndex {
 public:
  // add and remove take the write lock themselves.
  void add(std::string_view filter, ConnKey conn, unsigned qos);  // replaces an earlier grant
  bool remove(std::string_view filter, ConnKey conn);
  void remove_all(const FilterList& filters, ConnKey conn);

  // The caller holds lock_shared() around match and while using its result.
  void match(std::string_view topic, std::vector<SubRef>& out) const;
  void lock_shared() { lock_.lock_shared(); }
  void unlock_shared() { lock_.unlock_shared(); }

 private:
  struct Hash {
    using is_transparent = void;
    std::size_t operator()(std::string_view s) const noexcept {
      return std::hash<std::string_view>{}(s);
    }
  };
  struct Wild {
    std::string filter;
    std::vector<SubRef> subs;
  };

  bool remove_locked(std::string_view filter, ConnKey conn);

  RwLock lock_;
  std::unordered_map<std::string, std::vector<SubRef>, Hash, std::equal_to<>> exact_;
  std::vector<Wild> wild_;
};

}  // namespace relay
