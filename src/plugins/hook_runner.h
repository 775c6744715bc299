// Runs the request hooks of a plugins file off the HTTP I/O threads: a few worker threads, each
// with its own Instance of every plugin (created at start, reused for every request, rebuilt
// after a failure), fed by one queue. The server posts a request after authentication and
// parsing and gets a RequestVerdict back on a worker thread (it then posts to its own strand).
// Thread-safe: RunRequest may be called from any thread.
#pragma once

#include <functional>
#include <memory>
#include <optional>
#include <string>

#include "common/error.h"
#include "plugins/config.h"
#include "plugins/plugin.h"

namespace ember::plugins {

struct RequestVerdict {
  RequestData request;  // as the chain left it
  bool body_changed = false;
  // A plugin answered (proxy_send_local_response): the request ends with this.
  std::optional<LocalResponse> local_response;
  std::string decided_by;  // the plugin that answered, or that failed closed
  // A fail-closed plugin failed: the request ends with 503 naming it.
  std::optional<PluginError> failure;
  int failed_open = 0;  // fail-open plugins that failed and were skipped
};

class HookRunner {
 public:
  // Compiles every plugin of `config` (paths relative to `base_dir`) and starts `threads`
  // workers, each instantiating every plugin. Any plugin that does not load is an error.
  [[nodiscard]] static Result<std::unique_ptr<HookRunner>> Create(PluginsConfig config,
                                                                  const std::string& base_dir,
                                                                  int threads);
  ~HookRunner();  // finishes queued requests, then joins the workers

  // Whether any plugin runs for this route and tenant.
  bool Applies(std::string_view route, std::string_view tenant) const;
  // Runs the chain on a worker; `done` is called there exactly once.
  void RunRequest(std::string route, RequestData request, std::function<void(RequestVerdict)> done);

  struct Impl;

 private:
  explicit HookRunner(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace ember::plugins
