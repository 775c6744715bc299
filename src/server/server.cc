#include "server/server.h"

#include <pthread.h>
#include <signal.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "common/clock.h"
#include "common/log.h"
#include "engine/llama/llama_engine.h"
#include "http/http_server.h"
#include "server/app.h"
#include "server/cpu_budget.h"
#include "server/server_metrics.h"

namespace ember::server {
namespace {

// Blocks SIGTERM/SIGINT in every thread (call before starting any) so one thread can
// sigwait for them.
sigset_t BlockShutdownSignals() {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGINT);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
  return set;
}

int WaitSignal(const sigset_t& set) {
  int sig = 0;
  sigwait(&set, &sig);
  return sig;
}

}  // namespace

namespace {

engine::LlamaOptions LlamaOptionsFrom(const ServeOptions& options) {
  engine::LlamaOptions llama;
  llama.model_path = options.model_path;
  // Known before the model loads, so metrics carry the right model_name from the start.
  llama.model_id =
      options.model_id.empty() ? engine::DefaultModelId(options.model_path) : options.model_id;
  llama.ctx_size = options.ctx_size;
  llama.parallel = options.parallel;
  llama.batch_size = options.batch_size;
  llama.threads = options.threads > 0 ? options.threads : UsableCpus();
  llama.flash_attn = options.flash_attn == "on"    ? engine::FlashAttention::kOn
                     : options.flash_attn == "off" ? engine::FlashAttention::kOff
                                                   : engine::FlashAttention::kAuto;
  if (!options.data_dir.empty()) llama.repack_cache_dir = options.data_dir + "/cache";
  llama.repack = !options.no_repack;
  return llama;
}

http::ServerOptions HttpOptionsFrom(const ServeOptions& options, ServerMetrics& metrics) {
  http::ServerOptions http;
  http.host = options.host;
  http.port = options.port;
  http.threads = options.http_threads;
  http.max_body_bytes = options.max_body_bytes;
  http.read_timeout = options.read_timeout;
  http.on_protocol_error = [&metrics](int status) { metrics.CountHttp("other", status); };
  return http;
}

// The first SIGTERM/SIGINT turns the app to draining and sets `drain_requested`; a second
// one exits at once. The thread lives until the process ends.
void WatchSignals(sigset_t signals, App& app, std::atomic<bool>& drain_requested,
                  std::chrono::milliseconds drain_timeout) {
  std::thread([signals, &app, &drain_requested, drain_timeout] {
    const int first = WaitSignal(signals);
    log::Info("signal ", first, ": draining (up to ", drain_timeout.count(), " ms)");
    app.SetPhase(Phase::kDraining);
    drain_requested = true;
    const int second = WaitSignal(signals);
    log::Warn("second signal (", second, "): exiting at once");
    std::_Exit(1);
  }).detach();
}

// Lets running and queued requests finish (up to `timeout`), stops the rest, and gives the
// HTTP threads a moment to write the last bytes of every response.
void Drain(scheduler::Scheduler& scheduler, const App& app, std::chrono::milliseconds timeout) {
  scheduler.BeginDrain();
  if (!scheduler.WaitIdle(Clock::Real().Now() + timeout)) {
    log::Warn("drain timeout reached; stopping the requests still running");
    scheduler.AbortAll();
    scheduler.WaitIdle(Clock::Real().Now() + std::chrono::seconds(5));
  }
  const SteadyTime flush_deadline = Clock::Real().Now() + std::chrono::seconds(5);
  while (app.open_generations() > 0 && Clock::Real().Now() < flush_deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
}

}  // namespace

int RunServe(const ServeOptions& options) {
  const sigset_t signals = BlockShutdownSignals();
  const auto start = std::chrono::steady_clock::now();
  engine::LlamaOptions llama = LlamaOptionsFrom(options);
  // Static: the signal thread may outlive a failed start by a moment.
  static ServerMetrics metrics(llama.model_id);
  const Determinism determinism = options.deterministic         ? Determinism::kAll
                                  : options.allow_deterministic ? Determinism::kAllow
                                                                : Determinism::kOff;
  static App app(
      AppOptions{.liveness_timeout = options.liveness_timeout, .determinism = determinism},
      metrics);
  static std::atomic<bool> drain_requested{false};

  auto http = http::HttpServer::Create(HttpOptionsFrom(options, metrics),
                                       [](auto ex) { app.Handle(std::move(ex)); });
  if (!http) {
    log::Error(http.error().message);
    return 1;
  }
  (*http)->Start();
  // Tests and scripts read this line to find the port (--port 0).
  log::Info("listening on http://", options.host, ":", (*http)->port());
  WatchSignals(signals, app, drain_requested, options.drain_timeout);

  llama.on_phase = [](std::string_view phase) { app.SetLoadingStep(phase); };
  auto engine = engine::CreateLlamaEngine(llama);
  std::vector<engine::StartupPhase> startup;
  if (engine) startup = (*engine)->Info().startup;
  app.SetLoadingStep("warmup");
  const auto warmup_start = std::chrono::steady_clock::now();
  auto scheduler =
      engine
          ? scheduler::Scheduler::Create(
                {.queue_size = options.queue_size,
                 .queue_timeout = options.queue_timeout,
                 .step_delay = options.step_delay,
                 .verify_batch_invariance = options.deterministic || options.allow_deterministic},
                std::move(*engine), &metrics, Clock::Real())
          : std::unexpected(engine.error());
  if (!scheduler) {
    log::Error("cannot serve: ", scheduler.error().message);
    (*http)->Stop();
    return 1;
  }
  const auto ready = std::chrono::steady_clock::now();
  auto seconds = [](auto d) { return std::chrono::duration<double>(d).count(); };
  startup.push_back({"warmup", seconds(ready - warmup_start)});
  startup.push_back({"total", seconds(ready - start)});
  std::string breakdown;
  for (const engine::StartupPhase& p : startup) {
    metrics.SetStartupSeconds(p.name, p.seconds);
    breakdown += StrCat(breakdown.empty() ? "" : ", ", p.name, " ",
                        static_cast<long long>(p.seconds * 1e6), " us");
  }
  app.SetScheduler(scheduler->get());
  if (!drain_requested) app.SetPhase(Phase::kReady);
  log::Info("startup: ", breakdown);
  log::Info("ready: serving model '", (*scheduler)->model().id, "'");

  while (!drain_requested) std::this_thread::sleep_for(std::chrono::milliseconds(20));
  Drain(**scheduler, app, options.drain_timeout);
  (*http)->Stop();
  scheduler->reset();
  log::Info("drained; exiting");
  return 0;
}

}  // namespace ember::server
