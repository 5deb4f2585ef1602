#include "cluster/session_owner.hpp"

#include <grpcpp/grpcpp.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <array>
#include <condition_variable>
#include <deque>
#include <future>
#include <map>
#include <mutex>
#include <thread>
#include <unordered_map>
#include <vector>

#include "broker/client_protocol.hpp"
#include "broker/session_handover.hpp"
#include "broker/shard.hpp"
#include "cluster/etcd_client.hpp"
#include "cluster/handover_codec.hpp"
#include "cluster/keys.hpp"
#include "cluster/on_worker.hpp"
#include "cluster/peer_channel.hpp"
#include "cluster/route_announcer.hpp"
#include "cluster/test_pause.hpp"
#include "peer.grpc.pb.h"

namespace sluice::cluster {

namespace {

using Outcome = broker::SessionDirectory::Outcome;
using mqtt::ReasonCode;

constexpr std::size_t kPoolThreads = 4;
constexpr int kClaimAttempts = 4;
// How long a task on a worker may take before the pool gives up on it (the
// workers are stopping, or stuck).
constexpr auto kWorkerDeadline = std::chrono::seconds(5);

Outcome refused(ReasonCode reason, std::string why) {
  Outcome outcome;
  outcome.refusal = reason;
  outcome.reason = std::move(why);
  return outcome;
}

Outcome owned_here() {
  Outcome outcome;
  outcome.owned = true;
  return outcome;
}

}  // namespace

struct SessionOwner::Impl {
  Impl(broker::Broker& b, const config::ClusterConfig& c, EtcdClient& e, RouteAnnouncer& a,
       std::shared_ptr<grpc::ChannelCredentials> credentials, Membership m)
      : broker(b),
        config(c),
        etcd(e),
        announcer(a),
        channel_credentials(std::move(credentials)),
        membership(std::move(m)) {}

  broker::Broker& broker;
  const config::ClusterConfig& config;
  EtcdClient& etcd;
  RouteAnnouncer& announcer;
  std::shared_ptr<grpc::ChannelCredentials> channel_credentials;
  Membership membership;

  std::atomic<bool> accepting{false};
  std::atomic<std::uint64_t> takeovers{0};
  std::atomic<std::uint64_t> conflicts{0};

  std::mutex mutex;
  std::condition_variable wake;
  std::deque<std::function<void()>> tasks;
  bool stopping = false;
  std::vector<std::thread> pool;
  // The revision of each key this node wrote last: what its own later
  // writes compare against.
  std::unordered_map<std::string, std::int64_t> owned;
  // Keys this node is writing now: how many writes, and the newest
  // revision another node wrote meanwhile (the watch can report that write
  // before this node's own transaction has returned).
  struct Writing {
    int writes = 0;
    std::int64_t newest_elsewhere = 0;
  };
  std::unordered_map<std::string, Writing> writing;
  // Claims under way, by client id (claim_started).
  std::unordered_map<std::string, int> claiming;
  std::map<std::string, std::unique_ptr<Peer::Stub>> stubs;  // by address
  std::array<std::mutex, 64> stripes;                        // serial()

  // ---- the pool ----
  void post(std::function<void()> task) {
    {
      std::lock_guard lock(mutex);
      if (stopping) return;
      tasks.push_back(std::move(task));
    }
    wake.notify_one();
  }

  void run_pool() {
    std::unique_lock lock(mutex);
    while (true) {
      wake.wait(lock, [this] { return stopping || !tasks.empty(); });
      if (stopping) return;
      std::function<void()> task = std::move(tasks.front());
      tasks.pop_front();
      lock.unlock();
      task();
      lock.lock();
    }
  }

  bool is_stopping() {
    std::lock_guard lock(mutex);
    return stopping;
  }

  // Runs `task(shard)` on the worker of `shard` and waits for it
  // (cluster/on_worker.hpp); false when it did not start in time.
  template <class Task>
  bool on_worker(std::uint32_t shard, Task&& task) {
    return run_on_worker(broker, shard, task, std::chrono::steady_clock::now() + kWorkerDeadline,
                         [this] { return is_stopping(); });
  }

