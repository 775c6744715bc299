// Routes HTTP exchanges to ember's endpoints and holds the serving state (loading, ready,
// draining); the models themselves live in the ModelManager. Owned by RunServe; its Handle() runs
// on HTTP threads.
#pragma once

#include <array>
#include <atomic>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>

#include "api/openai.h"
#include "http/http_server.h"
#include "scheduler/scheduler.h"
#include "server/console.h"
#include "server/console_assets.h"
#include "server/metering.h"
#include "server/models.h"
#include "server/server_metrics.h"
#include "tenancy/tenancy.h"

namespace ember::plugins {
class HookRunner;
}  // namespace ember::plugins

namespace ember::server {

class ChatTemplates;

enum class Phase { kLoading, kReady, kDraining };

enum class Determinism {
  kOff,    // a request asking for "deterministic": true gets a 400
  kAllow,  // requests may ask for it
  kAll,    // every request is deterministic
};

struct AppOptions {
  std::chrono::milliseconds liveness_timeout{60'000};
  Determinism determinism = Determinism::kOff;
  // A request's whole wait (for its model to load, then for a slot) is bounded by this.
  std::chrono::milliseconds queue_timeout{30'000};
  // Bearer token the admin endpoints require; empty = they answer loopback clients only.
  std::string admin_key;
  // The console: recent requests' timelines and the live event feed.
  ConsoleOptions console;
};

// Whether `request` may use the admin endpoints: with `admin_key`, it must carry
// "Authorization: Bearer <admin_key>" (401 otherwise); without, it must come from loopback
// (403 otherwise).
[[nodiscard]] Status CheckAdminAccess(const http::Request& request, std::string_view admin_key);

// The value of `name` in a URL query ("a=1&b=x%2Cy"), percent-decoded; nullopt when absent.
std::optional<std::string> QueryParam(std::string_view target, std::string_view name);

class App {
 public:
  // `tenancy`: who may call (open when it has no tenants); `tenant_metrics`: series by tenant.
  App(AppOptions options, ServerMetrics& metrics, tenancy::Tenancy& tenancy,
      TenantMetrics& tenant_metrics);

  // The models it serves; set before the HTTP server starts, cleared after it stopped.
  void SetModels(ModelManager* models) { models_.store(models); }
  void SetPhase(Phase phase) { phase_.store(phase); }
  // Usage metering and budgets (server/metering.h); set before serving, may stay null (tests).
  void SetMetering(Metering* metering) { metering_ = metering; }
  // The models' Jinja chat templates (tools, structured output); may stay null (tests): chat
  // then renders with the engine's built-in templates only.
  void SetChatTemplates(ChatTemplates* templates) { chat_templates_ = templates; }
  // The console's web page (--console-dir); may stay null: /console then answers 404.
  void SetConsoleAssets(const ConsoleAssets* assets) { console_assets_ = assets; }
  // The hooks of --plugins (docs/plugins.md); may stay null: no plugin runs. Replaced on a
  // reload (server/plugins_watch.h): a request keeps the runner it started with.
  void SetPlugins(std::shared_ptr<plugins::HookRunner> plugins) {
    std::lock_guard lock(plugins_mu_);
    plugins_ = std::move(plugins);
  }
  std::shared_ptr<plugins::HookRunner> plugins() const {
    std::lock_guard lock(plugins_mu_);
    return plugins_;
  }
  // What POST /admin/plugins/reload calls: reloads the plugins file now, off the I/O thread,
  // and calls `done` with the number of plugins loaded or why the file was rejected. Unset
  // (no --plugins): the endpoint answers 404.
  using PluginsReloader = std::function<void(std::function<void(Result<std::size_t>)> done)>;
  void SetPluginsReloader(PluginsReloader reloader) { plugins_reloader_ = std::move(reloader); }
  // What loading is doing now ("metadata", "tokenizer", "buffers", "weights", "context",
  // "warmup"), for /ready.
  void SetLoadingStep(std::string_view step) {
    std::lock_guard lock(loading_step_mu_);
    loading_step_ = step;
  }
  Phase phase() const { return phase_.load(); }
  // Generation exchanges whose response has not ended yet.
  int open_generations() const { return open_generations_.load(); }

  void Handle(std::shared_ptr<http::Exchange> exchange);

  Console& console() { return console_; }
  // The console's ticker (the /admin/events snapshots); stop it before the models go.
  void StartConsole();
  void StopConsole() { console_.Stop(); }

 private:
  friend class Generation;
  void Reply(http::Exchange& ex, const std::string& endpoint, int status, std::string body,
             http::Headers extra = {});
  void ReplyError(http::Exchange& ex, const std::string& endpoint, const Error& error);
  // A refusal by tenancy: 401 invalid_api_key with WWW-Authenticate, 403, or 429 with
  // Retry-After from the bucket; `extra` headers (rate limits) added. Returns the status.
  int ReplyRejection(http::Exchange& ex, const std::string& endpoint,
                     const tenancy::Rejection& rejection, http::Headers extra = {});
  void HandleHealth(http::Exchange& ex);
  void HandleReady(http::Exchange& ex);
  void HandleModels(http::Exchange& ex);
  void HandleTokenize(std::shared_ptr<http::Exchange> ex);
  // `request_id`: the client's x-request-id when it is sane, else "".
  void HandleGenerate(std::shared_ptr<http::Exchange> ex, api::Endpoint kind,
                      std::string request_id);
  // GET /admin/requests, /admin/requests/{id}, /admin/events (console.cc's data).
  void HandleRequests(http::Exchange& ex);
  void HandleEvents(std::shared_ptr<http::Exchange> ex);
  // GET /admin/history: the charts' last hour (history.h).
  void HandleHistory(http::Exchange& ex);
  // GET /console[/...]: the page's files.
  void HandleConsolePage(http::Exchange& ex);
  // With tenants configured, the API endpoints other than generation (models, tokenize) need
  // a valid key too; answers the refusal itself and returns false.
  bool Authorized(http::Exchange& ex, const std::string& endpoint);
  // POST /admin/models/{id}/load and /admin/models/{id}/unload.
  void HandleAdmin(std::shared_ptr<http::Exchange> ex);
  // POST /admin/plugins/reload.
  void HandlePluginsReload(std::shared_ptr<http::Exchange> ex);
  // GET /v1/usage: the ledger's report (admin access).
  void HandleUsage(std::shared_ptr<http::Exchange> ex);

  // system_fingerprint of default [0] and deterministic [1] responses of a model.
  const std::array<std::string, 2>& Fingerprints(const std::string& numerics_id);

  AppOptions options_;
  ServerMetrics& metrics_;
  tenancy::Tenancy& tenancy_;
  mutable std::mutex plugins_mu_;
  std::shared_ptr<plugins::HookRunner> plugins_;  // GUARDED_BY(plugins_mu_)
  PluginsReloader plugins_reloader_;              // set before serving
  TenantMetrics& tenant_metrics_;
  std::atomic<Phase> phase_{Phase::kLoading};
  mutable std::mutex loading_step_mu_;
  std::string loading_step_ = "starting";
  std::atomic<ModelManager*> models_{nullptr};
  std::mutex fingerprints_mu_;
  std::map<std::string, std::array<std::string, 2>> fingerprints_;  // GUARDED_BY(fingerprints_mu_)
  std::atomic<int> open_generations_{0};
  Metering* metering_ = nullptr;
  ChatTemplates* chat_templates_ = nullptr;
  Console console_;
  const ConsoleAssets* console_assets_ = nullptr;
};

}  // namespace ember::server
