// worker.cpp: the epoll loop and the MQTT handling (see worker.hpp).
//
// Each loop turn: handle every ready socket and the inbox, appending replies
// and deliveries to output buffers; then hand batches to other workers, write
// each dirty connection once, and close what must close.
//
// QoS 2 is answered minimally: PUBREC at once and the message forwarded as
// QoS 1 right away; PUBREL gets PUBCOMP. No duplicate detection: a resent
// QoS 2 PUBLISH is forwarded again.
#include "worker.hpp"

#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <system_error>

namespace relay {

namespace {

constexpr std::uint64_t kWakeTag = ~std::uint64_t{0};
constexpr std::size_t kReadChunk = 128 * 1024;
constexpr std::size_t kKeepBuffer = 4 * 1024 * 1024;  // larger, idle buffers are freed
constexpr std::size_t kMaxOutput = 64 * 1024 * 1024;  // a subscriber this far behind is dropped

bool would_block(int err) {
  return err == EAGAIN || err == EWOULDBLOCK || err == EINTR;
}

unsigned next_id(Conn& c) {  // 16 bits, never 0
  c.last_id = static_cast<std::uint16_t>(c.last_id == 0xFFFF ? 1 : c.last_id + 1);
  return c.last_id;
}

}  // namespace

void ByteBuffer::make_room(std::size_t n) {
  const std::size_t used = size();
  if (cap_ - used >= n && used <= cap_ / 2) {
    std::memmove(buf_.get(), buf_.get() + head_, used);
  } else {
    const std::size_t cap = std::max({cap_ * 2, used + n, std::size_t{4096}});
    auto grown = std::make_unique_for_overwrite<unsigned char[]>(cap);
    if (used > 0) std::memcpy(grown.get(), buf_.get() + head_, used);
    buf_ = std::move(grown);
    cap_ = cap;
  }
  head_ = 0;
  tail_ = used;
}

Worker::Worker(Shared& shared, std::uint32_t id)
    : shared_(shared),
      id_(id),
      scratch_(std::make_unique_for_overwrite<unsigned char[]>(kReadChunk)) {
  epoll_fd_ = epoll_create1(EPOLL_CLOEXEC);
  wake_fd_ = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (epoll_fd_ < 0 || wake_fd_ < 0)
    throw std::system_error(errno, std::generic_category(), "epoll/eventfd");
  epoll_event ev{};
  ev.events = EPOLLIN;
  ev.data.u64 = kWakeTag;
  if (epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, wake_fd_, &ev) < 0)
    throw std::system_error(errno, std::generic_category(), "epoll_ctl");
}

Worker::~Worker() {
  for (auto& c : conns_)
    if (c->open) ::close(c->fd);
  for (int fd : inbox_.fds)
    ::close(fd);
  ::close(wake_fd_);
  ::close(epoll_fd_);
}

void Worker::wake() {
  const std::uint64_t one = 1;
  if (::write(wake_fd_, &one, sizeof one) < 0) {
    // Only fails if the counter is about to overflow: a wake-up is pending anyway.
  }
}

void Worker::adopt(int fd) {
  bool was_empty;
  {
    std::lock_guard guard(inbox_mutex_);
    was_empty = inbox_.empty();
    inbox_.fds.push_back(fd);
  }
  if (was_empty) wake();
}

void Worker::post(Batch& batch) {
  bool was_empty;
  {
    std::lock_guard guard(inbox_mutex_);
    was_empty = inbox_.empty();
    if (was_empty) {
      std::swap(inbox_, batch);  // the sender gets our drained buffers back
    } else {
      const std::size_t base = inbox_.bytes.size();
      inbox_.bytes.insert(inbox_.bytes.end(), batch.bytes.begin(), batch.bytes.end());
      for (Batch::Item item : batch.items) {
        item.offset += base;
        inbox_.items.push_back(item);
      }
    }
  }
  batch.clear();
  // A non-empty inbox was announced already and is not drained yet.
  if (was_empty) wake();
}

void Worker::run() {
  const std::size_t n_workers = shared_.workers.size();
  outgoing_.resize(n_workers);
  staged_.resize(n_workers);
  std::vector<epoll_event> events(256);
  while (!shared_.stop.load(std::memory_order_relaxed)) {
    const int n = epoll_wait(epoll_fd_, events.data(), static_cast<int>(events.size()), -1);
    if (n < 0) {
      if (errno == EINTR) continue;
      std::perror("epoll_wait");
      return;
    }
    for (int i = 0; i < n; ++i) {
      const epoll_event& ev = events[static_cast<std::size_t>(i)];
      if (ev.data.u64 == kWakeTag) {
        take_inbox();
        continue;
      }
      Conn& c = *conns_[ev.data.u64];
      if (!c.open || c.closing) continue;
      if (ev.events & EPOLLOUT) flush(c);
      if (ev.events & (EPOLLIN | EPOLLHUP | EPOLLERR)) on_readable(c);
    }
    end_turn();
  }
}

