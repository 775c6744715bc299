// Metrics registry: counters, gauges and histograms rendered as Prometheus text (format
// 0.0.4). Recording (Inc/Set/Observe) is lock-free and safe from any thread; creating a
// series takes a lock, so hot paths look a series up once and keep the reference.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

namespace ember::metrics {

using Labels = std::vector<std::pair<std::string, std::string>>;

class Counter {
 public:
  void Inc(double amount = 1.0);
  double Value() const;

 private:
  std::atomic<double> value_{0.0};
};

class Gauge {
 public:
  void Set(double value);
  void Add(double delta);
  double Value() const;

 private:
  std::atomic<double> value_{0.0};
};

class Histogram {
 public:
  explicit Histogram(std::vector<double> upper_bounds);  // sorted, without +Inf
  void Observe(double value);
  const std::vector<double>& upper_bounds() const { return bounds_; }
  // Cumulative counts per bound plus +Inf as the last element.
  std::vector<std::uint64_t> CumulativeCounts() const;
  std::uint64_t Count() const;
  double Sum() const;

 private:
  std::vector<double> bounds_;
  std::unique_ptr<std::atomic<std::uint64_t>[]> buckets_;  // bounds_.size() + 1
  std::atomic<double> sum_{0.0};
  std::atomic<std::uint64_t> count_{0};
};

// Default latency buckets in seconds (vLLM's TTFT-style spread, 1 ms .. 60 s).
std::vector<double> LatencyBuckets();

class Registry {
 public:
  Registry();
  ~Registry();  // out of line: Family is incomplete here
  Registry(const Registry&) = delete;
  Registry& operator=(const Registry&) = delete;

  // Find-or-create the series `name{labels}`. `help` is taken from the first call per name.
  // The returned reference stays valid for the registry's lifetime.
  Counter& GetCounter(const std::string& name, const std::string& help, const Labels& labels = {});
  Gauge& GetGauge(const std::string& name, const std::string& help, const Labels& labels = {});
  Histogram& GetHistogram(const std::string& name, const std::string& help,
                          const std::vector<double>& upper_bounds, const Labels& labels = {});
  // A gauge whose value is read by calling `read` at scrape time (from the scraping thread).
  void AddCallbackGauge(const std::string& name, const std::string& help, const Labels& labels,
                        std::function<double()> read);

  // Prometheus text exposition: families sorted by name, "# HELP"/"# TYPE" once per family,
  // label values escaped (\\, \", \n), histograms as _bucket{le=...}/_sum/_count.
  // Callback gauges run under the registry lock, so they must not call into the registry.
  std::string Render() const;

 private:
  struct Family;
  Family& FamilyFor(const std::string& name, const std::string& help, const char* type);

  mutable std::mutex mu_;
  std::map<std::string, std::unique_ptr<Family>> families_;  // GUARDED_BY(mu_)
};

}  // namespace ember::metrics
