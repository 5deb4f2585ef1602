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
#include <deque>
#include <map>
#include <mutex>
#include <set>
#include <system_error>
#include <thread>
#include <utility>
#include <vector>

#include "peer.grpc.pb.h"

namespace sluice::cluster {

namespace {

using Clock = std::chrono::steady_clock;

constexpr std::size_t kChunkBytes = 64 * 1024;
constexpr std::uint64_t kWakeKey = 0;  // the eventfd that stops the pump
constexpr auto kRedial = std::chrono::milliseconds(200);
constexpr auto kWatchEvery = std::chrono::milliseconds(250);
// What may wait for one stream's writer, and for one member's socket.
// Past it the stream (or the channel) is ended: Raft sends it again.
constexpr std::size_t kMaxQueuedBytes = 64u << 20;

// One stream to a peer node, as either side sees it. Frames queue for a
// writer thread of its own: nobody else ever waits for the stream.
class Link {
 public:
  // `write(frame, more)`: `more` says another frame follows at once (gRPC
  // may hold it back to send both together).
  using Write = std::function<bool(const RaftFrame&, bool more)>;
  Link(std::string node, bool dialled_here, Write write, std::function<void()> cancel)
      : node_(std::move(node)),
        dialled_here_(dialled_here),
        next_channel_(dialled_here ? 1 : 2),
        write_(std::move(write)),
        cancel_(std::move(cancel)) {
    writer_ = std::thread([this] { run_writer(); });
  }
  ~Link() { retire(); }

  const std::string& node() const { return node_; }

  // Channel ids of the two sides never meet: odd from the side that
  // opened the stream, even from the other. Under PeerRaftLinks' mutex.
  std::uint64_t next_channel() { return std::exchange(next_channel_, next_channel_ + 2); }
  bool from_peer(std::uint64_t channel) const { return (channel % 2 == 1) != dialled_here_; }

  // Queues `frame`; false once the stream ended, or when too much waits
  // already (it is ended then).
  bool send(RaftFrame frame) {
    {
      std::lock_guard lock(mutex_);
      if (ended_) return false;
      const std::size_t bytes = frame.ByteSizeLong();
      if (queued_bytes_ + bytes <= kMaxQueuedBytes) {
        queued_bytes_ += bytes;
        queue_.push_back(std::move(frame));
        wake_.notify_one();
        return true;
      }
    }
    spdlog::warn("event=raft_link_overflow node={} note=\"the peer reads too slowly\"", node_);
    end();
    return false;
  }

  // A write under way for longer than `limit`.
  bool stuck(Clock::time_point now, Clock::duration limit) const {
    const auto since = writing_since_.load(std::memory_order_relaxed);
    return since != Clock::duration::zero() && now.time_since_epoch() - since > limit;
  }

  // Ends the stream: what is queued is dropped, a write under way fails.
  // Never waits for a write.
  void end() {
    {
      std::lock_guard lock(mutex_);
      ended_ = true;
      queue_.clear();
      queued_bytes_ = 0;
    }
    wake_.notify_one();
    std::lock_guard lock(cancel_mutex_);
    if (cancel_) cancel_();
  }

  // Ends it and waits for its writer: the stream's objects may go after.
  void retire() {
    end();
    if (writer_.joinable()) writer_.join();
    std::lock_guard lock(cancel_mutex_);
    cancel_ = nullptr;
  }

 private:
  // Takes everything queued at once: one lock and one wake-up for a batch,
  // whose frames gRPC may send together.
  void run_writer() {
    std::deque<RaftFrame> batch;
    while (true) {
      {
        std::unique_lock lock(mutex_);
        wake_.wait(lock, [this] { return ended_ || !queue_.empty(); });
        if (ended_) return;
        batch.swap(queue_);
        queued_bytes_ = 0;
      }
      for (std::size_t i = 0; i < batch.size(); ++i) {
        writing_since_.store(Clock::now().time_since_epoch(), std::memory_order_relaxed);
        const bool wrote = write_(batch[i], i + 1 < batch.size());
        writing_since_.store(Clock::duration::zero(), std::memory_order_relaxed);
        if (!wrote) return end();
      }
      batch.clear();
    }
  }

  const std::string node_;
  const bool dialled_here_;
  std::uint64_t next_channel_;
  Write write_;  // the writer thread's

