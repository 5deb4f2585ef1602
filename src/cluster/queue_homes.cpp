#include "cluster/queue_homes.hpp"

#include <spdlog/spdlog.h>

#include <set>

#include "broker/message.hpp"
#include "broker/queue_gateway.hpp"
#include "cluster/forwarder.hpp"
#include "cluster/keys.hpp"
#include "cluster/queue_replicas.hpp"
#include "cluster/route_announcer.hpp"

namespace sluice::cluster {

namespace {

using Kind = broker::QueueHome::Kind;

// etcd allows 128 operations per transaction by default: a compare and a
// put per key.
constexpr std::size_t kMostPerTransaction = 60;

}  // namespace

QueueHomes::QueueHomes(broker::Broker& broker, std::string node_id, EtcdClient& etcd,
                       Forwarder& forwarder, RouteAnnouncer& announcer,
                       std::function<std::uint16_t(const std::string&)> number_of)
    : broker_(broker),
      node_id_(std::move(node_id)),
      etcd_(etcd),
      forwarder_(forwarder),
      announcer_(announcer),
      number_of_(std::move(number_of)) {}

QueueHomes::~QueueHomes() {
  stop();
}

std::optional<std::string> QueueHomes::start() {
  EtcdClient::Range range;
  if (const EtcdResult read = etcd_.get_prefix(keys::kQueues, range); !read.ok)
    return "cannot read the queues' homes from etcd: " + read.error;
  note_snapshot(range);
  // Each queue with its dead-letter queue, in as few transactions as fit.
  std::vector<Unit> units;
  std::set<std::string> taken;
  if (const broker::QueueGateway* queues = broker_.queues()) {
    for (const auto& known : queues->known_queues()) {
      Unit unit;
      for (const std::string* name : {&known.name, &known.dead_letter}) {
        if (name->empty() || (replicas_ != nullptr && replicas_->covers(*name)) ||
            home_of(*name).kind != Kind::kUnclaimed) {
          continue;
        }
        if (taken.insert(*name).second) unit.push_back(*name);
      }
      if (!unit.empty()) units.push_back(std::move(unit));
    }
  }
  if (!claim_now(units)) return std::string("cannot claim this node's queues in etcd");
  etcd_.watch_prefix(
      keys::kQueues,
      [this](const EtcdClient::Range& snapshot) {
        note_snapshot(snapshot);
        pin_captures();
      },
      [this](const std::vector<WatchEvent>& events, std::int64_t) {
        for (const WatchEvent& event : events) {
          const auto name = keys::parse_queue(event.kv.key);
          if (!name) continue;
          note(*name, event.deleted ? std::nullopt : std::optional<std::string>(event.kv.value),
               event.kv.mod_revision);
        }
        pin_captures();
      });
  pin_captures();
  thread_ = std::thread([this] { run(); });
  return std::nullopt;
}

void QueueHomes::stop() {
  {
    std::lock_guard lock(claims_mutex_);
    stopping_ = true;
    claims_.clear();  // the workers are stopping: nobody waits for them
  }
  wake_.notify_all();
  if (thread_.joinable()) thread_.join();
}

broker::QueueHome QueueHomes::home_of(std::string_view name) const {
  if (replicas_ != nullptr && replicas_->covers(name)) return replicas_->home_of(name);
  std::shared_lock lock(homes_mutex_);
  const auto it = homes_.find(name);
  if (it == homes_.end() || !it->second.node_id) return {Kind::kUnclaimed, {}};
  if (*it->second.node_id == node_id_) return {Kind::kHere, {}};
  return {Kind::kElsewhere, *it->second.node_id};
}

void QueueHomes::claim(std::uint32_t shard, std::vector<std::string> names,
                       std::function<void(broker::QueueHome)> done) {
  if (replicas_ != nullptr && !names.empty() && replicas_->covers(names.front())) {
    // Not claimed: homed where its group is led, once it is.
    replicas_->when_led(shard, names.front(), std::move(done));
    return;
  }
  {
    std::lock_guard lock(claims_mutex_);
    if (stopping_) return;
    claims_.push_back({shard, std::move(names), std::move(done)});
  }
  wake_.notify_one();
}

void QueueHomes::forward(std::uint32_t shard, const broker::QueueHome& home,
                         mqtt::Publish&& publish, broker::QueueGateway::Acknowledge acknowledge) {
  const std::uint16_t number = number_of_(home.node_id);
  if (number == 0) {
    if (acknowledge) {
      acknowledge(mqtt::ReasonCode::kUnspecifiedError,
                  "the queue's home, node " + home.node_id + ", is down");
    }
    return;
  }
  forwarder_.to_queue(number, shard, broker::make_message(std::move(publish), 0, 0),
                      std::move(acknowledge));
}

void QueueHomes::replicate(std::uint32_t shard, std::string_view name, store::WriteBatch&& writes,
                           std::function<void(bool committed)> done) {
  if (replicas_ != nullptr) return replicas_->replicate(shard, name, std::move(writes), done);
  if (done) done(false);  // not called: only replicated queues' writes come here
}

std::map<std::string, std::string> QueueHomes::homes() const {
  std::map<std::string, std::string> out;
  {
    std::shared_lock lock(homes_mutex_);
    for (const auto& [name, home] : homes_)
      if (home.node_id) out.emplace(name, *home.node_id);
  }
  if (replicas_ != nullptr) {
    for (const broker::ReplicaGroupView& view : replicas_->describe()) {
      if (view.leader.empty()) continue;
      out[view.queue] = view.leader;
    }
  }
  return out;
}

bool QueueHomes::claim_now(const std::vector<Unit>& units) {
  // Whole units per transaction, up to kMostPerTransaction keys.
  for (std::size_t from = 0; from < units.size();) {
    std::vector<std::pair<std::string, std::string>> entries;
    std::size_t to = from;
    while (to < units.size() &&
           (entries.empty() || entries.size() + units[to].size() <= kMostPerTransaction)) {
      for (const std::string& name : units[to])
        entries.emplace_back(keys::queue(name), node_id_);
      ++to;
    }
    bool won = false;
    std::int64_t revision = 0;
    if (const EtcdResult result = etcd_.create_all(entries, won, &revision); !result.ok) {
      spdlog::warn("event=queue_claim_failed queues={} error=\"{}\"", entries.size(), result.error);
      return false;
    }
    for (std::size_t unit = from; unit < to; ++unit) {
      if (!won) {
        // Some were taken first: unit by unit, this node getting those still free.
        if (!claim_one_by_one(units[unit])) return false;
        continue;
      }
      for (const std::string& name : units[unit]) {
        note(name, node_id_, revision);
        spdlog::info("event=queue_homed queue=\"{}\" node={}", name, node_id_);
      }
    }
    from = to;
  }
  return true;
}

bool QueueHomes::claim_one_by_one(const Unit& unit) {
  bool won = false;
  std::int64_t revision = 0;
  if (unit.size() > 1) {
    std::vector<std::pair<std::string, std::string>> entries;
    for (const std::string& name : unit)
      entries.emplace_back(keys::queue(name), node_id_);
    if (const EtcdResult result = etcd_.create_all(entries, won, &revision); !result.ok) {
      spdlog::warn("event=queue_claim_failed queue=\"{}\" error=\"{}\"", unit.front(),
                   result.error);
      return false;
    }
  }
  for (const std::string& name : unit) {
    if (won) {
      note(name, node_id_, revision);
      spdlog::info("event=queue_homed queue=\"{}\" node={}", name, node_id_);
      continue;
    }
    bool mine = false;
    std::optional<KeyValue> current;
    const EtcdResult result =
        etcd_.compare_and_put(keys::queue(name), 0, node_id_, 0, mine, current);
    if (!result.ok) {
      spdlog::warn("event=queue_claim_failed queue=\"{}\" error=\"{}\"", name, result.error);
      return false;
    }
    if (current) note(name, current->value, current->mod_revision);
    if (mine) spdlog::info("event=queue_homed queue=\"{}\" node={}", name, node_id_);
  }
  if (unit.size() > 1 && home_of(unit[0]).node_id != home_of(unit[1]).node_id) {
    spdlog::warn(
        "event=queue_split_from_dead_letters queue=\"{}\" dead_letter=\"{}\" note=\"its "
        "dead-letter queue is homed on another node: its dead letters stay on its own home, "
        "where that queue's consumers are refused\"",
        unit[0], unit[1]);
  }
  return true;
}

void QueueHomes::note(const std::string& name, std::optional<std::string> node_id,
                      std::int64_t revision) {
  std::unique_lock lock(homes_mutex_);
  Home& home = homes_[name];
  if (revision < home.revision) return;
  home.node_id = std::move(node_id);
  home.revision = revision;
}

void QueueHomes::note_snapshot(const EtcdClient::Range& range) {
  std::set<std::string, std::less<>> present;
  for (const KeyValue& kv : range.kvs) {
    const auto name = keys::parse_queue(kv.key);
    if (!name) continue;
    present.insert(*name);
    note(*name, kv.value, kv.mod_revision);
  }
  // What the snapshot lacks was deleted by its revision, unless this node
  // heard of it later (a claim answered after the snapshot was read).
  std::unique_lock lock(homes_mutex_);
  for (auto& [name, home] : homes_) {
    if (present.contains(name) || home.revision > range.revision) continue;
    home.node_id.reset();
    home.revision = range.revision;
  }
}

void QueueHomes::pin_captures() {
  // Called from the watch's thread and the claims' one: the set computed
  // last is the one written last.
  std::lock_guard pinning(pin_mutex_);
  std::set<std::string, std::less<>> filters;
  if (const broker::QueueGateway* queues = broker_.queues()) {
    for (const auto& known : queues->known_queues()) {
      if (home_of(known.name).kind != Kind::kHere) continue;
      filters.insert(known.capture.begin(), known.capture.end());
    }
  }
  announcer_.set_pinned(std::move(filters));
}

void QueueHomes::run() {
  std::unique_lock lock(claims_mutex_);
  while (true) {
    wake_.wait(lock, [this] { return stopping_ || !claims_.empty(); });
    if (stopping_) return;
    Claim next = std::move(claims_.front());
    claims_.pop_front();
    lock.unlock();
    // What is claimed already (by this node or another) needs no transaction.
    Unit unclaimed;
    for (const std::string& name : next.names)
      if (home_of(name).kind == Kind::kUnclaimed) unclaimed.push_back(name);
    if (!unclaimed.empty()) claim_now({unclaimed});
    pin_captures();
    if (next.done) {
      broker::Mailbox* mailbox = broker_.mailbox();
      const broker::QueueHome home = home_of(next.names.front());
      if (mailbox != nullptr)
        mailbox->post_task(next.shard, [done = std::move(next.done), home] { done(home); });
    }
    lock.lock();
  }
}

}  // namespace sluice::cluster
