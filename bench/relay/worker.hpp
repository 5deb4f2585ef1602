// worker.hpp: one thread, one epoll loop, the connections it was handed.
// Publishes for connections of another worker travel through that worker's
// inbox, batched per loop turn and announced by one eventfd write.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <memory>
#include <mutex>
#include <vector>

#include "framing.hpp"
#include "subscriptions.hpp"

namespace relay {

// A byte queue: appended at the back, consumed at the front. Its memory stays
// between uses, so a busy connection stops allocating once it has grown.
class ByteBuffer {
 public:
  unsigned char* data() { return buf_.get() + head_; }
  std::size_t size() const { return tail_ - head_; }
  std::size_t capacity() const { return cap_; }

  unsigned char* prepare(std::size_t n) {  // room for n more bytes, not yet counted
    if (cap_ - tail_ < n) make_room(n);
    return buf_.get() + tail_;
  }
  void commit(std::size_t n) { tail_ += n; }
  unsigned char* append(std::size_t n) {
    unsigned char* p = prepare(n);
    tail_ += n;
    return p;
  }
  void append(const unsigned char* p, std::size_t n) { std::memcpy(append(n), p, n); }
  void consume(std::size_t n) {
    head_ += n;
    if (head_ == tail_) head_ = tail_ = 0;
  }
  void release() {
    buf_.reset();
    cap_ = head_ = tail_ = 0;
  }

 private:
  void make_room(std::size_t n);

  std::unique_ptr<unsigned char[]> buf_;
  std::size_t cap_ = 0, head_ = 0, tail_ = 0;
};

struct Conn {
  int fd = -1;
  std::uint32_t slot = 0;
  std::uint32_t gen = 0;
  bool open = false;
  bool closing = false;   // closed at the end of this loop turn
  bool dirty = false;     // has output to flush at the end of this loop turn
  bool want_out = false;  // EPOLLOUT armed: the socket was full
  bool reset = false;     // dropped for falling behind: close with RST
  unsigned version = 4;
  std::uint16_t last_id = 0;
  std::size_t need = 0;  // length of the partial packet in `in`, once known
  ByteBuffer in;         // only a partial packet waits here between reads
  ByteBuffer out;
  FilterList filters;  // to leave the index on close
};

// Publishes for one worker's connections: raw packets once per batch, then
// one item per (packet, subscriber).
struct Batch {
  struct Item {
    std::uint32_t slot, gen;
    std::size_t offset, length;
    unsigned qos;      // delivered
    unsigned version;  // of the publisher, to read the packet
  };
  std::vector<unsigned char> bytes;
  std::vector<Item> items;
  std::vector<int> fds;  // newly accepted connections

  bool empty() const { return items.empty() && fds.empty(); }
  void clear() {
    bytes.clear();
    items.clear();
    fds.clear();
  }
};

class Worker;

struct Shared {
  SubscriptionIndex index;
  std::vector<std::unique_ptr<Worker>> workers;
  std::atomic<bool> stop{false};
};

class Worker {
 public:
  Worker(Shared& shared, std::uint32_t id);
  ~Worker();
  Worker(const Worker&) = delete;
  Worker& operator=(const Worker&) = delete;

  void run();
  void wake();
  void adopt(int fd);       // from the accepting thread
  void post(Batch& batch);  // from another worker; leaves `batch` empty

 private:
  void take_inbox();
  void add_connection(int fd);
  void on_readable(Conn& c);
  std::size_t process(Conn& c, const unsigned char* data, std::size_t len);
  void handle(Conn& c, const unsigned char* pkt, const Frame& f);
  void on_connect(Conn& c, Reader r);
  void on_subscribe(Conn& c, Reader r);
  void on_unsubscribe(Conn& c, Reader r);
  void on_publish(Conn& c, const unsigned char* pkt, const Frame& f);
  void deliver(Conn& s, const Publish& p, unsigned qos);
  void stage(ConnKey to, const Publish& p, unsigned qos, unsigned version);
  void send_short(Conn& c, unsigned char type, unsigned id);
  void mark_dirty(Conn& c);
  void close_later(Conn& c);
  void flush(Conn& c);
  void end_turn();
  void destroy(Conn& c);
  Conn* find(ConnKey k);
  ConnKey key(const Conn& c) const { return ConnKey{id_, c.slot, c.gen}; }
  void read_lock_index();
  void unlock_index();

  Shared& shared_;
  const std::uint32_t id_;
  int epoll_fd_ = -1;
  int wake_fd_ = -1;

  std::mutex inbox_mutex_;
  Batch inbox_;     // guarded by inbox_mutex_
  Batch incoming_;  // swapped with inbox_, so both keep their memory

  std::vector<std::unique_ptr<Conn>> conns_;  // by slot; pointers stay put as it grows
  std::vector<std::uint32_t> free_slots_;
  std::vector<std::uint32_t> dirty_;
  std::vector<std::uint32_t> closing_;

  std::vector<Batch> outgoing_;  // by destination worker
  struct Staged {
    std::uint64_t serial = 0;
    std::size_t offset = 0;
  };
  std::vector<Staged> staged_;  // which publish each outgoing batch holds last
  std::uint64_t serial_ = 0;    // counts publishes with subscribers

  std::unique_ptr<unsigned char[]> scratch_;  // reads land here unless a packet is split
  std::vector<SubRef> matches_;
  std::vector<unsigned char> codes_;
  bool index_locked_ = false;
};

}  // namespace relay
