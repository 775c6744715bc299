#include "metrics/metrics.h"

#include <algorithm>
#include <cassert>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <limits>
#include <string_view>

namespace ember::metrics {
namespace {

constexpr const char* kCounterType = "counter";
constexpr const char* kGaugeType = "gauge";
constexpr const char* kHistogramType = "histogram";

void AtomicAdd(std::atomic<double>& target, double delta) {
  double current = target.load(std::memory_order_relaxed);
  while (!target.compare_exchange_weak(current, current + delta, std::memory_order_relaxed)) {
  }
}

// Integral values print as integers ("3"), others as the shortest string that round-trips
// ("0.005"); infinities and NaN use Prometheus' spelling.
std::string FormatNumber(double v) {
  if (std::isnan(v)) return "NaN";
  if (std::isinf(v)) return v > 0 ? "+Inf" : "-Inf";
  char buf[64];
  if (v == std::trunc(v) && std::fabs(v) < 1e15) {
    std::snprintf(buf, sizeof(buf), "%lld", static_cast<long long>(v));
    return buf;
  }
  auto [end, ec] = std::to_chars(buf, buf + sizeof(buf), v);
  if (ec != std::errc()) {
    std::snprintf(buf, sizeof(buf), "%.17g", v);
    return buf;
  }
  return std::string(buf, end);
}

void AppendEscaped(std::string& out, std::string_view text, bool escape_quotes) {
  for (char c : text) {
    if (c == '\\') {
      out += "\\\\";
    } else if (c == '\n') {
      out += "\\n";
    } else if (c == '"' && escape_quotes) {
      out += "\\\"";
    } else {
      out += c;
    }
  }
}

// `k1="v1",k2="v2"` with labels sorted by name: the identity of a series within its family.
std::string LabelKey(Labels labels) {
  std::stable_sort(labels.begin(), labels.end(),
                   [](const auto& a, const auto& b) { return a.first < b.first; });
  std::string key;
  for (const auto& [name, value] : labels) {
    if (!key.empty()) key += ',';
    key += name;
    key += "=\"";
    AppendEscaped(key, value, /*escape_quotes=*/true);
    key += '"';
  }
  return key;
}

void AppendSample(std::string& out, std::string_view name, std::string_view label_key,
                  double value) {
  out += name;
  if (!label_key.empty()) {
    out += '{';
    out += label_key;
    out += '}';
  }
  out += ' ';
  out += FormatNumber(value);
  out += '\n';
}

std::string WithLabel(const std::string& label_key, std::string_view extra) {
  if (label_key.empty()) return std::string(extra);
  return label_key + "," + std::string(extra);
}

void AppendHistogram(std::string& out, const std::string& name, const std::string& label_key,
                     const Histogram& histogram) {
  const std::vector<std::uint64_t> cumulative = histogram.CumulativeCounts();
  const std::vector<double>& bounds = histogram.upper_bounds();
  const std::string bucket_name = name + "_bucket";
  for (std::size_t i = 0; i < bounds.size(); ++i) {
    const std::string le = "le=\"" + FormatNumber(bounds[i]) + "\"";
    AppendSample(out, bucket_name, WithLabel(label_key, le), static_cast<double>(cumulative[i]));
  }
  const double total = static_cast<double>(cumulative.back());
  AppendSample(out, bucket_name, WithLabel(label_key, "le=\"+Inf\""), total);
  AppendSample(out, name + "_sum", label_key, histogram.Sum());
  AppendSample(out, name + "_count", label_key, total);
}

}  // namespace

void Counter::Inc(double amount) { AtomicAdd(value_, amount); }
double Counter::Value() const { return value_.load(std::memory_order_relaxed); }

void Gauge::Set(double value) { value_.store(value, std::memory_order_relaxed); }
void Gauge::Add(double delta) { AtomicAdd(value_, delta); }
double Gauge::Value() const { return value_.load(std::memory_order_relaxed); }

Histogram::Histogram(std::vector<double> upper_bounds) : bounds_(std::move(upper_bounds)) {
  std::erase_if(bounds_, [](double b) { return std::isnan(b) || std::isinf(b); });
  std::sort(bounds_.begin(), bounds_.end());
  bounds_.erase(std::unique(bounds_.begin(), bounds_.end()), bounds_.end());
  buckets_ = std::make_unique<std::atomic<std::uint64_t>[]>(bounds_.size() + 1);
  for (std::size_t i = 0; i <= bounds_.size(); ++i) buckets_[i].store(0);
}

void Histogram::Observe(double value) {
  // Bucket i holds values in (bounds_[i-1], bounds_[i]]; NaN lands in +Inf.
  std::size_t index = bounds_.size();
  if (!std::isnan(value)) {
    index = static_cast<std::size_t>(std::lower_bound(bounds_.begin(), bounds_.end(), value) -
                                     bounds_.begin());
  }
  buckets_[index].fetch_add(1, std::memory_order_relaxed);
  AtomicAdd(sum_, value);
  count_.fetch_add(1, std::memory_order_relaxed);
}

std::vector<std::uint64_t> Histogram::CumulativeCounts() const {
  std::vector<std::uint64_t> out(bounds_.size() + 1);
  std::uint64_t running = 0;
  for (std::size_t i = 0; i <= bounds_.size(); ++i) {
    running += buckets_[i].load(std::memory_order_relaxed);
    out[i] = running;
  }
  return out;
}

std::uint64_t Histogram::Count() const { return count_.load(std::memory_order_relaxed); }
double Histogram::Sum() const { return sum_.load(std::memory_order_relaxed); }

std::vector<double> LatencyBuckets() {
  return {0.001, 0.0025, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25,
          0.5,   0.75,   1,     2.5,  5,    7.5,  10,   20,   40,  60};
}

// Series are keyed by LabelKey. A family renders only the series of its own type; asking for
// a name under a second type is a programming error (asserted) whose series are kept but
// never rendered, so callers still get a usable reference.
struct Registry::Family {
  std::string help;
  const char* type = kCounterType;
  std::map<std::string, std::unique_ptr<Counter>> counters;
  std::map<std::string, std::unique_ptr<Gauge>> gauges;
  std::map<std::string, std::unique_ptr<Histogram>> histograms;
  std::map<std::string, std::function<double()>> callbacks;

