// A session's QoS 1/2 messages in flight, by packet id: a vector indexed by
// packet id - 1 and a stack of free ids, so sending and acknowledging a
// message allocates nothing and hashes nothing. Ids are reused lowest-first
// from what was freed last, so the table stays about as large as the window
// in use; an emptied large table is given back.
#pragma once

#include <algorithm>
#include <cstdint>
#include <optional>
#include <vector>

namespace sluice::broker {

template <class T>
class InflightTable {
 public:
  T* find(std::uint16_t id) {
    return id != 0 && id <= slots_.size() && slots_[id - 1] ? &*slots_[id - 1] : nullptr;
  }
  bool contains(std::uint16_t id) const {
    return id != 0 && id <= slots_.size() && slots_[id - 1].has_value();
  }
  std::size_t size() const { return size_; }

  // An id that is free now (put() takes it). The window is at most 65535, so
  // one always exists while the table is below that.
  std::uint16_t free_id() const {
    return free_.empty() ? static_cast<std::uint16_t>(slots_.size() + 1) : free_.back();
  }

  void put(std::uint16_t id, T&& value) {
    if (id > slots_.size()) {
      for (std::size_t skipped = slots_.size() + 1; skipped < id; ++skipped)
        free_.push_back(static_cast<std::uint16_t>(skipped));
      slots_.resize(id);
    } else if (!free_.empty() && free_.back() == id) {
      free_.pop_back();
    } else {
      free_.erase(std::find(free_.begin(), free_.end(), id));  // a restored id: rare
    }
    slots_[id - 1].emplace(std::move(value));
    ++size_;
  }

  void erase(std::uint16_t id) {
    slots_[id - 1].reset();
    --size_;
    if (size_ == 0 && slots_.size() > kKeptSlots) {
      std::vector<std::optional<T>>().swap(slots_);
      std::vector<std::uint16_t>().swap(free_);
      return;
    }
    free_.push_back(id);
  }

  // Calls f(id, value) for every entry; f returns true to erase it.
  template <class F>
  void erase_if(F&& f) {
    for (std::size_t i = 0; i < slots_.size(); ++i) {
      const auto id = static_cast<std::uint16_t>(i + 1);
      if (slots_[i] && f(id, *slots_[i])) erase(id);
    }
  }

  template <class F>
  void for_each(F&& f) const {
    for (std::size_t i = 0; i < slots_.size(); ++i) {
      if (slots_[i]) f(static_cast<std::uint16_t>(i + 1), *slots_[i]);
    }
  }

 private:
  // A small table stays when emptied: a steady trickle then allocates nothing.
  static constexpr std::size_t kKeptSlots = 8;
  std::vector<std::optional<T>> slots_;
  std::vector<std::uint16_t> free_;
  std::size_t size_ = 0;
};

}  // namespace sluice::broker
