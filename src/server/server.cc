#include "server/server.h"

#include <pthread.h>
#include <signal.h>

#include <atomic>
#include <cstdlib>
#include <filesystem>
#include <thread>

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

// The name clients use: --model-id, else the file name without ".gguf". Known before the
// model loads, so metrics carry the right model_name label from the start.
std::string ModelIdFor(const ServeOptions& o) {
  if (!o.model_id.empty()) return o.model_id;
  std::string name = std::filesystem::path(o.model_path).filename().string();
  if (name.size() > 5 && name.ends_with(".gguf")) name.resize(name.size() - 5);
  return name;
}

}  // namespace

int RunServe(const ServeOptions& options) {
  const sigset_t signals = BlockShutdownSignals();
  const int threads = options.threads > 0 ? options.threads : UsableCpus();

  engine::LlamaOptions llama;
  llama.model_path = options.model_path;
  llama.model_id = ModelIdFor(options);
  llama.ctx_size = options.ctx_size;
  llama.parallel = options.parallel;
  llama.batch_size = options.batch_size;
  llama.threads = threads;
  llama.flash_attn = options.flash_attn == "on"    ? engine::FlashAttention::kOn
                     : options.flash_attn == "off" ? engine::FlashAttention::kOff
                                                   : engine::FlashAttention::kAuto;

  ServerMetrics metrics(llama.model_id);
  App app(AppOptions{options.liveness_timeout}, metrics);
  http::ServerOptions http_options;
  http_options.host = options.host;
  http_options.port = options.port;
  http_options.threads = options.http_threads;
  http_options.max_body_bytes = options.max_body_bytes;
  http_options.read_timeout = options.read_timeout;
  http_options.on_protocol_error = [&metrics](int status) { metrics.CountHttp("other", status); };
  auto http =
      http::HttpServer::Create(http_options, [&app](auto ex) { app.Handle(std::move(ex)); });
  if (!http) {
    log::Error(http.error().message);
    return 1;
  }
  (*http)->Start();
  // Tests and scripts read this line to find the port (--port 0).
  log::Info("listening on http://", options.host, ":", (*http)->port());

  std::atomic<int> signal_count{0};
  std::atomic<bool> drain_requested{false};
  std::thread signal_thread([&] {
    for (;;) {
      const int sig = WaitSignal(signals);
      if (signal_count.fetch_add(1) > 0) {
        log::Warn("second signal (", sig, "): exiting at once");
        std::_Exit(1);
      }
      log::Info("signal ", sig, ": draining (up to ", options.drain_timeout.count(), " ms)");
      drain_requested = true;
      app.SetPhase(Phase::kDraining);
      return;
    }
  });
  signal_thread.detach();

  auto engine = engine::CreateLlamaEngine(llama);
  if (!engine) {
    log::Error("cannot serve: ", engine.error().message);
    (*http)->Stop();
    return 1;
  }
  scheduler::SchedulerOptions sched_options{options.queue_size, options.queue_timeout,
                                            options.step_delay};
  auto scheduler =
      scheduler::Scheduler::Create(sched_options, std::move(*engine), &metrics, Clock::Real());
  if (!scheduler) {
    log::Error("cannot serve: ", scheduler.error().message);
    (*http)->Stop();
    return 1;
  }
  app.SetScheduler(scheduler->get());
  if (!drain_requested) app.SetPhase(Phase::kReady);
  log::Info("ready: serving model '", (*scheduler)->model().id, "'");

  while (!drain_requested) std::this_thread::sleep_for(std::chrono::milliseconds(20));
  (*scheduler)->BeginDrain();
  const SteadyTime deadline = Clock::Real().Now() + options.drain_timeout;
  if (!(*scheduler)->WaitIdle(deadline)) {
    log::Warn("drain timeout reached; stopping the requests still running");
    (*scheduler)->AbortAll();
    (*scheduler)->WaitIdle(Clock::Real().Now() + std::chrono::seconds(5));
  }
  // Let the HTTP threads write the last bytes of every response.
  const SteadyTime flush_deadline = Clock::Real().Now() + std::chrono::seconds(5);
  while (app.open_generations() > 0 && Clock::Real().Now() < flush_deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  (*http)->Stop();
  scheduler->reset();
  log::Info("drained; exiting");
  return 0;
}

}  // namespace ember::server
