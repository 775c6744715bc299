// Routes HTTP exchanges to ember's endpoints and holds the serving state (loading, ready,
// draining). Owned by RunServe; its Handle() runs on HTTP threads.
#pragma once

#include <array>
#include <atomic>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>

#include "http/http_server.h"
#include "scheduler/scheduler.h"
#include "server/server_metrics.h"

namespace ember::server {

enum class Phase { kLoading, kReady, kDraining };

enum class Determinism {
  kOff,    // a request asking for "deterministic": true gets a 400
  kAllow,  // requests may ask for it
  kAll,    // every request is deterministic
};

struct AppOptions {
  std::chrono::milliseconds liveness_timeout{60'000};
  Determinism determinism = Determinism::kOff;
};

class App {
 public:
  App(AppOptions options, ServerMetrics& metrics);

  // Called once the model is loaded and warmed; the app serves requests from then on.
  void SetScheduler(scheduler::Scheduler* scheduler);
  void SetPhase(Phase phase) { phase_.store(phase); }
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

 private:
  friend class Generation;
  void Reply(http::Exchange& ex, const std::string& endpoint, int status, std::string body,
             http::Headers extra = {});
  void ReplyError(http::Exchange& ex, const std::string& endpoint, const Error& error);
  void HandleHealth(http::Exchange& ex);
  void HandleReady(http::Exchange& ex);
  void HandleModels(http::Exchange& ex);
  void HandleTokenize(http::Exchange& ex);
  void HandleGenerate(std::shared_ptr<http::Exchange> ex, bool chat);

  AppOptions options_;
  ServerMetrics& metrics_;
  std::atomic<Phase> phase_{Phase::kLoading};
  mutable std::mutex loading_step_mu_;
  std::string loading_step_ = "starting";
  std::atomic<scheduler::Scheduler*> scheduler_{nullptr};
  // system_fingerprint of default [0] and deterministic [1] responses; set with the scheduler.
  std::array<std::string, 2> fingerprints_;
  std::atomic<int> open_generations_{0};
};

}  // namespace ember::server
