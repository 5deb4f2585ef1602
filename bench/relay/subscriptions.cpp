// subscriptions.cpp: the shared subscription index (see subscriptions.hpp).
#include "subscriptions.hpp"

#include <algorithm>
#include <mutex>

#include "framing.hpp"

namespace relay {

RwLock::RwLock() {
  pthread_rwlockattr_t attr;
  pthread_rwlockattr_init(&attr);
  pthread_rwlockattr_setkind_np(&attr, PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
  pthread_rwlock_init(&lock_, &attr);
  pthread_rwlockattr_destroy(&attr);
}

RwLock::~RwLock() {
  pthread_rwlock_destroy(&lock_);
}

namespace {

void grant(std::vector<SubRef>& subs, ConnKey conn, unsigned qos) {
  for (SubRef& s : subs) {
    if (s.conn == conn) {
      s.qos = qos;
      return;
    }
  }
  subs.push_back(SubRef{conn, qos});
}

bool drop(std::vector<SubRef>& subs, ConnKey conn) {
  for (SubRef& s : subs) {
    if (s.conn == conn) {
      s = subs.back();  // order among subscribers does not matter
      subs.pop_back();
      return true;
    }
  }
  return false;
}

bool key_less(const SubRef& a, const SubRef& b) {
  if (a.conn.worker != b.conn.worker) return a.conn.worker < b.conn.worker;
  if (a.conn.slot != b.conn.slot) return a.conn.slot < b.conn.slot;
  return a.conn.gen < b.conn.gen;
}

}  // namespace

void SubscriptionIndex::add(std::string_view filter, ConnKey conn, unsigned qos) {
  std::lock_guard guard(lock_);
  if (!has_wildcard(filter)) {
    auto it = exact_.find(filter);
    if (it == exact_.end()) it = exact_.emplace(std::string(filter), std::vector<SubRef>{}).first;
    grant(it->second, conn, qos);
    return;
  }
  for (Wild& w : wild_) {
    if (w.filter == filter) {
      grant(w.subs, conn, qos);
      return;
    }
  }
  wild_.push_back(Wild{std::string(filter), {SubRef{conn, qos}}});
}

bool SubscriptionIndex::remove(std::string_view filter, ConnKey conn) {
  std::lock_guard guard(lock_);
  return remove_locked(filter, conn);
}

void SubscriptionIndex::remove_all(const FilterList& filters, ConnKey conn) {
  std::lock_guard guard(lock_);
  for (const auto& f : filters)
    remove_locked(f.first, conn);
}

bool SubscriptionIndex::remove_locked(std::string_view filter, ConnKey conn) {
  if (!has_wildcard(filter)) {
    auto it = exact_.find(filter);
    if (it == exact_.end() || !drop(it->second, conn)) return false;
    if (it->second.empty()) exact_.erase(it);
    return true;
  }
  for (auto it = wild_.begin(); it != wild_.end(); ++it) {
    if (it->filter != filter) continue;
    if (!drop(it->subs, conn)) return false;
    if (it->subs.empty()) wild_.erase(it);
    return true;
  }
  return false;
}

void SubscriptionIndex::match(std::string_view topic, std::vector<SubRef>& out) const {
  std::size_t sources = 0;
  if (auto it = exact_.find(topic); it != exact_.end()) {
    out.insert(out.end(), it->second.begin(), it->second.end());
    ++sources;
  }
  for (const Wild& w : wild_) {
    if (topic_matches(w.filter, topic)) {
      out.insert(out.end(), w.subs.begin(), w.subs.end());
      ++sources;
    }
  }
  if (sources < 2) return;
  // Overlapping filters of one connection: deliver once, at the highest QoS.
  std::sort(out.begin(), out.end(), key_less);
  std::size_t kept = 0;
  for (std::size_t i = 0; i < out.size(); ++i) {
    if (kept > 0 && out[kept - 1].conn == out[i].conn)
      out[kept - 1].qos = std::max(out[kept - 1].qos, out[i].qos);
    else
      out[kept++] = out[i];
  }
  out.resize(kept);
}

}  // namespace relay