  std::mutex mutex_;
  std::condition_variable wake_;
  std::deque<RaftFrame> queue_;
  std::size_t queued_bytes_ = 0;  // in the queue, not in the batch being written
  bool ended_ = false;
  // Since when the write under way has waited; zero between writes.
  std::atomic<Clock::duration> writing_since_{Clock::duration::zero()};

  std::mutex cancel_mutex_;  // never held across a write
  std::function<void()> cancel_;
  std::thread writer_;
};

grpc::WriteOptions write_options(bool more) {
  grpc::WriteOptions options;
  if (more) options.set_buffer_hint();
  return options;
}

RaftFrame close_frame(std::uint64_t channel) {
  RaftFrame frame;
  frame.set_kind(RaftFrame::CLOSE);
  frame.set_channel(channel);
  return frame;
}

[[noreturn]] void fail(const char* what) {
  throw std::system_error(errno, std::generic_category(), what);
}

}  // namespace

struct PeerRaftLinks::Impl {
  Impl(std::string s, ChannelTo c, std::chrono::milliseconds stuck)
      : self(std::move(s)), channel_to(std::move(c)), stuck_after(stuck) {
    epoll_fd = ::epoll_create1(EPOLL_CLOEXEC);
    if (epoll_fd < 0) fail("epoll_create1");
    wake_fd = ::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (wake_fd < 0) fail("eventfd");
    epoll_event event{};
    event.events = EPOLLIN;
    event.data.u64 = kWakeKey;
    if (::epoll_ctl(epoll_fd, EPOLL_CTL_ADD, wake_fd, &event) != 0) fail("epoll_ctl");
    pump = std::thread([this] { run_pump(); });
  }

  ~Impl() {
    for (auto& [key, channel] : channels)
      ::close(channel.fd);
    ::close(wake_fd);
    ::close(epoll_fd);
  }

  struct Channel {
    std::shared_ptr<Link> link;
    std::uint64_t id = 0;
    int fd = -1;
    // Arrived for the member, not yet taken by its socket: from `sent` on.
    std::string unwritten;
    std::size_t sent = 0;
    bool peer_closed = false;  // closes once `unwritten` is written
  };
  enum class Flushed { kMore, kBroken, kDone };

  const std::string self;
  const ChannelTo channel_to;
  // A write that makes no progress this long means the peer stopped reading
  // (or the connection is black-holed): the stream is ended and redialled,
  // and its groups see their channels end (cluster.raft.link_stuck_ms).
  const std::chrono::milliseconds stuck_after;
  int epoll_fd = -1;
  int wake_fd = -1;
  std::thread pump;
  std::atomic<std::uint64_t> streams_opened{0};

  std::mutex stop_mutex;  // one stop() at a time, the second waits
  std::mutex mutex;
  std::condition_variable changed;  // redial waits, serve() calls ending
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
    Channel channel;
    channel.link = link;
    channel.id = id;
    channel.fd = fd;
    channels.emplace(key, std::move(channel));
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

  // Writes what waits for the member's socket.
  Flushed flush(Channel& channel, std::uint64_t key) {
    while (channel.sent < channel.unwritten.size()) {
      const ssize_t wrote =
          ::send(channel.fd, channel.unwritten.data() + channel.sent,
                 channel.unwritten.size() - channel.sent, MSG_NOSIGNAL | MSG_DONTWAIT);
      if (wrote < 0) {
        if (errno == EINTR) continue;
        if (errno != EAGAIN && errno != EWOULDBLOCK) return Flushed::kBroken;
        break;
      }
      channel.sent += static_cast<std::size_t>(wrote);
    }
    const bool drained = channel.sent == channel.unwritten.size();
    if (drained) {
      channel.unwritten.clear();
      channel.sent = 0;
      if (channel.peer_closed) return Flushed::kDone;
    } else if (channel.sent > kChunkBytes) {
      channel.unwritten.erase(0, channel.sent);  // not on every partial write
      channel.sent = 0;
    }
    epoll_event event{};
    event.events = drained ? EPOLLIN : EPOLLIN | EPOLLOUT;
    event.data.u64 = key;
    ::epoll_ctl(epoll_fd, EPOLL_CTL_MOD, channel.fd, &event);
    return Flushed::kMore;
  }

