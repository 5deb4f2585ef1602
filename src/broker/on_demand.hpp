// A member made on first use. Most connections never use topic aliases or
// QoS 2, and in each of them an empty std::unordered_map alone would cost 56
// bytes: what an idle connection holds decides how many a broker can keep.
#pragma once

#include <memory>

namespace sluice::broker {

template <class T>
class OnDemand {
 public:
  // The value, made now if it was not yet.
  T& get() {
    if (!value_) value_ = std::make_unique<T>();
    return *value_;
  }
  // The value, or nullptr when it was never made (or was released).
  T* find() const { return value_.get(); }
  void release() { value_.reset(); }

 private:
  std::unique_ptr<T> value_;
};

}  // namespace sluice::broker
