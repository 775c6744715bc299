#include "server/plugin_metrics.h"

#ifdef EMBER_HAVE_PLUGINS

#include <deque>
#include <mutex>
#include <optional>

namespace ember::server {

namespace {

// Plugin calls are microseconds (BENCHMARKS.md, "Plugin hooks"); a CPU limit is up to ~0.1 s.
std::vector<double> CallBuckets() {
  return {1e-6, 2.5e-6, 5e-6, 1e-5, 2.5e-5, 5e-5, 1e-4, 2.5e-4, 5e-4, 1e-3, 1e-2, 0.1, 1.0};
}

constexpr plugins::FailureKind kKinds[] = {plugins::FailureKind::kLoad,
                                           plugins::FailureKind::kCpuLimit,
                                           plugins::FailureKind::kStackOverflow,
                                           plugins::FailureKind::kMemoryLimit,
                                           plugins::FailureKind::kOutOfBounds,
                                           plugins::FailureKind::kTrap,
                                           plugins::FailureKind::kAbi};

// A plugin's own metrics as Prometheus series. Bounded so a plugin cannot flood /metrics: at
// most kMaxMetrics names per plugin, each 1 to 128 printable ASCII characters.
class CustomMetrics : public plugins::MetricSink {
 public:
  CustomMetrics(metrics::Registry& registry, std::string plugin)
      : registry_(registry), plugin_(std::move(plugin)) {}

  std::optional<std::uint32_t> Define(Type type, std::string_view name) override {
    if (name.empty() || name.size() > 128) return std::nullopt;
    for (char c : name) {
      if (c < 0x20 || c > 0x7e) return std::nullopt;
    }
    std::lock_guard lock(mu_);
    for (std::size_t i = 0; i < entries_.size(); ++i) {
      if (entries_[i].name != name) continue;
      if (entries_[i].type != type) return std::nullopt;
      return static_cast<std::uint32_t>(i);
    }
    if (entries_.size() >= kMaxMetrics) return std::nullopt;
    Entry entry{.type = type, .name = std::string(name)};
    const metrics::Labels labels = {{"plugin", plugin_}, {"name", entry.name}};
    switch (type) {
      case Type::kCounter:
        entry.counter = &registry_.GetCounter(
            "ember_plugin_counter_total",
            "Counters plugins define themselves (proxy_define_metric), by plugin and name.",
            labels);
        break;
      case Type::kGauge:
        entry.gauge = &registry_.GetGauge(
            "ember_plugin_gauge",
            "Gauges plugins define themselves (proxy_define_metric), by plugin and name.", labels);
        break;
      case Type::kHistogram:
        entry.histogram = &registry_.GetHistogram(
            "ember_plugin_histogram",
            "Histograms plugins define themselves (proxy_define_metric), by plugin and name; "
            "buckets by powers of ten.",
            {1, 10, 100, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9}, labels);
        break;
    }
    entries_.push_back(std::move(entry));
    return static_cast<std::uint32_t>(entries_.size() - 1);
  }

  bool Increment(std::uint32_t id, std::int64_t offset) override {
    const Entry* entry = Find(id);
    if (entry == nullptr) return false;
    if (entry->counter != nullptr && offset >= 0) {
      entry->counter->Inc(static_cast<double>(offset));
      return true;
    }
    if (entry->gauge != nullptr) {
      entry->gauge->Add(static_cast<double>(offset));
      return true;
    }
    return false;
  }

  bool Record(std::uint32_t id, std::uint64_t value) override {
    const Entry* entry = Find(id);
    if (entry == nullptr) return false;
    if (entry->gauge != nullptr) {
      entry->gauge->Set(static_cast<double>(value));
      return true;
    }
    if (entry->histogram != nullptr) {
      entry->histogram->Observe(static_cast<double>(value));
      return true;
    }
    return false;
  }

