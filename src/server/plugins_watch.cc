#include "server/plugins_watch.h"

#ifdef EMBER_HAVE_PLUGINS

#include "common/log.h"
#include "server/app.h"
#include "server/text_file.h"

namespace ember::server {

PluginsWatcher::PluginsWatcher(std::filesystem::path file, int threads, App& app,
                               ServerMetrics& metrics, std::chrono::milliseconds period)
    : file_(std::move(file)), threads_(threads), app_(app), metrics_(metrics), period_(period) {}

PluginsWatcher::~PluginsWatcher() {
  StopThread();
  DestroyReleased();
}

void PluginsWatcher::StopPolling() {
  StopThread();
  // The App outlives this watcher (both are RunServe's statics, the App made first): its
  // runner must come back here while the watcher can still take it.
  app_.SetPlugins(nullptr);
  DestroyReleased();
}

void PluginsWatcher::StopThread() {
  {
    std::lock_guard lock(mu_);
    stop_ = true;
  }
  wake_.notify_all();
  if (thread_.joinable()) thread_.join();
}

Result<std::shared_ptr<plugins::HookRunner>> PluginsWatcher::Load(Stamps& stamps,
                                                                  std::size_t& count) {
  stamps.clear();
  stamps[file_] = tenancy::StampOf(file_);
  std::string text;
  if (Status read = ReadNonEmptyTextFile(file_, text); !read) {
    return std::unexpected(read.error());
  }
  auto config = plugins::ParsePluginsConfig(text, file_.string());
  if (!config) return std::unexpected(config.error());
  const std::filesystem::path base = file_.parent_path();
  std::vector<std::string> names;
  for (const plugins::PluginEntry& entry : config->plugins) {
    names.push_back(entry.name);
    const std::filesystem::path wasm = base / entry.path;
    stamps[wasm] = tenancy::StampOf(wasm);
  }
  count = names.size();
  auto plugin_metrics = std::make_unique<PluginMetrics>(metrics_.registry(), names);
  auto runner = plugins::HookRunner::Create(std::move(*config), base.string(), threads_,
                                            plugin_metrics.get());
  if (!runner) return std::unexpected(runner.error());
  plugin_metrics_.emplace(runner->get(), std::move(plugin_metrics));
  return std::shared_ptr<plugins::HookRunner>(runner->release(),
                                              [this](plugins::HookRunner* r) { Release(r); });
}

Status PluginsWatcher::LoadInitial() {
  std::size_t count = 0;
  auto runner = Load(stamps_, count);
  if (!runner) {
    return std::unexpected(Error{runner.error().code,
                                 "--plugins " + file_.string() + ": " + runner.error().message,
                                 runner.error().param});
  }
  app_.SetPlugins(std::move(*runner));
  app_.SetPluginsReloader(
      [this](std::function<void(Result<std::size_t>)> done) { RequestReload(std::move(done)); });
  metrics_.CountPluginReload(true);
  log::Info("plugins: ", count, " loaded from ", file_.string(), " on ", threads_, " thread(s)");
  return {};
}

void PluginsWatcher::Start() {
  thread_ = std::thread([this] {
    std::unique_lock lock(mu_);
    while (!stop_) {
      wake_.wait_for(lock, period_, [this] { return stop_ || !reload_requests_.empty(); });
      if (stop_) break;
      std::vector<std::function<void(Result<std::size_t>)>> requests;
      requests.swap(reload_requests_);
      lock.unlock();
      std::optional<Result<std::size_t>> result = Poll(!requests.empty());
      for (auto& done : requests) done(*result);
      lock.lock();
    }
    // Stopped with requests waiting: answer them (the server is going).
    for (auto& done : reload_requests_) done(std::unexpected(Unavailable("server is stopping")));
    reload_requests_.clear();
  });
}

void PluginsWatcher::RequestReload(std::function<void(Result<std::size_t>)> done) {
  {
    std::lock_guard lock(mu_);
    if (!stop_) {
      reload_requests_.push_back(std::move(done));
      done = nullptr;
    }
  }
  if (done) return done(std::unexpected(Unavailable("server is stopping")));
  wake_.notify_all();
}

bool PluginsWatcher::Changed() const {
  for (const auto& [path, stamp] : stamps_) {
    if (tenancy::StampOf(path) != stamp) return true;
  }
  return false;
}

std::optional<Result<std::size_t>> PluginsWatcher::Poll(bool force) {
  std::optional<Result<std::size_t>> result;
  if (force || Changed()) {
    std::size_t count = 0;
    Stamps stamps;
    auto runner = Load(stamps, count);
    // Retried only when a file changes again: a half-written file fails once, and the write
    // that completes it changes its stamp.
    stamps_ = std::move(stamps);
    if (!runner) {
      log::Error("plugins: rejected a change to ", file_.string(), ": ", runner.error().message,
                 "; the previous plugins stay in force");
      metrics_.CountPluginReload(false);
      result = std::unexpected(runner.error());
    } else {
      app_.SetPlugins(std::move(*runner));
      metrics_.CountPluginReload(true);
      log::Info("plugins: reloaded ", file_.string(), ": ", count,
                " plugins; requests in flight finish on the previous ones");
      result = count;
    }
  }
  DestroyReleased();
  return result;
}

void PluginsWatcher::Release(plugins::HookRunner* runner) {
  std::lock_guard lock(mu_);
  released_.push_back(runner);
}

void PluginsWatcher::DestroyReleased() {
  std::vector<plugins::HookRunner*> released;
  {
    std::lock_guard lock(mu_);
    released.swap(released_);
  }
  // Each finishes what is queued on its workers and joins them, then its series go.
  for (plugins::HookRunner* runner : released) {
    const auto series = plugin_metrics_.find(runner);
    delete runner;
    if (series != plugin_metrics_.end()) plugin_metrics_.erase(series);
  }
}

}  // namespace ember::server

#endif
