// One thread running a libuv loop, where Raft group members live
// (docs/raft-research.md): libraft is single-threaded, so every call on a
// member, and every callback it makes, happens on its loop's thread. Other
// threads hand work in with post() or run().
//
// The process must ignore SIGPIPE (sluice's main does): a member writing to
// a peer whose channel just closed gets EPIPE, not a signal.
//
// libuv's headers stay out of here: only the members' .cpp files see them.
#pragma once

#include <functional>
#include <memory>
#include <string>

struct uv_loop_s;

namespace sluice::cluster::raft {

class RaftLoop {
 public:
  explicit RaftLoop(std::string name);
  ~RaftLoop();  // stop()
  RaftLoop(const RaftLoop&) = delete;
  RaftLoop& operator=(const RaftLoop&) = delete;

  void start();

  // Runs `task` on the loop's thread after what was posted before it. False
  // (and `task` dropped) once the loop is stopping.
  bool post(std::function<void()> task);
  // Runs `task` on the loop's thread and waits for it; on the loop's own
  // thread it runs at once. False when the loop is stopping.
  bool run(const std::function<void()>& task);

  // Runs what was posted, then waits for the loop to have nothing left
  // open and joins its thread. Its members must have been closed first.
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