void Worker::take_inbox() {
  std::uint64_t count;
  if (::read(wake_fd_, &count, sizeof count) < 0) {
    // EAGAIN: someone else's write was already consumed; the inbox is checked anyway.
  }
  {
    std::lock_guard guard(inbox_mutex_);
    std::swap(inbox_, incoming_);
  }
  for (int fd : incoming_.fds)
    add_connection(fd);
  Publish p;
  std::size_t parsed = ~std::size_t{0};
  bool valid = false;
  for (const Batch::Item& item : incoming_.items) {
    Conn* s = find(ConnKey{id_, item.slot, item.gen});
    if (s == nullptr) continue;
    if (item.offset != parsed) {  // items of one packet are adjacent
      parsed = item.offset;
      const unsigned char* pkt = incoming_.bytes.data() + item.offset;
      Frame f;
      valid = read_frame(pkt, item.length, f) == FrameStatus::complete &&
              parse_publish(pkt, f, item.version == 5, p);
    }
    if (valid) deliver(*s, p, item.qos);
  }
  incoming_.clear();
}

void Worker::add_connection(int fd) {
  std::uint32_t slot;
  if (!free_slots_.empty()) {
    slot = free_slots_.back();
    free_slots_.pop_back();
  } else {
    slot = static_cast<std::uint32_t>(conns_.size());
    conns_.push_back(std::make_unique<Conn>());
  }
  Conn& c = *conns_[slot];
  const std::uint32_t gen = c.gen;
  c = Conn{};
  c.fd = fd;
  c.slot = slot;
  c.gen = gen;
  c.open = true;
  epoll_event ev{};
  ev.events = EPOLLIN;
  ev.data.u64 = slot;
  if (epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, fd, &ev) < 0) {
    std::perror("epoll_ctl");
    destroy(c);
  }
}

void Worker::on_readable(Conn& c) {
  // Most reads end on a packet boundary and are parsed straight from the
  // shared scratch buffer; only a split packet's head is kept per connection.
  const bool own = c.in.size() > 0;
  std::size_t want = kReadChunk;
  if (own && c.need > c.in.size()) want = std::max(want, c.need - c.in.size());
  unsigned char* dst = own ? c.in.prepare(want) : scratch_.get();
  const ssize_t n = ::recv(c.fd, dst, want, 0);
  if (n <= 0) {
    if (n == 0 || !would_block(errno)) close_later(c);
    return;
  }
  const auto got = static_cast<std::size_t>(n);
  if (own) {
    c.in.commit(got);
    c.in.consume(process(c, c.in.data(), c.in.size()));
    if (c.in.size() == 0 && c.in.capacity() > kKeepBuffer) c.in.release();
  } else {
    const std::size_t used = process(c, dst, got);
    if (used < got && !c.closing) c.in.append(dst + used, got - used);
  }
  unlock_index();
}

std::size_t Worker::process(Conn& c, const unsigned char* data, std::size_t len) {
  std::size_t pos = 0;
  c.need = 0;
  while (!c.closing) {
    Frame f;
    const FrameStatus status = read_frame(data + pos, len - pos, f);
    if (status == FrameStatus::incomplete) {
      c.need = f.total;
      break;
    }
    if (status == FrameStatus::malformed) {
      close_later(c);
      break;
    }
    handle(c, data + pos, f);
    pos += f.total;
  }
  return pos;
}

void Worker::handle(Conn& c, const unsigned char* pkt, const Frame& f) {
  Reader body(pkt + f.header_len, f.total - f.header_len);
  switch (f.type) {
    case packet::connect:
      on_connect(c, body);
      break;
    case packet::publish:
      on_publish(c, pkt, f);
      break;
    case packet::pubrel:
      send_short(c, 0x70, body.u16());
      break;  // PUBCOMP
    case packet::subscribe:
      on_subscribe(c, body);
      break;
    case packet::unsubscribe:
      on_unsubscribe(c, body);
      break;
    case packet::pingreq:
      send_short(c, 0xD0, 0);
      break;
    case packet::disconnect:
      close_later(c);
      break;
    default:
      break;  // PUBACK, PUBREC, PUBCOMP from subscribers, AUTH, ...
  }
}

void Worker::send_short(Conn& c, unsigned char type, unsigned id) {
  // PINGRESP is two bytes; PUBACK, PUBREC, PUBCOMP carry a packet id (v5
  // allows leaving out the reason code when it is success).
  const bool with_id = type != 0xD0;
  unsigned char* p = c.out.append(with_id ? 4 : 2);
  p[0] = type;
  p[1] = with_id ? 2 : 0;
  if (with_id) put_u16(p + 2, id);
  mark_dirty(c);
}

