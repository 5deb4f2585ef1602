#include "cluster/cluster.hpp"

#include <grpcpp/grpcpp.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <condition_variable>
#include <future>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <set>
#include <thread>

#include "broker/broker.hpp"
#include "cluster/etcd_client.hpp"
#include "cluster/file_text.hpp"
#include "cluster/forwarder.hpp"
#include "cluster/keys.hpp"
#include "cluster/managed_etcd.hpp"
#include "cluster/peer_channel.hpp"
#include "cluster/peer_raft_links.hpp"
#include "cluster/peer_service.hpp"
#include "cluster/queue_homes.hpp"
#include "cluster/queue_replicas.hpp"
#include "cluster/retained_catch_up.hpp"
#include "cluster/route_announcer.hpp"
#include "cluster/session_owner.hpp"
#include "cluster/test_pause.hpp"
#include "mqtt/topic.hpp"
#include "mqtt/utf8.hpp"

namespace sluice::cluster {

namespace {

using json = nlohmann::json;

// Mutual TLS between nodes, or clear text under cluster.insecure.
struct Credentials {
  std::shared_ptr<grpc::ServerCredentials> server;
  std::shared_ptr<grpc::ChannelCredentials> channel;
};

std::optional<std::string> make_credentials(const config::ClusterConfig& c, Credentials& out) {
  if (c.cert_file.empty()) {
    spdlog::warn(
        "event=cluster_insecure note=\"cluster.insecure: nodes talk in clear text, and any "
        "process that reaches cluster.listen can publish into this node\"");
    out.server = grpc::InsecureServerCredentials();
    out.channel = grpc::InsecureChannelCredentials();
    return std::nullopt;
  }
  std::string ca, cert, key;
  if (!read_file_text(c.ca_file, ca)) return "cannot read cluster.ca_file " + c.ca_file;
  if (!read_file_text(c.cert_file, cert)) return "cannot read cluster.cert_file " + c.cert_file;
  if (!read_file_text(c.key_file, key)) return "cannot read cluster.key_file " + c.key_file;
  grpc::SslServerCredentialsOptions server(
      GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY);
  server.pem_root_certs = ca;
  server.pem_key_cert_pairs.push_back({key, cert});
  out.server = grpc::SslServerCredentials(server);
  grpc::SslCredentialsOptions channel;
  channel.pem_root_certs = ca;
  channel.pem_private_key = key;
  channel.pem_cert_chain = cert;
  out.channel = grpc::SslCredentials(channel);
  return std::nullopt;
}

}  // namespace

struct Cluster::Impl {
  Impl(broker::Broker& b, const config::Config& whole, std::string v)
      : broker(b),
        config(whole),
        cluster(whole.cluster),
        storage_dir(whole.storage.dir),
        version(std::move(v)),
        announcer(config.cluster.node_id) {}

  broker::Broker& broker;
  const config::Config& config;
  const config::ClusterConfig cluster;
  const std::string storage_dir;
  const std::string version;
  std::unique_ptr<ManagedEtcd> managed;
  std::unique_ptr<EtcdClient> etcd;
  RouteAnnouncer announcer;
  std::unique_ptr<Forwarder> forwarder;
  std::unique_ptr<PeerService> service;
  std::unique_ptr<SessionOwner> owner;
  std::unique_ptr<QueueHomes> queue_homes;
  // Only when some queue is replicated (docs/replication.md).
  std::unique_ptr<PeerRaftLinks> raft_links;
  std::unique_ptr<QueueReplicas> replicas;

  struct Node {
    std::uint16_t number = 0;
    std::string advertise;
    std::string version;
    bool up = false;
    std::set<std::string> routes;  // filters in the index under this node's number
  };
  mutable std::mutex mutex;
  std::condition_variable changed;
  std::map<std::string, Node> nodes;  // the others, by id; numbers are never reused
  std::uint16_t next_number = 1;
  bool nodes_known = false;
  std::int64_t routes_revision = 0;  // of the routes watch: what the index reflects
  bool routes_known = false;
  bool joined = false;
  bool stopping = false;
  bool lease_lost = false;
  bool left = false;
  std::int64_t lease = 0;
  std::uint64_t lease_losses = 0;
  std::thread relet_thread;

