// One thread running a libuv loop, where Raft group members live
// (docs/replication.md): libraft is single-threaded, so every call on a
// member, and every callback it makes, happens on its loop's thread. Other
// threads hand work in with post() or run(), or through a Gate, which may
// outlive the loop.
//
// The loop's thread blocks SIGPIPE: a member writing to a peer whose
// channel just closed gets EPIPE, not a signal that ends the process.
//
// libuv's headers stay out of here: only the members' .cpp files see them.
#pragma once

#include <functional>
#include <memory>
#include <mutex>
#include <string>

struct uv_loop_s;

namespace sluice::cluster::raft {

class RaftLoop;

// Posts to a loop for as long as it runs, and refuses afterwards: what a
// callback from another thread (the links) holds, since it may come after
// the loop is gone.
class Gate {
 public:
  bool post(std::function<void()> task);

 private:
  friend class RaftLoop;
  std::mutex mutex_;
  RaftLoop* loop_ = nullptr;
};

class RaftLoop {
 public:
  explicit RaftLoop(std::string name);
  ~RaftLoop();  // stop()
  RaftLoop(const RaftLoop&) = delete;
  RaftLoop& operator=(const RaftLoop&) = delete;

  void start();

  // Runs `task` on the loop's thread after what was posted before it. False
  // (and `task` dropped) before start() and once the loop is stopping.
  bool post(std::function<void()> task);
  // Runs `task` on the loop's thread and waits for it; on the loop's own
  // thread it runs at once. False when post() would be.
  bool run(const std::function<void()>& task);
  std::shared_ptr<Gate> gate() const;

  // Runs what was posted, then waits for the loop to have nothing left
  // open and joins its thread. Its members must have been closed first
  // (a member's handles would keep the loop running). Not on its thread.
  void stop();

  // For the members, on the loop's thread only.
  uv_loop_s* uv();
  bool on_loop_thread() const;
  const std::string& name() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace sluice::cluster::raft
