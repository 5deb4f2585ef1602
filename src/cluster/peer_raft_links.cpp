#include "cluster/peer_raft_links.hpp"

#include <grpcpp/grpcpp.h>
#include <spdlog/spdlog.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <array>
#include <atomic>
#include <cerrno>
#include <condition_variable>
#include <cstring>
#include <map>
#include <mutex>
#include <set>
#include <thread>
#include <utility>
#include <vector>

#include "peer.grpc.pb.h"

namespace sluice::cluster {

namespace {

constexpr std::size_t kChunkBytes = 64 * 1024;
constexpr std::uint64_t kWakeKey = 0;  // the eventfd that stops the pump
constexpr auto kRedial = std::chrono::milliseconds(200);

// One stream to a peer node, as either side sees it.
class Link {
 public:
  Link(std::string node, bool dialled_here, std::function<bool(const RaftFrame&)> write,
       std::function<void()> cancel)
      : node_(std::move(node)),
        next_channel_(dialled_here ? 1 : 2),
        write_(std::move(write)),
        cancel_(std::move(cancel)) {}

  const std::string& node() const { return node_; }

  // Channel ids of the two sides never meet: odd from the side that
  // opened the stream, even from the other. Under PeerRaftLinks' mutex.
  std::uint64_t next_channel() { return std::exchange(next_channel_, next_channel_ + 2); }

  // False once the stream broke or ended; it is cancelled then, so its
  // reader stops too.
  bool send(const RaftFrame& frame) {
    std::lock_guard lock(mutex_);
    if (!write_) return false;
    if (write_(frame)) return true;
    end_locked();
    return false;
  }

  void end() {
    std::lock_guard lock(mutex_);
    end_locked();
  }

  // The stream's objects go away after this: nothing reaches them again.
  void retire() {
    std::lock_guard lock(mutex_);
    write_ = nullptr;
    cancel_ = nullptr;
  }

 private:
  void end_locked() {
    write_ = nullptr;
    if (cancel_) std::exchange(cancel_, nullptr)();
  }

  const std::string node_;
  std::uint64_t next_channel_;
  std::mutex mutex_;  // gRPC allows one Write at a time on a stream
  std::function<bool(const RaftFrame&)> write_;
  std::function<void()> cancel_;
};

RaftFrame close_frame(std::uint64_t channel) {
  RaftFrame frame;
  frame.set_kind(RaftFrame::CLOSE);
  frame.set_channel(channel);
  return frame;
}

}  // namespace

struct PeerRaftLinks::Impl {
  Impl(std::string s, ChannelTo c) : self(std::move(s)), channel_to(std::move(c)) {
    epoll_fd = ::epoll_create1(EPOLL_CLOEXEC);
    wake_fd = ::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    epoll_event event{};
    event.events = EPOLLIN;
    event.data.u64 = kWakeKey;
    ::epoll_ctl(epoll_fd, EPOLL_CTL_ADD, wake_fd, &event);
    pump = std::thread([this] { run_pump(); });
  }

  ~Impl() {
    ::close(wake_fd);
    ::close(epoll_fd);
  }

  struct Channel {
    std::shared_ptr<Link> link;
    std::uint64_t id = 0;
    int fd = -1;
    std::string unwritten;  // arrived for the member, not yet taken by its socket
  };

  const std::string self;
  const ChannelTo channel_to;
  int epoll_fd = -1;
  int wake_fd = -1;
  std::thread pump;

  std::mutex mutex;
  std::condition_variable redial;
  bool stopping = false;
  std::map<std::pair<std::uint64_t, std::string>, Accept> listeners;
  std::map<std::string, std::shared_ptr<Link>> links;  // the stream up now, by node
  std::map<std::string, std::thread> diallers;
  std::set<grpc::ClientContext*> dialling;
  std::set<grpc::ServerContext*> serving;
  // By key (the epoll data); the key of each (link, channel id).
  std::map<std::uint64_t, Channel> channels;
  std::map<std::pair<const Link*, std::uint64_t>, std::uint64_t> keys;
  std::uint64_t next_key = 1;