  std::string node_value() const {
    return json{{"advertise", cluster.advertise}, {"version", version}}.dump();
  }

  Node& node_locked(const std::string& id) {
    Node& node = nodes[id];
    if (node.number == 0) node.number = next_number++;
    return node;
  }

  // ---- other nodes' membership ----
  void node_up(const std::string& id, const std::string& value) {
    std::string advertise, node_version;
    try {
      const json parsed = json::parse(value);
      advertise = parsed.value("advertise", "");
      node_version = parsed.value("version", "");
    } catch (const json::exception&) {
    }
    if (advertise.empty()) {
      spdlog::warn("event=cluster_node_unreadable node={} value=\"{}\"", id, value);
      return;
    }
    std::uint16_t number;
    bool changed_address;
    {
      std::lock_guard lock(mutex);
      Node& node = node_locked(id);
      changed_address = !node.up || node.advertise != advertise;
      node.up = true;
      node.advertise = advertise;
      node.version = node_version;
      number = node.number;
    }
    if (!changed_address) return;
    forwarder->add(number, id, advertise);
    if (raft_links) raft_links->connect(id);
    spdlog::info("event=cluster_node_up node={} address={} version={}", id, advertise,
                 node_version);
  }

  // Its routes are left to their own DELETE events, which its lease's end
  // brings as it brought this one: the two watches are separate streams, and
  // a node that lost its lease and came back may have put them again already.
  void node_down(const std::string& id) {
    std::uint16_t number;
    {
      std::lock_guard lock(mutex);
      const auto it = nodes.find(id);
      if (it == nodes.end() || !it->second.up) return;
      it->second.up = false;
      number = it->second.number;
    }
    forwarder->remove(number);
    // Its Raft channels end now, not when a write to them stalls.
    if (raft_links) raft_links->reset(id);
    spdlog::warn("event=cluster_node_down node={}", id);
  }

  void nodes_snapshot(const EtcdClient::Range& range) {
    std::set<std::string> present;
    for (const KeyValue& kv : range.kvs) {
      const auto id = keys::parse_node(kv.key);
      if (!id || *id == cluster.node_id) continue;
      present.insert(*id);
      node_up(*id, kv.value);
    }
    std::vector<std::string> gone;
    {
      std::lock_guard lock(mutex);
      for (const auto& [id, node] : nodes)
        if (node.up && !present.contains(id)) gone.push_back(id);
    }
    for (const std::string& id : gone)
      node_down(id);
    std::lock_guard lock(mutex);
    nodes_known = true;
    changed.notify_all();
  }

  void nodes_changed(const std::vector<WatchEvent>& events) {
    for (const WatchEvent& event : events) {
      const auto id = keys::parse_node(event.kv.key);
      if (!id || *id == cluster.node_id) continue;
      if (event.deleted) {
        node_down(*id);
      } else {
        node_up(*id, event.kv.value);
      }
    }
  }

  // ---- other nodes' filters ----
  static broker::TargetRef node_ref(std::uint16_t number) {
    return {0, 0, number, broker::TargetKind::kNode};
  }

