#include "server/history.h"

#include <algorithm>
#include <cmath>

#include "api/openai.h"
#include "common/log.h"

namespace ember::server {

namespace {

constexpr double kFirstUpperNs = 10'000;  // 10 µs
constexpr double kGrowth = 1.1;

void Quoted(std::string& out, std::string_view text) {
  out += '"';
  api::AppendJsonEscaped(out, text);
  out += '"';
}

void Milliseconds(std::string& out, const std::optional<double>& ns) {
  if (!ns) {
    out += "null";
    return;
  }
  // Three significant decimals are more than the bins' 10% resolution.
  out += StrCat(std::round(*ns / 1e3) / 1e3);
}

}  // namespace

double LatencyBins::UpperNs(int bin) { return kFirstUpperNs * std::pow(kGrowth, bin); }

void LatencyBins::Observe(std::chrono::nanoseconds d) {
  const double ns = static_cast<double>(std::max<std::int64_t>(d.count(), 1));
  int bin = 0;
  if (ns > kFirstUpperNs) {
    bin = static_cast<int>(std::ceil(std::log(ns / kFirstUpperNs) / std::log(kGrowth) - 1e-9));
  }
  bin = std::clamp(bin, 0, kBins - 1);
  bins_[bin].fetch_add(1, std::memory_order_relaxed);
}

std::array<std::uint64_t, LatencyBins::kBins> LatencyBins::Counts() const {
  std::array<std::uint64_t, kBins> counts{};
  for (int i = 0; i < kBins; ++i) counts[i] = bins_[i].load(std::memory_order_relaxed);
  return counts;
}

std::optional<double> LatencyBins::QuantileNs(const std::array<std::uint64_t, kBins>& now,
                                              const std::array<std::uint64_t, kBins>& before,
                                              double q) {
  std::uint64_t total = 0;
  for (int i = 0; i < kBins; ++i) total += now[i] - before[i];
  if (total == 0) return std::nullopt;
  // The smallest bin at which at least q of the observations are counted (nearest rank).
  const auto rank = static_cast<std::uint64_t>(std::ceil(q * static_cast<double>(total)));
  std::uint64_t seen = 0;
  for (int i = 0; i < kBins; ++i) {
    seen += now[i] - before[i];
    if (seen >= std::max<std::uint64_t>(rank, 1)) {
      const double upper = UpperNs(i);
      return i == 0 ? upper : upper / std::sqrt(kGrowth);
    }
  }
  return UpperNs(kBins - 1);
}

History::History(std::chrono::seconds step, std::size_t points) { Configure(step, points); }

void History::Configure(std::chrono::seconds step, std::size_t points) {
  std::lock_guard lock(mu_);
  step_ = std::max(step, std::chrono::seconds(1));
  capacity_ = std::max<std::size_t>(points, 1);
  current_end_ = 0;
  current_ = {};
  points_.clear();
}

std::chrono::seconds History::step() const {
  std::lock_guard lock(mu_);
  return step_;
}

void History::OnCompleted(std::string_view outcome, const std::string& tenant,
                          std::optional<std::int64_t> cost_microdollars) {
  std::lock_guard lock(mu_);
  ++current_.outcomes[std::string(outcome)];
  if (cost_microdollars) current_.cost[tenant] += *cost_microdollars;
}

void History::Sample(int queued, double kv_used) {
  std::lock_guard lock(mu_);
  current_.queue_max = std::max(current_.queue_max, queued);
  current_.kv_used_max = std::max(current_.kv_used_max, kv_used);
}

void History::CloseLocked(std::int64_t end_unix_s) {
  const auto ttft = ttft_.Counts();
  const auto itl = itl_.Counts();
  const std::int64_t tokens = tokens_.load(std::memory_order_relaxed);
  HistoryPoint point = std::move(current_);
  current_ = {};
  point.end_unix_s = end_unix_s;
  point.ttft_p50_ms = LatencyBins::QuantileNs(ttft, ttft_before_, 0.50);
  point.ttft_p99_ms = LatencyBins::QuantileNs(ttft, ttft_before_, 0.99);
  point.itl_p50_ms = LatencyBins::QuantileNs(itl, itl_before_, 0.50);
  point.itl_p99_ms = LatencyBins::QuantileNs(itl, itl_before_, 0.99);
  point.tokens_per_s =
      static_cast<double>(tokens - tokens_before_) / static_cast<double>(step_.count());
  ttft_before_ = ttft;
  itl_before_ = itl;
  tokens_before_ = tokens;
  points_.push_back(std::move(point));
  while (points_.size() > capacity_) points_.pop_front();
}

void History::Roll(std::int64_t now_unix_s) {
  std::lock_guard lock(mu_);
  const std::int64_t step = step_.count();
  if (current_end_ == 0) {
    current_end_ = (now_unix_s / step + 1) * step;
    return;
  }
  if (now_unix_s < current_end_) return;
  CloseLocked(current_end_);
  // Steps that passed with nothing recorded (the clock jumped, or no tick ran) are empty
  // points, at most a whole history of them.
  current_end_ += step;
  const std::int64_t last_end = now_unix_s / step * step;
  const auto keep = static_cast<std::int64_t>(capacity_);
  if ((last_end - current_end_) / step >= keep) current_end_ = last_end - (keep - 1) * step;
  for (; current_end_ <= now_unix_s; current_end_ += step) CloseLocked(current_end_);
}

std::string History::Json() const {
  std::lock_guard lock(mu_);
  std::string out = StrCat("{\"step_seconds\":", step_.count(), ",\"points\":[");
  bool first = true;
  for (const HistoryPoint& p : points_) {
    out += first ? "{" : ",{";
    first = false;
    out += StrCat("\"end_unix_s\":", p.end_unix_s, ",\"ttft_ms\":{\"p50\":");
    Milliseconds(out, p.ttft_p50_ms);
    out += ",\"p99\":";
    Milliseconds(out, p.ttft_p99_ms);
    out += "},\"itl_ms\":{\"p50\":";
    Milliseconds(out, p.itl_p50_ms);
    out += ",\"p99\":";
    Milliseconds(out, p.itl_p99_ms);
    out += StrCat("},\"tokens_per_s\":", std::round(p.tokens_per_s * 10) / 10,
                  ",\"queue_max\":", p.queue_max,
                  ",\"kv_used_max\":", std::round(p.kv_used_max * 1000) / 1000, ",\"outcomes\":{");
    bool first_outcome = true;
    for (const auto& [name, n] : p.outcomes) {
      if (!first_outcome) out += ',';
      first_outcome = false;
      Quoted(out, name);
      out += StrCat(":", n);
    }
    out += "},\"cost_microdollars\":{";
    bool first_tenant = true;
    for (const auto& [tenant, microdollars] : p.cost) {
      if (!first_tenant) out += ',';
      first_tenant = false;
      Quoted(out, tenant);
      out += StrCat(":", microdollars);
    }
    out += "}}";
  }
  out += "]}";
  return out;
}

}  // namespace ember::server
