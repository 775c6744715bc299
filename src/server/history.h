// The console's charts (docs/console.md): the last hour of the server's behaviour, in memory,
// one point per --console-history-step (default 10 s, 360 points). Each point holds TTFT and
// inter-token latency p50/p99 (every token's interval, not a per-request mean), output tokens
// per second, the longest queue and fullest KV cache seen, the requests that completed by
// outcome, and the list-price cost per tenant.
//
// Latencies go into cumulative log-spaced bins (relaxed atomics, ~1 ns an observation, on the
// engine thread through ModelMetrics); Roll diffs them against the previous point, as
// Prometheus' rate() over a histogram does, but with bins 10% apart, so a percentile is within
// ~5%. Completions and samples take a mutex, once per request and once per console tick.
#pragma once

#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <deque>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>

namespace ember::server {

// Cumulative counts of durations in bins whose upper bounds grow by 10% from 10 µs (bin 0) to
// ~200 s (the last bin also counts everything longer).
class LatencyBins {
 public:
  static constexpr int kBins = 176;
  void Observe(std::chrono::nanoseconds d);
  std::array<std::uint64_t, kBins> Counts() const;
  // The bin's upper bound, in nanoseconds.
  static double UpperNs(int bin);
  // The q-quantile (0 < q < 1) of the observations that `now` has and `before` had not, as the
  // geometric middle of its bin; nullopt when there were none.
  static std::optional<double> QuantileNs(const std::array<std::uint64_t, kBins>& now,
                                          const std::array<std::uint64_t, kBins>& before, double q);

 private:
  std::array<std::atomic<std::uint64_t>, kBins> bins_{};
};

struct HistoryPoint {
  std::int64_t end_unix_s = 0;  // the point covers (end - step, end]
  std::optional<double> ttft_p50_ms, ttft_p99_ms, itl_p50_ms, itl_p99_ms;
  double tokens_per_s = 0;
  int queue_max = 0;       // requests waiting for a model or a slot, most seen
  double kv_used_max = 0;  // fraction of a model's KV cells in use, most seen
  std::map<std::string, std::int64_t> outcomes;  // completions by outcome name
  std::map<std::string, std::int64_t> cost;      // microdollars by tenant ("" = open mode)
};

class History {
 public:
  explicit History(std::chrono::seconds step = std::chrono::seconds(10), std::size_t points = 360);

  // --console-history-step: the point width, the history keeping `points` of them. Call before
  // serving (it forgets what was recorded).
  void Configure(std::chrono::seconds step, std::size_t points);
  std::chrono::seconds step() const;

  // Any thread, lock-free.
  void ObserveTtft(std::chrono::nanoseconds d) { ttft_.Observe(d); }
  void ObserveInterval(std::chrono::nanoseconds d) { itl_.Observe(d); }
  void CountTokens(std::int64_t n) { tokens_.fetch_add(n, std::memory_order_relaxed); }

  // At a request's completion point.
  void OnCompleted(std::string_view outcome, const std::string& tenant,
                   std::optional<std::int64_t> cost_microdollars);
  // The console's tick: what it sees waiting and the KV use now.
  void Sample(int queued, double kv_used);
  // Closes the current point when `now_unix_s` has passed its end (and points for any steps
  // that passed with nothing recorded). Call at least once a step.
  void Roll(std::int64_t now_unix_s);

  // {"step_seconds":10,"points":[{"end_unix_s":…,"ttft_ms":{"p50":…,"p99":…},"itl_ms":{…},
  //   "tokens_per_s":…,"queue_max":…,"kv_used_max":…,"outcomes":{…},"cost_microdollars":{…}}]}
  std::string Json() const;

 private:
  void CloseLocked(std::int64_t end_unix_s);

  LatencyBins ttft_;
  LatencyBins itl_;
  std::atomic<std::int64_t> tokens_{0};

  mutable std::mutex mu_;
  std::chrono::seconds step_;     // GUARDED_BY(mu_)
  std::size_t capacity_;          // GUARDED_BY(mu_)
  std::int64_t current_end_ = 0;  // GUARDED_BY(mu_); 0 before the first Roll
  HistoryPoint current_;          // GUARDED_BY(mu_)
  std::array<std::uint64_t, LatencyBins::kBins> ttft_before_{}, itl_before_{};  // GUARDED_BY(mu_)
  std::int64_t tokens_before_ = 0;                                              // GUARDED_BY(mu_)
  std::deque<HistoryPoint> points_;                                             // GUARDED_BY(mu_)
};

}  // namespace ember::server
