// Raft groups of three members, each member on a loop of its own as on
// three nodes, joined by LocalRaftLinks: real libraft, real libuv storage in
// a temporary directory, real socket pairs between the members.
#include "cluster/raft/raft_member.hpp"

#include <gtest/gtest.h>
#include <stdlib.h>

#include <array>
#include <chrono>
#include <csignal>
#include <filesystem>
#include <memory>
#include <mutex>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "cluster/raft/local_links.hpp"
#include "cluster/raft/raft_loop.hpp"

namespace sluice::cluster::raft {
namespace {

using namespace std::chrono_literals;

// Waits for `condition` with a deadline; true when it held in time.
template <class Condition>
bool eventually(Condition condition, std::chrono::seconds limit = 20s) {
  const auto deadline = std::chrono::steady_clock::now() + limit;
  while (std::chrono::steady_clock::now() < deadline) {
    if (condition()) return true;
    std::this_thread::sleep_for(5ms);
  }
  return condition();
}

// Records what it is given, and says if an index ever went backwards.
class Recorder final : public StateMachine {
 public:
  void apply(std::uint64_t index, std::string_view entry) override {
    std::lock_guard lock(mutex_);
    if (index <= last_index_) out_of_order_ = true;
    last_index_ = index;
    entries_.emplace_back(entry);
  }
  std::string snapshot() override {
    std::lock_guard lock(mutex_);
    std::string out = std::to_string(last_index_);
    for (const std::string& entry : entries_)
      out += "\n" + entry;
    return out;
  }
  void restore(std::string_view snapshot) override {
    std::lock_guard lock(mutex_);
    std::istringstream in{std::string(snapshot)};
    std::string line;
    std::getline(in, line);
    last_index_ = std::stoull(line);
    entries_.clear();
    while (std::getline(in, line))
      entries_.push_back(line);
    ++restores_;
  }
  std::vector<std::string> entries() const {
    std::lock_guard lock(mutex_);
    return entries_;
  }
  bool out_of_order() const {
    std::lock_guard lock(mutex_);
    return out_of_order_;
  }
  int restores() const {
    std::lock_guard lock(mutex_);
    return restores_;
  }

 private:
  mutable std::mutex mutex_;
  std::vector<std::string> entries_;
  std::uint64_t last_index_ = 0;
  bool out_of_order_ = false;
  int restores_ = 0;
};

constexpr int kMembers = 3;
constexpr std::uint64_t kGroup = 7;

class RaftGroupTest : public ::testing::Test {
 protected:
  void SetUp() override {
    // A member writing to a peer that just closed its channel gets EPIPE,
    // not a signal that ends the process (sluice's main does the same).
    std::signal(SIGPIPE, SIG_IGN);
    char pattern[] = "/tmp/sluice-raft-test-XXXXXX";
    ASSERT_NE(::mkdtemp(pattern), nullptr);
    directory_ = pattern;
    for (int i = 0; i < kMembers; ++i) {
      loops_[i] = std::make_unique<RaftLoop>("raft-" + std::to_string(i));
      loops_[i]->start();
    }
  }

  void TearDown() override {
    for (int i = 0; i < kMembers; ++i)
      members_[i].reset();
    for (int i = 0; i < kMembers; ++i)
      loops_[i].reset();
    std::filesystem::remove_all(directory_);
  }

  RaftMemberConfig config(int i) const {
    RaftMemberConfig c;
    c.group = kGroup;
    c.id = static_cast<std::uint64_t>(i + 1);
    c.address = "node-" + std::to_string(i + 1);
    c.directory = directory_ + "/" + c.address + "/group-7";
    for (int k = 0; k < kMembers; ++k)
      c.voters.emplace_back(k + 1, "node-" + std::to_string(k + 1));
    c.snapshot_threshold = snapshot_threshold_;
    c.snapshot_trailing = snapshot_trailing_;
    c.segment_bytes = 1u << 20;
    return c;
  }

  // (Re)starts member i with a fresh state machine: what it had applied
  // comes back from its own log and snapshot, and from the leader.
  void start(int i) {
    members_[i].reset();
    machines_[i] = std::make_unique<Recorder>();
    members_[i] = std::make_unique<RaftMember>(*loops_[i], links_, config(i), *machines_[i]);
    ASSERT_EQ(members_[i]->start(), "");
  }

  void start_all() {
    for (int i = 0; i < kMembers; ++i)
      start(i);
  }

  void stop(int i) { members_[i].reset(); }

  // The member every running member names as leader, and that says it
  // leads; -1 while there is none.
  int leader() const {
    int found = -1;
    std::uint64_t named = 0;
    for (int i = 0; i < kMembers; ++i) {
      if (!members_[i]) continue;
      const RaftStatus status = members_[i]->status();
      if (status.leader_id == 0 || (named != 0 && status.leader_id != named)) return -1;
      named = status.leader_id;
      if (status.role == RaftStatus::Role::kLeader) found = i;
    }
    return found >= 0 && named == static_cast<std::uint64_t>(found + 1) ? found : -1;
  }

