// ember's metric families (vLLM-compatible names where vLLM has one) and the scheduler
// observer that feeds them. Recording is lock-free; see metrics/metrics.h.
#pragma once

#include <string>

#include "metrics/metrics.h"
#include "scheduler/scheduler.h"

namespace ember::server {

class ServerMetrics final : public scheduler::SchedulerObserver {
 public:
  explicit ServerMetrics(std::string model_id);

  metrics::Registry& registry() { return registry_; }
  // Gauges read from the scheduler at scrape time. Call once the scheduler exists.
  void BindScheduler(const scheduler::Scheduler* scheduler);

  void CountHttp(const std::string& endpoint, int status);
  void CountRejected(const std::string& reason);
  void CountCancelled() { cancelled_.Inc(); }
  // A request the scheduler accepted. Each one later ends in exactly one OnFinished, so once
  // the server is idle: started = sum of ember_request_success_total over finished_reason.
  void CountStarted() { started_.Inc(); }
  // ember_startup_seconds{phase}: how long each phase of loading the model took.
  void SetStartupSeconds(const std::string& phase, double seconds);

  void OnAdmitted(std::chrono::nanoseconds queue_time) override;
  void OnFirstToken(std::chrono::nanoseconds ttft) override;
  void OnTokenInterval(std::chrono::nanoseconds itl) override;
  void OnFinished(const scheduler::Finished& finished) override;
  void OnStep(int tokens, int sequences, std::chrono::nanoseconds took) override;

 private:
  std::string model_id_;
  metrics::Labels model_labels_;
  metrics::Registry registry_;
  metrics::Histogram& ttft_;
  metrics::Histogram& itl_;
  metrics::Histogram& e2e_;
  metrics::Histogram& queue_;
  metrics::Histogram& step_;
  metrics::Counter& prompt_tokens_;
  metrics::Counter& generation_tokens_;
  metrics::Counter& cancelled_;
  metrics::Counter& started_;
  metrics::Counter& step_tokens_;
};

}  // namespace ember::server
