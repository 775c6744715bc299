// Keeps the running server's plugins in step with the --plugins file and the .wasm files it
// names (docs/plugins.md, "Reload"): loads them at start-up (a plugin that does not load stops
// start-up) and then polls their stamps every second, like tenancy_watch.h does for
// tenants.toml. A change compiles and instantiates a whole new HookRunner off the request path;
// only when every plugin of the new file loads does the App switch to it, so a bad change is
// rejected, logged and counted (ember_plugin_reloads_total{result="error"}) and the previous
// plugins stay. Requests in flight keep the runner they started with until their completion
// hooks ran (Generation holds it); new requests get the new one. No request is dropped or
// answered by a half-loaded chain.
//
// A replaced runner is destroyed when its last request lets go of it, which can happen on one
// of its own worker threads (a verdict's callback holds the request); a runner cannot join
// its own thread, so released runners are handed here and destroyed on the poll thread.
#pragma once

#ifdef EMBER_HAVE_PLUGINS

#include <chrono>
#include <condition_variable>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <thread>
#include <vector>

#include "common/error.h"
#include "plugins/hook_runner.h"
#include "server/plugin_metrics.h"
#include "server/server_metrics.h"
#include "tenancy/store.h"

namespace ember::server {

class App;

class PluginsWatcher {
 public:
  PluginsWatcher(std::filesystem::path file, int threads, App& app, ServerMetrics& metrics,
                 std::chrono::milliseconds period = std::chrono::milliseconds(1000));
  // Stops polling, then destroys the runners released so far. Must outlive the App and every
  // request (RunServe keeps it in a static): a runner the App or a request lets go of later is
  // handed here.
  ~PluginsWatcher();

  // Reads and loads the file once and gives the App its runner; an error stops start-up.
  Status LoadInitial();
  // Starts polling on its own thread.
  void Start();
  // Before the App goes: stops polling, takes the App's runner and destroys every runner
  // released so far (joining their workers). Runners released later (a request that outlives
  // this) are destroyed by the destructor.
  void StopPolling();
  // Reloads now, whatever the stamps say, on the poll thread; `done` is called there with the
  // number of plugins loaded or why the file was rejected (POST /admin/plugins/reload).
  void RequestReload(std::function<void(Result<std::size_t>)> done);

 private:
  // The stamps of the file and of every .wasm it named, at the last load (ok or not).
  using Stamps = std::map<std::filesystem::path, std::optional<tenancy::FileStamp>>;

  Result<std::shared_ptr<plugins::HookRunner>> Load(Stamps& stamps, std::size_t& count);
  bool Changed() const;
  // Reloads when a stamp changed or `force`; nullopt when nothing was done.
  std::optional<Result<std::size_t>> Poll(bool force);
  void StopThread();
  void Release(plugins::HookRunner* runner);
  void DestroyReleased();

  const std::filesystem::path file_;
  const int threads_;
  App& app_;
  ServerMetrics& metrics_;
  const std::chrono::milliseconds period_;
  Stamps stamps_;  // poll thread only (and LoadInitial before it starts)
  // Each live runner's per-plugin series, by plugins-file order: a runner reports to its own
  // until it is destroyed, and they go with it, so reloads do not pile them up (the series
  // themselves are shared by name in the registry).
  std::map<const plugins::HookRunner*, std::unique_ptr<PluginMetrics>>
      plugin_metrics_;  // poll thread only

  std::mutex mu_;
  std::condition_variable wake_;
  bool stop_ = false;                                                      // GUARDED_BY(mu_)
  std::vector<std::function<void(Result<std::size_t>)>> reload_requests_;  // GUARDED_BY(mu_)
  std::vector<plugins::HookRunner*> released_;                             // GUARDED_BY(mu_)
  std::thread thread_;
};

}  // namespace ember::server

#endif