  // The index changes under `mutex`, so that what `routes` says and what
  // the index holds never differ (the index's observer never takes `mutex`).
  void route_added(const std::string& id, const std::string& filter) {
    // Filters and `$share/<group>/<filter>`s (the node is then a member of
    // the group: it picks among its own members); anything else is not a
    // route.
    if (!mqtt::check_topic_filter(filter).ok() ||
        mqtt::check_utf8(filter) != mqtt::Utf8Check::kValid) {
      spdlog::warn("event=cluster_route_ignored node={} filter=\"{}\"", id, filter);
      return;
    }
    std::lock_guard lock(mutex);
    Node& node = node_locked(id);
    if (!node.routes.insert(filter).second) return;
    broker::SubscriptionIndex::Entry entry;
    entry.ref = node_ref(node.number);
    // The other node applies its subscribers' QoS and options itself.
    entry.options.max_qos = mqtt::QoS::kExactlyOnce;
    entry.options.retain_as_published = true;
    broker.index().subscribe(filter, entry, nullptr);
  }

  void route_removed(const std::string& id, const std::string& filter) {
    std::lock_guard lock(mutex);
    const auto it = nodes.find(id);
    if (it == nodes.end() || it->second.routes.erase(filter) == 0) return;
    broker.index().unsubscribe(filter, node_ref(it->second.number));
  }

  void routes_snapshot(const EtcdClient::Range& range) {
    std::map<std::string, std::set<std::string>> present;
    for (const KeyValue& kv : range.kvs) {
      const auto route = keys::parse_route(kv.key);
      if (!route || route->first == cluster.node_id) continue;
      present[route->first].insert(route->second);
      route_added(route->first, route->second);
    }
    std::vector<std::pair<std::string, std::string>> gone;
    {
      std::lock_guard lock(mutex);
      for (const auto& [id, node] : nodes)
        for (const std::string& filter : node.routes)
          if (!present[id].contains(filter)) gone.emplace_back(id, filter);
    }
    for (const auto& [id, filter] : gone)
      route_removed(id, filter);
    std::lock_guard lock(mutex);
    routes_known = true;
    routes_revision = std::max(routes_revision, range.revision);
    changed.notify_all();
  }

  void routes_changed(const std::vector<WatchEvent>& events, std::int64_t) {
    // What the index reflects: the events applied (a response's header may
    // be ahead of them while a watch catches up).
    std::int64_t revision = 0;
    for (const WatchEvent& event : events) {
      revision = std::max(revision, event.kv.mod_revision);
      const auto route = keys::parse_route(event.kv.key);
      if (!route || route->first == cluster.node_id) continue;
      if (event.deleted) {
        route_removed(route->first, route->second);
      } else {
        route_added(route->first, route->second);
      }
    }
    std::lock_guard lock(mutex);
    routes_revision = std::max(routes_revision, revision);
    changed.notify_all();
  }

  // A session moves from node `from` to another node, whose routes for it
  // are in etcd at `revision`: returns once this node routes by them and
  // what it had already sent `from` was answered, so that the session's old
  // copy is let go of only when nothing is still on its way to it. False at
  // `deadline`.
  bool barrier(std::int64_t revision, const std::string& from,
               std::chrono::steady_clock::time_point deadline) {
    std::uint16_t number = 0;
    {
      std::unique_lock lock(mutex);
      if (!changed.wait_until(lock, deadline,
                              [&] { return stopping || routes_revision >= revision; }))
        return false;
      if (const auto it = nodes.find(from); it != nodes.end()) number = it->second.number;
    }
    // A publish matched just before the index changed is on its worker's
    // way to the link: one task through every worker lets those finish.
    if (broker::Mailbox* mailbox = broker.mailbox()) {
      for (std::uint32_t shard = 0; shard < broker.shard_count(); ++shard) {
        auto passed = std::make_shared<std::promise<void>>();
        std::future<void> done = passed->get_future();
        mailbox->post_task(shard, [passed] { passed->set_value(); });
        if (done.wait_until(deadline) != std::future_status::ready) return false;
      }
    }
    return number == 0 || forwarder->drain(number, deadline);
  }

  // The other members, (id, gRPC address).
  std::vector<std::pair<std::string, std::string>> other_members() {
    std::vector<std::pair<std::string, std::string>> up;
    std::lock_guard lock(mutex);
    for (const auto& [id, node] : nodes)
      if (node.up) up.emplace_back(id, node.advertise);
    return up;
  }

