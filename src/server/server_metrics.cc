#include "server/server_metrics.h"

#include "api/openai.h"

namespace ember::server {
namespace {

double Seconds(std::chrono::nanoseconds d) { return std::chrono::duration<double>(d).count(); }

std::vector<double> StepBuckets() {
  return {0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10};
}

std::vector<double> LoadBuckets() { return {0.01, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 120}; }

}  // namespace

ModelMetrics::ModelMetrics(metrics::Registry& registry, TenantMetrics& tenants, History& history,
                           std::string model_id)
    : registry_(registry),
      tenants_(tenants),
      history_(history),
      model_id_(std::move(model_id)),
      model_labels_{{"model_name", model_id_}},
      ttft_(registry_.GetHistogram("ember_time_to_first_token_seconds",
                                   "Time from request arrival to its first generated token.",
                                   metrics::LatencyBuckets(), model_labels_)),
      itl_(registry_.GetHistogram("ember_inter_token_latency_seconds",
                                  "Time between successive generated tokens of a request.",
                                  metrics::LatencyBuckets(), model_labels_)),
      e2e_(registry_.GetHistogram("ember_e2e_request_latency_seconds",
                                  "Time from request arrival to its end.",
                                  metrics::LatencyBuckets(), model_labels_)),
      queue_(registry_.GetHistogram("ember_request_queue_time_seconds",
                                    "Time a request waited for a sequence slot.",
                                    metrics::LatencyBuckets(), model_labels_)),
      step_(registry_.GetHistogram("ember_engine_step_duration_seconds",
                                   "Duration of one engine step (one forward pass).", StepBuckets(),
                                   model_labels_)),
      load_(registry_.GetHistogram(
          "ember_model_load_seconds",
          "Time to load a model (weights, context, warm-up), at start-up or on demand.",
          LoadBuckets(), model_labels_)),
      prompt_tokens_(registry_.GetCounter("ember_prompt_tokens_total",
                                          "Prompt tokens of finished requests.", model_labels_)),
      prefix_hits_(registry_.GetCounter(
          "ember_prefix_cache_hits_total",
          "Requests admitted with part of their prompt's KV cells already computed.",
          model_labels_)),
      prefix_misses_(registry_.GetCounter(
          "ember_prefix_cache_misses_total",
          "Requests admitted with nothing of their prompt already computed.", model_labels_)),
      prefix_saved_(registry_.GetCounter(
          "ember_prefix_cache_saved_tokens_total",
          "Prompt tokens not recomputed thanks to the prefix cache (usage's cached_tokens).",
          model_labels_)),
      prefix_copies_(registry_.GetCounter(
          "ember_prefix_cache_copies_total",
          "Hits whose cells were copied from another slot (the rest reused their own slot's).",
          model_labels_)),
      prefix_ram_hits_(registry_.GetCounter(
          "ember_prefix_cache_ram_hits_total",
          "Hits whose cells were restored from the RAM tier (host memory beyond the slots).",
          model_labels_)),
      prefix_ram_evictions_(registry_.GetCounter(
          "ember_prefix_cache_ram_evictions_total",
          "Entries the RAM tier evicted to stay within --prefix-cache-size.", model_labels_)),
      prefix_ram_bytes_(registry_.GetGauge(
          "ember_prefix_cache_ram_bytes",
          "Host memory the RAM tier's saved KV cells hold (within --prefix-cache-size, which "
          "counts in --memory-budget).",
          model_labels_)),
      prefix_ram_entries_(registry_.GetGauge("ember_prefix_cache_ram_entries",
                                             "Prompt prefixes the RAM tier holds.", model_labels_)),
      prefix_disk_writes_(registry_.GetCounter(
          "ember_prefix_cache_disk_writes_total",
          "Prefix cache entries written to the disk tier (--data-dir/prefix).", model_labels_)),
      prefix_disk_reads_(registry_.GetCounter(
          "ember_prefix_cache_disk_reads_total",
          "Disk-tier files read and verified into the RAM tier at start.", model_labels_)),
      prefix_disk_hits_(registry_.GetCounter(
          "ember_prefix_cache_disk_hits_total",
          "Hits whose cells were restored from an entry read from the disk tier.", model_labels_)),
      prefix_disk_errors_(registry_.GetCounter(
          "ember_prefix_cache_disk_errors_total",
          "Disk-tier files that failed verification (deleted, never used) and failed writes.",
          model_labels_)),
      prefix_disk_bytes_(registry_.GetGauge("ember_prefix_cache_disk_bytes",
                                            "Bytes of this model's disk-tier files.",
                                            model_labels_)),
      prefix_disk_entries_(registry_.GetGauge("ember_prefix_cache_disk_entries",
                                              "This model's disk-tier files.", model_labels_)),
      prefix_queried_vllm_(registry_.GetCounter("vllm:prefix_cache_queries_total",
                                                "Prompt tokens looked up in the prefix cache.",
                                                model_labels_)),
      prefix_hit_tokens_vllm_(registry_.GetCounter("vllm:prefix_cache_hits_total",
                                                   "Prompt tokens found in the prefix cache.",
                                                   model_labels_)),
      generation_tokens_(registry_.GetCounter("ember_generation_tokens_total", "Generated tokens.",
                                              model_labels_)),
      cancelled_(registry_.GetCounter(
          "ember_requests_cancelled_total",
          "Requests whose client disconnected before the response ended.", model_labels_)),
      started_(registry_.GetCounter(
          "ember_requests_started_total",
          "Requests accepted for generation; each ends in one ember_request_success_total.",
          model_labels_)),
      preempted_(registry_.GetCounter(
          "ember_requests_preempted_total",
          "Running requests preempted for a higher priority class (each resumes later).",
          model_labels_)),
      step_tokens_(registry_.GetCounter("ember_engine_step_tokens_total",
                                        "Tokens processed by engine steps (prefill + decode).",
                                        model_labels_)),
      loads_(registry_.GetCounter("ember_model_loads_total", "Successful loads of a model.",
                                  model_labels_)),
      load_failures_(registry_.GetCounter("ember_model_load_failures_total",
                                          "Loads of a model that failed.", model_labels_)),
      loaded_(registry_.GetGauge("ember_model_loaded", "1 while the model is loaded, else 0.",
                                 model_labels_)),
      memory_(registry_.GetGauge(
          "ember_model_memory_bytes",
          "Bytes the model holds against the memory budget (weights + KV cache + compute "
          "allowance; the estimate while loading, the measured figure once loaded, 0 unloaded).",
          model_labels_)),
      estimate_(registry_.GetGauge(
          "ember_model_memory_estimate_bytes",
          "The model's memory estimate from its GGUF header, before loading.", model_labels_)) {
  const char* reasons[] = {"idle", "evicted", "admin"};  // UnloadReason order
  for (int i = 0; i < 3; ++i) {
    metrics::Labels labels = model_labels_;
    labels.emplace_back("reason", reasons[i]);
    unloads_[i] =
        &registry_.GetCounter("ember_model_unloads_total", "Model unloads by reason.", labels);
  }
}

void ModelMetrics::BindSnapshot(
    std::function<std::optional<scheduler::SchedulerSnapshot>()> snapshot) {
  auto read = [snapshot](auto field) {
    return [snapshot, field] {
      const auto snap = snapshot();
      return snap ? field(*snap) : 0.0;
    };
  };
  auto running = read([](const scheduler::SchedulerSnapshot& s) { return 1.0 * s.running; });
  auto waiting = read([](const scheduler::SchedulerSnapshot& s) { return 1.0 * s.waiting; });
  auto kv = read([](const scheduler::SchedulerSnapshot& s) {
    return s.kv_cells_total > 0 ? static_cast<double>(s.kv_cells_used) / s.kv_cells_total : 0.0;
  });
  // ember's own names, and vLLM's for the Gateway API Inference Extension and dashboards.
  for (const char* prefix : {"ember_", "vllm:"}) {
    const std::string p(prefix);
    registry_.AddCallbackGauge(p + "num_requests_running", "Requests in a sequence slot.",
                               model_labels_, running);
    registry_.AddCallbackGauge(p + "num_requests_waiting", "Requests waiting for a slot.",
                               model_labels_, waiting);
    registry_.AddCallbackGauge(p + "kv_cache_usage_perc",
                               "Fraction of KV-cache cells in use (0 to 1).", model_labels_, kv);
  }
}

void ModelMetrics::SetStartupSeconds(const std::string& phase, double seconds) {
  metrics::Labels labels = model_labels_;
  labels.emplace_back("phase", phase);
  registry_
      .GetGauge("ember_startup_seconds",
                "How long each phase of the model's last load took: metadata, tokenizer, "
                "buffers, weights, context, warmup (with the determinism check when enabled), and "
                "total (process start to ready, for a model loaded at start-up).",
                labels)
      .Set(seconds);
}

void ModelMetrics::RecordLoad(bool ok, double seconds) {
  load_.Observe(seconds);
  (ok ? loads_ : load_failures_).Inc();
}

void ModelMetrics::OnAdmitted(const scheduler::GenerateRequest& /*request*/,
                              std::chrono::nanoseconds queue_time) {
  queue_.Observe(Seconds(queue_time));
}

void ModelMetrics::OnPreempted(const scheduler::TenantTag& tenant) {
  preempted_.Inc();
  tenants_.CountPreempted(tenant.id);
}
void ModelMetrics::OnFirstToken(std::chrono::nanoseconds ttft) {
  ttft_.Observe(Seconds(ttft));
  history_.ObserveTtft(ttft);
  history_.CountTokens(1);
}
void ModelMetrics::OnTokenInterval(std::chrono::nanoseconds itl) {
  itl_.Observe(Seconds(itl));
  history_.ObserveInterval(itl);
  history_.CountTokens(1);
}

// Once per choice: tokens add up over the choices (the prompt is in choice 0's usage only);
// the request's latency and finish reason are counted once, with its first choice.
void ModelMetrics::OnFinished(const scheduler::Finished& f) {
  prompt_tokens_.Inc(f.usage.prompt_tokens);
  generation_tokens_.Inc(f.usage.completion_tokens);
  if (f.choice != 0) return;
  e2e_.Observe(Seconds(f.timings.total));
  std::string reason = f.error ? "error" : std::string(api::FinishReasonString(f.reason));
  if (f.reason == engine::FinishReason::kCancelled) reason = "abort";
  registry_
      .GetCounter("ember_request_success_total", "Finished requests by finish reason.",
                  {{"model_name", model_id_}, {"finished_reason", reason}})
      .Inc();
}

void ModelMetrics::OnPrefixLookup(int prompt_tokens, int reused, bool copied, bool restored) {
  (reused > 0 ? prefix_hits_ : prefix_misses_).Inc();
  prefix_saved_.Inc(reused);
  if (copied && reused > 0) prefix_copies_.Inc();
  if (restored && reused > 0) prefix_ram_hits_.Inc();
  prefix_queried_vllm_.Inc(prompt_tokens);
  prefix_hit_tokens_vllm_.Inc(reused);
}

void ModelMetrics::OnPrefixStore(std::uint64_t bytes, int entries, int evicted) {
  prefix_ram_bytes_.Set(static_cast<double>(bytes));
  prefix_ram_entries_.Set(entries);
  if (evicted > 0) prefix_ram_evictions_.Inc(evicted);
}

void ModelMetrics::OnPrefixDisk(const scheduler::PrefixDiskStats& change) {
  prefix_disk_writes_.Inc(static_cast<double>(change.writes));
  prefix_disk_reads_.Inc(static_cast<double>(change.reads));
  prefix_disk_hits_.Inc(static_cast<double>(change.hits));
  prefix_disk_errors_.Inc(static_cast<double>(change.errors));
  prefix_disk_bytes_.Set(static_cast<double>(change.bytes));
  prefix_disk_entries_.Set(change.entries);
}

void ModelMetrics::OnStep(int tokens, int /*sequences*/, std::chrono::nanoseconds took) {
  step_.Observe(Seconds(took));
  step_tokens_.Inc(tokens);
}

ServerMetrics::ServerMetrics()
    : generations_(registry_.GetCounter(
          "ember_generation_requests_total",
          "Generation requests (completions, chat) received; each ends in exactly one "
          "ember_generation_outcomes_total.")) {}

void ServerMetrics::CountOutcome(std::string_view outcome) {
  registry_
      .GetCounter("ember_generation_outcomes_total",
                  "Generation requests by how they ended, counted at the completion point.",
                  {{"outcome", std::string(outcome)}})
      .Inc();
}

void ServerMetrics::CountTenancyReload(bool ok, std::size_t tenants) {
  registry_
      .GetCounter("ember_tenancy_reloads_total",
                  "Reloads of DIR/tenants.toml: ok, or error (the previous configuration stays).",
                  {{"result", ok ? "ok" : "error"}})
      .Inc();
  if (ok) {
    registry_.GetGauge("ember_tenancy_tenants", "Tenants configured (0 = open mode).")
        .Set(static_cast<double>(tenants));
  }
}

void ServerMetrics::CountPluginReload(bool ok) {
  registry_
      .GetCounter("ember_plugin_reloads_total",
                  "Loads of the --plugins file (start-up included): ok, or error (the previous "
                  "plugins stay).",
                  {{"result", ok ? "ok" : "error"}})
      .Inc();
}

TenantMetrics::TenantMetrics(metrics::Registry& registry, int top_n)
    : registry_(registry), top_n_(top_n) {}

std::string TenantMetrics::Label(const std::string& tenant) {
  if (tenant.empty()) return tenant;
  std::lock_guard lock(mu_);
  auto [it, fresh] = named_.try_emplace(tenant, false);
  if (fresh && named_count_ < top_n_) {
    it->second = true;
    ++named_count_;
  }
  return it->second ? tenant : std::string("other");
}

void TenantMetrics::CountRequest(const std::string& tenant, int status, std::int64_t prompt_tokens,
                                 std::int64_t output_tokens) {
  if (tenant.empty()) return;
  const std::string label = Label(tenant);
  registry_
      .GetCounter("ember_tenant_requests_total",
                  "Generation requests by tenant and HTTP status (0: the client left first).",
                  {{"tenant", label}, {"status", std::to_string(status)}})
      .Inc();
  registry_
      .GetCounter("ember_tenant_prompt_tokens_total", "Prompt tokens of finished requests.",
                  {{"tenant", label}})
      .Inc(static_cast<double>(prompt_tokens));
  registry_
      .GetCounter("ember_tenant_generation_tokens_total", "Tokens generated for the tenant.",
                  {{"tenant", label}})
      .Inc(static_cast<double>(output_tokens));
}

void TenantMetrics::CountRejected(const std::string& tenant, std::string_view reason) {
  registry_
      .GetCounter("ember_tenant_rejections_total",
                  "Requests refused by tenancy: auth, rate, concurrency, queue.",
                  {{"tenant", tenant.empty() ? std::string("unknown") : Label(tenant)},
                   {"reason", std::string(reason)}})
      .Inc();
}

void TenantMetrics::ObserveQueue(const std::string& tenant, std::chrono::nanoseconds queue) {
  if (tenant.empty()) return;
  registry_
      .GetHistogram("ember_tenant_queue_time_seconds",
                    "Arrival to a sequence slot, waiting for the model included.",
                    metrics::LatencyBuckets(), {{"tenant", Label(tenant)}})
      .Observe(Seconds(queue));
}

void TenantMetrics::CountPreempted(const std::string& tenant) {
  if (tenant.empty()) return;
  registry_
      .GetCounter("ember_tenant_preemptions_total",
                  "Running requests preempted for a higher priority class.",
                  {{"tenant", Label(tenant)}})
      .Inc();
}

ModelMetrics& ServerMetrics::ForModel(const std::string& model_id) {
  std::lock_guard lock(mu_);
  auto& slot = models_[model_id];
  if (!slot) slot = std::make_unique<ModelMetrics>(registry_, tenants_, history_, model_id);
  return *slot;
}

void ServerMetrics::SetMemoryBudget(std::uint64_t bytes) {
  registry_
      .GetGauge("ember_memory_budget_bytes",
                "--memory-budget: bytes all loaded models may hold together (0 = unlimited).")
      .Set(static_cast<double>(bytes));
}

void ServerMetrics::SetBuildInfo(const metrics::Labels& labels) {
  registry_
      .GetGauge("ember_build_info",
                "1, labelled with ember's version, the llama.cpp commit and ember's patches on it, "
                "the CPU variant of ggml computing (docs/cpu.md) and the CPU's model name.",
                labels)
      .Set(1);
}

void ServerMetrics::CountHttp(const std::string& endpoint, int status) {
  registry_
      .GetCounter("ember_http_requests_total", "HTTP requests by endpoint and status.",
                  {{"endpoint", endpoint}, {"status", std::to_string(status)}})
      .Inc();
}

void ServerMetrics::CountRejected(const std::string& reason) {
  registry_
      .GetCounter("ember_requests_rejected_total", "Requests refused before generation, by reason.",
                  {{"reason", reason}})
      .Inc();
}

}  // namespace ember::server
