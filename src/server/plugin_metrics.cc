#include "server/plugin_metrics.h"

#ifdef EMBER_HAVE_PLUGINS

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

}  // namespace

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
