// Announces the filters this node's sessions subscribe to, one etcd key per
// filter (not per subscription) under the node's lease, so that other nodes
// forward matching publishes here. The subscription index tells it when a
// filter gains its first local subscriber or loses its last; a thread of its
// own brings etcd in line, so workers never wait for etcd.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <thread>

#include "broker/subscription_index.hpp"
#include "cluster/etcd_client.hpp"

namespace sluice::cluster {

class RouteAnnouncer final : public broker::FilterObserver {
 public:
  RouteAnnouncer(std::string node_id) : node_id_(std::move(node_id)) {}
  ~RouteAnnouncer() override { stop(); }

  // From the index, under its lock: only takes note.
  void on_filter(std::string_view filter, bool present) override;

  // Filters announced whatever the index says: the capture filters of the
  // queues homed here (queue_homes.hpp). Replaces the previous set.
  void set_pinned(std::set<std::string, std::less<>> filters);

  // Starts writing under `lease`: every filter present now, then each change.
  void start(EtcdClient& etcd, std::int64_t lease);
  // A new lease after the old one was lost: everything is written again.
  void relet(std::int64_t lease);
  void stop();
  std::uint64_t announced() const;
  // Waits until what the index told it so far is in etcd (a session taken
  // over from another node is announced here before that node lets go of
  // it, so publishers never see neither node), and gives the etcd revision
  // of the last route it wrote (0 for none); nullopt after `timeout`.
  std::optional<std::int64_t> wait_written(std::chrono::milliseconds timeout);

 private:
  void run();
  bool wanted(const std::string& filter) const {
    return present_.contains(filter) || pinned_.contains(filter);
  }

  const std::string node_id_;
  EtcdClient* etcd_ = nullptr;
  mutable std::mutex mutex_;
  std::condition_variable wake_;
  // What etcd should hold: the index's filters and the pinned ones.
  std::set<std::string, std::less<>> present_;
  std::set<std::string, std::less<>> pinned_;
  std::set<std::string, std::less<>> dirty_;  // filters whose key may differ from present_
  std::int64_t lease_ = 0;
  bool writing_ = false;  // a batch is out, the lock released
  std::int64_t written_revision_ = 0;
  std::condition_variable written_;
  bool stopping_ = false;
  std::thread thread_;
};

}  // namespace sluice::cluster
