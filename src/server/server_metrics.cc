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

ModelMetrics::ModelMetrics(metrics::Registry& registry, std::string model_id)
    : registry_(registry),
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
      generation_tokens_(registry_.GetCounter("ember_generation_tokens_total", "Generated tokens.",
                                              model_labels_)),
      cancelled_(registry_.GetCounter(
          "ember_requests_cancelled_total",
          "Requests whose client disconnected before the response ended.", model_labels_)),
      started_(registry_.GetCounter(
          "ember_requests_started_total",
          "Requests accepted for generation; each ends in one ember_request_success_total.",
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

void ModelMetrics::OnAdmitted(std::chrono::nanoseconds queue_time) {
  queue_.Observe(Seconds(queue_time));
}
void ModelMetrics::OnFirstToken(std::chrono::nanoseconds ttft) { ttft_.Observe(Seconds(ttft)); }
void ModelMetrics::OnTokenInterval(std::chrono::nanoseconds itl) { itl_.Observe(Seconds(itl)); }

void ModelMetrics::OnFinished(const scheduler::Finished& f) {
  e2e_.Observe(Seconds(f.timings.total));
  prompt_tokens_.Inc(f.usage.prompt_tokens);
  generation_tokens_.Inc(f.usage.completion_tokens);
  std::string reason = f.error ? "error" : std::string(api::FinishReasonString(f.reason));
  if (f.reason == engine::FinishReason::kCancelled) reason = "abort";
  registry_
      .GetCounter("ember_request_success_total", "Finished requests by finish reason.",
                  {{"model_name", model_id_}, {"finished_reason", reason}})
      .Inc();
}

void ModelMetrics::OnStep(int tokens, int /*sequences*/, std::chrono::nanoseconds took) {
  step_.Observe(Seconds(took));
  step_tokens_.Inc(tokens);
}

ServerMetrics::ServerMetrics() = default;

ModelMetrics& ServerMetrics::ForModel(const std::string& model_id) {
  std::lock_guard lock(mu_);
  auto& slot = models_[model_id];
  if (!slot) slot = std::make_unique<ModelMetrics>(registry_, model_id);
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
