#include "tenancy/bucket.h"

#include <algorithm>

namespace ember::tenancy {

TokenBucket::TokenBucket(std::int64_t per_minute, SteadyTime now)
    : per_minute_(std::max<std::int64_t>(per_minute, 0)), level_(full()), last_(now) {}

void TokenBucket::Refill(SteadyTime now) {
  // A clock that steps backwards adds nothing and does not move `last_` back, so the same
  // interval is never credited twice.
  if (now <= last_) return;
  const Wide elapsed = (now - last_).count();
  level_ = std::min(full(), level_ + elapsed * per_minute_);
  last_ = now;
}

std::chrono::nanoseconds TokenBucket::TryTake(std::int64_t n, SteadyTime now) {
  if (n <= 0) return std::chrono::nanoseconds(0);
  if (n > per_minute_) return kNever;
  Refill(now);
  const Wide need = static_cast<Wide>(n) * kMinuteNs;
  if (level_ >= need) {
    level_ -= need;
    return std::chrono::nanoseconds(0);
  }
  // Whole nanoseconds until the deficit has been refilled, rounded up.
  const Wide wait = (need - level_ + per_minute_ - 1) / per_minute_;
  return std::chrono::nanoseconds(static_cast<std::int64_t>(wait));
}

void TokenBucket::Refund(std::int64_t n, SteadyTime now) {
  if (n <= 0) return;
  Refill(now);
  level_ = std::min(full(), level_ + static_cast<Wide>(n) * kMinuteNs);
}

std::int64_t TokenBucket::Available(SteadyTime now) {
  Refill(now);
  return static_cast<std::int64_t>(level_ / kMinuteNs);
}

std::chrono::nanoseconds TokenBucket::UntilFull(SteadyTime now) {
  Refill(now);
  if (per_minute_ == 0) return std::chrono::nanoseconds(0);
  const Wide wait = (full() - level_ + per_minute_ - 1) / per_minute_;
  return std::chrono::nanoseconds(static_cast<std::int64_t>(wait));
}

void TokenBucket::SetCapacity(std::int64_t per_minute, SteadyTime now) {
  Refill(now);
  const Wide used = full() - level_;
  per_minute_ = std::max<std::int64_t>(per_minute, 0);
  level_ = std::max<Wide>(0, full() - used);
}

}  // namespace ember::tenancy
