#include "cluster/raft/raft_member.hpp"

#include <uv.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <filesystem>
#include <future>
#include <list>
#include <mutex>
#include <utility>

#include "cluster/raft/group_transport.hpp"
#include "cluster/raft/libraft.hpp"
#include "cluster/raft/raft_loop.hpp"

namespace sluice::cluster::raft {

const char* role_name(RaftStatus::Role role) {
  switch (role) {
    case RaftStatus::Role::kFollower:
      return "follower";
    case RaftStatus::Role::kCandidate:
      return "candidate";
    case RaftStatus::Role::kLeader:
      return "leader";
    case RaftStatus::Role::kUnavailable:
      break;
  }
  return "unavailable";
}

namespace {

RaftStatus::Role role_of(int state) {
  switch (state) {
    case RAFT_FOLLOWER:
      return RaftStatus::Role::kFollower;
    case RAFT_CANDIDATE:
      return RaftStatus::Role::kCandidate;
    case RAFT_LEADER:
      return RaftStatus::Role::kLeader;
    default:
      return RaftStatus::Role::kUnavailable;
  }
}

std::string_view view(const raft_buffer& buffer) {
  return {static_cast<const char*>(buffer.base), buffer.len};
}

// A buffer libraft takes ownership of (it frees it with raft_free):
// `head`, `bytes`, then `padding` bytes that each hold the padding's length.
// base is null when there was no memory.
raft_buffer raft_bytes(std::string_view head, std::string_view bytes, std::size_t padding) {
  raft_buffer buffer;
  buffer.len = head.size() + bytes.size() + padding;
  buffer.base = raft_malloc(buffer.len == 0 ? 1 : buffer.len);
  if (buffer.base == nullptr) return buffer;
  auto* out = static_cast<char*>(buffer.base);
  if (!head.empty()) std::memcpy(out, head.data(), head.size());
  if (!bytes.empty()) std::memcpy(out + head.size(), bytes.data(), bytes.size());
  std::memset(out + head.size() + bytes.size(), static_cast<int>(padding), padding);
  return buffer;
}

// libraft 0.15 sends an entry as it is, but the receiving member sizes
// its buffer by the entries' lengths and lays them out at 8-byte
// boundaries (uv_encoding.c): an entry whose length is not a multiple of 8
// is read past the end of that buffer. So every entry goes in padded to a
// multiple of 8, with 1 to 8 bytes that each hold the padding's length.
raft_buffer padded_entry(std::string_view bytes) {
  return raft_bytes({}, bytes, 8 - bytes.size() % 8);
}

std::string_view unpadded_entry(const raft_buffer& buffer) {
  const std::string_view all = view(buffer);
  if (all.empty()) return all;
  const auto padding = static_cast<unsigned char>(all.back());
  if (padding == 0 || padding > 8 || padding > all.size()) return all;  // not one of ours
  return all.substr(0, all.size() - padding);
}

struct Proposal {
  struct raft_apply request {};
  std::function<void(const Proposed&)> done;
};

}  // namespace

// Everything libraft holds a pointer to, in one place that does not move.
// Touched on the loop's thread only, but for `status`, under its mutex.
struct RaftMember::Core {
  Core(RaftLoop& l, RaftLinks& links, RaftMemberConfig c, StateMachine& m)
      : loop(l),
        config(std::move(c)),
        machine(m),
        transport(std::make_unique<GroupTransport>(l, links, config.group)) {}

  RaftLoop& loop;
  const RaftMemberConfig config;
  StateMachine& machine;
  std::unique_ptr<GroupTransport> transport;
  raft_io io{};
  raft_fsm fsm{};
  struct raft raft {};
  uv_check_t check{};  // refreshes `status` after every turn of the loop

  bool io_open = false;    // raft_uv_init succeeded
  bool raft_open = false;  // raft_init succeeded
  bool running = false;    // raft_start succeeded
  bool closing = false;
  int closes_pending = 0;
  struct raft_barrier barrier {};
  raft_term barrier_term = 0;  // a barrier is out for this term
  raft_term ready_term = 0;    // the term whose barrier was applied here
  std::promise<void> closed;

  mutable std::mutex status_mutex;
  RaftStatus status;