void Worker::on_connect(Conn& c, Reader r) {
  r.str();  // "MQTT" or "MQIsdp"
  const unsigned level = r.byte();
  if (!r.ok()) {
    close_later(c);
    return;
  }
  if (level < 3 || level > 5) {
    const unsigned char refuse[] = {0x20, 0x02, 0x00, 0x01};  // unacceptable protocol version
    c.out.append(refuse, sizeof refuse);
    mark_dirty(c);
    close_later(c);
    return;
  }
  c.version = level;
  const unsigned char ack[] = {0x20, 0x03, 0x00, 0x00, 0x00};  // v5: empty properties
  if (level == 5) {
    c.out.append(ack, 5);
  } else {
    const unsigned char ack4[] = {0x20, 0x02, 0x00, 0x00};
    c.out.append(ack4, 4);
  }
  mark_dirty(c);
}

void Worker::on_subscribe(Conn& c, Reader r) {
  const unsigned id = r.u16();
  if (c.version == 5) r.skip(r.varint());
  unlock_index();  // the index takes its write lock, which would wait for ours
  codes_.clear();
  while (r.ok() && r.remaining() > 0) {
    const std::string_view filter = r.str();
    const unsigned qos = std::min(r.byte() & 3u, 1u);
    if (!r.ok()) break;
    if (filter.empty()) {
      codes_.push_back(0x80);
      continue;
    }
    auto it = std::find_if(c.filters.begin(), c.filters.end(),
                           [&](const auto& f) { return f.first == filter; });
    if (it == c.filters.end())
      c.filters.emplace_back(std::string(filter), qos);  // first, so close always cleans up
    else
      it->second = qos;
    shared_.index.add(filter, key(c), qos);
    codes_.push_back(static_cast<unsigned char>(qos));
  }
  if (!r.ok() || codes_.empty()) {
    close_later(c);
    return;
  }
  const std::size_t body = 2 + (c.version == 5 ? 1 : 0) + codes_.size();
  unsigned char* p = c.out.append(1 + varint_size(body) + body);
  *p++ = 0x90;
  p += put_varint(p, body);
  put_u16(p, id);
  p += 2;
  if (c.version == 5) *p++ = 0;
  std::memcpy(p, codes_.data(), codes_.size());
  mark_dirty(c);
}

void Worker::on_unsubscribe(Conn& c, Reader r) {
  // Not required of the relay, but a client waiting for UNSUBACK would hang.
  const unsigned id = r.u16();
  if (c.version == 5) r.skip(r.varint());
  unlock_index();
  codes_.clear();
  while (r.ok() && r.remaining() > 0) {
    const std::string_view filter = r.str();
    if (!r.ok()) break;
    auto it = std::find_if(c.filters.begin(), c.filters.end(),
                           [&](const auto& f) { return f.first == filter; });
    const bool found = it != c.filters.end();
    if (found) {
      shared_.index.remove(filter, key(c));
      c.filters.erase(it);
    }
    codes_.push_back(found ? 0x00 : 0x11);  // v5: success / no subscription existed
  }
  if (!r.ok()) {
    close_later(c);
    return;
  }
  const std::size_t body = 2 + (c.version == 5 ? 1 + codes_.size() : 0);
  unsigned char* p = c.out.append(1 + varint_size(body) + body);
  *p++ = 0xB0;
  p += put_varint(p, body);
  put_u16(p, id);
  if (c.version == 5) {
    p[2] = 0;
    std::memcpy(p + 3, codes_.data(), codes_.size());
  }
  mark_dirty(c);
}

void Worker::on_publish(Conn& c, const unsigned char* pkt, const Frame& f) {
  Publish p;
  if (!parse_publish(pkt, f, c.version == 5, p)) {
    close_later(c);
    return;
  }
  if (p.qos > 0) {
    const unsigned id = (static_cast<unsigned>(pkt[p.id_offset]) << 8) | pkt[p.id_offset + 1];
    send_short(c, static_cast<unsigned char>(p.qos == 1 ? 0x40 : 0x50), id);  // PUBACK or PUBREC
  }
  if (p.topic.empty()) return;  // v5 topic aliases are not supported
  read_lock_index();
  matches_.clear();
  shared_.index.match(p.topic, matches_);
  if (matches_.empty()) return;
  ++serial_;
  const unsigned max_qos = std::min(p.qos, 1u);
  for (const SubRef& sub : matches_) {
    const unsigned qos = std::min(max_qos, sub.qos);
    if (sub.conn.worker != id_) {
      stage(sub.conn, p, qos, c.version);
    } else if (Conn* s = find(sub.conn)) {
      deliver(*s, p, qos);
    }
  }
}

