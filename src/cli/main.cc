// ember's command line: `ember serve`, `ember bench [coldstart]`, `ember model synth`,
// `ember tenants`/`ember keys` (tenants_cli.h). CLI11 lives in cli/ only; each subcommand fills
// an options struct and calls its component.
#include <CLI/CLI.hpp>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <iostream>

#include "bench/coldstart.h"
#include "bench/load.h"
#include "cli/byte_size.h"
#include "cli/cost_cli.h"
#include "cli/duration.h"
#include "cli/tenants_cli.h"
#include "common/log.h"
#include "common/version.h"
#include "engine/llama/cpu_backend.h"
#include "engine/llama/llama_engine.h"
#include "engine/synth/synth.h"
#include "server/server.h"

namespace ember::cli {
namespace {

struct DurationFlags {
  std::string queue_timeout = "30s", drain_timeout = "30s", read_timeout = "30s",
              liveness_timeout = "60s", step_delay = "0", idle_unload = "0",
              model_switch_after = "5s", ledger_interval = "60s", console_interval = "1s",
              console_history_step = "10s";
  std::string ledger_sync = "normal", unmetered = "serve";
  std::string memory_budget = "0";
  std::string prefix_cache_size = "auto";
  std::string prefix_cache_disk_size = "4GiB";
  std::string cache_max_size = "0", cache_min_free = "1GiB", cache_verify = "boot";
  bool preload = false, no_preload = false;
};

void AddServe(CLI::App& app, server::ServeOptions& o, DurationFlags& d) {
  auto* serve = app.add_subcommand("serve", "Serve a GGUF model over an OpenAI-compatible API");
  serve
      ->add_option("--model,-m", o.models,
                   "GGUF model file, or ID=PATH; repeat to serve several models")
      ->envname("EMBER_MODEL");
  serve->add_option("--model-id", o.model_id, "Name clients use (default: file name)")
      ->envname("EMBER_MODEL_ID");
  serve
      ->add_option("--chat-template-file", o.chat_template_files,
                   "Jinja chat template to use instead of the model's own: FILE for every model, "
                   "or ID=FILE; repeatable")
      ->envname("EMBER_CHAT_TEMPLATE_FILE");
  serve
      ->add_option("--memory-budget", d.memory_budget,
                   "Bytes all loaded models may hold (weights + KV cache), e.g. 2GiB; 0 = "
                   "unlimited")
      ->envname("EMBER_MEMORY_BUDGET");
  serve
      ->add_option("--idle-unload", d.idle_unload,
                   "Unload a model after this long without requests (0 = never)")
      ->envname("EMBER_IDLE_UNLOAD");
  serve
      ->add_option("--model-switch-after", d.model_switch_after,
                   "When a model has waited this long for memory that busy models hold, stop "
                   "admitting to them so it gets its turn (0 = never)")
      ->envname("EMBER_MODEL_SWITCH_AFTER");
  serve->add_flag("--preload", d.preload, "Load every model at start-up (default with one model)")
      ->envname("EMBER_PRELOAD");
  serve->add_flag("--no-preload", d.no_preload, "Load each model on its first request");
  serve->add_option("--host", o.host, "Address to listen on")->envname("EMBER_HOST");
  serve->add_option("--port", o.port, "Port (0 = any free port)")->envname("EMBER_PORT");
  serve->add_option("--ctx-size,-c", o.ctx_size, "KV-cache tokens in all, split over --parallel")
      ->envname("EMBER_CTX_SIZE")
      ->check(CLI::Range(1, 1 << 24));
  serve->add_option("--parallel,--np", o.parallel, "Sequences decoded together")
      ->envname("EMBER_PARALLEL")
      ->check(CLI::Range(1, 1024));
  serve->add_option("--threads,-t", o.threads, "Compute threads (0 = usable CPUs)")
      ->envname("EMBER_THREADS")
      ->check(CLI::Range(0, 1024));
  serve->add_option("--batch-size,-b", o.batch_size, "Most tokens per engine step")
      ->envname("EMBER_BATCH_SIZE")
      ->check(CLI::Range(1, 1 << 16));
  serve->add_option("--queue-size", o.queue_size, "Requests that may wait for a slot")
      ->envname("EMBER_QUEUE_SIZE")
      ->check(CLI::Range(0, 1 << 20));
  serve->add_option("--queue-timeout", d.queue_timeout, "Longest wait for a slot (503 after)")
      ->envname("EMBER_QUEUE_TIMEOUT");
  serve->add_option("--drain-timeout", d.drain_timeout, "Grace period after SIGTERM")
      ->envname("EMBER_DRAIN_TIMEOUT");
  serve->add_option("--read-timeout", d.read_timeout, "Time a client has to send a request")
      ->envname("EMBER_READ_TIMEOUT");
  serve
      ->add_option("--liveness-timeout", d.liveness_timeout,
                   "/health fails when the engine makes no progress this long")
      ->envname("EMBER_LIVENESS_TIMEOUT");
  serve->add_option("--max-body-bytes", o.max_body_bytes, "Largest request body (413 above)")
      ->envname("EMBER_MAX_BODY_BYTES");
  serve->add_option("--flash-attn", o.flash_attn, "Flash attention: auto, on or off")
      ->envname("EMBER_FLASH_ATTN")
      ->check(CLI::IsMember({"auto", "on", "off"}));
  serve
      ->add_option("--prefix-cache-share", o.prefix_cache_share,
                   "Whose cached prompt prefixes a request may reuse: tenant (its own tenant's; "
                   "default: a cache hit's timing would reveal what another tenant sent), all, "
                   "or off (docs/prefix_cache.md)")
      ->envname("EMBER_PREFIX_CACHE_SHARE")
      ->check(CLI::IsMember({"tenant", "all", "off"}));
  serve
      ->add_option("--prefix-cache-size", d.prefix_cache_size,
                   "Host memory per model for the prefix cache's RAM tier, e.g. 512MiB, counted "
                   "in --memory-budget; auto (default): the size of the model's KV cache, less "
                   "when the budget has less left; 0 = no RAM tier (docs/prefix_cache.md)")
      ->envname("EMBER_PREFIX_CACHE_SIZE");
  serve
      ->add_option("--prefix-cache-disk-size", d.prefix_cache_disk_size,
                   "Disk space for the prefix cache's disk tier in DATA_DIR/prefix, all models "
                   "together: reused prefixes survive restarts (least recently used files go "
                   "first; --cache-min-free applies; 0 = no disk tier; docs/prefix_cache.md)")
      ->envname("EMBER_PREFIX_CACHE_DISK_SIZE");
  serve
      ->add_option("--cpu-variant", o.cpu_variant,
                   "ggml CPU build to compute with (x64, sse42, haswell, skylakex, icelake, "
                   "sapphirerapids; `ember --version` lists them); default: the best this CPU "
                   "runs")
      ->envname("EMBER_CPU_VARIANT");
  serve
      ->add_flag("--allow-deterministic", o.allow_deterministic,
                 "Let requests ask for \"deterministic\": true (batch-invariant output)")
      ->envname("EMBER_ALLOW_DETERMINISTIC");
  serve
      ->add_flag("--deterministic", o.deterministic,
                 "Every request's output depends only on the request and the model, never "
                 "on what else runs")
      ->envname("EMBER_DETERMINISTIC");
  serve
      ->add_option("--data-dir", o.data_dir,
                   "ember's state on disk; repacked weights are cached in DIR/cache "
                   "(empty: no cache)")
      ->envname("EMBER_DATA_DIR");
  serve
      ->add_option("--cache-max-size", d.cache_max_size,
                   "Most bytes the repacked-weight cache may hold, e.g. 20GiB; other models' "
                   "files are deleted least recently used first (0 = no cap)")
      ->envname("EMBER_CACHE_MAX_SIZE");
  serve
      ->add_option("--cache-min-free", d.cache_min_free,
                   "Free space a cache write (repacked weights, the prefix cache's disk tier) "
                   "must leave on the data directory's filesystem")
      ->envname("EMBER_CACHE_MIN_FREE");
  serve
      ->add_option("--cache-verify", d.cache_verify,
                   "When cache files are hashed before use: boot (once per boot of the "
                   "machine while a file is unchanged) or always (at every start)")
      ->envname("EMBER_CACHE_VERIFY")
      ->check(CLI::IsMember({"boot", "always"}));
  serve
      ->add_flag("--no-repack", o.no_repack,
                 "Keep quantized weights as stored: faster start without a cache, slower "
                 "decode")
      ->envname("EMBER_NO_REPACK");
  serve
      ->add_option("--admin-key", o.admin_key,
                   "Bearer token the /admin endpoints require (prefer the environment "
                   "variable); unset: they answer loopback clients only")
      ->envname("EMBER_ADMIN_KEY");
  serve
      ->add_option("--tenant-metrics-top", o.tenant_metrics_top,
                   "Tenants with their own series in the ember_tenant_* metrics; the rest are "
                   "summed under tenant=\"other\"")
      ->envname("EMBER_TENANT_METRICS_TOP")
      ->check(CLI::Range(0, 100000));
  serve
      ->add_option("--prices", o.prices_file,
                   "Cost model (TOML): per-model token prices and the instance's price per "
                   "hour (docs/finops.md)")
      ->envname("EMBER_PRICES");
  serve
      ->add_option("--plugins", o.plugins_file,
                   "WebAssembly plugins (proxy-wasm) and the chains that run them per route and "
                   "tenant, a TOML file (docs/plugins.md)")
      ->envname("EMBER_PLUGINS");
  serve
      ->add_option("--plugin-threads", o.plugin_threads,
                   "Threads that run plugin hooks, each with its own instance of every plugin")
      ->envname("EMBER_PLUGIN_THREADS")
      ->check(CLI::Range(1, 64));
  serve
      ->add_option("--ledger-sync", d.ledger_sync,
                   "normal: a crash loses at most the last commit window (~100 ms) of usage "
                   "records; full: fsync "
                   "every commit, nothing acknowledged is lost")
      ->envname("EMBER_LEDGER_SYNC")
      ->check(CLI::IsMember({"normal", "full"}));
  serve
      ->add_option("--ledger-buffer", o.ledger_buffer,
                   "Usage records kept in memory while the ledger cannot write (disk full)")
      ->envname("EMBER_LEDGER_BUFFER")
      ->check(CLI::Range(std::size_t{1}, std::size_t{100'000'000}));
  serve
      ->add_option("--unmetered", d.unmetered,
                   "When even that buffer is full: serve or refuse (503) requests of tenants "
                   "without a hard budget (those with one are always refused)")
      ->envname("EMBER_UNMETERED")
      ->check(CLI::IsMember({"serve", "refuse"}));
  serve
      ->add_option("--budget-webhook", o.budget_webhook,
                   "http:// URL that gets a JSON POST when a tenant first reaches a soft or hard "
                   "budget in a window (retried; never blocks a request)")
      ->envname("EMBER_BUDGET_WEBHOOK");
  serve
      ->add_option("--ledger-interval", d.ledger_interval,
                   "Period of the machine's utilization records (busy, idle, cold start)")
      ->envname("EMBER_LEDGER_INTERVAL");
  serve->add_option("--http-threads", o.http_threads, "HTTP I/O threads")
      ->envname("EMBER_HTTP_THREADS")
      ->check(CLI::Range(1, 64));
  serve
      ->add_option("--console-ring", o.console_ring,
                   "Recent requests kept with their timelines for GET /admin/requests "
                   "(docs/console.md); 0 keeps none")
      ->envname("EMBER_CONSOLE_RING")
      ->check(CLI::Range(std::size_t{0}, std::size_t{1'000'000}));
  serve
      ->add_flag("--console-keep-text", o.console_keep_text,
                 "Keep each request's body and output (64 KiB each) with its timeline; off: "
                 "no prompt or output text is kept")
      ->envname("EMBER_CONSOLE_KEEP_TEXT");
  serve
      ->add_option("--console-trace-steps", o.console_trace_steps,
                   "Engine steps kept per request timeline, each with the requests it shared "
                   "(0: no step traces)")
      ->envname("EMBER_CONSOLE_TRACE_STEPS")
      ->check(CLI::Range(0, 100'000));
  serve
      ->add_option("--console-interval", d.console_interval,
                   "Period of the snapshots GET /admin/events sends")
      ->envname("EMBER_CONSOLE_INTERVAL");
  serve
      ->add_option("--console-history-step", d.console_history_step,
                   "Width of one point of the console's charts (GET /admin/history), which keep "
                   "the last 360 points: 10s keeps an hour")
      ->envname("EMBER_CONSOLE_HISTORY_STEP");
  serve
      ->add_option("--console-dir", o.console_dir,
                   "The console page's built files (scripts/console.sh prints the folder); "
                   "default: <exe>/../share/ember/console when it exists")
      ->envname("EMBER_CONSOLE_DIR");
  // Testing aid, hidden from --help: slows every engine step so tests can hold requests.
  serve->add_option("--debug-step-delay", d.step_delay)->group("");
}

Status ApplyDurations(const DurationFlags& d, server::ServeOptions& o) {
  const std::pair<const std::string*, std::chrono::milliseconds*> all[] = {
      {&d.queue_timeout, &o.queue_timeout},
      {&d.drain_timeout, &o.drain_timeout},
      {&d.read_timeout, &o.read_timeout},
      {&d.liveness_timeout, &o.liveness_timeout},
      {&d.step_delay, &o.step_delay},
      {&d.idle_unload, &o.idle_unload},
      {&d.model_switch_after, &o.model_switch_after},
      {&d.ledger_interval, &o.ledger_interval},
      {&d.console_interval, &o.console_interval},
      {&d.console_history_step, &o.console_history_step}};
  for (const auto& [text, out] : all) {
    auto parsed = ParseDuration(*text);
    if (!parsed) return std::unexpected(parsed.error());
    *out = *parsed;
  }
  const std::pair<const std::string*, std::uint64_t*> sizes[] = {
      {&d.memory_budget, &o.memory_budget},
      {&d.cache_max_size, &o.cache_max_bytes},
      {&d.cache_min_free, &o.cache_min_free_bytes},
      {&d.prefix_cache_disk_size, &o.prefix_cache_disk_bytes}};
  for (const auto& [text, out] : sizes) {
    auto parsed = ParseByteSize(*text);
    if (!parsed) return std::unexpected(parsed.error());
    *out = *parsed;
  }
  if (d.prefix_cache_size != "auto") {
    auto parsed = ParseByteSize(d.prefix_cache_size);
    if (!parsed) return std::unexpected(parsed.error());
    o.prefix_cache_size = *parsed;
  }
  o.cache_verify_every_start = d.cache_verify == "always";
  o.ledger_sync_full = d.ledger_sync == "full";
  o.unmetered_refuse = d.unmetered == "refuse";
  if (o.ledger_interval < std::chrono::milliseconds(100)) {
    return InvalidArgument("--ledger-interval must be at least 100ms");
  }
  if (o.console_history_step < std::chrono::seconds(1) ||
      o.console_history_step.count() % 1000 != 0) {
    return InvalidArgument("--console-history-step must be a whole number of seconds, at least 1s");
  }
  if (d.preload && d.no_preload) return InvalidArgument("--preload and --no-preload contradict");
  if (d.preload) o.preload = true;
  if (d.no_preload) o.preload = false;
  return {};
}

void AddBench(CLI::App& app, bench::LoadOptions& o, bool& json, bool& no_stream, int& timeout) {
  auto* b = app.add_subcommand("bench", "Load-test an OpenAI-compatible server");
  b->add_option("--host", o.host);
  b->add_option("--port", o.port);
  b->add_option("--endpoint", o.endpoint, "/v1/completions or /v1/chat/completions");
  b->add_option("--model", o.model);
  b->add_option("--concurrency", o.concurrency)->check(CLI::Range(1, 4096));
  b->add_option("--requests", o.requests)->check(CLI::Range(1, 10'000'000));
  b->add_option("--prompt-min-words", o.prompt_min_words)->check(CLI::Range(0, 100000));
  b->add_option("--prompt-max-words", o.prompt_max_words)->check(CLI::Range(0, 100000));
  b->add_option("--max-tokens", o.max_tokens)->check(CLI::Range(1, 1'000'000));
  b->add_flag("--no-stream", no_stream, "Ask for non-streamed responses");
  b->add_option("--temperature", o.temperature);
  b->add_option("--seed", o.seed, "Seed of the prompt generator");
  b->add_option("--timeout", timeout, "Per-request timeout in seconds");
  b->add_option("--label", o.label);
  b->add_flag("--json", json, "Print the report as JSON");
}

struct ColdStartFlags {
  bench::ColdStartOptions options;
  int timeout = 120;
  bool json = false;
  std::vector<std::string> ember_args, passthrough;  // --ember-arg X..., then -- X...
};

void AddColdStart(CLI::App& app, ColdStartFlags& f) {
  auto* bench = app.get_subcommand("bench");
  auto* c = bench->add_subcommand(
      "coldstart", "Time a server from exec to ready and to its first token, N times");
  bench::ColdStartOptions& o = f.options;
  c->add_option("--model,-m", o.model_path, "GGUF model file")->required();
  c->add_option("--runs", o.runs, "Starts per server")->check(CLI::Range(1, 10000));
  c->add_option("--ember", o.ember_bin, "ember binary (default: this one)");
  c->add_option("--llama-server", o.llama_server_bin,
                "Also start this llama-server, run by run in turn with ember");
  c->add_option("--threads,-t", o.threads, "Compute threads (0 = usable CPUs)")
      ->check(CLI::Range(0, 1024));
  c->add_option("--ctx-size,-c", o.ctx_size, "KV-cache tokens in all")
      ->check(CLI::Range(1, 1 << 24));
  c->add_option("--parallel,--np", o.parallel, "Slots")->check(CLI::Range(1, 1024));
  c->add_option("--max-tokens", o.max_tokens, "Tokens asked of the first-token request")
      ->check(CLI::Range(1, 1'000'000));
  c->add_option("--decode-tokens", o.decode_tokens,
                "Tokens of a second request that measures decode tok/s (0 = skip)")
      ->check(CLI::Range(0, 1'000'000));
  c->add_option("--prompt", o.prompt);
  c->add_option("--timeout", f.timeout, "Seconds each run may take, exec to stop")
      ->check(CLI::Range(1, 86400));
  c->add_option("--ember-arg", f.ember_args, "Extra `ember serve` flag (repeatable)");
  c->add_option("serve-args", f.passthrough, "Extra `ember serve` flags, after --");
  c->add_flag("--json", f.json, "Print per-run values and medians as JSON");
}

void AddSynth(CLI::App& app, std::string& shape, std::string& type, synth::SynthOptions& o) {
  auto* model = app.add_subcommand("model", "Model utilities");
  auto* s = model->add_subcommand("synth", "Write a llama GGUF with seeded random weights");
  s->add_option("--shape", shape, "tiny, 110m or 1b")->required();
  s->add_option("--type", type, "f32, f16, q8_0 or q4_0")->required();
  s->add_option("-o,--output", o.output_path, "Output GGUF file")->required();
  s->add_option("--seed", o.seed);
  s->add_option("--vocab", o.vocab_path, "GGUF with the tokenizer (default: llama.cpp's)");
  model->require_subcommand(1);
}

int Fail(const Error& e) {
  std::fprintf(stderr, "ember: %s\n", e.message.c_str());
  return 2;
}

}  // namespace

int Main(int argc, char** argv) {
  CLI::App app{"ember: an LLM serving runtime for platform teams"};
  app.require_subcommand(1);
  app.set_version_flag("--version", [] {
    const char* forced = std::getenv("EMBER_CPU_VARIANT");
    return StrCat("ember ", kVersion, "\n", engine::BuildReport(forced ? forced : ""),
                  "JSON schemas: ", engine::JsonSchemaEngine(), "\n");
  });
  server::ServeOptions serve;
  DurationFlags durations;
  AddServe(app, serve, durations);
  bench::LoadOptions load;
  bool json = false, no_stream = false;
  int timeout = 120;
  AddBench(app, load, json, no_stream, timeout);
  ColdStartFlags coldstart;
  AddColdStart(app, coldstart);
  std::string shape, type;
  synth::SynthOptions synth_options;
  AddSynth(app, shape, type, synth_options);
  TenancyCommands tenancy(app);
  CostCommands cost(app);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return tenancy.ParseFailed(app, e);
  }
  if (tenancy.Selected()) return tenancy.Run();
  if (cost.Selected()) return cost.Run();

  if (app.got_subcommand("serve")) {
    if (serve.models.empty())
      return Fail({ErrorCode::kInvalidArgument, "serve needs --model PATH (or EMBER_MODEL)", ""});
    if (auto ok = ApplyDurations(durations, serve); !ok) return Fail(ok.error());
    return server::RunServe(serve);
  }
  if (app.get_subcommand("bench")->got_subcommand("coldstart")) {
    coldstart.options.timeout = std::chrono::seconds(coldstart.timeout);
    coldstart.options.ember_args = coldstart.ember_args;
    coldstart.options.ember_args.insert(coldstart.options.ember_args.end(),
                                        coldstart.passthrough.begin(), coldstart.passthrough.end());
    auto report = bench::RunColdStart(coldstart.options);
    if (!report) return Fail(report.error());
    std::cout << (coldstart.json ? bench::FormatColdStartJson(*report)
                                 : bench::FormatColdStartTable(*report))
              << std::flush;
    return report->failed() == 0 ? 0 : 1;
  }
  if (app.got_subcommand("bench")) {
    load.stream = !no_stream;
    load.timeout = std::chrono::seconds(timeout);
    auto report = bench::RunLoad(load);
    if (!report) return Fail(report.error());
    std::cout << (json ? bench::FormatJson(*report) : bench::FormatTable(*report)) << std::endl;
    return report->requests_failed == 0 ? 0 : 1;
  }
  auto parsed_shape = synth::ParseShape(shape);
  if (!parsed_shape) return Fail(parsed_shape.error());
  auto parsed_type = synth::ParseWeightType(type);
  if (!parsed_type) return Fail(parsed_type.error());
  synth_options.shape = *parsed_shape;
  synth_options.type = *parsed_type;
  if (auto ok = synth::SynthesizeModel(synth_options); !ok) return Fail(ok.error());
  std::fprintf(stderr, "wrote %s\n", synth_options.output_path.c_str());
  return 0;
}

}  // namespace ember::cli

int main(int argc, char** argv) { return ember::cli::Main(argc, argv); }
