// A token bucket for per-minute limits: `per_minute` tokens, refilled continuously (1/60 of the
// limit per second), full at start. Integer arithmetic throughout (a bucket's level is kept in
// token-nanoseconds-per-minute), so takes, refunds and Retry-After never drift by rounding.
// Not thread-safe: tenancy/tenancy.h serializes access.
#pragma once

#include <chrono>
#include <cstdint>

#include "common/clock.h"

namespace ember::tenancy {

class TokenBucket {
 public:
  TokenBucket(std::int64_t per_minute, SteadyTime now);

  std::int64_t capacity() const { return per_minute_; }

  // Takes `n` tokens when the bucket holds them and returns 0; else takes nothing and returns
  // how long until it will hold them (rounded up to the nanosecond). A request for more than
  // the capacity can never be granted: it returns kNever.
  static constexpr std::chrono::nanoseconds kNever = std::chrono::nanoseconds::max();
  std::chrono::nanoseconds TryTake(std::int64_t n, SteadyTime now);
  // Gives back tokens taken earlier and not used; the bucket never holds more than its capacity.
  void Refund(std::int64_t n, SteadyTime now);
  // Whole tokens available now.
  std::int64_t Available(SteadyTime now);
  // Time until the bucket is full again (0 when it is).
  std::chrono::nanoseconds UntilFull(SteadyTime now);
  // A new limit (the configuration was reloaded): keeps what was consumed, capped at the new
  // capacity, so a reload neither refills a bucket nor lets it overflow.
  void SetCapacity(std::int64_t per_minute, SteadyTime now);

 private:
  using Wide = __int128;
  static constexpr std::int64_t kMinuteNs = 60'000'000'000;
  void Refill(SteadyTime now);
  Wide full() const { return static_cast<Wide>(per_minute_) * kMinuteNs; }

  std::int64_t per_minute_;
  Wide level_;  // tokens * kMinuteNs
  SteadyTime last_;
};

}  // namespace ember::tenancy