  // ---- channels (under `mutex`) ----
  void add_channel(const std::shared_ptr<Link>& link, std::uint64_t id, int fd) {
    const std::uint64_t key = next_key++;
    channels.emplace(key, Channel{link, id, fd, {}});
    keys[{link.get(), id}] = key;
    epoll_event event{};
    event.events = EPOLLIN;
    event.data.u64 = key;
    ::epoll_ctl(epoll_fd, EPOLL_CTL_ADD, fd, &event);
  }

  void close_channel(std::map<std::uint64_t, Channel>::iterator it) {
    ::epoll_ctl(epoll_fd, EPOLL_CTL_DEL, it->second.fd, nullptr);
    ::close(it->second.fd);
    keys.erase({it->second.link.get(), it->second.id});
    channels.erase(it);
  }

  std::map<std::uint64_t, Channel>::iterator find(const Link* link, std::uint64_t id) {
    const auto key = keys.find({link, id});
    return key == keys.end() ? channels.end() : channels.find(key->second);
  }

  // Writes what waits for the member's socket; false when the socket is
  // gone (the member closed it).
  bool flush(Channel& channel, std::uint64_t key) {
    while (!channel.unwritten.empty()) {
      const ssize_t wrote = ::send(channel.fd, channel.unwritten.data(), channel.unwritten.size(),
                                   MSG_NOSIGNAL | MSG_DONTWAIT);
      if (wrote < 0) {
        if (errno == EINTR) continue;
        if (errno != EAGAIN && errno != EWOULDBLOCK) return false;
        break;
      }
      channel.unwritten.erase(0, static_cast<std::size_t>(wrote));
    }
    epoll_event event{};
    event.events = channel.unwritten.empty() ? EPOLLIN : EPOLLIN | EPOLLOUT;
    event.data.u64 = key;
    ::epoll_ctl(epoll_fd, EPOLL_CTL_MOD, channel.fd, &event);
    return true;
  }

  // ---- the pump: channel sockets into frames ----
  void run_pump() {
    std::array<epoll_event, 64> events;
    std::vector<char> buffer(kChunkBytes);
    RaftFrame frame;
    while (true) {
      const int ready = ::epoll_wait(epoll_fd, events.data(), static_cast<int>(events.size()), -1);
      if (ready < 0) {
        if (errno == EINTR) continue;
        spdlog::error("event=raft_links_pump_failed error=\"{}\"", std::strerror(errno));
        return;
      }
      for (int i = 0; i < ready; ++i) {
        const std::uint64_t key = events[static_cast<std::size_t>(i)].data.u64;
        if (key == kWakeKey) {
          std::lock_guard lock(mutex);
          if (stopping) return;
          continue;
        }
        pump_one(key, events[static_cast<std::size_t>(i)].events, buffer, frame);
      }
    }
  }

  void pump_one(std::uint64_t key, std::uint32_t happened, std::vector<char>& buffer,
                RaftFrame& frame) {
    std::shared_ptr<Link> link;
    std::uint64_t id = 0;
    ssize_t got = -1;
    {
      std::lock_guard lock(mutex);
      const auto it = channels.find(key);
      if (it == channels.end()) return;
      link = it->second.link;
      id = it->second.id;
      if ((happened & EPOLLOUT) && !flush(it->second, key)) {
        close_channel(it);
        got = 0;
      } else if (happened & (EPOLLIN | EPOLLHUP | EPOLLERR)) {
        // Read under the mutex: no one closes the fd (and the number is
        // not reused) meanwhile.
        got = ::read(it->second.fd, buffer.data(), buffer.size());
        if (got < 0 && (errno == EAGAIN || errno == EINTR)) return;
        if (got <= 0) close_channel(it);
      } else {
        return;
      }
    }
    if (got > 0) {
      frame.set_kind(RaftFrame::DATA);
      frame.set_channel(id);
      frame.set_data(buffer.data(), static_cast<std::size_t>(got));
      link->send(frame);
      return;
    }
    link->send(close_frame(id));  // the member closed its end
  }

