// Which node owns which session (docs/cluster.md, "Session ownership"):
// the broker's SessionDirectory in a cluster. A session's owner is the value
// of /sluice/sessions/<client_id>, written under the owner's lease, only by
// a transaction that compares the key's revision: created when absent,
// renewed by its owner, taken from another node once that node handed the
// session over (or is gone, or did not answer within
// session_takeover_timeout_ms). Every node watches the keys; one that sees
// a session it holds owned by another closes it (the fence against a stale
// owner). A node that lost its lease refuses CONNECTs and closes its
// connections until it has a lease again and has claimed its sessions back.
//
// Claims run on a small pool of threads of its own (they wait on etcd and
// on other nodes), never on a worker.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "broker/broker.hpp"
#include "broker/session_directory.hpp"
#include "config/config.hpp"

namespace grpc {
class ChannelCredentials;
}

namespace sluice::cluster {

class EtcdClient;
class RouteAnnouncer;

class SessionOwner final : public broker::SessionDirectory {
 public:
  // What it asks the rest of the cluster.
  struct Membership {
    // The gRPC address of node `id` while it is a member; nullopt otherwise.
    std::function<std::optional<std::string>(const std::string& id)> address_of;
    // This node's lease; 0 while it has none.
    std::function<std::int64_t()> lease;
    // The other members: (id, gRPC address) of each.
    std::function<std::vector<std::pair<std::string, std::string>>()> others;
    // This node's side of a takeover's barrier (Cluster's barrier): its own
    // publishes matched to the old holder are on their way to it too.
    std::function<bool(std::int64_t revision, const std::string& holder,
                       std::chrono::steady_clock::time_point deadline)>
        barrier;
  };
  SessionOwner(broker::Broker& broker, const config::ClusterConfig& config, EtcdClient& etcd,
               RouteAnnouncer& announcer, std::shared_ptr<grpc::ChannelCredentials> credentials,
               Membership membership);
  ~SessionOwner() override;
  SessionOwner(const SessionOwner&) = delete;
  SessionOwner& operator=(const SessionOwner&) = delete;

  // The session was handed over to another node (TakeSession answered
  // here): a client coming back here must claim it through etcd again.
  void forget(const std::string& client_id);

  // Starts the pool and the watch of the session keys.
  void start();
  // Makes every session this node holds its own in etcd again, or ends the
  // ones another node owns now; then takes claims. At start-up
  // (`workers_running` false: the shards are read from this thread) and
  // after a new lease.
  void reclaim(bool workers_running);
  // The lease is lost: claims are refused and every connection is closed
  // (the sessions stay, offline, until reclaim).
  void lease_lost();
  void stop();

  void claim(Request request, std::function<void(Outcome)> done) override;
  void ended(const std::string& client_id) override;
  bool serving() const override;

  std::uint64_t takeovers() const;  // sessions handed over to this node
  std::uint64_t conflicts() const;  // claims that lost a race for a key
  std::uint64_t owned() const;      // keys this node holds

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace sluice::cluster
