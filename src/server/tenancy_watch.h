// Keeps the running server's tenancy in step with DIR/tenants.toml: loads it at start-up (a
// malformed file stops start-up with its file:line and reason) and then polls it every
// 250 ms, so a change made with `ember tenants`/`ember keys` (or by hand, or by a Kubernetes
// ConfigMap update) is in force within a second, without a restart and without touching
// requests in flight. A bad change is rejected, logged and counted
// (ember_tenancy_reloads_total{result="error"}); the previous configuration stays. A file that
// disappears also leaves the previous configuration in force (fail closed: a deleted file
// must not turn a multi-tenant server open).
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <filesystem>
#include <functional>
#include <mutex>
#include <optional>
#include <thread>

#include "common/error.h"
#include "server/server_metrics.h"
#include "tenancy/store.h"
#include "tenancy/tenancy.h"

namespace ember::server {

class TenancyWatcher {
 public:
  // `on_apply`, when set, also gets every configuration applied (the budgets of metering).
  TenancyWatcher(std::filesystem::path file, tenancy::Tenancy& tenancy, ServerMetrics& metrics,
                 std::function<void(const tenancy::Config&)> on_apply = nullptr,
                 std::chrono::milliseconds period = std::chrono::milliseconds(250));
  ~TenancyWatcher();  // stops polling

  // Reads the file once and applies it (a missing file: open mode).
  Status LoadInitial();
  // Starts polling on its own thread.
  void Start();

 private:
  void Poll();

  const std::filesystem::path file_;
  tenancy::Tenancy& tenancy_;
  ServerMetrics& metrics_;
  std::function<void(const tenancy::Config&)> on_apply_;
  const std::chrono::milliseconds period_;
  std::optional<tenancy::FileStamp> stamp_;  // of the file last read (ok or not)
  std::mutex mu_;
  std::condition_variable wake_;
  bool stop_ = false;  // GUARDED_BY(mu_)
  std::thread thread_;
};

}  // namespace ember::server