  // ---- the pump: channel sockets into frames ----
  void run_pump() {
    std::array<epoll_event, 64> events;
    std::vector<char> buffer(kChunkBytes);
    auto next_watch = Clock::now() + kWatchEvery;
    while (true) {
      const int ready = ::epoll_wait(epoll_fd, events.data(), static_cast<int>(events.size()),
                                     static_cast<int>(kWatchEvery.count()));
      if (ready < 0 && errno != EINTR) {
        spdlog::error("event=raft_links_pump_failed error=\"{}\"", std::strerror(errno));
        end_all_links();
        return;
      }
      for (int i = 0; i < ready; ++i) {
        const epoll_event& event = events[static_cast<std::size_t>(i)];
        if (event.data.u64 == kWakeKey) {
          std::lock_guard lock(mutex);
          if (stopping) return;
          continue;
        }
        pump_one(event.data.u64, event.events, buffer);
      }
      if (Clock::now() >= next_watch) {
        end_stuck_links();
        next_watch = Clock::now() + kWatchEvery;
      }
    }
  }

  void pump_one(std::uint64_t key, std::uint32_t happened, std::vector<char>& buffer) {
    std::shared_ptr<Link> link;
    std::uint64_t id = 0;
    ssize_t got = 0;
    bool say_closed = false;
    {
      std::lock_guard lock(mutex);
      auto it = channels.find(key);
      if (it == channels.end()) return;
      link = it->second.link;
      id = it->second.id;
      if (happened & EPOLLOUT) {
        const Flushed flushed = flush(it->second, key);
        if (flushed != Flushed::kMore) {
          say_closed = flushed == Flushed::kBroken;
          close_channel(it);
          it = channels.end();
        }
      }
      if (it != channels.end() && (happened & (EPOLLIN | EPOLLHUP | EPOLLERR))) {
        // Read under the mutex: no one closes the fd (and the number is
        // not reused) meanwhile.
        got = ::read(it->second.fd, buffer.data(), buffer.size());
        if (got < 0 && (errno == EAGAIN || errno == EINTR)) return;
        if (got <= 0) {
          say_closed = true;  // the member closed its end
          close_channel(it);
        }
      }
    }
    if (got > 0) {
      RaftFrame frame;
      frame.set_kind(RaftFrame::DATA);
      frame.set_channel(id);
      frame.set_data(buffer.data(), static_cast<std::size_t>(got));
      link->send(std::move(frame));
    } else if (say_closed) {
      link->send(close_frame(id));
    }
  }

  void wake_pump() {
    const std::uint64_t one = 1;
    [[maybe_unused]] const ssize_t wrote = ::write(wake_fd, &one, sizeof one);
  }

  std::vector<std::shared_ptr<Link>> all_links() {
    std::lock_guard lock(mutex);
    std::vector<std::shared_ptr<Link>> all;
    for (const auto& [node, link] : links)
      all.push_back(link);
    return all;
  }

  void end_stuck_links() {
    const auto now = Clock::now();
    for (const std::shared_ptr<Link>& link : all_links()) {
      if (!link->stuck(now, stuck_after)) continue;
      spdlog::warn("event=raft_link_stuck node={} note=\"no write progress: the stream is ended\"",
                   link->node());
      link->end();
    }
  }

  void end_all_links() {
    for (const std::shared_ptr<Link>& link : all_links())
      link->end();
  }