  // What refresh() counts and marks, for `status`.
  std::uint64_t elections = 0;
  raft_term counted_election_term = 0;  // the last term whose election was counted
  std::uint64_t snapshot_bytes = 0;
  raft_term led_term = 0;  // the term the in-sync marks below were started for
  // A replica is in sync while it holds everything that was committed one
  // window ago (four election timeouts): `window_commit` is the commit
  // index at the start of the current window, `in_sync_from` at the start
  // of the one before.
  raft_time window_started = 0;
  raft_index window_commit = 0;
  raft_index in_sync_from = 0;
  raft_time now_ms = 0;  // as of the last mark
  // When the leader last heard from each voter (libraft's recent_recv, seen
  // on some turn); a voter first seen counts from the term's start.
  std::vector<std::pair<raft_id, raft_time>> last_heard;

  struct raft_transfer transfer {};
  std::function<void(std::uint64_t)> transfer_done;  // set while a hand-over is out

  // ---- a slow disk, for tests (RaftMemberConfig::append_delay_ms) ----
  using Append = int (*)(raft_io*, raft_io_append*, const raft_entry[], unsigned,
                         raft_io_append_cb);
  Append disk_append = nullptr;  // raft_uv's own, which the delayed appends call
  struct DelayedAppend {
    uv_timer_t timer{};
    Core* core = nullptr;
    raft_io_append* request = nullptr;
    const raft_entry* entries = nullptr;  // libraft's, held until the append's callback
    unsigned count = 0;
    raft_io_append_cb done = nullptr;
  };
  std::list<DelayedAppend> delayed;  // in the order libraft asked for them

  std::list<DelayedAppend> delayed_done;  // handed on, their timers closing: the close waits

  static int append_later(raft_io* io, raft_io_append* request, const raft_entry entries[],
                          unsigned count, raft_io_append_cb done) {
    Core& core = *static_cast<Core*>(static_cast<struct raft*>(io->data)->data);
    DelayedAppend& later = core.delayed.emplace_back();
    later.core = &core;
    later.request = request;
    later.entries = entries;
    later.count = count;
    later.done = done;
    uv_timer_init(core.loop.uv(), &later.timer);
    later.timer.data = &later;
    // Timers of one timeout fire in the order they were started: in order.
    uv_timer_start(
        &later.timer,
        [](uv_timer_t* timer) {
          auto& due = *static_cast<DelayedAppend*>(timer->data);
          due.core->append_now(due);
        },
        core.config.append_delay_ms, 0);
    return 0;
  }

  // Writes a delayed append (a failure to start it is its answer).
  void append_now(DelayedAppend& later) {
    uv_timer_stop(&later.timer);
    if (disk_append(&io, later.request, later.entries, later.count, later.done) != 0)
      later.done(later.request, RAFT_IOERR);
    const auto it = std::find_if(delayed.begin(), delayed.end(),
                                 [&later](const DelayedAppend& one) { return &one == &later; });
    delayed_done.splice(delayed_done.end(), delayed, it);
    uv_close(reinterpret_cast<uv_handle_t*>(&later.timer), [](uv_handle_t* handle) {
      auto* closed_timer = static_cast<DelayedAppend*>(handle->data);
      Core& core = *closed_timer->core;
      core.delayed_done.remove_if(
          [closed_timer](const DelayedAppend& one) { return &one == closed_timer; });
      if (core.delayed_done.empty() && core.closing && core.closes_pending == 0) core.finished();
    });
  }

  // ---- the state machine, as libraft calls it ----
  static int fsm_apply(raft_fsm* fsm, const raft_buffer* buffer, void** result) {
    Core& core = *static_cast<Core*>(fsm->data);
    // libraft counts an entry applied once this returns.
    try {
      core.machine.apply(core.raft.last_applied + 1, unpadded_entry(*buffer));
    } catch (const std::exception& e) {
      core.give_up("apply", e.what());
    }
    *result = nullptr;
    return 0;
  }

  // A snapshot starts with a tag byte. libraft 0.15 never sets the data of
  // an InstallSnapshot that carries no bytes, and then frees whatever the
  // pointer held (uv_recv.c): so no snapshot is empty. The tag also says
  // which format follows.
  static constexpr char kSnapshotFormat = 1;

  static int fsm_snapshot(raft_fsm* fsm, raft_buffer* buffers[], unsigned* count) {
    Core& core = *static_cast<Core*>(fsm->data);
    std::string snapshot;
    try {
      snapshot = core.machine.snapshot();
    } catch (const std::exception& e) {
      return core.give_up("snapshot", e.what());
    }
    auto* one = static_cast<raft_buffer*>(raft_malloc(sizeof(raft_buffer)));
    if (one == nullptr) return RAFT_NOMEM;
    *one = raft_bytes(std::string_view(&kSnapshotFormat, 1), snapshot, 0);
    if (one->base == nullptr) {
      raft_free(one);
      return RAFT_NOMEM;
    }
    core.snapshot_bytes = one->len;
    *buffers = one;
    *count = 1;
    return 0;
  }

