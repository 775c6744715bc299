// The composition root: builds the object graph (HTTP server, scheduler, engine, metrics),
// owns the lifecycle (loading -> ready -> draining -> stopped) and the signal handling.
// Called from cli/ on the main thread; RunServe blocks until the server has drained.
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "common/error.h"

namespace ember::server {

struct ServeOptions {
  // --model, repeated: "PATH" or "ID=PATH" (docs/coldstart.md, "Idle unload and several models").
  std::vector<std::string> models;
  std::string model_id;  // --model-id, one model only; empty = file name without .gguf
  // --chat-template-file, repeated: "FILE" (every model) or "ID=FILE": a Jinja chat template
  // that replaces the model's own for chat, tools and structured output (docs/api.md).
  std::vector<std::string> chat_template_files;
  // Load every model at start-up, before /ready; unset = only when there is one model.
  std::optional<bool> preload;
  // Unload a model after this long without requests (0 = never).
  std::chrono::milliseconds idle_unload{0};
  // A model that has waited this long for memory busy models hold gets its turn (models.h).
  std::chrono::milliseconds model_switch_after{5000};
  // Bytes all loaded models may hold together, weights + KV cache + compute (0 = unlimited).
  std::uint64_t memory_budget = 0;
  std::string host = "127.0.0.1";
  int port = 8080;
  int ctx_size = 4096;
  int parallel = 4;
  int threads = 0;  // 0 = the CPUs this process may use (cgroup quota and affinity)
  int batch_size = 512;
  int queue_size = 64;
  std::chrono::milliseconds queue_timeout{30'000};
  std::chrono::milliseconds drain_timeout{30'000};
  std::chrono::milliseconds read_timeout{30'000};
  std::chrono::milliseconds liveness_timeout{60'000};
  std::size_t max_body_bytes = 8 << 20;
  int http_threads = 1;
  std::string flash_attn = "auto";  // auto | on | off
  // --prefix-cache-share: whose cached prompt prefixes a request may reuse: "tenant" (its own
  // tenant's only; a hit's shorter time to first token would tell one tenant what another
  // sent), "all", or "off" (docs/prefix_cache.md).
  std::string prefix_cache_share = "tenant";
  // --prefix-cache-size: bytes per model for the RAM tier, reserved in --memory-budget with the
  // model. Unset ("auto"): the model's KV cache bytes, cut to what the budget leaves after the
  // model itself. 0: no RAM tier.
  std::optional<std::uint64_t> prefix_cache_size;
  // --prefix-cache-disk-size: the prefix cache's disk tier in <data_dir>/prefix, all models'
  // files together (0: no disk tier; none without --data-dir either). The free-space floor is
  // cache_min_free_bytes, as for the repack cache.
  std::uint64_t prefix_cache_disk_bytes = std::uint64_t{4} << 30;
  // --cpu-variant: the build of ggml's CPU backend to compute with, by ggml's name (haswell,
  // icelake, ...); empty = the best this CPU runs (docs/cpu.md).
  std::string cpu_variant;
  // ember's state on disk; repacked weights are cached in <data_dir>/cache (docs/coldstart.md).
  // Empty = no cache.
  std::string data_dir;
  bool no_repack = false;  // serve quantized weights unrepacked (docs/coldstart.md)
  // Tenants get their own series in the ember_tenant_* metrics up to this many; the rest are
  // summed under tenant="other" (bounded label cardinality).
  int tenant_metrics_top = 20;
  // Bearer token for /admin/*; empty = those endpoints answer loopback clients only.
  std::string admin_key;
  // Disk use of <data_dir>/cache: a cap on its files (0 = none) and the free space a write
  // must leave on the filesystem (docs/coldstart.md).
  std::uint64_t cache_max_bytes = 0;
  std::uint64_t cache_min_free_bytes = std::uint64_t{1} << 30;
  // --cache-verify always: hash every cache file at every start (default "boot": once per
  // boot of the machine while the file is unchanged; docs/coldstart.md).
  bool cache_verify_every_start = false;
  // --allow-deterministic: requests may ask for "deterministic": true. --deterministic: every
  // request is deterministic. Either verifies batch invariance at start-up (docs/determinism.md).
  bool allow_deterministic = false;
  bool deterministic = false;
  std::chrono::milliseconds step_delay{0};  // testing aid (hidden flag)
  // Usage ledger and FinOps (docs/finops.md): --prices FILE (prices.toml), --ledger-sync
  // normal|full, the records kept in memory while the disk fails, what happens to requests of
  // tenants without a hard budget once even that buffer is full (serve | refuse), and the
  // period of the machine's utilization intervals (--ledger-interval, default 60 s).
  std::string prices_file;
  // --plugins: the WebAssembly plugins file (docs/plugins.md); empty = no plugins.
  std::string plugins_file;
  int plugin_threads = 1;
  bool ledger_sync_full = false;
  std::size_t ledger_buffer = 100'000;
  bool unmetered_refuse = false;
  std::chrono::milliseconds ledger_interval{60'000};
  std::string budget_webhook;  // --budget-webhook URL (http://)
  // The console (docs/console.md): recent requests kept with their timelines, whether their
  // prompts and outputs are kept too, steps kept per timeline, the event feed's period.
  std::size_t console_ring = 2000;
  bool console_keep_text = false;
  int console_trace_steps = 128;
  std::chrono::milliseconds console_interval{1000};
  std::chrono::milliseconds console_history_step{10'000};  // whole seconds, at least 1
  // The console page's built files (scripts/console.sh); empty = <exe>/../share/ember/console
  // when it exists, else no page.
  std::string console_dir;
};

// Returns the process exit code.
int RunServe(const ServeOptions& options);

}  // namespace ember::server