  void wake_pump() {
    const std::uint64_t one = 1;
    [[maybe_unused]] const ssize_t wrote = ::write(wake_fd, &one, sizeof one);
  }

  // ---- streams: frames into channel sockets ----
  bool link_up(const std::shared_ptr<Link>& link) {
    std::lock_guard lock(mutex);
    if (stopping) return false;
    links[link->node()] = link;
    spdlog::info("event=raft_link_up node={}", link->node());
    return true;
  }

  void link_down(const std::shared_ptr<Link>& link) {
    std::lock_guard lock(mutex);
    if (const auto it = links.find(link->node()); it != links.end() && it->second == link)
      links.erase(it);
    for (auto it = channels.begin(); it != channels.end();) {
      const auto next = std::next(it);
      if (it->second.link == link) close_channel(it);
      it = next;
    }
    spdlog::info("event=raft_link_down node={}", link->node());
  }

  template <class Read>
  void read_frames(const std::shared_ptr<Link>& link, Read read) {
    RaftFrame frame;
    while (read(frame)) {
      switch (frame.kind()) {
        case RaftFrame::DATA:
          deliver(*link, frame);
          break;
        case RaftFrame::OPEN:
          opened_by_peer(link, frame);
          break;
        case RaftFrame::CLOSE: {
          std::lock_guard lock(mutex);
          if (const auto it = find(link.get(), frame.channel()); it != channels.end())
            close_channel(it);
          break;
        }
        default:
          break;
      }
    }
  }

  void deliver(Link& link, const RaftFrame& frame) {
    {
      std::lock_guard lock(mutex);
      const auto it = find(&link, frame.channel());
      if (it == channels.end()) return;  // closed here meanwhile
      it->second.unwritten += frame.data();
      if (flush(it->second, it->first)) return;
      close_channel(it);
    }
    link.send(close_frame(frame.channel()));
  }

  void opened_by_peer(const std::shared_ptr<Link>& link, const RaftFrame& frame) {
    Accept accept;
    int pair[2] = {-1, -1};
    {
      std::lock_guard lock(mutex);
      const auto it = listeners.find({frame.group(), frame.to_address()});
      if (it != listeners.end() &&
          ::socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, pair) == 0) {
        accept = it->second;
        add_channel(link, frame.channel(), pair[0]);
      }
    }
    if (!accept) {
      link->send(close_frame(frame.channel()));  // no such member here (yet)
      return;
    }
    accept(pair[1], frame.from_id(), frame.from_address());
  }

  // ---- dialling ----
  void dial(const std::string& node) {
    while (true) {
      {
        std::lock_guard lock(mutex);
        if (stopping) return;
      }
      if (const std::shared_ptr<grpc::Channel> channel = channel_to(node))
        run_dialled(node, channel);
      std::unique_lock lock(mutex);
      if (redial.wait_for(lock, kRedial, [this] { return stopping; })) return;
    }
  }

  void run_dialled(const std::string& node, const std::shared_ptr<grpc::Channel>& channel) {
    grpc::ClientContext context;
    {
      std::lock_guard lock(mutex);
      if (stopping) return;
      dialling.insert(&context);
    }
    const auto stub = Peer::NewStub(channel);
    const auto stream = stub->Raft(&context);
    RaftFrame hello;
    hello.set_kind(RaftFrame::HELLO);
    hello.set_node(self);
    if (stream->Write(hello)) {
      auto link = std::make_shared<Link>(
          node, true, [s = stream.get()](const RaftFrame& f) { return s->Write(f); },
          [&context] { context.TryCancel(); });
      if (link_up(link)) {
        read_frames(link, [&stream](RaftFrame& f) { return stream->Read(&f); });
        link_down(link);
      }
      link->retire();
    }
    context.TryCancel();
    stream->Finish();
    std::lock_guard lock(mutex);
    dialling.erase(&context);
  }
};

PeerRaftLinks::PeerRaftLinks(std::string self, ChannelTo channel_to)
    : impl_(std::make_unique<Impl>(std::move(self), std::move(channel_to))) {}

PeerRaftLinks::~PeerRaftLinks() {
  stop();
}