  void Render(const std::string& name, std::string& out) const;
};

void Registry::Family::Render(const std::string& name, std::string& out) const {
  out += "# HELP " + name + " ";
  AppendEscaped(out, help, /*escape_quotes=*/false);
  out += "\n# TYPE " + name + " " + type + "\n";
  if (type == kCounterType) {
    for (const auto& [key, counter] : counters) AppendSample(out, name, key, counter->Value());
  } else if (type == kGaugeType) {
    std::map<std::string, double> values;
    for (const auto& [key, gauge] : gauges) values[key] = gauge->Value();
    for (const auto& [key, read] : callbacks) values[key] = read ? read() : 0.0;
    for (const auto& [key, value] : values) AppendSample(out, name, key, value);
  } else {
    for (const auto& [key, histogram] : histograms) AppendHistogram(out, name, key, *histogram);
  }
}

Registry::Registry() = default;
Registry::~Registry() = default;

Registry::Family& Registry::FamilyFor(const std::string& name, const std::string& help,
                                      const char* type) {
  auto& slot = families_[name];
  if (!slot) {
    slot = std::make_unique<Family>();
    slot->help = help;
    slot->type = type;
  }
  assert(std::strcmp(slot->type, type) == 0 && "metric registered under two types");
  return *slot;
}

Counter& Registry::GetCounter(const std::string& name, const std::string& help,
                              const Labels& labels) {
  std::lock_guard lock(mu_);
  auto& series = FamilyFor(name, help, kCounterType).counters[LabelKey(labels)];
  if (!series) series = std::make_unique<Counter>();
  return *series;
}

Gauge& Registry::GetGauge(const std::string& name, const std::string& help, const Labels& labels) {
  std::lock_guard lock(mu_);
  auto& series = FamilyFor(name, help, kGaugeType).gauges[LabelKey(labels)];
  if (!series) series = std::make_unique<Gauge>();
  return *series;
}

Histogram& Registry::GetHistogram(const std::string& name, const std::string& help,
                                  const std::vector<double>& upper_bounds, const Labels& labels) {
  std::lock_guard lock(mu_);
  auto& series = FamilyFor(name, help, kHistogramType).histograms[LabelKey(labels)];
  if (!series) series = std::make_unique<Histogram>(upper_bounds);
  return *series;
}

void Registry::AddCallbackGauge(const std::string& name, const std::string& help,
                                const Labels& labels, std::function<double()> read) {
  std::lock_guard lock(mu_);
  FamilyFor(name, help, kGaugeType).callbacks[LabelKey(labels)] = std::move(read);
}

std::string Registry::Render() const {
  std::lock_guard lock(mu_);
  std::string out;
  for (const auto& [name, family] : families_) family->Render(name, out);
  return out;
}

}  // namespace ember::metrics
