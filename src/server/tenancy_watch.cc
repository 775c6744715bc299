#include "server/tenancy_watch.h"

#include "common/log.h"

namespace ember::server {

TenancyWatcher::TenancyWatcher(std::filesystem::path file, tenancy::Tenancy& tenancy,
                               ServerMetrics& metrics,
                               std::function<void(const tenancy::Config&)> on_apply,
                               std::chrono::milliseconds period)
    : file_(std::move(file)),
      tenancy_(tenancy),
      metrics_(metrics),
      on_apply_(std::move(on_apply)),
      period_(period) {}

TenancyWatcher::~TenancyWatcher() {
  {
    std::lock_guard lock(mu_);
    stop_ = true;
  }
  wake_.notify_all();
  if (thread_.joinable()) thread_.join();
}

Status TenancyWatcher::LoadInitial() {
  stamp_ = tenancy::StampOf(file_);
  auto config = tenancy::ReadConfigFile(file_);
  if (!config) return std::unexpected(config.error());
  tenancy_.Apply(*config);
  if (on_apply_) on_apply_(*config);
  metrics_.CountTenancyReload(true, config->tenants.size());
  if (config->empty()) {
    log::Warn("no tenants configured (", file_.string(), stamp_ ? " has none" : " does not exist",
              "): serving OPEN, without API keys or limits; add one with `ember tenants add` "
              "to require keys");
  } else {
    log::Info("tenancy: ", config->tenants.size(), " tenants, ", config->keys.size(),
              " API keys from ", file_.string(), "; every request needs a key");
  }
  return {};
}

void TenancyWatcher::Start() {
  thread_ = std::thread([this] {
    std::unique_lock lock(mu_);
    while (!stop_) {
      wake_.wait_for(lock, period_);
      if (stop_) break;
      lock.unlock();
      Poll();
      lock.lock();
    }
  });
}

void TenancyWatcher::Poll() {
  const std::optional<tenancy::FileStamp> stamp = tenancy::StampOf(file_);
  if (stamp == stamp_) return;
  stamp_ = stamp;
  if (!stamp) {
    log::Warn("tenancy: ", file_.string(),
              " disappeared; keeping the configuration in force (restart to serve open)");
    metrics_.CountTenancyReload(false, 0);
    return;
  }
  auto config = tenancy::ReadConfigFile(file_);
  if (!config) {
    log::Error("tenancy: rejected a change to ", file_.string(), ": ", config.error().message,
               "; the previous configuration stays in force");
    metrics_.CountTenancyReload(false, 0);
    return;
  }
  const bool was_open = tenancy_.open();
  tenancy_.Apply(*config);
  if (on_apply_) on_apply_(*config);
  metrics_.CountTenancyReload(true, config->tenants.size());
  log::Info("tenancy: reloaded ", file_.string(), ": ", config->tenants.size(), " tenants, ",
            config->keys.size(), " API keys");
  if (was_open && !config->empty()) log::Info("tenancy: API keys are now required");
  if (!was_open && config->empty()) {
    log::Warn("tenancy: the file now has no tenants: serving OPEN, without API keys or limits");
  }
}

}  // namespace ember::server
