#include "server/server.h"

#include <pthread.h>
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <future>
#include <map>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "common/clock.h"
#include "common/log.h"
#include "common/version.h"
#include "engine/llama/cpu_backend.h"
#include "engine/llama/llama_engine.h"
#include "engine/llama/llama_memory.h"
#include "http/http_server.h"
#include "ledger/prices.h"
#include "server/app.h"
#include "server/chat_templates.h"
#include "server/cpu_budget.h"
#include "server/metering.h"
#include "server/models.h"
#include "server/plugin_metrics.h"
#include "server/server_metrics.h"
#include "server/tenancy_watch.h"
#ifdef EMBER_HAVE_PLUGINS
#include "plugins/config.h"
#include "server/plugins_watch.h"
#endif
#include "server/text_file.h"
#include "tenancy/tenancy.h"

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

engine::LlamaOptions LlamaOptionsFrom(const ServeOptions& options, const ModelSpec& spec) {
  engine::LlamaOptions llama;
  llama.model_path = spec.path;
  // Known before the model loads, so metrics carry the right model_name from the start.
  llama.model_id = spec.id;
  llama.ctx_size = options.ctx_size;
  llama.parallel = options.parallel;
  llama.batch_size = options.batch_size;
  llama.threads = options.threads > 0 ? options.threads : UsableCpus();
  llama.flash_attn = options.flash_attn == "on"    ? engine::FlashAttention::kOn
                     : options.flash_attn == "off" ? engine::FlashAttention::kOff
                                                   : engine::FlashAttention::kAuto;
  if (!options.data_dir.empty()) llama.repack_cache_dir = options.data_dir + "/cache";
  llama.repack_cache_max_bytes = options.cache_max_bytes;
  llama.repack_cache_min_free_bytes = options.cache_min_free_bytes;
  llama.repack_cache_verify_every_start = options.cache_verify_every_start;
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
// HTTP threads a moment to write the last bytes of every response. A load in progress ends
// first (libllama cannot stop one midway); the requests waiting for it are then served.
// Returns false when requests still hold a model at the end.
bool Drain(ModelManager& models, const App& app, std::chrono::milliseconds timeout) {
  models.BeginDrain();
  bool idle = models.WaitIdle(Clock::Real().Now() + timeout);
  if (!idle) {
    log::Warn("drain timeout reached; stopping the requests still running");
    models.AbortAll();
    idle = models.WaitIdle(Clock::Real().Now() + std::chrono::seconds(5));
  }
  const SteadyTime flush_deadline = Clock::Real().Now() + std::chrono::seconds(5);
  while (app.open_generations() > 0 && Clock::Real().Now() < flush_deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  return idle;
}

// The process's resident memory (Linux /proc/self/statm); 0 when it cannot be read.
std::uint64_t ResidentBytes() {
  std::FILE* f = std::fopen("/proc/self/statm", "r");
  if (f == nullptr) return 0;
  unsigned long long size = 0, resident = 0;
  const int n = std::fscanf(f, "%llu %llu", &size, &resident);
  std::fclose(f);
  return n == 2 ? resident * static_cast<std::uint64_t>(sysconf(_SC_PAGESIZE)) : 0;
}

double Seconds(std::chrono::steady_clock::duration d) {
  return std::chrono::duration<double>(d).count();
}

// Loads one model on the manager's loader thread: the engine, then the scheduler (warm-up
// and the determinism check on its engine thread). Records the phases in the model's metrics.
Result<LoadedModel> LoadModel(const ModelConfig& config, ModelMetrics& metrics,
                              const ServeOptions& options, App& app,
                              std::uint64_t weight_estimate) {
  engine::LlamaOptions llama = config.llama;
  llama.on_phase = [&app](std::string_view phase) { app.SetLoadingStep(phase); };
  const std::uint64_t resident_before = ResidentBytes();
  auto engine = engine::CreateLlamaEngine(llama);
  if (!engine) return std::unexpected(engine.error());
  std::vector<engine::StartupPhase> startup = (*engine)->Info().startup;
  const std::uint64_t weight_bytes = (*engine)->Info().weight_bytes;
  app.SetLoadingStep("warmup");
  const auto warmup_start = std::chrono::steady_clock::now();
  auto scheduler = scheduler::Scheduler::Create(
      {.queue_size = options.queue_size,
       .queue_timeout = options.queue_timeout,
       .step_delay = options.step_delay,
       .verify_batch_invariance = options.deterministic || options.allow_deterministic,
       // Only ever acts between tenants (open mode has one, anonymous): docs/tenancy.md.
       .fair_share_preemption = true,
       .trace_steps = options.console_trace_steps,
       .prefix_share = options.prefix_cache_share == "all"   ? scheduler::PrefixShare::kAll
                       : options.prefix_cache_share == "off" ? scheduler::PrefixShare::kOff
                                                             : scheduler::PrefixShare::kTenant,
       .prefix_cache_bytes = config.prefix_cache_bytes,
       .prefix_disk_root = options.data_dir.empty()
                               ? std::string()
                               : (std::filesystem::path(options.data_dir) / "prefix").string(),
       .prefix_disk_bytes = options.prefix_cache_disk_bytes,
       .prefix_disk_min_free_bytes = options.cache_min_free_bytes},
      std::move(*engine), &metrics, Clock::Real());
  if (!scheduler) return std::unexpected(scheduler.error());
  startup.push_back({"warmup", Seconds(std::chrono::steady_clock::now() - warmup_start)});
  std::string breakdown;
  for (const engine::StartupPhase& p : startup) {
    metrics.SetStartupSeconds(p.name, p.seconds);
    breakdown += StrCat(breakdown.empty() ? "" : ", ", p.name, " ",
                        static_cast<long long>(p.seconds * 1e6), " us");
  }
  log::Info("startup: ", breakdown, " (model '", config.id, "')");
  // The measured weights replace their estimate (the KV cache is allocated in full, so its
  // estimate is exact); and when the process grew by more during the load (weights repacked
  // beside the mapped file, page-cache pages of the mapping), that growth is the figure.
  std::uint64_t bytes = config.estimate_bytes;
  if (weight_bytes > 0) bytes = bytes - weight_estimate + weight_bytes;
  const std::uint64_t resident_after = ResidentBytes();
  // The RAM tier is empty at load: its bound is added to what the process grew by.
  if (resident_after > resident_before) {
    bytes = std::max(bytes, resident_after - resident_before + config.prefix_cache_bytes);
  }
  return LoadedModel{std::move(*scheduler), bytes};
}

// Every model's configuration with its memory estimate; errors name the offending --model.
Result<std::vector<ModelConfig>> ConfigureModels(const ServeOptions& options,
                                                 std::vector<std::uint64_t>& weight_estimates) {
  auto specs = ParseModelSpecs(options.models, options.model_id);
  if (!specs) return std::unexpected(specs.error());
  if (specs->size() > 1 && (options.deterministic || options.allow_deterministic)) {
    return InvalidArgument(
        "--deterministic and --allow-deterministic serve one model only: batch-invariant "
        "numerics are a process-wide ggml switch that each model's engine thread would flip "
        "under the others (docs/coldstart.md)");
  }
  const bool preload = options.preload.value_or(specs->size() == 1);
  std::vector<ModelConfig> configs;
  for (const ModelSpec& spec : *specs) {
    ModelConfig config;
    config.id = spec.id;
    config.llama = LlamaOptionsFrom(options, spec);
    config.preload = preload;
    auto estimate = engine::EstimateLlamaMemory(config.llama);
    if (!estimate) {
      return std::unexpected(Error{
          estimate.error().code, StrCat("model '", spec.id, "': ", estimate.error().message), ""});
    }
    // The RAM tier is reserved with the model, as its KV cache is: a model only loads when
    // both fit, and the budget never hides a second, unaccounted cache.
    std::uint64_t ram_tier = 0;
    if (options.prefix_cache_share != "off") {
      ram_tier = options.prefix_cache_size.value_or(estimate->kv_bytes);
      if (!options.prefix_cache_size && options.memory_budget > 0) {
        const std::uint64_t left = options.memory_budget > estimate->total()
                                       ? options.memory_budget - estimate->total()
                                       : 0;
        ram_tier = std::min(ram_tier, left);
      }
    }
    config.prefix_cache_bytes = ram_tier;
    config.estimate_bytes = estimate->total() + ram_tier;
    config.ctx_per_seq = estimate->n_ctx_per_seq;
    weight_estimates.push_back(estimate->weight_bytes);
    log::Info("model '", spec.id, "' (", spec.path, "): estimated ", config.estimate_bytes >> 20,
              " MiB = weights ", estimate->weight_bytes >> 20, " + KV cache ",
              estimate->kv_bytes >> 20, " + compute ", estimate->compute_bytes >> 20,
              " + prefix cache RAM tier ", ram_tier >> 20, "; ",
              preload ? "loaded at start-up" : "loaded on first use");
    if (options.memory_budget > 0 && config.estimate_bytes > options.memory_budget) {
      log::Warn("model '", spec.id, "' can never fit the --memory-budget of ",
                options.memory_budget, " bytes; its requests will get 413");
    }
    configs.push_back(std::move(config));
  }
  return configs;
}

// Loads the models marked preload, one after the other, on the manager's loader thread.
Status Preload(ModelManager& models, const std::vector<ModelConfig>& configs) {
  for (const ModelConfig& config : configs) {
    if (!config.preload) continue;
    std::promise<Status> loaded;
    auto result = loaded.get_future();
    models.Load(config.id, [&loaded](Status s) { loaded.set_value(std::move(s)); });
    if (Status s = result.get(); !s) return s;
  }
  return {};
}

}  // namespace

int RunServe(const ServeOptions& options) {
  const sigset_t signals = BlockShutdownSignals();
  const auto start = std::chrono::steady_clock::now();
  // First: every model computes with this variant, and one this CPU cannot run must be
  // refused before anything could execute its instructions.
  auto cpu = engine::LoadCpuBackend(options.cpu_variant);
  if (!cpu) {
    log::Error("cannot serve: ", cpu.error().message);
    return 1;
  }
  log::Info("ember ", kVersion, ": ", engine::DescribeCpuBackend(*cpu));
  std::vector<std::uint64_t> weight_estimates;
  auto configs = ConfigureModels(options, weight_estimates);
  if (!configs) {
    log::Error("cannot serve: ", configs.error().message);
    return 1;
  }
  // Static: the signal thread may outlive a failed start by a moment.
  static ServerMetrics metrics;
  const engine::LlamaBuild& build = engine::LlamaBuildInfo();
  metrics.SetBuildInfo({{"version", std::string(kVersion)},
                        {"llama_commit", build.commit},
                        {"ember_patches", std::to_string(build.patches.size())},
                        {"cpu_variant", cpu->variant},
                        {"cpu_model", engine::CpuModelName()},
                        {"json_schema_engine", engine::JsonSchemaEngine()}});
  const Determinism determinism = options.deterministic         ? Determinism::kAll
                                  : options.allow_deterministic ? Determinism::kAllow
                                                                : Determinism::kOff;
  // Tenancy: DIR/tenants.toml when there is a data directory (docs/tenancy.md); without one,
  // or without tenants, the server runs open. Static like the app that refers to it.
  static tenancy::Tenancy tenancy(Clock::Real());
  metrics.tenants().SetTopN(options.tenant_metrics_top);
  // Metering: prices, budgets and the usage ledger in DIR/ledger.sqlite (docs/finops.md).
  // Static like the app that refers to it; stopped (flushed) by the shutdown sequence below.
  static std::unique_ptr<Metering> metering;
  std::chrono::milliseconds drain_timeout = options.drain_timeout;  // bounded on spot below
  {
    MeteringOptions m;
    if (!options.prices_file.empty()) {
      auto prices = ledger::LoadPrices(options.prices_file);
      if (!prices) {
        log::Error("cannot serve: ", prices.error().message);
        return 1;
      }
      m.prices = std::move(*prices);
    }
    if (!options.data_dir.empty()) {
      m.ledger_file = std::filesystem::path(options.data_dir) / "ledger.sqlite";
    }
    m.sync = options.ledger_sync_full ? ledger::SyncMode::kFull : ledger::SyncMode::kNormal;
    m.max_buffered = options.ledger_buffer;
    m.unmetered = options.unmetered_refuse ? UnmeteredPolicy::kRefuse : UnmeteredPolicy::kServe;
    m.interval = options.ledger_interval;
    m.budget_webhook = options.budget_webhook;
    m.threads = options.threads > 0 ? options.threads : UsableCpus();
    if (m.prices.instance.spot) {
      // The drain must end (and the ledger be flushed) before the provider takes the machine
      // back: the notice less 5 s for the flush and the exit.
      const ledger::InstancePrice& spot = m.prices.instance;
      const std::chrono::seconds notice(
          spot.interruption_notice_seconds > 0 ? spot.interruption_notice_seconds : 30);
      const auto bound = std::max<std::chrono::milliseconds>(notice - std::chrono::seconds(5),
                                                             std::chrono::seconds(1));
      if (drain_timeout > bound) {
        log::Warn("spot instance with a ", notice.count(),
                  " s interruption notice: the drain "
                  "after SIGTERM is bounded to ",
                  bound.count(), " ms (--drain-timeout ", drain_timeout.count(),
                  " ms; docs/finops.md)");
        drain_timeout = bound;
      }
    }
    auto created = Metering::Create(std::move(m), metrics);
    if (!created) {
      log::Error("cannot serve: ", created.error().message);
      return 1;
    }
    metering = std::move(*created);
  }
  std::unique_ptr<TenancyWatcher> watcher;
  if (!options.data_dir.empty()) {
    watcher = std::make_unique<TenancyWatcher>(
        std::filesystem::path(options.data_dir) / "tenants.toml", tenancy, metrics,
        [](const tenancy::Config& config) { metering->ApplyTenants(config); });
    if (Status loaded = watcher->LoadInitial(); !loaded) {
      log::Error("cannot serve: ", loaded.error().message);
      return 1;
    }
    watcher->Start();
  } else {
    log::Warn(
        "no --data-dir: serving OPEN, without API keys or limits (tenants live in "
        "DIR/tenants.toml; docs/tenancy.md)");
  }
  // --chat-template-file: read once at start; a file that cannot be read stops start-up.
  std::map<std::string, std::string> template_overrides;
  for (const std::string& value : options.chat_template_files) {
    const std::size_t eq = value.find('=');
    const bool has_id =
        eq != std::string::npos && value.substr(0, eq).find('/') == std::string::npos;
    const std::string id = has_id ? value.substr(0, eq) : "";
    const std::string path = has_id ? value.substr(eq + 1) : value;
    std::string text;
    if (Status read = ReadNonEmptyTextFile(path, text); !read) {
      log::Error("cannot serve: --chat-template-file ", value, ": ", read.error().message);
      return 1;
    }
    template_overrides[id] = std::move(text);
  }
  static ChatTemplates chat_templates(std::move(template_overrides));
  metrics.history().Configure(
      std::chrono::duration_cast<std::chrono::seconds>(options.console_history_step), 360);
  static App app(AppOptions{.liveness_timeout = options.liveness_timeout,
                            .determinism = determinism,
                            .queue_timeout = options.queue_timeout,
                            .admin_key = options.admin_key,
                            .console = {.ring_size = options.console_ring,
                                        .keep_text = options.console_keep_text,
                                        .trace_steps = options.console_trace_steps,
                                        .interval = options.console_interval}},
                 metrics, tenancy, metrics.tenants());
  app.SetChatTemplates(&chat_templates);
  // --plugins: compiled and instantiated at start; a plugin that does not load stops start-up.
#ifdef EMBER_HAVE_PLUGINS
  // Static: it must outlive the App and every request, which hand it the runners they release
  // (server/plugins_watch.h). Its polling (which reaches the App) stops before the App goes.
  static std::unique_ptr<PluginsWatcher> plugins_watcher;
  struct StopPolling {
    ~StopPolling() {
      if (plugins_watcher) plugins_watcher->StopPolling();
    }
  } stop_polling;
#endif
  if (!options.plugins_file.empty()) {
#ifdef EMBER_HAVE_PLUGINS
    plugins_watcher = std::make_unique<PluginsWatcher>(options.plugins_file, options.plugin_threads,
                                                       app, metrics);
    if (Status loaded = plugins_watcher->LoadInitial(); !loaded) {
      log::Error("cannot serve: ", loaded.error().message);
      return 1;
    }
    plugins_watcher->Start();
#else
    log::Error(
        "cannot serve: --plugins: this ember was built without WebAssembly plugins "
        "(no Wasmtime at build time; docs/plugins.md)");
    return 1;
#endif
  }
  // The console page: read whole at start; a folder given but unusable stops start-up.
  static std::optional<ConsoleAssets> console_assets;
  const std::string console_dir =
      options.console_dir.empty() ? ConsoleAssets::DefaultDir() : options.console_dir;
  if (!console_dir.empty()) {
    auto loaded = ConsoleAssets::Load(console_dir);
    if (!loaded) {
      log::Error("cannot serve: ", loaded.error().message);
      return 1;
    }
    console_assets = std::move(*loaded);
    app.SetConsoleAssets(&*console_assets);
    log::Info("console page at /console (from ", console_dir, ")");
  }
  static std::atomic<bool> drain_requested{false};
  std::map<std::string, std::uint64_t> weight_estimate;
  for (std::size_t i = 0; i < configs->size(); ++i) {
    weight_estimate[(*configs)[i].id] = weight_estimates[i];
  }
  auto models = std::make_unique<ModelManager>(
      ManagerOptions{.memory_budget = options.memory_budget,
                     .idle_unload = options.idle_unload,
                     .switch_after = options.model_switch_after},
      *configs,
      [&options, weight_estimate](const ModelConfig& config, ModelMetrics& m) {
        return LoadModel(config, m, options, app, weight_estimate.at(config.id));
      },
      metrics, Clock::Real());
  app.SetModels(models.get());
  app.SetMetering(metering.get());
  metering->Start(*models);
  // `ember cost advise` reads the configuration it judges from here.
  metering->Event("start", StrCat("ember ", kVersion,
                                  " threads=", options.threads > 0 ? options.threads : UsableCpus(),
                                  " idle_unload_ms=", options.idle_unload.count(),
                                  " drain_timeout_ms=", drain_timeout.count()));

  auto http = http::HttpServer::Create(HttpOptionsFrom(options, metrics),
                                       [](auto ex) { app.Handle(std::move(ex)); });
  if (!http) {
    log::Error(http.error().message);
    metering->Stop(std::chrono::seconds(5));  // before the manager it samples goes
    return 1;
  }
  (*http)->Start();
  app.StartConsole();  // stopped before the models go (both ways out below)
  // Tests and scripts read this line to find the port (--port 0).
  log::Info("listening on http://", options.host, ":", (*http)->port());
  WatchSignals(signals, app, drain_requested, drain_timeout);

  if (Status loaded = Preload(*models, *configs); !loaded) {
    log::Error("cannot serve: ", loaded.error().message);
    (*http)->Stop();
    app.StopConsole();
    app.SetModels(nullptr);
    metering->Stop(std::chrono::seconds(5));
    return 1;  // the manager outlives the stop above: it is destroyed on return
  }
  const double total = Seconds(std::chrono::steady_clock::now() - start);
  std::string ids;
  for (const ModelConfig& config : *configs) {
    if (config.preload) metrics.ForModel(config.id).SetStartupSeconds("total", total);
    ids += StrCat(ids.empty() ? "'" : ", '", config.id, "'");
  }
  if (!drain_requested) app.SetPhase(Phase::kReady);
  log::Info("ready: serving model", configs->size() > 1 ? "s " : " ", ids, " after ",
            static_cast<long long>(total * 1e3), " ms");

  while (!drain_requested) std::this_thread::sleep_for(std::chrono::milliseconds(20));
  // On a spot instance the provider's interruption notice arrives as this SIGTERM.
  metering->Event(metering->prices().instance.spot ? "spot_interruption" : "stop",
                  StrCat("signal; draining up to ", drain_timeout.count(), " ms"));
  const bool idle = Drain(*models, app, drain_timeout);
  (*http)->Stop();
  app.StopConsole();
  app.SetModels(nullptr);
  // Every request has completed (and recorded its usage): the last interval (it reads the
  // models' busy time, so before they go) and the flush.
  metering->Stop(std::chrono::seconds(10));
  if (idle) {
    models.reset();
  } else {
    // A request still holds a lease; its release must not find a destroyed manager. The
    // process exits now, which frees everything anyway.
    (void)models.release();
  }
  log::Info("drained; exiting");
  return 0;
}

}  // namespace ember::server
