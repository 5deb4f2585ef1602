#include "cluster/queue_replicas.hpp"

#include <fmt/ranges.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <deque>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "broker/queue_gateway.hpp"
#include "cluster/etcd_client.hpp"
#include "cluster/raft/raft_loop.hpp"
#include "cluster/raft/raft_member.hpp"
#include "cluster/replica_log.hpp"
#include "cluster/test_pause.hpp"
#include "queue/log_codec.hpp"
#include "queue/stable_hash.hpp"
#include "store/store.hpp"

namespace sluice::cluster {

namespace {

using json = nlohmann::json;
using Kind = broker::QueueHome::Kind;

const std::string kReplicas = "/sluice/replicas/";
const std::string kLeaders = "/sluice/leaders/";
// Entries of one group proposed and not yet committed, at most: what comes
// meanwhile waits and goes as one entry.
constexpr unsigned kMostEntriesInFlight = 4;
// An entry grows to this much, then another begins: a stream frame's
// channel buffers (peer_raft_links.cpp) hold several.
constexpr std::size_t kMostEntryBytes = 4u << 20;

std::size_t bytes_of(const store::WriteBatch& writes) {
  std::size_t bytes = 0;
  for (const store::WriteBatch::Operation& operation : writes.operations()) {
    if (const auto* put = std::get_if<store::WriteBatch::Put>(&operation)) {
      bytes += put->key.size() + put->value.size() + 9;
    } else if (const auto* erase = std::get_if<store::WriteBatch::Erase>(&operation)) {
      bytes += erase->key.size() + 5;
    } else if (const auto* range = std::get_if<store::WriteBatch::EraseRange>(&operation)) {
      bytes += range->from.size() + range->to.size() + 9;
    }
  }
  return bytes;
}

// The links tell groups apart by a number: the queue's name, hashed, never 0.
std::uint64_t group_number(std::string_view name) {
  const std::uint64_t hash = queue::stable_hash(name);
  return hash == 0 ? 1 : hash;
}

// A /sluice/replicas/ value's members; nullopt when it is not one.
std::optional<std::vector<std::string>> members_in(const std::string& value) {
  try {
    return json::parse(value).at("members").get<std::vector<std::string>>();
  } catch (const json::exception&) {
    return std::nullopt;
  }
}

// A /sluice/leaders/ value's node; empty when it is not one.
std::string leader_in(const std::string& value) {
  try {
    return json::parse(value).at("node").get<std::string>();
  } catch (const json::exception&) {
    return {};
  }
}

std::optional<std::string> read_key(EtcdClient& etcd, const std::string& key) {
  EtcdClient::Range range;
  if (!etcd.get_prefix(key, range).ok) return std::nullopt;
  for (const KeyValue& kv : range.kvs)
    if (kv.key == key) return kv.value;
  return std::nullopt;
}

}  // namespace

struct QueueReplicas::Group {
  std::string name;
  std::vector<std::string> queues;  // it and its dead-letter queue
  config::QueueReplication replication;
  std::vector<std::string> members;  // empty until placed
  std::unique_ptr<QueueLogMachine> machine;
  std::unique_ptr<raft::RaftMember> member;               // when this node is one of them
  bool leading = false;                                   // lead() was called; home here
  std::uint64_t leading_term = 0;                         // the term it leads in
  bool leader_key_written = false;                        // /sluice/leaders/<queue> names it
  std::chrono::steady_clock::time_point lead_again_at{};  // after lead() failed
  std::string leader;                                     // node id; empty: none known
  std::uint64_t leaderships = 0;
  std::chrono::steady_clock::time_point next_try{};
  // Writes waiting to be proposed, as entries to be, each with who waits
  // for it and the term whose leader made the writes (replicate).
  struct Batch {
    store::WriteBatch writes;
    std::vector<std::pair<std::uint32_t, std::function<void(bool)>>> waiting;
    std::size_t bytes = 0;
    std::uint64_t term = 0;
  };
  std::mutex batch_mutex;
  std::deque<Batch> batches;
  bool flush_posted = false;
  unsigned in_flight = 0;
};

QueueReplicas::QueueReplicas(broker::Broker& broker, const config::Config& config, EtcdClient& etcd,
                             raft::RaftLinks& links, store::Store& store, Membership membership)
    : broker_(broker),
      node_id_(config.cluster.node_id),
      raft_dir_(config.storage.dir + "/raft"),
      raft_timing_(config.cluster.raft),
      etcd_(etcd),
      links_(links),
      store_(store),
      membership_(std::move(membership)) {
  for (const config::QueueConfig& queue : config.queues) {
    if (queue.replication.factor <= 1) continue;
    auto group = std::make_unique<Group>();
    group->name = queue.name;
    group->queues.push_back(queue.name);
    if (std::string dead_letter = config::dead_letter_name(queue.name, queue.options);
        !dead_letter.empty())
      group->queues.push_back(std::move(dead_letter));
    group->replication = queue.replication;
    for (const std::string& name : group->queues)
      group_of_[name] = queue.name;
    groups_.emplace(queue.name, std::move(group));
  }
}

QueueReplicas::~QueueReplicas() {
  stop();
}

std::optional<std::string> QueueReplicas::start() {
  if (groups_.empty()) return std::nullopt;
  loop_ = std::make_unique<raft::RaftLoop>("raft-queues");
  loop_->start();
  EtcdClient::Range placed;
  if (const EtcdResult read = etcd_.get_prefix(kReplicas, placed); !read.ok)
    return "cannot read the queues' replicas from etcd: " + read.error;
  {
    std::unique_lock lock(mutex_);
    for (const KeyValue& kv : placed.kvs) {
      const auto it = groups_.find(std::string_view(kv.key).substr(kReplicas.size()));
      if (it == groups_.end()) continue;
      auto members = members_in(kv.value);
      if (!members) return "the replicas of queue '" + it->first + "' in etcd are unreadable";
      it->second->members = std::move(*members);
    }
  }
  for (auto& [name, group] : groups_) {
    if (group->members.empty()) continue;
    if (auto failed = start_member(*group)) return failed;
  }
  thread_ = std::thread([this] { run(); });
  return std::nullopt;
}

void QueueReplicas::hand_over_leaderships() {
  struct Leading {
    std::string name;
    std::vector<std::string> members;
    raft::RaftMember* member;  // stop() alone takes members away, after this
  };
  std::vector<Leading> leading;
  {
    std::shared_lock lock(mutex_);
    for (const auto& [name, group] : groups_)
      if (group->member && group->member->status().role == raft::RaftStatus::Role::kLeader)
        leading.push_back({name, group->members, group->member.get()});
  }
  if (leading.empty()) return;
  struct Outcome {
    std::mutex mutex;
    std::condition_variable done;
    std::size_t left = 0;
  };
  auto outcome = std::make_shared<Outcome>();
  outcome->left = leading.size();
  for (Leading& group : leading) {
    group.member->hand_over_leadership([outcome, name = std::move(group.name),
                                        members = std::move(group.members)](std::uint64_t leader) {
      if (leader >= 1 && leader <= members.size()) {
        spdlog::info("event=queue_leadership_handed_over queue=\"{}\" to={}", name,
                     members[leader - 1]);
      } else {
        spdlog::warn(
            "event=queue_leadership_not_handed_over queue=\"{}\" note=\"the other members elect "
            "a leader once this one is gone\"",
            name);
      }
      std::lock_guard lock(outcome->mutex);
      if (--outcome->left == 0) outcome->done.notify_all();
    });
  }
  // libraft gives up on a hand-over after an election timeout.
  // At most 10 s: a stop must not wait on it for minutes with wide timing.
  const auto wait = std::min(std::chrono::milliseconds(2 * raft_timing_.election_timeout_ms + 1000),
                             std::chrono::milliseconds(10'000));
  std::unique_lock lock(outcome->mutex);
  outcome->done.wait_for(lock, wait, [&] { return outcome->left == 0; });
}

void QueueReplicas::stop() {
  {
    std::lock_guard lock(wake_mutex_);
    if (stopping_) return;
    stopping_ = true;
  }
  wake_.notify_all();
  if (thread_.joinable()) thread_.join();
  std::vector<std::unique_ptr<raft::RaftMember>> members;
  {
    std::unique_lock lock(mutex_);
    for (auto& [name, group] : groups_) {
      group->leading = false;
      if (group->member) members.push_back(std::move(group->member));
    }
  }
  for (auto& member : members)
    member->close();
  if (loop_) loop_->stop();
  answer_waiters(/*all=*/true);
}

bool QueueReplicas::covers(std::string_view name) const {
  return group_of_.find(name) != group_of_.end();
}

QueueReplicas::Group* QueueReplicas::group_of(std::string_view name) const {
  const auto it = group_of_.find(name);
  if (it == group_of_.end()) return nullptr;
  return groups_.find(it->second)->second.get();
}

broker::QueueHome QueueReplicas::home_of(std::string_view name) const {
  std::shared_lock lock(mutex_);
  const Group* group = group_of(name);
  return group == nullptr ? broker::QueueHome{Kind::kUnclaimed, {}} : home_locked(*group);
}

broker::QueueHome QueueReplicas::home_locked(const Group& group) const {
  if (group.leader.empty()) return {Kind::kUnclaimed, {}};
  if (group.leader == node_id_) {
    // Led here, but served only once the queue layer read it back.
    return group.leading ? broker::QueueHome{Kind::kHere, {}}
                         : broker::QueueHome{Kind::kUnclaimed, {}};
  }
  return {Kind::kElsewhere, group.leader};
}

void QueueReplicas::when_led(std::uint32_t shard, std::string_view name,
                             std::function<void(broker::QueueHome)> done,
                             std::chrono::milliseconds wait) {
  if (!done) return;
  {
    std::unique_lock lock(mutex_);
    const auto it = group_of_.find(name);
    if (it != group_of_.end()) {
      waiters_.push_back(
          {shard, it->second, std::move(done), std::chrono::steady_clock::now() + wait});
      return;
    }
  }
  post(shard, [done = std::move(done)] { done({Kind::kUnclaimed, {}}); });
}

void QueueReplicas::replicate(std::uint32_t shard, std::string_view name,
                              store::WriteBatch&& writes, std::function<void(bool)> done) {
  Group* group = nullptr;
  std::uint64_t term = 0;
  {
    std::shared_lock lock(mutex_);
    Group* found = group_of(name);
    if (found != nullptr && found->leading) {
      group = found;
      term = found->leading_term;
    }
  }
  if (group == nullptr) {
    if (done) post(shard, [done = std::move(done)] { done(false); });
    return;
  }
  // Whatever comes while the group's earlier entries are on their way
  // becomes one entry (a group commit): a few entries in flight, each as
  // large as the load makes it, up to kMostEntryBytes. Taken in the order
  // the queue layer wrote (it calls under its lock), so the log keeps that
  // order. Each entry is proposed only in the term its writes were made in:
  // a leader that lost and won back its place never proposes what its old
  // memory decided.
  const std::size_t bytes = bytes_of(writes);
  bool flush_now = false;
  {
    std::lock_guard lock(group->batch_mutex);
    if (group->batches.empty() || group->batches.back().term != term ||
        group->batches.back().bytes + bytes > kMostEntryBytes) {
      group->batches.emplace_back();
      group->batches.back().term = term;
    }
    Group::Batch& batch = group->batches.back();
    batch.writes.append(std::move(writes));
    batch.bytes += bytes;
    batch.waiting.emplace_back(shard, std::move(done));
    if (!group->flush_posted && group->in_flight < kMostEntriesInFlight) {
      group->flush_posted = true;
      flush_now = true;
    }
  }
  if (flush_now && !loop_->post([this, group] { flush(*group); })) fail_batches(*group);
}

void QueueReplicas::flush(Group& group) {
  // On the loop's thread, where close() cannot run meanwhile: a member
  // taken here is not closed before its propose() has run.
  Group::Batch batch;
  bool more = false;
  {
    std::lock_guard lock(group.batch_mutex);
    group.flush_posted = false;
    if (group.batches.empty()) return;
    batch = std::move(group.batches.front());
    group.batches.pop_front();
    ++group.in_flight;
    // More waiting, and room for it: on the next turn.
    more = !group.batches.empty() && group.in_flight < kMostEntriesInFlight;
    if (more) group.flush_posted = true;
  }
  if (more && !loop_->post([this, &group] { flush(group); })) fail_batches(group);
  raft::RaftMember* member = nullptr;
  {
    std::shared_lock lock(mutex_);
    member = group.member.get();
  }
  auto answer = [this, &group, waiting = std::move(batch.waiting)](const raft::Proposed& proposed) {
    for (const auto& [shard, done] : waiting) {
      if (done) post(shard, [done = done, ok = proposed.committed] { done(ok); });
    }
    bool again = false;
    {
      std::lock_guard lock(group.batch_mutex);
      --group.in_flight;
      if (!group.batches.empty() && !group.flush_posted) {
        group.flush_posted = true;
        again = true;
      }
    }
    if (again && !loop_->post([this, &group] { flush(group); })) fail_batches(group);
  };
  if (member == nullptr) {
    raft::Proposed not_leader;
    not_leader.not_leader = true;
    answer(not_leader);
    return;
  }
  member->propose(encode_queue_writes(batch.writes), std::move(answer), batch.term);
}

void QueueReplicas::fail_batches(Group& group) {
  // The loop is stopping: nothing waiting will be proposed.
  std::deque<Group::Batch> failed;
  {
    std::lock_guard lock(group.batch_mutex);
    failed.swap(group.batches);
    group.flush_posted = false;
  }
  for (Group::Batch& batch : failed)
    for (auto& [shard, done] : batch.waiting)
      if (done) post(shard, [done = std::move(done)] { done(false); });
}

void QueueReplicas::post(std::uint32_t shard, std::function<void()> task) const {
  if (broker::Mailbox* mailbox = broker_.mailbox()) mailbox->post_task(shard, std::move(task));
}

std::optional<std::string> QueueReplicas::start_member(Group& group) {
  // Called without mutex_: the members are set and never change after.
  const auto self = std::find(group.members.begin(), group.members.end(), node_id_);
  if (self == group.members.end()) return std::nullopt;
  raft::RaftMemberConfig config;
  config.group = group_number(group.name);
  config.id = static_cast<std::uint64_t>(self - group.members.begin()) + 1;
  config.address = node_id_;
  config.directory = raft_dir_ + "/" + group.name;
  for (std::size_t i = 0; i < group.members.size(); ++i)
    config.voters.emplace_back(i + 1, group.members[i]);
  config.election_timeout_ms = raft_timing_.election_timeout_ms;
  config.heartbeat_ms = raft_timing_.heartbeat_ms;
  config.append_delay_ms = test_append_delay_ms(node_id_);
  // Each entry is one change of the queue; a snapshot is the whole queue.
  config.snapshot_threshold = raft_timing_.snapshot_entries;
  config.snapshot_trailing = raft_timing_.snapshot_trailing;
  if (!std::filesystem::exists(config.directory)) {
    if (auto refused = clear_leftovers(group)) return refused;
  }
  auto machine = std::make_unique<QueueLogMachine>(store_, group.queues);
  auto member = std::make_unique<raft::RaftMember>(*loop_, links_, config, *machine);
  if (std::string failed = member->start(); !failed.empty())
    return "queue '" + group.name + "': its replica could not start: " + failed;
  {
    std::unique_lock lock(mutex_);
    group.machine = std::move(machine);
    group.member = std::move(member);
  }
  spdlog::info("event=queue_replica_started queue=\"{}\" id={} members={}", group.name, config.id,
               fmt::join(group.members, ","));
  return std::nullopt;
}

std::optional<std::string> QueueReplicas::clear_leftovers(const Group& group) {
  // A member whose log is new starts from nothing: whatever this node's
  // store holds of the queue is from before (a queue homed here before it
  // was replicated, or a Raft log lost), and entries from the group write
  // only the keys they name. Messages are not dropped unasked.
  std::size_t messages = 0;
  store::WriteBatch clear;
  for (const std::string& name : group.queues) {
    for (std::string& prefix : queue::keys::every_prefix(name)) {
      if (prefix == queue::keys::queue(name)) continue;  // its record, as the file declares it
      if (prefix.front() == 'L') {
        store_.scan(store::Space::kQueues, prefix, queue::keys::prefix_end(prefix),
                    [&](std::string_view, std::string_view) {
                      ++messages;
                      return true;
                    });
      }
      std::string end = queue::keys::prefix_end(prefix);
      clear.add(
          store::WriteBatch::EraseRange{store::Space::kQueues, std::move(prefix), std::move(end)});
    }
  }
  if (messages > 0) {
    return "queue '" + group.name + "' holds " + std::to_string(messages) +
           " message(s) in this node's store from before it was replicated here (making a queue "
           "that holds messages replicated is not built yet: consume or purge them with "
           "replication off, or give the replicated queue a new name; if this node lost its "
           "Raft log, remove the queue's data from its store)";
  }
  if (const store::Status status = store_.write(clear, true); !status.ok)
    return "queue '" + group.name + "': its old state could not be cleared: " + status.message;
  return std::nullopt;
}

std::optional<std::vector<std::string>> QueueReplicas::place(const Group& group) {
  const std::string key = kReplicas + group.name;
  std::vector<std::string> nodes = membership_.up_nodes();
  nodes.push_back(node_id_);
  std::sort(nodes.begin(), nodes.end());
  nodes.erase(std::unique(nodes.begin(), nodes.end()), nodes.end());
  if (nodes.size() >= group.replication.factor) {
    // Round robin over the nodes in order, from where the name falls.
    const std::size_t first = group_number(group.name) % nodes.size();
    std::vector<std::string> members;
    for (std::size_t i = 0; i < group.replication.factor; ++i)
      members.push_back(nodes[(first + i) % nodes.size()]);
    bool won = false;
    if (!etcd_.create_all({{key, json{{"members", members}}.dump()}}, won, nullptr).ok)
      return std::nullopt;
    if (won) {
      spdlog::info("event=queue_replicas_placed queue=\"{}\" members={}", group.name,
                   fmt::join(members, ","));
      return members;
    }
  }
  // Too few nodes up, or another node was first: what etcd has, if anything.
  const auto value = read_key(etcd_, key);
  return value ? members_in(*value) : std::nullopt;
}

void QueueReplicas::follow_roles() {
  struct Change {
    std::string group;
    bool lead;
    std::uint64_t term;  // when leading: the term it began in
  };
  std::vector<Change> changes;
  const auto now = std::chrono::steady_clock::now();
  {
    std::unique_lock lock(mutex_);
    for (auto& [name, group] : groups_) {
      if (!group->member) continue;
      const raft::RaftStatus status = group->member->status();
      if (!status.leader_address.empty()) {
        group->leader = status.leader_address;
      } else if (group->leader == node_id_ && !status.ready) {
        group->leader.clear();
      }
      // A leadership lost and won back between two looks is a new term:
      // what memory held from the old one is not current (another leader
      // may have appended meanwhile), so it stands by and leads afresh.
      if (group->leading && (!status.ready || status.term != group->leading_term)) {
        // Not served here from now on: publishes wait or go to the new leader.
        group->leading = false;
        changes.push_back({name, false, 0});
      } else if (status.ready && !group->leading && now >= group->lead_again_at) {
        changes.push_back({name, true, status.term});
      }
    }
  }
  broker::QueueGateway* queues = broker_.queues();
  for (const Change& change : changes) {
    if (!change.lead) {
      if (queues != nullptr) queues->stand_by(change.group);
      forget_leader_key(change.group);
      continue;
    }
    // Everything committed is in the store (the member is ready). Writes
    // are taken from now on (none of this queue's can come before lead()
    // returns: it holds the queue layer's lock), then the queue layer reads
    // it back and this node is its home.
    {
      std::unique_lock lock(mutex_);
      Group& group = *groups_.find(change.group)->second;
      const raft::RaftStatus status = group.member->status();
      if (!status.ready || status.term != change.term) continue;  // the next turn sees
      group.leading = true;
      group.leading_term = change.term;
      group.leader = node_id_;
      group.leader_key_written = false;
      ++group.leaderships;
    }
    if (queues != nullptr && !queues->lead(change.group)) {
      std::unique_lock lock(mutex_);  // its store could not be read: again in a second
      Group& group = *groups_.find(change.group)->second;
      group.leading = false;
      group.lead_again_at = now + std::chrono::seconds(1);
      continue;
    }
    spdlog::info("event=queue_replica_leader queue=\"{}\" term={}", change.group, change.term);
  }
  write_leader_keys();
}

void QueueReplicas::write_leader_keys() {
  // For nodes outside the groups this node leads: under this node's lease,
  // so that they forget it with the node; tried each turn until written.
  const std::int64_t lease = membership_.lease();
  if (lease == 0) return;
  std::vector<std::pair<std::string, std::uint64_t>> unwritten;
  {
    std::shared_lock lock(mutex_);
    for (const auto& [name, group] : groups_)
      if (group->leading && !group->leader_key_written)
        unwritten.emplace_back(name, group->leading_term);
  }
  for (const auto& [name, term] : unwritten) {
    const EtcdResult put =
        etcd_.put(kLeaders + name, json{{"node", node_id_}, {"term", term}}.dump(), lease);
    if (!put.ok) {
      spdlog::warn("event=queue_leader_not_written queue=\"{}\" error=\"{}\"", name, put.error);
      continue;
    }
    std::unique_lock lock(mutex_);
    Group& group = *groups_.find(name)->second;
    if (group.leading && group.leading_term == term) group.leader_key_written = true;
  }
}

void QueueReplicas::forget_leader_key(const std::string& group) {
  // Only if it still names this node: a new leader may have written it.
  std::optional<KeyValue> current;
  if (!etcd_.get_local(kLeaders + group, current).ok || !current) return;
  if (leader_in(current->value) != node_id_) return;
  bool won = false;
  etcd_.compare_and_erase(kLeaders + group, current->mod_revision, won);
}

void QueueReplicas::read_leaders() {
  // Nodes outside a group learn its leader from etcd.
  std::vector<std::string> outside;
  {
    std::shared_lock lock(mutex_);
    for (const auto& [name, group] : groups_)
      if (!group->member && !group->members.empty()) outside.push_back(name);
  }
  for (const std::string& name : outside) {
    const auto value = read_key(etcd_, kLeaders + name);
    std::string leader = value ? leader_in(*value) : std::string();
    std::unique_lock lock(mutex_);
    groups_.find(name)->second->leader = leader;
  }
}

void QueueReplicas::answer_waiters(bool all) {
  std::vector<std::pair<Waiter, broker::QueueHome>> ready;
  {
    std::unique_lock lock(mutex_);
    const auto now = std::chrono::steady_clock::now();
    for (auto it = waiters_.begin(); it != waiters_.end();) {
      const broker::QueueHome home = home_locked(*groups_.find(it->group)->second);
      if (home.kind != Kind::kUnclaimed || all || now >= it->deadline) {
        ready.emplace_back(std::move(*it), home);
        it = waiters_.erase(it);
      } else {
        ++it;
      }
    }
  }
  for (auto& [waiter, home] : ready)
    post(waiter.shard, [done = std::move(waiter.done), home = home] { done(home); });
}

void QueueReplicas::run() {
  auto next_leaders = std::chrono::steady_clock::now();
  while (true) {
    {
      std::unique_lock lock(wake_mutex_);
      if (wake_.wait_for(lock, std::chrono::milliseconds(20), [this] { return stopping_; })) return;
    }
    const auto now = std::chrono::steady_clock::now();
    // Queues not placed yet: every half second, once enough nodes are up.
    std::vector<Group*> unplaced;
    {
      std::shared_lock lock(mutex_);
      for (auto& [name, group] : groups_)
        if (group->members.empty() && now >= group->next_try) unplaced.push_back(group.get());
    }
    for (Group* group : unplaced) {
      auto members = place(*group);
      {
        std::unique_lock lock(mutex_);
        if (!members) {
          group->next_try = now + std::chrono::milliseconds(500);
          continue;
        }
        group->members = std::move(*members);
      }
      if (auto failed = start_member(*group))
        spdlog::error("event=queue_replica_failed {}", *failed);
    }
    follow_roles();
    if (now >= next_leaders) {
      read_leaders();
      next_leaders = now + std::chrono::milliseconds(250);
    }
    answer_waiters(/*all=*/false);
  }
}

std::vector<broker::ReplicaGroupView> QueueReplicas::describe() const {
  std::vector<broker::ReplicaGroupView> views;
  std::shared_lock lock(mutex_);
  for (const auto& [name, group] : groups_) {
    broker::ReplicaGroupView view;
    view.queue = name;
    view.members = group->members;
    view.leader = group->leader;
    view.member_here = group->member != nullptr;
    view.leading_here = group->leading;
    view.leaderships = group->leaderships;
    if (group->member) {
      const raft::RaftStatus status = group->member->status();
      view.role = raft::role_name(status.role);
      view.term = status.term;
      view.commit_index = status.commit_index;
      view.last_applied = status.last_applied;
      view.last_index = status.last_index;
      view.elections = status.elections;
      view.snapshot_index = status.snapshot_index;
      view.snapshot_bytes = status.snapshot_bytes;
      if (status.role == raft::RaftStatus::Role::kLeader) {
        view.in_sync = 1;
        for (const raft::RaftStatus::Replica& replica : status.replicas) {
          const std::uint64_t lag =
              status.last_index > replica.match_index ? status.last_index - replica.match_index : 0;
          view.followers.push_back({replica.address, replica.match_index, lag, replica.in_sync});
          view.in_sync += replica.in_sync ? 1 : 0;
        }
      }
    }
    views.push_back(std::move(view));
  }
  return views;
}

}  // namespace sluice::cluster
