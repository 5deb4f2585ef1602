// A session's queue of deliveries waiting to be sent: first in, first out.
// Unlike std::deque it allocates nothing while empty, and most sessions'
// queues are empty almost all the time (a deque would cost every idle
// session over half a kilobyte).
#pragma once

#include <algorithm>
#include <iterator>
#include <vector>

#include "broker/delivery.hpp"

namespace sluice::broker {

class DeliveryQueue {
 public:
  bool empty() const { return head_ == items_.size(); }
  std::size_t size() const { return items_.size() - head_; }

  void push_back(Delivery&& delivery) { items_.push_back(std::move(delivery)); }

  Delivery pop_front() {
    Delivery front = std::move(items_[head_++]);
    if (head_ == items_.size()) {
      clear();
    } else if (head_ > 64 && head_ * 2 > items_.size()) {
      compact();
    }
    return front;
  }

  // Puts `deliveries` before everything queued, in their order.
  void push_front(std::vector<Delivery>&& deliveries) {
    if (deliveries.empty()) return;
    compact();
    items_.insert(items_.begin(), std::make_move_iterator(deliveries.begin()),
                  std::make_move_iterator(deliveries.end()));
  }

  template <class F>
  void for_each(F&& f) const {
    for (std::size_t i = head_; i < items_.size(); ++i)
      f(items_[i]);
  }

  // Removes the deliveries for which `predicate` returns true (it may move from them then).
  template <class Predicate>
  void erase_if(Predicate&& predicate) {
    compact();
    std::erase_if(items_, std::forward<Predicate>(predicate));
    if (items_.empty()) clear();
  }

 private:
  void compact() {
    items_.erase(items_.begin(), items_.begin() + static_cast<std::ptrdiff_t>(head_));
    head_ = 0;
  }
  // Emptied: a small buffer is kept for the next burst (no allocation per
  // message in a steady trickle); a large one is given back.
  void clear() {
    items_.clear();
    if (items_.capacity() > kKeptCapacity) std::vector<Delivery>().swap(items_);
    head_ = 0;
  }

  static constexpr std::size_t kKeptCapacity = 8;

  std::vector<Delivery> items_;
  std::size_t head_ = 0;
};

}  // namespace sluice::broker