  // Hands the outcome to the connection, on its worker, where the session
  // is made. Another node may have taken the key after the claim was
  // decided and before then: the watch found no session here to close, so
  // the claim is refused instead (a client may try again). Checked on the
  // worker, so a takeover noted after the check posts its close behind
  // this task, and finds the session.
  void finish(const Request& request, std::function<void(Outcome)> done, Outcome outcome) {
    broker::Mailbox* mailbox = broker.mailbox();
    if (mailbox == nullptr) return claim_ended(request.client_id);
    mailbox->post_task(request.shard, [this, client_id = request.client_id, done = std::move(done),
                                       outcome = std::move(outcome)]() mutable {
      if (outcome.owned && !still_owned(client_id)) {
        spdlog::info(
            "event=session_claim_superseded client_id=\"{}\" note=\"another node took the key "
            "after this node's claim was decided\"",
            client_id);
        outcome = refused(ReasonCode::kServerBusy, "the client id was claimed on another node");
      }
      done(std::move(outcome));
      claim_ended(client_id);
    });
  }

  // Not when the lease is gone: that closes every connection anyway, and
  // keeps the sessions for the next reclaim.
  bool still_owned(const std::string& client_id) {
    std::lock_guard lock(mutex);
    return !accepting.load() || owned.contains(client_id);
  }

  // A claim from its start to its outcome on the worker: ended() leaves
  // the key alone meanwhile, since the session it looks for is not made
  // yet.
  void claim_started(const std::string& client_id) {
    std::lock_guard lock(mutex);
    ++claiming[client_id];
  }

  void claim_ended(const std::string& client_id) {
    std::lock_guard lock(mutex);
    if (--claiming[client_id] == 0) claiming.erase(client_id);
  }

  // ---- etcd ----
  void begin_write(const std::string& client_id) {
    std::lock_guard lock(mutex);
    ++writing[client_id].writes;
  }

  // Notes the key as this node's at `revision` (when `won`), unless the
  // watch saw another node write it later while the transaction was out:
  // false then.
  bool end_write(const std::string& client_id, bool won, std::int64_t revision) {
    std::lock_guard lock(mutex);
    const auto it = writing.find(client_id);
    const std::int64_t newer_elsewhere = it->second.newest_elsewhere;
    if (--it->second.writes == 0) writing.erase(it);
    if (!won || newer_elsewhere > revision) return false;
    owned[client_id] = revision;
    return true;
  }

  // Puts this node's id in the key if it still is at `revision` (0: absent).
  // `current` is what the key holds afterwards.
  EtcdResult write_owner(const std::string& client_id, std::int64_t revision, bool& won,
                         std::optional<KeyValue>& current) {
    const std::int64_t lease = membership.lease();
    if (lease == 0) return EtcdResult::failed("this node holds no lease");
    begin_write(client_id);
    const EtcdResult result = etcd.compare_and_put(keys::session(client_id), revision,
                                                   config.node_id, lease, won, current);
    if (result.ok && won) test_pause("claim_won", config.node_id);
    const bool noted =
        end_write(client_id, result.ok && won && current, current ? current->mod_revision : 0);
    if (result.ok && won && current && !noted) {
      // Won, and already taken by another node since: lost after all, its
      // holder unknown here until read again.
      spdlog::info("event=session_write_overtaken client_id=\"{}\" revision={}", client_id,
                   current->mod_revision);
      won = false;
      current.reset();
    }
    if (result.ok && !won) conflicts.fetch_add(1, std::memory_order_relaxed);
    return result;
  }

  // ---- the other node ----
  Peer::Stub& stub(const std::string& address) {
    std::lock_guard lock(mutex);
    auto& stub = stubs[address];
    if (!stub) stub = Peer::NewStub(peer_channel(address, channel_credentials));
    return *stub;
  }

  // The whole takeover timeout, waiting for a connection if there is none
  // yet (a node redialled after a blip): only a node that stays silent that
  // long is taken for dead.
  void set_deadline(grpc::ClientContext& context) const {
    context.set_deadline(std::chrono::system_clock::now() +
                         std::chrono::milliseconds(config.session_takeover_timeout_ms));
    context.set_wait_for_ready(true);
  }