  // ---- this node's membership ----
  // `exclusive`: the node key is created only if no other process holds it
  // (start-up; `taken` says so). Rejoining after a lost lease puts it again.
  EtcdResult join(bool exclusive = false, bool* taken = nullptr) {
    std::int64_t granted = 0;
    EtcdResult result = etcd->grant_lease(cluster.lease_ttl_s, granted);
    if (!result.ok) return result;
    if (exclusive) {
      bool won = false;
      std::optional<KeyValue> holder;
      result =
          etcd->compare_and_put(keys::node(cluster.node_id), 0, node_value(), granted, won, holder);
      if (result.ok && !won) {
        etcd->revoke_lease(granted);
        if (taken != nullptr) *taken = true;
        return EtcdResult::failed("node id " + cluster.node_id + " is held by " +
                                  (holder ? holder->value : std::string("another node")));
      }
    } else {
      result = etcd->put(keys::node(cluster.node_id), node_value(), granted);
    }
    if (!result.ok) {
      // Revoked so that a write that did happen (its answer lost) goes with
      // it, rather than leave this node's key held by a lease nobody renews.
      etcd->revoke_lease(granted);
      return result;
    }
    {
      std::lock_guard lock(mutex);
      lease = granted;
      joined = true;
      lease_lost = false;
    }
    etcd->keep_alive(granted, std::chrono::seconds(cluster.lease_ttl_s), [this] {
      // Before anyone else can take them: this node can no longer prove it
      // owns its sessions.
      if (owner) owner->lease_lost();
      {
        std::lock_guard lock(mutex);
        joined = false;
        lease_lost = true;
        ++lease_losses;
      }
      changed.notify_all();
    });
    return result;
  }

