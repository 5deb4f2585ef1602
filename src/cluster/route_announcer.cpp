#include "cluster/route_announcer.hpp"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <vector>

#include "cluster/keys.hpp"
#include "mqtt/topic.hpp"

namespace sluice::cluster {

void RouteAnnouncer::on_filter(std::string_view filter, bool present) {
  // $SYS and other $ topics never cross nodes: a filter for them is no route.
  const auto shared = mqtt::parse_shared_filter(filter);
  if ((shared ? shared->filter : filter).starts_with('$')) return;
  {
    std::lock_guard lock(mutex_);
    if (present) {
      present_.emplace(filter);
    } else if (const auto it = present_.find(filter); it != present_.end()) {
      present_.erase(it);
    }
    dirty_.emplace(filter);
  }
  wake_.notify_one();
}

void RouteAnnouncer::set_pinned(std::set<std::string, std::less<>> filters) {
  std::erase_if(filters, [](const std::string& filter) { return filter.starts_with('$'); });
  {
    std::lock_guard lock(mutex_);
    if (filters == pinned_) return;
    dirty_.insert(pinned_.begin(), pinned_.end());
    dirty_.insert(filters.begin(), filters.end());
    pinned_ = std::move(filters);
  }
  wake_.notify_one();
}

void RouteAnnouncer::start(EtcdClient& etcd, std::int64_t lease) {
  std::lock_guard lock(mutex_);
  etcd_ = &etcd;
  lease_ = lease;
  dirty_.insert(present_.begin(), present_.end());
  dirty_.insert(pinned_.begin(), pinned_.end());
  thread_ = std::thread([this] { run(); });
}

void RouteAnnouncer::relet(std::int64_t lease) {
  {
    std::lock_guard lock(mutex_);
    lease_ = lease;
    dirty_.insert(present_.begin(), present_.end());
    dirty_.insert(pinned_.begin(), pinned_.end());
  }
  wake_.notify_one();
}

void RouteAnnouncer::stop() {
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
  }
  wake_.notify_all();
  written_.notify_all();
  if (thread_.joinable()) thread_.join();
}

std::uint64_t RouteAnnouncer::announced() const {
  std::lock_guard lock(mutex_);
  std::uint64_t count = present_.size();
  for (const std::string& filter : pinned_)
    if (!present_.contains(filter)) ++count;
  return count;
}

std::optional<std::int64_t> RouteAnnouncer::wait_written(std::chrono::milliseconds timeout) {
  std::unique_lock lock(mutex_);
  if (!written_.wait_for(lock, timeout,
                         [this] { return stopping_ || (dirty_.empty() && !writing_); }))
    return std::nullopt;
  return written_revision_;
}

void RouteAnnouncer::run() {
  std::unique_lock lock(mutex_);
  while (true) {
    if (dirty_.empty()) written_.notify_all();
    wake_.wait(lock, [this] { return stopping_ || !dirty_.empty(); });
    if (stopping_) return;
    // A batch at a time, the lock released while etcd answers.
    std::vector<std::pair<std::string, bool>> changes;
    for (auto it = dirty_.begin(); it != dirty_.end() && changes.size() < 256;) {
      changes.emplace_back(*it, wanted(*it));
      it = dirty_.erase(it);
    }
    const std::int64_t lease = lease_;
    writing_ = true;
    lock.unlock();
    std::vector<std::string> failed;
    std::int64_t revision = 0;
    for (const auto& [filter, present] : changes) {
      const std::string key = keys::route(node_id_, filter);
      const EtcdResult result =
          present ? etcd_->put(key, "", lease, &revision) : etcd_->erase(key, &revision);
      if (!result.ok) {
        spdlog::warn("event=route_announce_failed filter=\"{}\" error=\"{}\"", filter,
                     result.error);
        failed.push_back(filter);
      }
    }
    lock.lock();
    writing_ = false;
    written_revision_ = std::max(written_revision_, revision);
    if (!failed.empty()) {
      dirty_.insert(failed.begin(), failed.end());
      // Not again at once: etcd is down or slow.
      wake_.wait_for(lock, std::chrono::milliseconds(500), [this] { return stopping_; });
    }
  }
}

}  // namespace sluice::cluster
