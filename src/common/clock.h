// Clock abstraction so the scheduler's deadlines can be tested with FakeClock.
// Thread-safe: Now() may be called from any thread.
#pragma once

#include <atomic>
#include <chrono>

namespace ember {

using SteadyTime = std::chrono::steady_clock::time_point;

class Clock {
 public:
  virtual ~Clock() = default;
  virtual SteadyTime Now() const = 0;
  // Wall-clock seconds since the epoch, for OpenAI's "created" field.
  virtual std::int64_t UnixSeconds() const = 0;
  static Clock& Real();
};

class FakeClock final : public Clock {
 public:
  SteadyTime Now() const override { return SteadyTime(std::chrono::nanoseconds(now_ns_.load())); }
  std::int64_t UnixSeconds() const override {
    return 1'700'000'000 + now_ns_.load() / 1'000'000'000;
  }
  void Advance(std::chrono::nanoseconds d) { now_ns_ += d.count(); }

 private:
  std::atomic<std::int64_t> now_ns_{1'000'000'000};
};

}  // namespace ember
