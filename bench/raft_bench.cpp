// How fast one Raft group commits, and how soon it has a leader again
// (docs/replication.md). Three members on three loops, as on three nodes,
// joined by PeerRaftLinks (gRPC streams on 127.0.0.1) or by local socket
// pairs; or one member alone, the same work unreplicated, for the ratio.
//
//   raft_bench [--members 1|3] [--links peer|local] [--entries N] [--window W]
//              [--bytes B] [--failovers F] [--dir D]
//
// Proposals keep W in flight; an entry is committed when the leader has
// applied it. A failover closes the leader and times until another member
// leads and has applied everything before (status().ready); the closed
// member then comes back from its directory.
#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "bench/load/measures.hpp"
#include "cluster/raft/local_links.hpp"
#include "cluster/raft/raft_loop.hpp"
#include "cluster/raft/raft_member.hpp"
#include "eventually.hpp"
#include "raft_nodes.hpp"

namespace {

using namespace sluice::cluster;
using namespace sluice::cluster::raft;
using Clock = std::chrono::steady_clock;

constexpr int kMaxMembers = 3;

struct Options {
  int members = 3;
  bool peer_links = true;
  int entries = 20000;
  int window = 64;
  std::size_t bytes = 256;
  int failovers = 5;
  std::string dir = "/tmp";
};

class Counter final : public StateMachine {
 public:
  void apply(std::uint64_t, std::string_view) override { applied.fetch_add(1); }
  std::string snapshot() override { return std::to_string(applied.load()); }
  void restore(std::string_view snapshot) override {
    applied.store(std::stoull(std::string(snapshot)));
  }
  std::atomic<std::uint64_t> applied{0};
};

// Of the few failover times.
double percentile(std::vector<double> values, double p) {
  if (values.empty()) return 0;
  std::sort(values.begin(), values.end());
  const auto at = static_cast<std::size_t>(p * static_cast<double>(values.size()));
  return values[std::min(values.size() - 1, at)];
}

// Failovers are timed to the poll: half a millisecond.
template <class Condition>
bool wait_for(Condition condition) {
  return sluice::testing_support::eventually(condition, std::chrono::seconds(20),
                                             std::chrono::microseconds(500));
}

class Group {
 public:
  explicit Group(const Options& options) : options_(options) {
    directory_ = options.dir + "/sluice-raft-bench-" + std::to_string(::getpid());
    std::filesystem::remove_all(directory_);
    if (options.members > 1 && options.peer_links)
      peers_ = std::make_unique<testing_support::PeerNodes<kMaxMembers>>();
    for (int i = 0; i < options.members; ++i) {
      loops_[i] = std::make_unique<RaftLoop>("bench-" + std::to_string(i));
      loops_[i]->start();
      start(i);
    }
  }
  ~Group() {
    for (auto& member : members_)
      member.reset();
    peers_.reset();
    for (auto& loop : loops_)
      loop.reset();
    std::filesystem::remove_all(directory_);
  }

  void start(int i) {
    RaftMemberConfig c;
    c.group = 1;
    c.id = static_cast<std::uint64_t>(i + 1);
    c.address = testing_support::node_name(i);
    c.directory = directory_ + "/" + c.address;
    for (int k = 0; k < options_.members; ++k)
      c.voters.emplace_back(k + 1, testing_support::node_name(k));
    c.segment_bytes = 64u << 20;  // few rollovers: each stalls the loop (io_destroy)
    c.snapshot_threshold = 1u << 20;
    machines_[i] = std::make_unique<Counter>();
    RaftLinks& links = peers_ ? static_cast<RaftLinks&>(peers_->links(i)) : local_;
    members_[i] = std::make_unique<RaftMember>(*loops_[i], links, c, *machines_[i]);
    const std::string error = members_[i]->start();
    if (!error.empty()) {
      std::fprintf(stderr, "start: %s\n", error.c_str());
      std::exit(1);
    }
  }

  int ready_leader(int except = -1) {
    for (int i = 0; i < options_.members; ++i)
      if (i != except && members_[i] && members_[i]->status().ready) return i;
    return -1;
  }