  // ---- streams: frames into channel sockets ----
  bool link_up(const std::shared_ptr<Link>& link) {
    std::shared_ptr<Link> replaced;
    {
      std::lock_guard lock(mutex);
      if (stopping) return false;
      auto& current = links[link->node()];
      replaced = std::exchange(current, link);
    }
    // A new stream from that node: the old one is half-open, or dead.
    if (replaced) replaced->end();
    streams_opened.fetch_add(1, std::memory_order_relaxed);
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
        case RaftFrame::CLOSE:
          closed_by_peer(*link, frame.channel());
          break;
        default:
          break;
      }
    }
  }

  void deliver(Link& link, RaftFrame& frame) {
    {
      std::lock_guard lock(mutex);
      const auto it = find(&link, frame.channel());
      if (it == channels.end()) return;  // closed here meanwhile
      Channel& channel = it->second;
      if (channel.unwritten.size() - channel.sent + frame.data().size() > kMaxQueuedBytes) {
        spdlog::warn("event=raft_channel_overflow node={} note=\"a member reads too slowly\"",
                     link.node());
      } else {
        if (channel.unwritten.empty()) {
          channel.unwritten.swap(*frame.mutable_data());
        } else {
          channel.unwritten += frame.data();
        }
        if (flush(channel, it->first) != Flushed::kBroken) return;
      }
      close_channel(it);
    }
    link.send(close_frame(frame.channel()));
  }

  // What the peer sent before it closed the channel still reaches the
  // member; then the channel closes.
  void closed_by_peer(Link& link, std::uint64_t id) {
    std::lock_guard lock(mutex);
    const auto it = find(&link, id);
    if (it == channels.end()) return;
    it->second.peer_closed = true;
    if (flush(it->second, it->first) != Flushed::kMore) close_channel(it);
  }

  void opened_by_peer(const std::shared_ptr<Link>& link, const RaftFrame& frame) {
    Accept accept;
    int pair[2] = {-1, -1};
    {
      std::lock_guard lock(mutex);
      if (!link->from_peer(frame.channel()) || keys.contains({link.get(), frame.channel()})) {
        spdlog::warn(
            "event=raft_open_refused node={} channel={} note=\"not a channel id the "
            "peer may open\"",
            link->node(), frame.channel());
        return;
      }
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
      if (changed.wait_for(lock, kRedial, [this] { return stopping; })) return;
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
          node, true,
          [s = stream.get()](const RaftFrame& f, bool more) {
            return s->Write(f, write_options(more));
          },
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

PeerRaftLinks::PeerRaftLinks(std::string self, ChannelTo channel_to,
                             std::chrono::milliseconds stuck_after)
    : impl_(std::make_unique<Impl>(std::move(self), std::move(channel_to), stuck_after)) {}

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
  {
    // Known before it reads anything, so that stop() can cancel it.
    std::lock_guard lock(l.mutex);
    if (l.stopping) return {grpc::StatusCode::UNAVAILABLE, "this node is stopping"};
    l.serving.insert(context);
  }
  grpc::Status status = grpc::Status::OK;
  RaftFrame hello;
  // The lower id dials: a HELLO from a higher one is not a peer's.
  if (!stream->Read(&hello) || hello.kind() != RaftFrame::HELLO || hello.node().empty() ||
      !(hello.node() < l.self)) {
    status = {grpc::StatusCode::INVALID_ARGUMENT, "a Raft stream starts with the dialler's HELLO"};
  } else {
    auto link = std::make_shared<Link>(
        hello.node(), false,
        [stream](const RaftFrame& f, bool more) { return stream->Write(f, write_options(more)); },
        [context] { context->TryCancel(); });
    if (l.link_up(link)) {
      l.read_frames(link, [stream](RaftFrame& f) { return stream->Read(&f); });
      l.link_down(link);
    }
    link->retire();
  }
  std::lock_guard lock(l.mutex);
  l.serving.erase(context);
  l.changed.notify_all();
  return status;
}

void PeerRaftLinks::stop() {
  Impl& l = *impl_;
  std::lock_guard one_at_a_time(l.stop_mutex);
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
  l.end_all_links();
  l.changed.notify_all();
  l.wake_pump();
  l.pump.join();
  for (auto& [node, thread] : diallers)
    thread.join();
  std::unique_lock lock(l.mutex);
  l.changed.wait(lock, [&l] { return l.serving.empty(); });
  while (!l.channels.empty())
    l.close_channel(l.channels.begin());
  l.listeners.clear();
}

std::uint64_t PeerRaftLinks::streams_opened() const {
  return impl_->streams_opened.load(std::memory_order_relaxed);
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

void PeerRaftLinks::listen(std::uint64_t group, const std::string& address, Accept accept) {
  std::lock_guard lock(impl_->mutex);
  if (!impl_->stopping) impl_->listeners[{group, address}] = std::move(accept);
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
    if (!l.stopping && it != l.links.end() &&
        ::socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, pair) == 0) {
      link = it->second;
      id = link->next_channel();
      l.add_channel(link, id, pair[0]);
    }
  }
  if (!link) return opened(-1);  // raft_uv dials again shortly
  RaftFrame frame;
  frame.set_kind(RaftFrame::OPEN);
  frame.set_channel(id);
  frame.set_group(group);
  frame.set_from_id(from_id);
  frame.set_from_address(from_address);
  frame.set_to_address(to_address);
  if (!link->send(std::move(frame))) {
    ::close(pair[1]);  // the stream is down: its channels close with it
    return opened(-1);
  }
  opened(pair[1]);
}

}  // namespace sluice::cluster