  std::optional<std::uint64_t> Get(std::uint32_t id) override {
    const Entry* entry = Find(id);
    if (entry == nullptr || entry->histogram != nullptr) return std::nullopt;
    const double value =
        entry->counter != nullptr ? entry->counter->Value() : entry->gauge->Value();
    return value <= 0 ? 0 : static_cast<std::uint64_t>(value);
  }

 private:
  static constexpr std::size_t kMaxMetrics = 64;
  struct Entry {
    Type type = Type::kCounter;
    std::string name;
    metrics::Counter* counter = nullptr;
    metrics::Gauge* gauge = nullptr;
    metrics::Histogram* histogram = nullptr;
  };
  // Entries are never removed and the series they point to live as long as the registry; the
  // deque keeps an entry where it is while others are added.
  const Entry* Find(std::uint32_t id) {
    std::lock_guard lock(mu_);
    return id < entries_.size() ? &entries_[id] : nullptr;
  }

  metrics::Registry& registry_;
  const std::string plugin_;
  std::mutex mu_;
  std::deque<Entry> entries_;  // GUARDED_BY(mu_); an entry's fields never change once added
};

}  // namespace

std::shared_ptr<plugins::MetricSink> PluginMetrics::Sink(std::size_t plugin) {
  return plugin < sinks_.size() ? sinks_[plugin] : nullptr;
}

PluginMetrics::PluginMetrics(metrics::Registry& registry, const std::vector<std::string>& plugins) {
  static_assert(std::size(kKinds) == kKindCount);
  for (const std::string& name : plugins) {
    Series s;
    for (std::size_t h = 0; h < kHookCount; ++h) {
      const metrics::Labels labels = {{"plugin", name},
                                      {"hook", std::string(plugins::HookName(plugins::kHooks[h]))}};
      s.calls[h] = &registry.GetCounter(
          "ember_plugin_calls_total",
          "Plugin hook calls, by plugin and hook (request, response_headers, response_body "
          "per event, complete).",
          labels);
      s.seconds[h] = &registry.GetHistogram(
          "ember_plugin_call_duration_seconds",
          "Time of one plugin's callbacks for one hook (one request, or one streamed event), on a "
          "plugin worker.",
          CallBuckets(), labels);
    }
    for (std::size_t k = 0; k < kKindCount; ++k) {
      s.failures[k] = &registry.GetCounter(
          "ember_plugin_failures_total",
          "Plugin calls that failed, by kind (cpu_limit, stack_overflow, memory_limit, "
          "out_of_bounds, trap, abi, load); the instance is rebuilt after each.",
          {{"plugin", name}, {"kind", std::string(plugins::FailureKindName(kKinds[k]))}});
    }
    s.rejections = &registry.GetCounter(
        "ember_plugin_rejections_total",
        "Requests a plugin answered itself (proxy_send_local_response).", {{"plugin", name}});
    s.streams_closed = &registry.GetCounter(
        "ember_plugin_streams_closed_total",
        "Streams a plugin's response hook ended (proxy_close_stream).", {{"plugin", name}});
    series_.push_back(s);
    sinks_.push_back(std::make_shared<CustomMetrics>(registry, name));
  }
}

void PluginMetrics::Call(std::size_t plugin, plugins::Hook hook, std::chrono::nanoseconds took,
                         const plugins::PluginError* failure) {
  if (plugin >= series_.size()) return;
  Series& s = series_[plugin];
  const auto h = static_cast<std::size_t>(hook);
  s.calls[h]->Inc();
  s.seconds[h]->Observe(std::chrono::duration<double>(took).count());
  if (failure) s.failures[static_cast<std::size_t>(failure->kind)]->Inc();
}

void PluginMetrics::Rejected(std::size_t plugin) {
  if (plugin < series_.size()) series_[plugin].rejections->Inc();
}

void PluginMetrics::StreamClosed(std::size_t plugin) {
  if (plugin < series_.size()) series_[plugin].streams_closed->Inc();
}

}  // namespace ember::server

#endif