  // ---- a claim ----
  // Claims and ends of one client id on this node run one at a time: an
  // end that finds no session deletes the key, a claim that finds it ours
  // keeps it, and the two never interleave.
  std::mutex& serial(const std::string& client_id) {
    return stripes[std::hash<std::string>{}(client_id) % stripes.size()];
  }

  Outcome run_claim(const Request& request) {
    if (!accepting.load())
      return refused(ReasonCode::kServerUnavailable, "this node is not in the cluster now");
    const std::string& client_id = request.client_id;
    std::lock_guard one_at_a_time(serial(client_id));
    {
      // Ours, and no node has said otherwise (the watch would have): no
      // round trip to etcd for a client coming back to the same node.
      std::lock_guard lock(mutex);
      if (owned.contains(client_id)) return owned_here();
    }
    // The local member's view first: it saves a failed transaction when
    // another node holds the key; if it is behind, the transaction says so.
    std::optional<KeyValue> current;
    EtcdResult result = etcd.get_local(keys::session(client_id), current);
    if (!result.ok) return refused(ReasonCode::kServerUnavailable, "etcd: " + result.error);
    for (int attempt = 0; attempt < kClaimAttempts; ++attempt) {
      bool won = false;
      if (!current) {
        result = write_owner(client_id, 0, won, current);
        if (!result.ok) return refused(ReasonCode::kServerUnavailable, "etcd: " + result.error);
        if (won) return owned_here();
        if (!current) continue;  // deleted meanwhile
      }
      const std::string holder = current->value;
      const std::int64_t revision = current->mod_revision;
      std::optional<std::string> address;
      if (holder != config.node_id) address = membership.address_of(holder);
      bool prepared = false;
      std::int64_t routes_revision = 0;
      if (holder == config.node_id) {
        // Ours in etcd though not noted here (its earlier session was
        // ending): written again, so that this node knows its revision.
      } else if (!address) {
        spdlog::warn(
            "event=session_owner_gone client_id=\"{}\" node={} note=\"its node left the cluster: "
            "a session it held only in its own store starts afresh here\"",
            client_id, holder);
      } else {
        const auto taken = take_from(request, holder, *address);
        if (taken.refusal) return *taken.refusal;
        prepared = taken.prepared;
        routes_revision = taken.routes_revision;
      }
      result = write_owner(client_id, revision, won, current);
      if (!result.ok || !won) {
        if (prepared)
          on_worker(request.shard,
                    [&](broker::Shard& shard) { broker::abandon_arrival(shard, client_id); });
        if (!result.ok) return refused(ReasonCode::kServerUnavailable, "etcd: " + result.error);
        continue;  // another node claimed it first: try again with what it wrote
      }
      if (prepared) {
        settle_routes(routes_revision, holder);
        return complete(request, *address, holder);
      }
      return owned_here();
    }
    return refused(ReasonCode::kServerBusy, "the client id is being claimed on another node");
  }