void PeerRaftLinks::connect(const std::string& node) {
  Impl& l = *impl_;
  if (node == l.self || !(l.self < node)) return;  // the other node dials
  std::lock_guard lock(l.mutex);
  if (l.stopping || l.diallers.contains(node)) return;
  l.diallers.emplace(node, std::thread([&l, node] { l.dial(node); }));
}

grpc::Status PeerRaftLinks::serve(grpc::ServerContext* context,
                                  grpc::ServerReaderWriter<RaftFrame, RaftFrame>* stream) {
  Impl& l = *impl_;
  RaftFrame hello;
  if (!stream->Read(&hello) || hello.kind() != RaftFrame::HELLO || hello.node().empty())
    return {grpc::StatusCode::INVALID_ARGUMENT, "a Raft stream starts with HELLO"};
  {
    std::lock_guard lock(l.mutex);
    if (l.stopping) return {grpc::StatusCode::UNAVAILABLE, "this node is stopping"};
    l.serving.insert(context);
  }
  auto link = std::make_shared<Link>(
      hello.node(), false, [stream](const RaftFrame& f) { return stream->Write(f); },
      [context] { context->TryCancel(); });
  if (l.link_up(link)) {
    l.read_frames(link, [stream](RaftFrame& f) { return stream->Read(&f); });
    l.link_down(link);
  }
  link->retire();
  std::lock_guard lock(l.mutex);
  l.serving.erase(context);
  return grpc::Status::OK;
}

void PeerRaftLinks::reset(const std::string& node) {
  std::shared_ptr<Link> link;
  {
    std::lock_guard lock(impl_->mutex);
    const auto it = impl_->links.find(node);
    if (it == impl_->links.end()) return;
    link = it->second;
  }
  link->end();  // its reader stops, and closes its channels
}

void PeerRaftLinks::stop() {
  Impl& l = *impl_;
  std::map<std::string, std::thread> diallers;
  {
    std::lock_guard lock(l.mutex);
    if (l.stopping) return;
    l.stopping = true;
    for (grpc::ClientContext* context : l.dialling)
      context->TryCancel();
    for (grpc::ServerContext* context : l.serving)
      context->TryCancel();
    diallers.swap(l.diallers);
  }
  l.redial.notify_all();
  l.wake_pump();
  l.pump.join();
  for (auto& [node, thread] : diallers)
    thread.join();
  // A served stream's handler may still be on its way out: it finds every
  // channel gone, and no new one is made.
  std::lock_guard lock(l.mutex);
  while (!l.channels.empty())
    l.close_channel(l.channels.begin());
  l.listeners.clear();
}

void PeerRaftLinks::listen(std::uint64_t group, const std::string& address, Accept accept) {
  std::lock_guard lock(impl_->mutex);
  impl_->listeners[{group, address}] = std::move(accept);
}

void PeerRaftLinks::unlisten(std::uint64_t group, const std::string& address) {
  std::lock_guard lock(impl_->mutex);
  impl_->listeners.erase({group, address});
}

void PeerRaftLinks::open(std::uint64_t group, std::uint64_t from_id,
                         const std::string& from_address, const std::string& to_address,
                         Opened opened) {
  Impl& l = *impl_;
  std::shared_ptr<Link> link;
  std::uint64_t id = 0;
  int pair[2] = {-1, -1};
  {
    std::lock_guard lock(l.mutex);
    const auto it = l.links.find(to_address);
    if (l.stopping || it == l.links.end() ||
        ::socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, pair) != 0)
      return opened(-1);  // raft_uv dials again shortly
    link = it->second;
    id = link->next_channel();
    l.add_channel(link, id, pair[0]);
  }
  RaftFrame frame;
  frame.set_kind(RaftFrame::OPEN);
  frame.set_channel(id);
  frame.set_group(group);
  frame.set_from_id(from_id);
  frame.set_from_address(from_address);
  frame.set_to_address(to_address);
  if (!link->send(frame)) {
    ::close(pair[1]);  // the stream is down: its channels close with it
    return opened(-1);
  }
  opened(pair[1]);
}

}  // namespace sluice::cluster