  static int fsm_restore(raft_fsm* fsm, raft_buffer* buffer) {
    Core& core = *static_cast<Core*>(fsm->data);
    const std::string_view tagged = view(*buffer);
    if (tagged.empty() || tagged.front() != kSnapshotFormat) return RAFT_MALFORMED;
    try {
      core.machine.restore(tagged.substr(1));
    } catch (const std::exception& e) {
      return core.give_up("restore", e.what());
    }
    core.snapshot_bytes = tagged.size();
    raft_free(buffer->base);
    return 0;
  }

  // The state machine failed: the group's state here is unknown from now
  // on, and carrying on would apply later entries to it as if it were not.
  [[noreturn]] int give_up(const char* step, const char* what) const {
    std::fprintf(stderr, "raft group %llu member %llu: %s failed: %s\n",
                 static_cast<unsigned long long>(config.group),
                 static_cast<unsigned long long>(config.id), step, what);
    std::abort();
  }

  // ---- start ----
  std::string open() {
    std::error_code error;
    std::filesystem::create_directories(config.directory, error);
    if (error) return "cannot make " + config.directory + ": " + error.message();
    if (raft_uv_init(&io, loop.uv(), config.directory.c_str(), transport->get()) != 0)
      return std::string("raft_uv_init: ") + io.errmsg;
    io_open = true;
    raft_uv_set_segment_size(&io, config.segment_bytes);
    // A peer that was down is dialled again soon, not after libraft's 1 s.
    raft_uv_set_connect_retry_delay(&io, 100);
    if (config.append_delay_ms > 0) {
      disk_append = io.append;
      io.append = &Core::append_later;
    }
    fsm.version = 1;
    fsm.data = this;
    fsm.apply = &Core::fsm_apply;
    fsm.snapshot = &Core::fsm_snapshot;
    fsm.restore = &Core::fsm_restore;
    if (raft_init(&raft, &io, &fsm, config.id, config.address.c_str()) != 0)
      return std::string("raft_init: ") + raft_errmsg(&raft);
    raft_open = true;
    raft.data = this;
    if (!config.voters.empty()) {
      raft_configuration voters;
      raft_configuration_init(&voters);
      for (const auto& [id, address] : config.voters)
        raft_configuration_add(&voters, id, address.c_str(), RAFT_VOTER);
      const int bootstrapped = raft_bootstrap(&raft, &voters);
      raft_configuration_close(&voters);
      // A directory that holds the group already starts from what it holds.
      if (bootstrapped != 0 && bootstrapped != RAFT_CANTBOOTSTRAP)
        return std::string("raft_bootstrap: ") + raft_strerror(bootstrapped);
    }
    raft_set_election_timeout(&raft, config.election_timeout_ms);
    raft_set_heartbeat_timeout(&raft, config.heartbeat_ms);
    // Pre-vote keeps a member that was cut off from forcing a new election
    // when it comes back: failovers stay short (docs/raft-research.md, 4).
    raft_set_pre_vote(&raft, true);
    raft_set_snapshot_threshold(&raft, config.snapshot_threshold);
    raft_set_snapshot_trailing(&raft, config.snapshot_trailing);
    if (raft_start(&raft) != 0) return std::string("raft_start: ") + raft_errmsg(&raft);
    running = true;
    uv_check_init(loop.uv(), &check);
    check.data = this;
    uv_check_start(&check, [](uv_check_t* handle) { static_cast<Core*>(handle->data)->refresh(); });
    refresh();
    return {};
  }

  // A new leader has entries of earlier terms it may not have applied:
  // libraft 0.15 commits them only with an entry of the leader's own term.
  // A barrier is that entry; the leader is ready once it is applied.
  void make_ready_as_leader() {
    if (raft_state(&raft) != RAFT_LEADER) return;
    if (ready_term == raft.current_term || barrier_term == raft.current_term) return;
    barrier_term = raft.current_term;
    barrier.data = this;
    if (raft_barrier(&raft, &barrier, [](struct raft_barrier* request, int outcome) {
          Core& core = *static_cast<Core*>(request->data);
          if (outcome == 0) core.ready_term = core.barrier_term;
          core.barrier_term = 0;  // failed: the next turn tries again, if it still leads
        }) != 0)
      barrier_term = 0;
  }