  // Asks the holder to close its connection and name the session's
  // subscriptions, which this node takes up (prepare_arrival). Not
  // prepared when the holder has no such session or did not answer.
  struct Taken {
    bool prepared = false;
    std::int64_t routes_revision = 0;  // where this node's routes for it are in etcd
    std::optional<Outcome> refusal;
  };
  Taken take_from(const Request& request, const std::string& holder, const std::string& address) {
    const std::string& client_id = request.client_id;
    TakeSessionRequest take;
    take.set_client_id(client_id);
    take.set_from_node(config.node_id);
    take.set_has_identity(request.identity.has_value());
    if (request.identity) take.set_identity(*request.identity);
    take.set_clean_start(request.clean_start);
    TakeSessionReply reply;
    grpc::ClientContext context;
    set_deadline(context);
    const grpc::Status status = stub(address).TakeSession(&context, take, &reply);
    Taken taken;
    if (!status.ok()) {
      spdlog::warn(
          "event=session_takeover_unanswered client_id=\"{}\" node={} error=\"{}\" "
          "note=\"a session it held only in its own store starts afresh here\"",
          client_id, holder, status.error_message());
      return taken;
    }
    if (reply.outcome() == TakeSessionReply::REFUSED) {
      taken.refusal =
          refused(ReasonCode::kNotAuthorized, "the client id's session belongs to another user");
      return taken;
    }
    if (reply.outcome() != TakeSessionReply::TAKEN) return taken;
    std::size_t skipped = 0;
    auto subscriptions = take_subscriptions(reply.subscriptions(), skipped);
    bool made = false;
    const bool ran = on_worker(request.shard, [&](broker::Shard& shard) {
      made = broker::prepare_arrival(shard, client_id, subscriptions, request.stored);
    });
    if (!ran) {
      taken.refusal = refused(ReasonCode::kServerUnavailable, "this node is stopping");
    } else if (!made) {
      taken.refusal = refused(ReasonCode::kQuotaExceeded, "too many sessions");
    } else {
      taken.prepared = true;
      // The old node lets go of its subscriptions only after this node's
      // are in etcd: publishers see one node or both, never neither.
      const auto written =
          announcer.wait_written(std::chrono::milliseconds(config.session_takeover_timeout_ms));
      if (!written) spdlog::warn("event=session_routes_slow client_id=\"{}\"", client_id);
      taken.routes_revision = written.value_or(0);
    }
    return taken;
  }

  // Every node routes by this node's routes for the session, and what they
  // had sent the old holder has arrived there, before it lets go: then no
  // message for the session is still on its way to the old copy. A node
  // that does not answer in time is logged and not waited for.
  // All at once, this node's own part included.
  void settle_routes(std::int64_t revision, const std::string& holder) {
    const auto timeout = std::chrono::milliseconds(config.session_takeover_timeout_ms);
    std::vector<std::future<void>> waits;
    for (const auto& [id, address] : membership.others()) {
      waits.push_back(
          std::async(std::launch::async, [this, revision, holder, id = id, address = address] {
            BarrierRequest barrier;
            barrier.set_revision(revision);
            barrier.set_holder(holder);
            BarrierReply reply;
            grpc::ClientContext context;
            set_deadline(context);
            const grpc::Status status = stub(address).Barrier(&context, barrier, &reply);
            if (!status.ok())
              spdlog::warn("event=session_barrier_failed node={} error=\"{}\"", id,
                           status.error_message());
          }));
    }
    if (!membership.barrier(revision, holder, std::chrono::steady_clock::now() + timeout))
      spdlog::warn("event=session_barrier_failed node={} error=\"not settled in time\"",
                   config.node_id);
    for (std::future<void>& wait : waits)
      wait.wait();
  }

  // This node owns the session now: the old one hands over what it held.
  Outcome complete(const Request& request, const std::string& address, const std::string& holder) {
    const std::string& client_id = request.client_id;
    ReleaseSessionRequest release;
    release.set_client_id(client_id);
    release.set_from_node(config.node_id);
    ReleaseSessionReply reply;
    grpc::ClientContext context;
    set_deadline(context);
    const grpc::Status status = stub(address).ReleaseSession(&context, release, &reply);
    if (!status.ok()) {
      spdlog::warn(
          "event=session_release_failed client_id=\"{}\" node={} error=\"{}\" note=\"the session "
          "goes on with its subscriptions; what it had queued there is not here\"",
          client_id, holder, status.error_message());
    }
    std::size_t skipped = 0;
    broker::HandedSession handed =
        take_session(reply, broker::Clock::now(), broker.config(), skipped);
    if (skipped != 0)
      spdlog::warn("event=session_handover_skipped client_id=\"{}\" node={} items={}", client_id,
                   holder, skipped);
    const std::size_t messages = handed.outbound.size();
    auto stored = std::make_shared<std::promise<bool>>();
    std::future<bool> durable = stored->get_future();
    const bool ran = on_worker(request.shard, [&](broker::Shard& shard) {
      broker::complete_arrival(shard, client_id, std::move(handed),
                               [stored](bool ok) { stored->set_value(ok); });
    });
    if (!ran || durable.wait_for(kWorkerDeadline) != std::future_status::ready || !durable.get())
      return refused(ReasonCode::kUnspecifiedError, "the session could not be stored");
    takeovers.fetch_add(1, std::memory_order_relaxed);
    spdlog::info("event=session_taken_over client_id=\"{}\" from={} messages={}", client_id, holder,
                 messages);
    return owned_here();
  }

