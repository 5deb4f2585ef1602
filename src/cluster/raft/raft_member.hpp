// One member of one Raft group (libraft 0.15 with its libuv storage) on a
// RaftLoop, its channels to the other members taken from the node's
// RaftLinks. What the group agrees on is a sequence of opaque entries,
// handed in order to a StateMachine on every member; the queue journal
// (issue 15) is meant to be one.
//
// Threading: start(), propose(), status() and close() may be called from
// any thread; the StateMachine and propose()'s callbacks run on the loop's
// thread, and must be quick (every group on that loop waits for them).
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace sluice::cluster::raft {

class RaftLinks;
class RaftLoop;

struct RaftMemberConfig {
  std::uint64_t group = 0;
  std::uint64_t id = 0;   // this member's id in the group: not 0
  std::string address;    // this member's node, as the links know it
  std::string directory;  // the member's own log and snapshots; made if missing
  // The group's first voters (id, address), this member among them: a
  // member whose directory is new starts the group with them. A member
  // that joins a running group later gets an empty list.
  std::vector<std::pair<std::uint64_t, std::string>> voters;
  // Failover takes about one election timeout (docs/raft-research.md, 4).
  unsigned election_timeout_ms = 250;
  unsigned heartbeat_ms = 40;
  // A snapshot after this many entries; this many kept behind it, so a
  // member a little behind catches up from the log, not a snapshot.
  unsigned snapshot_threshold = 1024;
  unsigned snapshot_trailing = 128;
  std::size_t segment_bytes = 8u << 20;
  // Tests only: each append to this member's own log waits this long before
  // it is written (a slow disk). Appends stay in order among themselves, but
  // truncations and snapshot writes are not held behind them: fit for a
  // follower of a steady leader, not for a member that must truncate.
  unsigned append_delay_ms = 0;
};

// What the group's entries are applied to, on every member, in order.
class StateMachine {
 public:
  virtual ~StateMachine() = default;
  // Entry `index` of the group's log, committed.
  virtual void apply(std::uint64_t index, std::string_view entry) = 0;
  // Everything applied so far, as one value restore() takes back.
  virtual std::string snapshot() = 0;
  // Replaces everything with what snapshot() gave (on a member that fell
  // behind the leader's log, or restarts).
  virtual void restore(std::string_view snapshot) = 0;
};

struct RaftStatus {
  enum class Role { kUnavailable, kFollower, kCandidate, kLeader };
  Role role = Role::kUnavailable;
  // Leads, and has applied every entry of earlier terms: what it answers
  // from its state machine is current. A new leader is not, for a moment.
  bool ready = false;
  std::uint64_t leader_id = 0;  // 0: none known
  std::string leader_address;
  std::uint64_t term = 0;
  std::uint64_t commit_index = 0;
  std::uint64_t last_applied = 0;
  std::uint64_t last_index = 0;
  // Elections this member started since it started (past pre-vote: each
  // one is a new term it asked the others for).
  std::uint64_t elections = 0;
  // The log's last snapshot (0: none yet), and the size of the last
  // snapshot this member took or installed, in bytes.
  std::uint64_t snapshot_index = 0;
  std::uint64_t snapshot_bytes = 0;

  // While this member leads: every other voter's replication, as the
  // leader knows it. Empty otherwise.
  struct Replica {
    std::uint64_t id = 0;
    std::string address;
    std::uint64_t match_index = 0;  // the last entry it is known to hold
    // It held every committed entry within the last in-sync window (four
    // election timeouts): a replica that falls further behind is out of
    // the in-sync set until it catches up.
    bool in_sync = false;
  };
  std::vector<Replica> replicas;
};
const char* role_name(RaftStatus::Role role);

struct Proposed {
  bool committed = false;  // applied on this member, as entry `index`
  std::uint64_t index = 0;
  bool not_leader = false;  // this member does not lead: ask `status().leader_id`
  std::string error;        // what went wrong, when not committed
};

class RaftMember {
 public:
  RaftMember(RaftLoop& loop, RaftLinks& links, RaftMemberConfig config, StateMachine& machine);
  ~RaftMember();  // close()
  RaftMember(const RaftMember&) = delete;
  RaftMember& operator=(const RaftMember&) = delete;

  // Opens the member's directory (starting the group there when it is new
  // and `voters` are given) and starts taking part. Empty, or what failed.
  // Once per member, and not on the loop's thread.
  std::string start();

  // Appends `entry` to the group's log through this member, which must be
  // the leader; `done` once it is committed and applied here, or failed.
  // A failure after the entry was sent does not mean it was not committed:
  // whoever reads the log must take an entry twice calmly. With `term`, only
  // while this member leads in that term (what the entry says was decided
  // by the leader of that term; not_leader otherwise).
  void propose(std::string entry, std::function<void(const Proposed&)> done,
               std::uint64_t term = 0);

  // As of the loop's last turn.
  RaftStatus status() const;

  // Hands this member's leadership to another voter (libraft's choice: the
  // first in configuration order that the leader has sent everything to;
  // TimeoutNow makes it stand at once), so that a planned stop costs the
  // group no election timeout. `done(leader)` once another member leads
  // (its id), or with 0 when this member did not lead, no other voter
  // could take over, or none did within an election timeout. `done` runs
  // on the loop's thread, or on the caller's when the member is not
  // running.
  void hand_over_leadership(std::function<void(std::uint64_t leader)> done);

  // Leaves the group's work (the log stays on disk for the next start) and
  // waits until libraft let go of everything. Not on the loop's thread, and
  // before the loop stops.
  void close();

 private:
  struct Core;
  RaftLoop& loop_;
  std::unique_ptr<Core> core_;
  bool started_ = false;
  bool closed_ = false;
};

}  // namespace sluice::cluster::raft
