// A token bucket: `rate` tokens a second, holding at most `burst`. Rate
// limits take a token per connection, PUBLISH or SUBSCRIBE; an empty bucket
// says no.
#pragma once

#include <algorithm>
#include <chrono>

namespace sluice::auth {

class TokenBucket {
 public:
  using Clock = std::chrono::steady_clock;  // the same clock as broker::Clock

  TokenBucket(double rate, double burst, Clock::time_point now)
      : rate_(rate), burst_(std::max(burst, 1.0)), tokens_(burst_), last_(now) {}

  // Takes a token if there is one.
  bool take(Clock::time_point now) {
    refill(now);
    if (tokens_ < 1.0) return false;
    tokens_ -= 1.0;
    return true;
  }

  // Whether the bucket is full again (then it can be forgotten).
  bool full(Clock::time_point now) const {
    return tokens_ + std::chrono::duration<double>(now - last_).count() * rate_ >= burst_;
  }

 private:
  void refill(Clock::time_point now) {
    const double seconds = std::chrono::duration<double>(now - last_).count();
    tokens_ = std::min(burst_, tokens_ + seconds * rate_);
    last_ = now;
  }

  double rate_;
  double burst_;
  double tokens_;
  Clock::time_point last_;
};

}  // namespace sluice::auth
