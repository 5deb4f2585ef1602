#include "cluster/queue_homes.hpp"

#include <spdlog/spdlog.h>

#include <set>

#include "broker/message.hpp"
#include "broker/queue_gateway.hpp"
#include "cluster/forwarder.hpp"
#include "cluster/keys.hpp"
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
  for (const KeyValue& kv : range.kvs)
    if (const auto name = keys::parse_queue(kv.key)) set_home(*name, kv.value);
  // Each queue with its dead-letter queue, in as few transactions as fit.
  std::vector<std::string> unclaimed;
  if (const broker::QueueGateway* queues = broker_.queues()) {
    for (const auto& known : queues->known_queues()) {
      for (const std::string* name : {&known.name, &known.dead_letter}) {
        if (name->empty() || home_of(*name).kind != Kind::kUnclaimed) continue;
        if (std::find(unclaimed.begin(), unclaimed.end(), *name) == unclaimed.end())
          unclaimed.push_back(*name);
      }
    }
  }
  for (std::size_t from = 0; from < unclaimed.size(); from += kMostPerTransaction) {
    const auto to = std::min(unclaimed.size(), from + kMostPerTransaction);
    if (!claim_now({unclaimed.begin() + static_cast<std::ptrdiff_t>(from),
                    unclaimed.begin() + static_cast<std::ptrdiff_t>(to)}))
      return std::string("cannot claim this node's queues in etcd");
  }
  etcd_.watch_prefix(
      keys::kQueues,
      [this](const EtcdClient::Range& snapshot) {
        std::map<std::string, std::string, std::less<>> homes;
        for (const KeyValue& kv : snapshot.kvs)
          if (const auto name = keys::parse_queue(kv.key)) homes[*name] = kv.value;
        {
          std::unique_lock lock(homes_mutex_);
          homes_.swap(homes);
        }
        pin_captures();
      },
      [this](const std::vector<WatchEvent>& events, std::int64_t) {
        for (const WatchEvent& event : events) {
          const auto name = keys::parse_queue(event.kv.key);
          if (!name) continue;
          if (event.deleted) {
            std::unique_lock lock(homes_mutex_);
            homes_.erase(*name);
          } else {
            set_home(*name, event.kv.value);
          }
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
  std::shared_lock lock(homes_mutex_);
  const auto it = homes_.find(name);
  if (it == homes_.end()) return {Kind::kUnclaimed, {}};
  if (it->second == node_id_) return {Kind::kHere, {}};
  return {Kind::kElsewhere, it->second};
}

void QueueHomes::claim(std::uint32_t shard, std::vector<std::string> names,
                       std::function<void(broker::QueueHome)> done) {
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

std::map<std::string, std::string> QueueHomes::homes() const {
  std::shared_lock lock(homes_mutex_);
  return {homes_.begin(), homes_.end()};
}

bool QueueHomes::claim_now(const std::vector<std::string>& names) {
  std::vector<std::pair<std::string, std::string>> entries;
  for (const std::string& name : names)
    entries.emplace_back(keys::queue(name), node_id_);
  bool won = false;
  if (const EtcdResult result = etcd_.create_all(entries, won); !result.ok) {
    spdlog::warn("event=queue_claim_failed queues={} error=\"{}\"", names.size(), result.error);
    return false;
  }
  if (won) {
    for (const std::string& name : names) {
      set_home(name, node_id_);
      spdlog::info("event=queue_homed queue=\"{}\" node={}", name, node_id_);
    }
    return true;
  }
  // Some were taken first: each alone, this node getting those still free.
  for (const std::string& name : names) {
    bool mine = false;
    std::optional<KeyValue> current;
    const EtcdResult result = etcd_.compare_and_put(keys::queue(name), 0, node_id_, 0, mine, current);
    if (!result.ok) {
      spdlog::warn("event=queue_claim_failed queue=\"{}\" error=\"{}\"", name, result.error);
      return false;
    }
    if (current) set_home(name, current->value);
    if (mine) spdlog::info("event=queue_homed queue=\"{}\" node={}", name, node_id_);
  }
  return true;
}

void QueueHomes::set_home(const std::string& name, const std::string& node_id) {
  std::unique_lock lock(homes_mutex_);
  homes_[name] = node_id;
}

void QueueHomes::pin_captures() {
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
    // One already claimed (by this node or another) needs no transaction.
    const bool known = home_of(next.names.front()).kind != Kind::kUnclaimed;
    if (!known) claim_now(next.names);
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
