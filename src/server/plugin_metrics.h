// Per-plugin Prometheus series (docs/plugins.md, "Metrics"): the HookRunner reports each
// plugin's calls here, on its worker threads. Every series of every plugin of the plugins file is
// created at start (so a plugin that never failed shows 0), and each report is an array index
// and an atomic update: no lock on the hook path.
#pragma once

#ifdef EMBER_HAVE_PLUGINS

#include <array>
#include <memory>
#include <string>
#include <vector>

#include "metrics/metrics.h"
#include "plugins/hook_runner.h"

namespace ember::server {

class PluginMetrics : public plugins::HookMetrics {
 public:
  // `plugins`: the names, in the plugins file's order (HookMetrics' index).
  PluginMetrics(metrics::Registry& registry, const std::vector<std::string>& plugins);

  void Call(std::size_t plugin, plugins::Hook hook, std::chrono::nanoseconds took,
            const plugins::PluginError* failure) override;
  void Rejected(std::size_t plugin) override;
  void StreamClosed(std::size_t plugin) override;
  // The plugin's own metrics: ember_plugin_counter_total, ember_plugin_gauge and
  // ember_plugin_histogram with labels plugin and name (docs/plugins.md, "Metrics").
  std::shared_ptr<plugins::MetricSink> Sink(std::size_t plugin) override;

 private:
  static constexpr std::size_t kHookCount = std::size(plugins::kHooks);
  static constexpr std::size_t kKindCount = 7;  // plugins::FailureKind
  struct Series {
    std::array<metrics::Counter*, kHookCount> calls{};
    std::array<metrics::Histogram*, kHookCount> seconds{};
    std::array<metrics::Counter*, kKindCount> failures{};
    metrics::Counter* rejections = nullptr;
    metrics::Counter* streams_closed = nullptr;
  };
  std::vector<Series> series_;  // by plugin index; immutable after construction
  std::vector<std::shared_ptr<plugins::MetricSink>> sinks_;  // by plugin index
};

}  // namespace ember::server

#endif
