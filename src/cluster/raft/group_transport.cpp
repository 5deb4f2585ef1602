#include "cluster/raft/group_transport.hpp"

#include <unistd.h>
#include <uv.h>

namespace sluice::cluster::raft {

namespace {

GroupTransport& of(raft_uv_transport* t) {
  return *static_cast<GroupTransport*>(t->impl);
}

// A link's answer that reaches a closed transport: its fd is closed.
void close_fd(int fd) {
  if (fd >= 0) ::close(fd);
}

}  // namespace

GroupTransport::GroupTransport(RaftLoop& loop, RaftLinks& links, std::uint64_t group)
    : loop_(loop), links_(links), group_(group), alive_(std::make_shared<Alive>(Alive{this})) {
  transport_.impl = this;
  transport_.init = &GroupTransport::init;
  transport_.listen = &GroupTransport::listen;
  transport_.connect = &GroupTransport::connect;
  transport_.close = &GroupTransport::close;
}

GroupTransport::~GroupTransport() {
  if (listening_) links_.unlisten(group_, address_);
  alive_->transport = nullptr;
}

int GroupTransport::init(raft_uv_transport* t, raft_id id, const char* address) {
  GroupTransport& self = of(t);
  self.id_ = id;
  self.address_ = address;
  return 0;
}

int GroupTransport::listen(raft_uv_transport* t, raft_uv_accept_cb accept) {
  GroupTransport& self = of(t);
  self.accept_ = accept;
  self.listening_ = true;
  self.links_.listen(self.group_, self.address_,
                     [alive = self.alive_, gate = self.loop_.gate()](
                         int fd, std::uint64_t peer_id, const std::string& peer_address) {
                       const bool posted = gate->post([alive, fd, peer_id, peer_address] {
                         if (alive->transport == nullptr) return close_fd(fd);
                         alive->transport->accepted(fd, peer_id, peer_address);
                       });
                       if (!posted) close_fd(fd);
                     });
  return 0;
}

void GroupTransport::accepted(int fd, std::uint64_t peer_id, const std::string& peer_address) {
  if (accept_ == nullptr) return close_fd(fd);
  if (uv_stream_t* stream = wrap(fd)) accept_(&transport_, peer_id, peer_address.c_str(), stream);
}

int GroupTransport::connect(raft_uv_transport* t, raft_uv_connect* request, raft_id,
                            const char* address, raft_uv_connect_cb done) {
  GroupTransport& self = of(t);
  const std::uint64_t attempt = self.next_attempt_++;
  self.attempts_.emplace(attempt, Attempt{request, done});
  // Answered on a later turn of the loop, never from inside this call, as
  // raft_uv expects.
  self.links_.open(self.group_, self.id_, self.address_, address,
                   [alive = self.alive_, gate = self.loop_.gate(), attempt](int fd) {
                     const bool posted = gate->post([alive, attempt, fd] {
                       if (alive->transport == nullptr) return close_fd(fd);
                       alive->transport->connected(attempt, fd);
                     });
                     if (!posted) close_fd(fd);
                   });
  return 0;
}

void GroupTransport::connected(std::uint64_t attempt, int fd) {
  const auto it = attempts_.find(attempt);
  if (it == attempts_.end()) return close_fd(fd);  // cancelled by close()
  const Attempt waiting = it->second;
  attempts_.erase(it);
  if (fd < 0) return waiting.done(waiting.request, nullptr, RAFT_NOCONNECTION);
  uv_stream_t* stream = wrap(fd);
  waiting.done(waiting.request, stream, stream != nullptr ? 0 : RAFT_NOCONNECTION);
}

void GroupTransport::close(raft_uv_transport* t, raft_uv_transport_close_cb done) {
  GroupTransport& self = of(t);
  if (self.listening_) {
    self.links_.unlisten(self.group_, self.address_);
    self.listening_ = false;
  }
  self.accept_ = nullptr;
  // raft_uv waits for every connect it started before the transport closes.
  std::map<std::uint64_t, Attempt> cancelled;
  cancelled.swap(self.attempts_);
  for (auto& [attempt, waiting] : cancelled)
    waiting.done(waiting.request, nullptr, RAFT_CANCELED);
  done(t);
}

uv_stream_t* GroupTransport::wrap(int fd) {
  // raft_uv closes the handle and frees it with raft_free.
  auto* pipe = static_cast<uv_pipe_t*>(raft_malloc(sizeof(uv_pipe_t)));
  if (pipe == nullptr) {
    close_fd(fd);
    return nullptr;
  }
  uv_pipe_init(loop_.uv(), pipe, 0);
  if (uv_pipe_open(pipe, fd) != 0) {
    close_fd(fd);
    // A handle that was initialised is closed before its memory goes.
    uv_close(reinterpret_cast<uv_handle_t*>(pipe), [](uv_handle_t* handle) { raft_free(handle); });
    return nullptr;
  }
  return reinterpret_cast<uv_stream_t*>(pipe);
}

}  // namespace sluice::cluster::raft