  void refresh() {
    if (!closing) make_ready_as_leader();
    raft_id leader = 0;
    const char* leader_address = nullptr;
    raft_leader(&raft, &leader, &leader_address);
    const int state = raft_state(&raft);
    if (state == RAFT_CANDIDATE && !raft.candidate_state.in_pre_vote &&
        raft.current_term != counted_election_term) {
      counted_election_term = raft.current_term;
      ++elections;
    }
    if (state == RAFT_LEADER) mark_in_sync_window();
    std::lock_guard lock(status_mutex);
    status.role = role_of(state);
    status.ready = status.role == RaftStatus::Role::kLeader && ready_term == raft.current_term;
    status.leader_id = leader;
    if (leader_address == nullptr) {
      status.leader_address.clear();
    } else if (status.leader_address != leader_address) {
      status.leader_address = leader_address;
    }
    status.term = raft.current_term;
    status.commit_index = raft.commit_index;
    status.last_applied = raft.last_applied;
    status.last_index = raft_last_index(&raft);
    status.elections = elections;
    status.snapshot_index = raft.log.snapshot.last_index;
    status.snapshot_bytes = snapshot_bytes;
    copy_replicas(state);
  }

  void mark_in_sync_window() {
    const raft_time now = uv_now(loop.uv());
    now_ms = now;
    if (led_term != raft.current_term) {
      last_heard.clear();
      // A new leader learns where each follower is from their first
      // answers: until a window has passed, every follower counts as in
      // sync.
      led_term = raft.current_term;
      window_started = now;
      window_commit = raft.commit_index;
      in_sync_from = 0;
    } else if (now - window_started >= in_sync_window()) {
      window_started = now;
      in_sync_from = window_commit;
      window_commit = raft.commit_index;
    }
  }

  // Whether the leader heard from `id` within the last window: a follower
  // that stopped is out of sync even when nothing was committed since.
  bool heard_lately(raft_id id, const raft_progress& progress) {
    auto it = std::find_if(last_heard.begin(), last_heard.end(),
                           [id](const auto& heard) { return heard.first == id; });
    if (it == last_heard.end()) it = last_heard.insert(it, {id, window_started});
    if (progress.recent_recv) it->second = now_ms;
    return now_ms - it->second < in_sync_window();
  }

  raft_time in_sync_window() const {
    return 4 * static_cast<raft_time>(config.election_timeout_ms);
  }

  // Under status_mutex. In place: no allocation once the list has its size.
  void copy_replicas(int state) {
    std::vector<RaftStatus::Replica>& replicas = status.replicas;
    if (state != RAFT_LEADER || raft.leader_state.progress == nullptr) {
      replicas.clear();
      return;
    }
    std::size_t count = 0;
    for (unsigned i = 0; i < raft.configuration.n; ++i) {
      const raft_server& server = raft.configuration.servers[i];
      if (server.id == raft.id || server.role != RAFT_VOTER) continue;
      if (count == replicas.size()) replicas.emplace_back();
      RaftStatus::Replica& replica = replicas[count++];
      replica.id = server.id;
      if (replica.address != server.address) replica.address = server.address;
      const raft_progress& progress = raft.leader_state.progress[i];
      replica.match_index = progress.match_index;
      replica.in_sync = replica.match_index >= in_sync_from && heard_lately(server.id, progress);
    }
    replicas.resize(count);
  }

  // ---- hand-over ----
  void hand_over(std::function<void(std::uint64_t)> done) {
    if (!running || closing || raft_state(&raft) != RAFT_LEADER || transfer_done) return done(0);
    transfer = {};
    transfer.data = this;
    transfer_done = std::move(done);
    // libraft calls back once the new leader is heard from, after an
    // election timeout without one, or when the member closes.
    const int refused = raft_transfer(&raft, &transfer, 0, [](struct raft_transfer* request) {
      Core& core = *static_cast<Core*>(request->data);
      raft_id now_leading = 0;
      const char* address = nullptr;
      raft_leader(&core.raft, &now_leading, &address);
      std::exchange(core.transfer_done, nullptr)(now_leading == core.config.id ? 0 : now_leading);
    });
    if (refused != 0) std::exchange(transfer_done, nullptr)(0);
  }

  // ---- propose ----
  void propose(std::string entry, std::uint64_t term, std::function<void(const Proposed&)> done) {
    Proposed failed;
    if (!running || closing) {
      failed.error = "the member is not running";
      return done(failed);
    }
    if (term != 0 && (raft_state(&raft) != RAFT_LEADER || raft.current_term != term)) {
      failed.not_leader = true;
      failed.error = "not the leader in term " + std::to_string(term);
      return done(failed);
    }
    raft_buffer buffer = padded_entry(entry);
    if (buffer.base == nullptr) {
      failed.error = "out of memory";
      return done(failed);
    }
    auto* proposal = new Proposal;
    proposal->request.data = proposal;
    proposal->done = std::move(done);
    const int rv = raft_apply(&raft, &proposal->request, &buffer, 1, &Core::proposal_done);
    if (rv == 0) return;
    raft_free(buffer.base);  // not taken: libraft hands it back on every failure
    failed.not_leader = rv == RAFT_NOTLEADER;
    failed.error = raft_strerror(rv);
    const auto callback = std::move(proposal->done);
    delete proposal;
    callback(failed);
  }