void Worker::deliver(Conn& s, const Publish& p, unsigned qos) {
  const bool v5 = s.version == 5;
  const auto first =
      static_cast<unsigned char>(0x30 | (qos << 1));  // live delivery: no DUP, no RETAIN
  if (v5 == p.v5 && qos == p.qos) {
    // Same wire format: the packet as it came, with our own flags and id.
    unsigned char* o = s.out.append(p.packet_len);
    std::memcpy(o, p.packet, p.packet_len);
    o[0] = first;
    if (qos > 0) put_u16(o + p.id_offset, next_id(s));
  } else {
    const std::size_t props = v5 && p.v5 ? p.props_len : 0;
    const std::size_t body = 2 + p.topic.size() + (qos > 0 ? 2 : 0) +
                             (v5 ? varint_size(props) + props : 0) + p.payload_len;
    unsigned char* o = s.out.append(1 + varint_size(body) + body);
    *o++ = first;
    o += put_varint(o, body);
    put_u16(o, static_cast<unsigned>(p.topic.size()));
    std::memcpy(o + 2, p.topic.data(), p.topic.size());
    o += 2 + p.topic.size();
    if (qos > 0) {
      put_u16(o, next_id(s));
      o += 2;
    }
    if (v5) {
      o += put_varint(o, props);
      if (props > 0) std::memcpy(o, p.props, props);
      o += props;
    }
    if (p.payload_len > 0) std::memcpy(o, p.payload, p.payload_len);
  }
  mark_dirty(s);
  if (s.out.size() > kMaxOutput) {
    s.reset = true;
    close_later(s);
  }
}

void Worker::stage(ConnKey to, const Publish& p, unsigned qos, unsigned version) {
  Batch& b = outgoing_[to.worker];
  Staged& st = staged_[to.worker];
  if (st.serial != serial_) {  // copy the packet once per destination worker
    st.serial = serial_;
    st.offset = b.bytes.size();
    b.bytes.insert(b.bytes.end(), p.packet, p.packet + p.packet_len);
  }
  b.items.push_back(Batch::Item{to.slot, to.gen, st.offset, p.packet_len, qos, version});
}

void Worker::mark_dirty(Conn& c) {
  if (c.dirty) return;
  c.dirty = true;
  dirty_.push_back(c.slot);
}

void Worker::close_later(Conn& c) {
  if (c.closing) return;
  c.closing = true;
  closing_.push_back(c.slot);
}

void Worker::flush(Conn& c) {
  if (c.out.size() > 0) {
    const ssize_t n = ::send(c.fd, c.out.data(), c.out.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n < 0 && !would_block(errno)) {
      close_later(c);
      return;
    }
    if (n > 0) c.out.consume(static_cast<std::size_t>(n));
  }
  const bool pending = c.out.size() > 0;
  if (!pending && c.out.capacity() > kKeepBuffer) c.out.release();
  if (pending == c.want_out) return;
  c.want_out = pending;
  epoll_event ev{};
  ev.events = pending ? EPOLLIN | EPOLLOUT : EPOLLIN;
  ev.data.u64 = c.slot;
  epoll_ctl(epoll_fd_, EPOLL_CTL_MOD, c.fd, &ev);
}

void Worker::end_turn() {
  for (std::size_t w = 0; w < outgoing_.size(); ++w)
    if (!outgoing_[w].empty()) shared_.workers[w]->post(outgoing_[w]);
  for (std::uint32_t slot : dirty_) {
    Conn& c = *conns_[slot];
    c.dirty = false;
    if (c.open && !c.want_out && !c.reset) flush(c);  // with want_out, EPOLLOUT says when
  }
  dirty_.clear();
  for (std::uint32_t slot : closing_)
    destroy(*conns_[slot]);
  closing_.clear();
}

void Worker::destroy(Conn& c) {
  if (!c.open) return;
  if (!c.filters.empty()) shared_.index.remove_all(c.filters, key(c));
  if (c.reset) {  // RST: the kernel drops what it still holds for this reader too
    const linger abort{1, 0};
    setsockopt(c.fd, SOL_SOCKET, SO_LINGER, &abort, sizeof abort);
  }
  ::close(c.fd);
  const std::uint32_t slot = c.slot;
  const std::uint32_t gen = c.gen + 1;
  c = Conn{};  // frees buffers and filters
  c.slot = slot;
  c.gen = gen;
  free_slots_.push_back(slot);
}

Conn* Worker::find(ConnKey k) {
  if (k.slot >= conns_.size()) return nullptr;
  Conn& c = *conns_[k.slot];
  return c.open && !c.closing && c.gen == k.gen ? &c : nullptr;
}

void Worker::read_lock_index() {
  if (index_locked_) return;
  shared_.index.lock_shared();
  index_locked_ = true;
}

void Worker::unlock_index() {
  if (!index_locked_) return;
  shared_.index.unlock_shared();
  index_locked_ = false;
}

}  // namespace relay