  int wait_for_leader() {
    int found = -1;
    EXPECT_TRUE(eventually([&] { return (found = leader()) >= 0; })) << "no leader elected";
    return found;
  }

  // Proposes entries "<prefix>-0".. through member `through`, all at once,
  // and waits for every answer.
  std::vector<Proposed> propose(int through, const std::string& prefix, int count) {
    std::mutex mutex;
    std::vector<Proposed> answers;
    for (int n = 0; n < count; ++n) {
      members_[through]->propose(prefix + "-" + std::to_string(n), [&](const Proposed& p) {
        std::lock_guard lock(mutex);
        answers.push_back(p);
      });
    }
    EXPECT_TRUE(eventually([&] {
      std::lock_guard lock(mutex);
      return answers.size() == static_cast<std::size_t>(count);
    })) << "proposals unanswered";
    std::lock_guard lock(mutex);
    return answers;
  }

  void expect_all_committed(const std::vector<Proposed>& answers) {
    std::set<std::uint64_t> indexes;
    for (const Proposed& p : answers) {
      EXPECT_TRUE(p.committed) << p.error;
      indexes.insert(p.index);
    }
    EXPECT_EQ(indexes.size(), answers.size()) << "two proposals got one index";
  }

  // Every running member applied `expected`, in that order.
  void expect_converged(const std::vector<std::string>& expected) {
    for (int i = 0; i < kMembers; ++i) {
      if (!members_[i]) continue;
      EXPECT_TRUE(eventually([&] { return machines_[i]->entries() == expected; }))
          << "member " << i + 1 << " applied " << machines_[i]->entries().size() << " of "
          << expected.size();
      EXPECT_FALSE(machines_[i]->out_of_order());
    }
  }

  static std::vector<std::string> entries(const std::string& prefix, int count) {
    std::vector<std::string> out;
    for (int n = 0; n < count; ++n)
      out.push_back(prefix + "-" + std::to_string(n));
    return out;
  }

  unsigned snapshot_threshold_ = 1024;
  unsigned snapshot_trailing_ = 128;
  std::string directory_;
  LocalRaftLinks links_;
  std::array<std::unique_ptr<RaftLoop>, kMembers> loops_;
  std::array<std::unique_ptr<Recorder>, kMembers> machines_;
  std::array<std::unique_ptr<RaftMember>, kMembers> members_;
};

TEST_F(RaftGroupTest, ElectsOneLeaderAndAppliesEveryEntryInOneOrderOnEveryMember) {
  start_all();
  const int leading = wait_for_leader();
  ASSERT_GE(leading, 0);
  const auto answers = propose(leading, "a", 300);
  expect_all_committed(answers);
  // Proposed from one thread to one leader: committed in the order given.
  expect_converged(entries("a", 300));
}

TEST_F(RaftGroupTest, AFollowerRefusesAProposalAndNamesTheLeader) {
  start_all();
  const int leading = wait_for_leader();
  ASSERT_GE(leading, 0);
  const int follower = (leading + 1) % kMembers;
  const auto answers = propose(follower, "f", 1);
  ASSERT_EQ(answers.size(), 1u);
  EXPECT_FALSE(answers[0].committed);
  EXPECT_TRUE(answers[0].not_leader) << answers[0].error;
  EXPECT_EQ(members_[follower]->status().leader_id, static_cast<std::uint64_t>(leading + 1));
  EXPECT_EQ(members_[follower]->status().leader_address, "node-" + std::to_string(leading + 1));
}

TEST_F(RaftGroupTest, WhenTheLeaderStopsAnotherLeadsAndTheReturningMemberCatchesUp) {
  start_all();
  const int first = wait_for_leader();
  ASSERT_GE(first, 0);
  expect_all_committed(propose(first, "a", 50));
  stop(first);
  const int second = wait_for_leader();
  ASSERT_GE(second, 0);
  EXPECT_NE(second, first);
  expect_all_committed(propose(second, "b", 50));
  start(first);
  auto expected = entries("a", 50);
  const auto more = entries("b", 50);
  expected.insert(expected.end(), more.begin(), more.end());
  expect_converged(expected);
}

TEST_F(RaftGroupTest, AMemberTooFarBehindForTheLeadersLogCatchesUpFromASnapshot) {
  snapshot_threshold_ = 16;
  snapshot_trailing_ = 4;
  start_all();
  const int leading = wait_for_leader();
  ASSERT_GE(leading, 0);
  const int behind = (leading + 1) % kMembers;
  // Gone before it applied anything, so a snapshot it restores can only
  // come from the leader.
  stop(behind);
  // In rounds: libraft considers a snapshot once per batch it applies, so
  // one burst would give one snapshot, and leave the log whole behind it.
  std::vector<std::string> expected;
  for (int round = 0; round < 20; ++round) {
    const std::string prefix = "s" + std::to_string(round);
    expect_all_committed(propose(leading, prefix, 10));
    const auto more = entries(prefix, 10);
    expected.insert(expected.end(), more.begin(), more.end());
  }
  start(behind);
  expect_converged(expected);
  EXPECT_GE(machines_[behind]->restores(), 1);
}

}  // namespace
}  // namespace sluice::cluster::raft