  // Entries per second, and each one's commit latency in microseconds.
  double run(int leader, sluice::load::LatencyHistogram& latencies) {
    std::mutex mutex;
    std::condition_variable done_cv;
    int in_flight = 0, done = 0, failed = 0;
    const std::string payload(options_.bytes, 'x');
    const auto started = Clock::now();
    for (int n = 0; n < options_.entries; ++n) {
      {
        std::unique_lock lock(mutex);
        done_cv.wait(lock, [&] { return in_flight < options_.window; });
        ++in_flight;
      }
      const auto sent = Clock::now();
      members_[leader]->propose(payload, [&, sent](const Proposed& p) {
        const auto micros =
            std::chrono::duration_cast<std::chrono::microseconds>(Clock::now() - sent);
        std::lock_guard lock(mutex);
        latencies.add(static_cast<std::uint64_t>(micros.count()));
        --in_flight;
        ++done;
        if (!p.committed) ++failed;
        done_cv.notify_all();
      });
    }
    std::unique_lock lock(mutex);
    done_cv.wait(lock, [&] { return done == options_.entries; });
    const double seconds = std::chrono::duration<double>(Clock::now() - started).count();
    if (failed != 0) std::fprintf(stderr, "%d proposals failed\n", failed);
    return options_.entries / seconds;
  }

  // Milliseconds from closing the leader to another one being ready.
  double failover() {
    const int old = ready_leader();
    if (old < 0) return -1;
    const auto closed = Clock::now();
    members_[old].reset();
    int now = -1;
    if (!wait_for([&] { return (now = ready_leader(old)) >= 0; })) return -1;
    const double ms = std::chrono::duration<double, std::milli>(Clock::now() - closed).count();
    start(old);
    wait_for([&] { return members_[old]->status().role == RaftStatus::Role::kFollower; });
    return ms;
  }

 private:
  const Options& options_;
  std::string directory_;
  LocalRaftLinks local_;
  std::unique_ptr<testing_support::PeerNodes<kMaxMembers>> peers_;
  std::array<std::unique_ptr<RaftLoop>, kMaxMembers> loops_;
  std::array<std::unique_ptr<Counter>, kMaxMembers> machines_;
  std::array<std::unique_ptr<RaftMember>, kMaxMembers> members_;
};

Options parse(int argc, char** argv) {
  Options o;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string key = argv[i], value = argv[i + 1];
    if (key == "--members")
      o.members = std::clamp(std::atoi(value.c_str()), 1, kMaxMembers);
    else if (key == "--links")
      o.peer_links = value != "local";
    else if (key == "--entries")
      o.entries = std::max(1, std::atoi(value.c_str()));
    else if (key == "--window")
      o.window = std::max(1, std::atoi(value.c_str()));
    else if (key == "--bytes")
      o.bytes = static_cast<std::size_t>(std::max(0, std::atoi(value.c_str())));
    else if (key == "--failovers")
      o.failovers = std::max(0, std::atoi(value.c_str()));
    else if (key == "--dir")
      o.dir = value;
    else {
      std::fprintf(stderr, "unknown option %s\n", key.c_str());
      std::exit(2);
    }
  }
  return o;
}

}  // namespace

int main(int argc, char** argv) {
  const Options options = parse(argc, argv);
  Group group(options);
  int leader = -1;
  if (!wait_for([&] { return (leader = group.ready_leader()) >= 0; })) {
    std::fprintf(stderr, "no leader\n");
    return 1;
  }
  sluice::load::LatencyHistogram latencies;
  const double rate = group.run(leader, latencies);
  std::printf(
      "members=%d links=%s entries=%d window=%d bytes=%zu: %.0f entries/s, "
      "commit p50 %.2f ms p99 %.2f ms\n",
      options.members,
      options.members == 1 ? "none"
      : options.peer_links ? "peer"
                           : "local",
      options.entries, options.window, options.bytes, rate,
      static_cast<double>(latencies.percentile(0.5)) / 1000,
      static_cast<double>(latencies.percentile(0.99)) / 1000);
  if (options.members > 1 && options.failovers > 0) {
    std::vector<double> times;
    for (int f = 0; f < options.failovers; ++f) {
      const double ms = group.failover();
      if (ms >= 0) times.push_back(ms);
    }
    std::printf("failovers=%zu of %d: p50 %.0f ms p99 %.0f ms max %.0f ms\n", times.size(),
                options.failovers, percentile(times, 0.5), percentile(times, 0.99),
                times.empty() ? 0.0 : *std::max_element(times.begin(), times.end()));
  }
  return 0;
}