  // ---- the keys of others ----
  // `revision`: the key's, as the watch saw it. An event older than this
  // node's own last write (a watch catching up) changes nothing.
  void owner_changed(const std::string& client_id, const std::string& holder,
                     std::int64_t revision) {
    if (holder == config.node_id) return;
    {
      std::lock_guard lock(mutex);
      const auto it = owned.find(client_id);
      if (it == owned.end()) {
        if (const auto w = writing.find(client_id); w != writing.end())
          w->second.newest_elsewhere = std::max(w->second.newest_elsewhere, revision);
        return;
      }
      if (it->second >= revision) return;
      owned.erase(it);
    }
    spdlog::info("event=session_owned_elsewhere client_id=\"{}\" node={}", client_id, holder);
    if (broker::Mailbox* mailbox = broker.mailbox()) {
      const std::uint32_t shard = broker.shard_for_client(client_id);
      mailbox->post_task(
          shard, [this, shard, client_id] { broker::dispossess(broker.shard(shard), client_id); });
    }
  }
};

SessionOwner::SessionOwner(broker::Broker& broker, const config::ClusterConfig& config,
                           EtcdClient& etcd, RouteAnnouncer& announcer,
                           std::shared_ptr<grpc::ChannelCredentials> credentials,
                           Membership membership)
    : impl_(std::make_unique<Impl>(broker, config, etcd, announcer, std::move(credentials),
                                   std::move(membership))) {}

SessionOwner::~SessionOwner() {
  stop();
}

void SessionOwner::forget(const std::string& client_id) {
  std::lock_guard lock(impl_->mutex);
  impl_->owned.erase(client_id);
}

void SessionOwner::start() {
  Impl& o = *impl_;
  for (std::size_t i = 0; i < kPoolThreads; ++i)
    o.pool.emplace_back([&o] { o.run_pool(); });
  o.etcd.watch_prefix(
      keys::kSessions,
      [&o](const EtcdClient::Range& range) {
        std::unordered_map<std::string, std::int64_t> present;
        for (const KeyValue& kv : range.kvs) {
          const auto id = keys::parse_session(kv.key);
          if (!id) continue;
          present.emplace(*id, kv.mod_revision);
          o.owner_changed(*id, kv.value, kv.mod_revision);
        }
        // A key gone while the watch was away (a compaction made it read
        // everything again): this node owns nothing there any more.
        std::lock_guard lock(o.mutex);
        std::erase_if(o.owned, [&](const auto& entry) {
          return !present.contains(entry.first) && entry.second < range.revision;
        });
      },
      [&o](const std::vector<WatchEvent>& events, std::int64_t) {
        for (const WatchEvent& event : events) {
          if (event.deleted) continue;
          if (const auto id = keys::parse_session(event.kv.key))
            o.owner_changed(*id, event.kv.value, event.kv.mod_revision);
        }
      });
}

void SessionOwner::reclaim(bool workers_running) {
  Impl& o = *impl_;
  std::vector<std::pair<std::uint32_t, std::string>> held;
  for (std::uint32_t shard = 0; shard < o.broker.shard_count(); ++shard) {
    std::vector<std::string> ids;
    const auto list = [&ids](broker::Shard& s) { ids = broker::session_ids(s); };
    if (workers_running) {
      if (!o.on_worker(shard, list)) continue;
    } else {
      list(o.broker.shard(shard));
    }
    for (std::string& id : ids)
      held.emplace_back(shard, std::move(id));
  }
  std::size_t kept = 0, lost = 0;
  for (const auto& [shard, client_id] : held) {
    bool won = false;
    std::optional<KeyValue> current;
    EtcdResult result = o.write_owner(client_id, 0, won, current);
    if (result.ok && !won && current && current->value == o.config.node_id)
      result = o.write_owner(client_id, current->mod_revision, won, current);
    if (!result.ok) {
      spdlog::warn("event=session_reclaim_failed client_id=\"{}\" error=\"{}\"", client_id,
                   result.error);
      continue;
    }
    if (won) {
      ++kept;
      continue;
    }
    ++lost;
    spdlog::warn("event=session_owned_elsewhere client_id=\"{}\" node={}", client_id,
                 current ? current->value : std::string("?"));
    const auto end = [&client_id](broker::Shard& s) { broker::dispossess(s, client_id); };
    if (workers_running) {
      o.on_worker(shard, end);
    } else {
      end(o.broker.shard(shard));
    }
  }
  if (!held.empty())
    spdlog::info("event=sessions_reclaimed kept={} owned_elsewhere={}", kept, lost);
  // Not if the lease was lost again meanwhile: the next reclaim says when.
  if (o.membership.lease() != 0) o.accepting.store(true);
}

void SessionOwner::lease_lost() {
  Impl& o = *impl_;
  o.accepting.store(false);
  {
    std::lock_guard lock(o.mutex);
    o.owned.clear();
  }
  broker::Mailbox* mailbox = o.broker.mailbox();
  if (mailbox == nullptr) return;
  for (std::uint32_t shard = 0; shard < o.broker.shard_count(); ++shard) {
    mailbox->post_task(shard, [&o, shard] {
      broker::Shard& s = o.broker.shard(shard);
      for (const std::string& id : broker::session_ids(s)) {
        broker::Session* session = s.find_session(id);
        if (session != nullptr && session->owner() != nullptr)
          session->owner()->on_cluster_unavailable();
      }
    });
  }
}

void SessionOwner::stop() {
  Impl& o = *impl_;
  {
    std::lock_guard lock(o.mutex);
    o.stopping = true;
  }
  o.wake.notify_all();
  for (std::thread& thread : o.pool)
    if (thread.joinable()) thread.join();
  o.pool.clear();
}

bool SessionOwner::serving() const {
  return impl_->accepting.load();
}

void SessionOwner::claim(Request request, std::function<void(Outcome)> done) {
  Impl& o = *impl_;
  o.claim_started(request.client_id);
  o.post([&o, request = std::move(request), done = std::move(done)]() mutable {
    Outcome outcome = o.run_claim(request);
    test_pause("claim_decided", o.config.node_id);
    o.finish(request, std::move(done), std::move(outcome));
  });
}

void SessionOwner::ended(const std::string& client_id) {
  Impl& o = *impl_;
  o.post([&o, client_id] {
    std::lock_guard one_at_a_time(o.serial(client_id));
    std::int64_t revision;
    {
      std::lock_guard lock(o.mutex);
      const auto it = o.owned.find(client_id);
      // A claim under way keeps the key for the session it is making.
      if (it == o.owned.end() || o.claiming.contains(client_id)) return;
      revision = it->second;
    }
    // A new session of this id may have been made since: it keeps the key.
    bool present = true;
    const std::uint32_t shard = o.broker.shard_for_client(client_id);
    if (!o.on_worker(shard,
                     [&](broker::Shard& s) { present = s.find_session(client_id) != nullptr; }) ||
        present)
      return;
    bool won = false;
    if (!o.etcd.compare_and_erase(keys::session(client_id), revision, won).ok || !won) return;
    std::lock_guard lock(o.mutex);
    if (const auto it = o.owned.find(client_id); it != o.owned.end() && it->second == revision)
      o.owned.erase(it);
  });
}

std::uint64_t SessionOwner::takeovers() const {
  return impl_->takeovers.load(std::memory_order_relaxed);
}

std::uint64_t SessionOwner::conflicts() const {
  return impl_->conflicts.load(std::memory_order_relaxed);
}

std::uint64_t SessionOwner::owned() const {
  std::lock_guard lock(impl_->mutex);
  return impl_->owned.size();
}

}  // namespace sluice::cluster