  // Takes a new lease whenever the old one is lost, and puts this node's
  // keys back under it: they are this node's alone, so writing them again
  // cannot overwrite anyone else's.
  void relet() {
    std::unique_lock lock(mutex);
    while (true) {
      changed.wait(lock, [this] { return stopping || lease_lost; });
      if (stopping) return;
      spdlog::error(
          "event=cluster_lease_lost node={} note=\"etcd unreachable for the lease's ttl: other "
          "nodes take this one for dead until it joins again\"",
          cluster.node_id);
      lock.unlock();
      EtcdResult result = join();
      while (!result.ok) {
        spdlog::warn("event=cluster_join_failed error=\"{}\"", result.error);
        lock.lock();
        if (changed.wait_for(lock, std::chrono::seconds(1), [this] { return stopping; })) return;
        lock.unlock();
        result = join();
      }
      std::int64_t granted;
      {
        std::lock_guard guard(mutex);
        granted = lease;
      }
      announcer.relet(granted);
      if (owner) owner->reclaim(/*workers_running=*/true);
      spdlog::info("event=cluster_joined node={} lease={}", cluster.node_id, granted);
      lock.lock();
    }
  }
};

Cluster::Cluster(broker::Broker& broker, const config::Config& config, std::string version)
    : impl_(std::make_unique<Impl>(broker, config, std::move(version))) {}

Cluster::~Cluster() {
  stop();
}

void Cluster::attach() {
  impl_->broker.index().set_filter_observer(&impl_->announcer);
}

std::optional<std::string> Cluster::start(store::Store* store) {
  Impl& c = *impl_;
  const config::ClusterConfig& cluster = c.cluster;
  if (cluster.etcd.managed) {
    c.managed = std::make_unique<ManagedEtcd>(cluster.etcd, c.storage_dir);
    if (auto failed = c.managed->start()) return failed;
  }
  EtcdClient::Options options;
  options.endpoints = cluster.etcd.endpoints;
  options.ca_file = cluster.etcd.ca_file;
  options.cert_file = cluster.etcd.cert_file;
  options.key_file = cluster.etcd.key_file;
  options.timeout = std::chrono::milliseconds(cluster.etcd.dial_timeout_ms);
  c.etcd = std::make_unique<EtcdClient>(options);
  if (!c.etcd->setup_error().empty()) return c.etcd->setup_error();

  Credentials credentials;
  if (auto failed = make_credentials(cluster, credentials)) return failed;
  c.forwarder = std::make_unique<Forwarder>(c.broker, cluster, credentials.channel);
  c.broker.set_sink(broker::TargetKind::kNode, c.forwarder.get());
  c.service = std::make_unique<PeerService>(c.broker, cluster);
  const bool replicating =
      std::any_of(c.config.queues.begin(), c.config.queues.end(),
                  [](const config::QueueConfig& queue) { return queue.replication.factor > 1; });
  if (replicating) {
    // Every group's Raft channels to a node ride one stream, on the channel
    // (and under the TLS) the node's other calls use.
    c.raft_links = std::make_unique<PeerRaftLinks>(
        cluster.node_id,
        [&c, credentials =
                 credentials.channel](const std::string& node) -> std::shared_ptr<grpc::Channel> {
          std::string advertise;
          {
            std::lock_guard lock(c.mutex);
            const auto it = c.nodes.find(node);
            if (it == c.nodes.end() || !it->second.up) return nullptr;
            advertise = it->second.advertise;
          }
          return peer_channel(advertise, credentials);
        },
        std::chrono::milliseconds(cluster.raft.link_stuck_ms));
    c.service->set_raft_links(c.raft_links.get());
  }
  c.service->set_barrier([&c](std::int64_t revision, const std::string& holder,
                              std::chrono::steady_clock::time_point deadline) {
    return c.barrier(revision, holder, deadline);
  });
  if (auto failed = c.service->start(credentials.server)) return failed;

  // Before the lease is taken: losing it tells the owner.
  SessionOwner::Membership membership;
  membership.address_of = [&c](const std::string& id) -> std::optional<std::string> {
    std::lock_guard lock(c.mutex);
    const auto it = c.nodes.find(id);
    if (it == c.nodes.end() || !it->second.up) return std::nullopt;
    return it->second.advertise;
  };
  membership.lease = [&c]() -> std::int64_t {
    std::lock_guard lock(c.mutex);
    return c.joined ? c.lease : 0;
  };
  membership.others = [&c] { return c.other_members(); };
  membership.barrier = [&c](std::int64_t revision, const std::string& holder,
                            std::chrono::steady_clock::time_point deadline) {
    return c.barrier(revision, holder, deadline);
  };
  c.owner = std::make_unique<SessionOwner>(c.broker, c.cluster, *c.etcd, c.announcer,
                                           credentials.channel, std::move(membership));
  c.broker.set_session_directory(c.owner.get());
  c.service->set_session_taken([&c](const std::string& client_id) { c.owner->forget(client_id); });

  // etcd may still be electing a leader (a managed member waits for its
  // peers to start): keep trying for a minute.
  // The node key may still be there from this node's previous run (killed
  // within its lease): wait for that lease to run out. Held for longer than
  // a lease, it is another process's: two nodes with one id would take each
  // other's messages, so this one does not start.
  // etcd lets a lease live past its TTL when its leader changes (a cluster
  // starting up), so "held longer than a lease" means two TTLs and more.
  const auto held_too_long = std::chrono::seconds(2 * cluster.lease_ttl_s + 5);
  const auto deadline = std::chrono::steady_clock::now() +
                        std::max<std::chrono::seconds>(std::chrono::seconds(60),
                                                       held_too_long + std::chrono::seconds(5));
  std::optional<std::chrono::steady_clock::time_point> taken_since;
  EtcdResult joined;
  while (true) {
    bool taken = false;
    joined = c.join(/*exclusive=*/true, &taken);
    if (joined.ok) break;
    const auto now = std::chrono::steady_clock::now();
    if (taken && !taken_since) taken_since = now;
    if (taken && now - *taken_since > held_too_long)
      return "another node has cluster.node_id " + cluster.node_id + ": " + joined.error;
    if (now >= deadline) return "cannot join the cluster through etcd: " + joined.error;
    std::this_thread::sleep_for(std::chrono::milliseconds(250));
  }
  std::int64_t lease;
  {
    std::lock_guard lock(c.mutex);
    lease = c.lease;
  }
  c.announcer.start(*c.etcd, lease);
  c.relet_thread = std::thread([&c] { c.relet(); });
  c.etcd->watch_prefix(
      keys::kNodes, [&c](const EtcdClient::Range& range) { c.nodes_snapshot(range); },
      [&c](const std::vector<WatchEvent>& events, std::int64_t) { c.nodes_changed(events); });
  c.etcd->watch_prefix(
      keys::kRoutes, [&c](const EtcdClient::Range& range) { c.routes_snapshot(range); },
      [&c](const std::vector<WatchEvent>& events, std::int64_t revision) {
        c.routes_changed(events, revision);
      });
  log_test_pauses();
  c.owner->start();
  {
    std::unique_lock lock(c.mutex);
    if (!c.changed.wait_for(lock, std::chrono::seconds(30),
                            [&c] { return c.nodes_known && c.routes_known; }))
      return std::string("etcd did not list the cluster's nodes and routes within 30 s");
  }
  // Every queue's home, this node claiming those nobody has, before any
  // publish to a queue comes; the capture filters of the queues homed here
  // are routes from then on.
  c.queue_homes = std::make_unique<QueueHomes>(
      c.broker, cluster.node_id, *c.etcd, *c.forwarder, c.announcer,
      [&c](const std::string& id) -> std::uint16_t {
        std::lock_guard lock(c.mutex);
        const auto it = c.nodes.find(id);
        return it != c.nodes.end() && it->second.up ? it->second.number : 0;
      });
  if (replicating) {
    if (store == nullptr) return std::string("replicated queues need storage.dir");
    QueueReplicas::Membership replica_membership;
    replica_membership.up_nodes = [&c] {
      std::vector<std::string> up;
      for (auto& [id, advertise] : c.other_members())
        up.push_back(id);
      return up;
    };
    replica_membership.lease = [&c]() -> std::int64_t {
      std::lock_guard lock(c.mutex);
      return c.joined ? c.lease : 0;
    };
    c.replicas = std::make_unique<QueueReplicas>(c.broker, c.config, *c.etcd, *c.raft_links, *store,
                                                 std::move(replica_membership));
    c.queue_homes->set_replicas(c.replicas.get());
    if (auto failed = c.replicas->start()) return failed;
  }
  if (auto failed = c.queue_homes->start()) return failed;
  c.broker.set_queue_placement(c.queue_homes.get());
  if (!c.announcer.wait_written(std::chrono::milliseconds(cluster.etcd.dial_timeout_ms)))
    spdlog::warn("event=routes_not_written note=\"etcd is slow: some routes are announced late\"");
  // Retained messages as the others hold them, before any client comes.
  const auto others = c.other_members();
  const RetainedCatchUp caught = catch_up_retained(
      c.broker, cluster.node_id, others, credentials.channel,
      std::chrono::milliseconds(cluster.session_takeover_timeout_ms) + std::chrono::seconds(10));
  if (caught.done) {
    spdlog::info("event=retained_caught_up from={} set={} deleted={}", caught.from, caught.set,
                 caught.deleted);
  } else if (!others.empty()) {
    spdlog::warn(
        "event=retained_not_caught_up note=\"no other node answered: this node keeps "
        "the retained messages it had\"");
  }
  // Stored sessions restored from this node's store are its own again, or
  // end if another node took them while this one was away.
  c.owner->reclaim(/*workers_running=*/false);
  std::lock_guard lock(c.mutex);
  spdlog::info("event=cluster_joined node={} lease={} nodes={} advertise={}", cluster.node_id,
               lease, c.nodes.size() + 1, cluster.advertise);
  return std::nullopt;
}

void Cluster::accept_forwards() {
  if (impl_->service) impl_->service->accept();
}

void Cluster::leave() {
  Impl& c = *impl_;
  if (!c.etcd) return;
  std::int64_t lease;
  {
    std::lock_guard lock(c.mutex);
    if (c.left) return;
    c.left = true;
  }
  // While this node is still a member the others forward to: the groups it
  // leads move before it goes, rather than an election timeout after.
  if (c.replicas) c.replicas->hand_over_leaderships();
  {
    std::lock_guard lock(c.mutex);
    c.stopping = true;
    lease = c.joined ? c.lease : 0;
    c.joined = false;
  }
  c.changed.notify_all();
  if (c.relet_thread.joinable()) c.relet_thread.join();
  if (c.owner) c.owner->stop();
  c.announcer.stop();
  c.etcd->stop_keepalive();
  // Revoking the lease deletes this node's keys at once: the others stop
  // forwarding here without waiting for it to run out.
  if (lease != 0) {
    if (const EtcdResult result = c.etcd->revoke_lease(lease); !result.ok)
      spdlog::warn("event=cluster_leave_failed error=\"{}\"", result.error);
  }
  spdlog::info("event=cluster_left node={}", c.cluster.node_id);
}

void Cluster::stop() {
  Impl& c = *impl_;
  leave();
  if (c.etcd) c.etcd->cancel_watches();
  if (c.owner) {
    c.owner->stop();
    c.broker.set_session_directory(nullptr);
  }
  // The replicas' members close while their streams still run, then the
  // links end the streams the server carries, then the server stops.
  if (c.replicas) c.replicas->stop();
  if (c.queue_homes) {
    c.queue_homes->stop();
    c.broker.set_queue_placement(nullptr);
  }
  if (c.raft_links) c.raft_links->stop();
  if (c.service) c.service->stop();
  if (c.forwarder) c.forwarder->stop();
  c.etcd.reset();
  if (c.managed) c.managed->stop();
}

broker::ClusterView Cluster::view() const {
  const Impl& c = *impl_;
  broker::ClusterView view;
  view.enabled = true;
  view.node_id = c.cluster.node_id;
  view.lease_ttl_s = c.cluster.lease_ttl_s;
  view.local_routes = c.announcer.announced();
  view.received = c.service ? c.service->received() : 0;
  if (c.owner) {
    view.sessions_owned = c.owner->owned();
    view.takeovers = c.owner->takeovers();
    view.ownership_conflicts = c.owner->conflicts();
  }
  {
    std::lock_guard lock(c.mutex);
    view.joined = c.joined;
    view.lease_id = c.lease;
    view.lease_losses = c.lease_losses;
    broker::ClusterNodeView self;
    self.id = c.cluster.node_id;
    self.advertise = c.cluster.advertise;
    self.version = c.version;
    self.this_node = true;
    self.up = c.joined;
    self.routes = view.local_routes;
    view.nodes.push_back(std::move(self));
    for (const auto& [id, node] : c.nodes) {
      broker::ClusterNodeView other;
      other.id = id;
      other.advertise = node.advertise;
      other.version = node.version;
      other.up = node.up;
      other.routes = node.routes.size();
      view.nodes.push_back(std::move(other));
    }
  }
  if (c.queue_homes) {
    for (auto& [name, home] : c.queue_homes->homes())
      view.queue_homes.emplace_back(name, home);
  }
  if (c.replicas) view.replicas = c.replicas->describe();
  if (c.forwarder) c.forwarder->describe(view);
  return view;
}

}  // namespace sluice::cluster
