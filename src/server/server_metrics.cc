#include "server/server_metrics.h"

#include "api/openai.h"

namespace ember::server {
namespace {

double Seconds(std::chrono::nanoseconds d) { return std::chrono::duration<double>(d).count(); }

std::vector<double> StepBuckets() {
  return {0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10};
}

}  // namespace

ServerMetrics::ServerMetrics(std::string model_id)
    : model_id_(std::move(model_id)),
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
                                        model_labels_)) {}

void ServerMetrics::BindScheduler(const scheduler::Scheduler* s) {
  auto total = [s] {
    auto snap = s->Snapshot();
    return snap.kv_cells_total > 0 ? static_cast<double>(snap.kv_cells_used) / snap.kv_cells_total
                                   : 0.0;
  };
  auto running = [s] { return static_cast<double>(s->Snapshot().running); };
  auto waiting = [s] { return static_cast<double>(s->Snapshot().waiting); };
  // ember's own names, and vLLM's for the Gateway API Inference Extension and dashboards.
  for (const char* prefix : {"ember_", "vllm:"}) {
    const std::string p(prefix);
    registry_.AddCallbackGauge(p + "num_requests_running", "Requests in a sequence slot.",
                               model_labels_, running);
    registry_.AddCallbackGauge(p + "num_requests_waiting", "Requests waiting for a slot.",
                               model_labels_, waiting);
    registry_.AddCallbackGauge(p + "kv_cache_usage_perc",
                               "Fraction of KV-cache cells in use (0 to 1).", model_labels_, total);
  }
}

void ServerMetrics::SetStartupSeconds(const std::string& phase, double seconds) {
  metrics::Labels labels = model_labels_;
  labels.emplace_back("phase", phase);
  registry_
      .GetGauge("ember_startup_seconds",
                "How long each phase of start-up took: metadata, tokenizer, buffers, weights, "
                "context, warmup (with the determinism check when enabled), and total (process "
                "start to ready).",
                labels)
      .Set(seconds);
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

void ServerMetrics::OnAdmitted(std::chrono::nanoseconds queue_time) {
  queue_.Observe(Seconds(queue_time));
}
void ServerMetrics::OnFirstToken(std::chrono::nanoseconds ttft) { ttft_.Observe(Seconds(ttft)); }
void ServerMetrics::OnTokenInterval(std::chrono::nanoseconds itl) { itl_.Observe(Seconds(itl)); }

void ServerMetrics::OnFinished(const scheduler::Finished& f) {
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

void ServerMetrics::OnStep(int tokens, int /*sequences*/, std::chrono::nanoseconds took) {
  step_.Observe(Seconds(took));
  step_tokens_.Inc(tokens);
}

}  // namespace ember::server
