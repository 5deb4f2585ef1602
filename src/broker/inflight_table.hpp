// A session's QoS 1/2 messages in flight, by packet id: a vector indexed by
// packet id - 1 and a stack of free ids, so sending and acknowledging a
// message allocates nothing and hashes nothing. Ids are reused lowest-first
// from what was freed last, so the table stays about as large as the window
// in use; an emptied large table is given back. Both vectors are made on the
// first message: a session that never receives one (an idle client, a
// publisher) holds one pointer and a count.
#pragma once

#include <algorithm>
#include <cstdint>
#include <memory>
#include <optional>
#include <vector>

namespace sluice::broker {

template <class T>
class InflightTable {
 public:
  T* find(std::uint16_t id) { return contains(id) ? &*table_->slots[id - 1] : nullptr; }
  const T* find(std::uint16_t id) const { return contains(id) ? &*table_->slots[id - 1] : nullptr; }
  bool contains(std::uint16_t id) const {
    return table_ && id != 0 && id <= table_->slots.size() && table_->slots[id - 1].has_value();
  }
  std::size_t size() const { return size_; }

  // An id that is free now (put() takes it). The window is at most 65535, so
  // one always exists while the table is below that.
  std::uint16_t free_id() const {
    if (!table_) return 1;
    return table_->free.empty() ? static_cast<std::uint16_t>(table_->slots.size() + 1)
                                : table_->free.back();
  }

  void put(std::uint16_t id, T&& value) {
    if (!table_) table_ = std::make_unique<Table>();
    auto& [slots, free] = *table_;
    if (id > slots.size()) {
      for (std::size_t skipped = slots.size() + 1; skipped < id; ++skipped)
        free.push_back(static_cast<std::uint16_t>(skipped));
      slots.resize(id);
    } else if (!free.empty() && free.back() == id) {
      free.pop_back();
    } else {
      free.erase(std::find(free.begin(), free.end(), id));  // a restored id: rare
    }
    slots[id - 1].emplace(std::move(value));
    ++size_;
  }

  void erase(std::uint16_t id) {
    table_->slots[id - 1].reset();
    --size_;
    if (size_ == 0 && table_->slots.size() > kKeptSlots) {
      table_.reset();
      return;
    }
    table_->free.push_back(id);
  }

  // Calls f(id, value) for every entry; f returns true to erase it.
  template <class F>
  void erase_if(F&& f) {
    for (std::size_t i = 0; table_ && i < table_->slots.size(); ++i) {
      const auto id = static_cast<std::uint16_t>(i + 1);
      if (table_->slots[i] && f(id, *table_->slots[i])) erase(id);
    }
  }

  template <class F>
  void for_each(F&& f) const {
    for (std::size_t i = 0; table_ && i < table_->slots.size(); ++i) {
      if (table_->slots[i]) f(static_cast<std::uint16_t>(i + 1), *table_->slots[i]);
    }
  }

 private:
  // A small table stays when emptied: a steady trickle then allocates nothing.
  static constexpr std::size_t kKeptSlots = 8;
  struct Table {
    std::vector<std::optional<T>> slots;
    std::vector<std::uint16_t> free;
  };
  std::unique_ptr<Table> table_;
  std::size_t size_ = 0;
};

}  // namespace sluice::broker