  static void proposal_done(struct raft_apply* request, int status, void*) {
    auto* proposal = static_cast<Proposal*>(request->data);
    Proposed outcome;
    outcome.index = request->index;
    outcome.committed = status == 0;
    if (status != 0) {
      outcome.not_leader = status == RAFT_NOTLEADER || status == RAFT_LEADERSHIPLOST;
      outcome.error = raft_strerror(status);
    }
    const auto callback = std::move(proposal->done);
    delete proposal;
    callback(outcome);
  }

  // ---- close ----
  // On the loop's thread; `closed` is set once libraft and libuv let go.
  void shut() {
    if (closing) return;
    closing = true;
    ++closes_pending;  // this call's own, so that nothing finishes inside it
    if (running) {
      ++closes_pending;
      uv_close(reinterpret_cast<uv_handle_t*>(&check),
               [](uv_handle_t* handle) { static_cast<Core*>(handle->data)->one_closed(); });
    }
    while (!delayed.empty())  // what libraft handed in is written, or failed, before it closes
      append_now(delayed.front());
    if (raft_open) {
      ++closes_pending;
      raft_close(&raft, [](struct raft* r) {
        Core& core = *static_cast<Core*>(r->data);
        raft_uv_close(&core.io);
        core.one_closed();
      });
    } else if (io_open) {
      raft_uv_close(&io);
    }
    one_closed();
  }

  void one_closed() {
    if (--closes_pending == 0 && delayed_done.empty()) finished();
  }

  void finished() {
    transport.reset();  // here, on the loop's thread, where its callbacks run
    {
      std::lock_guard lock(status_mutex);
      status.role = RaftStatus::Role::kUnavailable;
    }
    closed.set_value();
  }
};

RaftMember::RaftMember(RaftLoop& loop, RaftLinks& links, RaftMemberConfig config,
                       StateMachine& machine)
    : loop_(loop), core_(std::make_unique<Core>(loop, links, std::move(config), machine)) {}

RaftMember::~RaftMember() {
  close();
}

std::string RaftMember::start() {
  if (loop_.on_loop_thread()) return "start() waits for the loop: not on its own thread";
  if (started_ || closed_) return "a member starts once";
  std::string error;
  if (!loop_.run([&] { error = core_->open(); })) return "the loop is not running";
  started_ = true;  // libraft holds something now: close() lets go of it
  if (!error.empty()) close();
  return error;
}

void RaftMember::propose(std::string entry, std::function<void(const Proposed&)> done,
                         std::uint64_t term) {
  Core& core = *core_;
  auto task = [&core, entry = std::move(entry), term, done]() mutable {
    core.propose(std::move(entry), term, std::move(done));
  };
  if (loop_.on_loop_thread()) return task();
  if (!loop_.post(std::move(task))) {
    Proposed failed;
    failed.error = "the loop is stopping";
    done(failed);
  }
}

void RaftMember::hand_over_leadership(std::function<void(std::uint64_t leader)> done) {
  Core& core = *core_;
  auto task = [&core, done]() mutable { core.hand_over(std::move(done)); };
  if (loop_.on_loop_thread()) return task();
  if (!started_ || closed_ || !loop_.post(std::move(task))) done(0);
}

RaftStatus RaftMember::status() const {
  std::lock_guard lock(core_->status_mutex);
  return core_->status;
}

void RaftMember::close() {
  if (std::exchange(closed_, true) || !started_) return;
  if (loop_.on_loop_thread()) {
    std::fprintf(stderr, "raft member %llu: close() on its loop's thread would wait forever\n",
                 static_cast<unsigned long long>(core_->config.id));
    std::abort();
  }
  Core& core = *core_;
  std::future<void> closed = core.closed.get_future();
  if (!loop_.post([&core] { core.shut(); })) {
    // Freeing what libraft still runs on would be worse than stopping.
    std::fprintf(stderr, "raft member %llu: its loop stopped before the member closed\n",
                 static_cast<unsigned long long>(core_->config.id));
    std::abort();
  }
  closed.wait();
}

}  // namespace sluice::cluster::raft
