// Runs the hooks of a plugins file off the HTTP I/O threads: a few worker threads, each with its
// own Instance of every plugin (created at start, reused for every request, rebuilt after a
// failure). Request hooks come from one shared queue; the server posts a request after
// authentication and parsing and gets a RequestVerdict back on a worker thread (it then posts to
// its own strand). A request's later hooks (completion) must reach the instances whose stream
// contexts it created, so they go to that worker's own queue, through the verdict's Flow, and
// run in the order they were posted.
// Thread-safe: every method may be called from any thread.
#pragma once

#include <chrono>
#include <functional>
#include <memory>
#include <optional>
#include <string>

#include "common/error.h"
#include "plugins/config.h"
#include "plugins/plugin.h"

namespace ember::plugins {

// The stream contexts a request's chain created, on one worker: what the completion hook needs.
// Opaque to the server, which only hands it back.
struct Flow;

struct RequestVerdict {
  RequestData request;  // as the chain left it
  bool body_changed = false;
  // A plugin answered (proxy_send_local_response): the request ends with this.
  std::optional<LocalResponse> local_response;
  std::string decided_by;  // the plugin that answered, or that failed closed
  // A fail-closed plugin failed: the request ends with 503 naming it.
  std::optional<PluginError> failure;
  int failed_open = 0;  // fail-open plugins that failed and were skipped
  // The plugins that ran (their contexts live until Complete); null when none did.
  std::shared_ptr<Flow> flow;
};

// What the response hooks left of a response (headers, one SSE event, or a whole body).
struct ResponseVerdict {
  ResponseData response;  // as the flow's plugins left it
  bool changed = false;
  // A plugin called proxy_close_stream: the stream ends cleanly after this event.
  bool close_stream = false;
  // A fail-closed plugin failed: the answer ends here (503, or a stream's clean end).
  std::optional<PluginError> failure;
  std::string decided_by;  // the plugin that closed the stream or failed closed
};

// The hooks a plugin runs, for its metrics.
enum class Hook { kRequest, kResponseHeaders, kResponseBody, kComplete, kTick };
std::string_view HookName(Hook hook);  // "request", "response_headers", ...
inline constexpr Hook kHooks[] = {Hook::kRequest, Hook::kResponseHeaders, Hook::kResponseBody,
                                  Hook::kComplete, Hook::kTick};

// Where the runner reports each plugin's calls (server/plugin_metrics.cc makes Prometheus series
// of them). Called on the worker threads; must not block.
class HookMetrics {
 public:
  virtual ~HookMetrics() = default;
  // `plugin`: its index in the configuration's plugins. One hook's callbacks of one plugin for
  // one request (or one streamed event) took `took`; `failure` when they failed.
  virtual void Call(std::size_t plugin, Hook hook, std::chrono::nanoseconds took,
                    const PluginError* failure) = 0;
  // The plugin answered the request itself (proxy_send_local_response).
  virtual void Rejected(std::size_t plugin) = 0;
  // The plugin ended a stream (proxy_close_stream).
  virtual void StreamClosed(std::size_t plugin) = 0;
  // Where the plugin's own metrics go (proxy_define_metric & co.); null: none.
  virtual std::shared_ptr<MetricSink> Sink(std::size_t plugin) {
    (void)plugin;
    return nullptr;
  }
};

class HookRunner {
 public:
  // Compiles every plugin of `config` (paths relative to `base_dir`) and starts `threads`
  // workers, each instantiating every plugin. Any plugin that does not load is an error.
  // `metrics` (may be null) must outlive the runner.
  [[nodiscard]] static Result<std::unique_ptr<HookRunner>> Create(PluginsConfig config,
                                                                  const std::string& base_dir,
                                                                  int threads,
                                                                  HookMetrics* metrics = nullptr);
  ~HookRunner();  // finishes queued requests, then joins the workers

  // Whether any plugin runs for this route and tenant.
  bool Applies(std::string_view route, std::string_view tenant) const;
  // Runs the chain on a worker; `done` is called there exactly once.
  void RunRequest(std::string route, RequestData request, std::function<void(RequestVerdict)> done);
  // Whether a plugin of the flow has a response hook: without one, the server answers directly.
  bool HasResponseHooks(const std::shared_ptr<Flow>& flow) const;
  // The response hooks, on the flow's worker, after everything posted for it before, in the
  // reverse of the chain's order (as a proxy runs a response back through its filters):
  // proxy_on_response_headers when `headers`, then proxy_on_response_body when `body`.
  // `done` is called on the worker, exactly once; verdicts come back in the order posted.
  void RunResponse(std::shared_ptr<Flow> flow, ResponseData response, bool headers, bool body,
                   std::function<void(ResponseVerdict)> done);
  // The completion point: proxy_on_done, proxy_on_log, proxy_on_delete of every plugin of the
  // flow, in chain order, on the flow's worker, with `completion` as the usage properties.
  // Returns at once (never waits on a plugin); a failure is logged, it changes no answer.
  void Complete(std::shared_ptr<Flow> flow, CompletionData completion);

  struct Impl;

 private:
  explicit HookRunner(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace ember::plugins
