// A session's queue of deliveries waiting to be sent: first in, first out.
// Unlike std::deque it allocates nothing while empty, and most sessions'
// queues are empty almost all the time (a deque would cost every idle
// session over half a kilobyte); a session that never queued holds only a
// pointer.
#pragma once

#include <algorithm>
#include <iterator>
#include <memory>
#include <vector>

#include "broker/delivery.hpp"

namespace sluice::broker {

class DeliveryQueue {
 public:
  bool empty() const { return size() == 0; }
  std::size_t size() const { return queue_ ? queue_->items.size() - queue_->head : 0; }

  void push_back(Delivery&& delivery) { made().items.push_back(std::move(delivery)); }
  const Delivery& front() const { return queue_->items[queue_->head]; }  // when not empty

  Delivery pop_front() {
    Queue& queue = *queue_;
    Delivery front = std::move(queue.items[queue.head++]);
    if (queue.head == queue.items.size()) {
      clear();
    } else if (queue.head > 64 && queue.head * 2 > queue.items.size()) {
      compact();
    }
    return front;
  }

  // Puts `deliveries` before everything queued, in their order.
  void push_front(std::vector<Delivery>&& deliveries) {
    if (deliveries.empty()) return;
    made();
    compact();
    queue_->items.insert(queue_->items.begin(), std::make_move_iterator(deliveries.begin()),
                         std::make_move_iterator(deliveries.end()));
  }

  template <class F>
  void for_each(F&& f) const {
    if (!queue_) return;
    for (std::size_t i = queue_->head; i < queue_->items.size(); ++i)
      f(queue_->items[i]);
  }

  // Removes the deliveries for which `predicate` returns true (it may move from them then).
  template <class Predicate>
  void erase_if(Predicate&& predicate) {
    if (!queue_) return;
    compact();
    std::erase_if(queue_->items, std::forward<Predicate>(predicate));
    if (queue_->items.empty()) clear();
  }

 private:
  struct Queue {
    std::vector<Delivery> items;
    std::size_t head = 0;
  };

  Queue& made() {
    if (!queue_) queue_ = std::make_unique<Queue>();
    return *queue_;
  }
  void compact() {
    queue_->items.erase(queue_->items.begin(),
                        queue_->items.begin() + static_cast<std::ptrdiff_t>(queue_->head));
    queue_->head = 0;
  }
  // Emptied: a small buffer is kept for the next burst (no allocation per
  // message in a steady trickle); a large one is given back, with the rest.
  void clear() {
    if (queue_->items.capacity() > kKeptCapacity) {
      queue_.reset();
      return;
    }
    queue_->items.clear();
    queue_->head = 0;
  }

  static constexpr std::size_t kKeptCapacity = 8;

  std::unique_ptr<Queue> queue_;
};

}  // namespace sluice::broker
