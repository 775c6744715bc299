// ember's metric families (vLLM-compatible names where vLLM has one) and the scheduler
// observers that feed them: one ServerMetrics per process (HTTP, rejections, the memory
// budget) and one ModelMetrics per configured model (every series labelled model_name).
// Recording is lock-free; see metrics/metrics.h.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>

#include "metrics/metrics.h"
#include "scheduler/scheduler.h"
#include "server/history.h"

namespace ember::server {

// Series by tenant, with bounded cardinality: the first `top_n` tenants to send traffic get
// their own tenant="<name>" series, kept until restart; the others are summed under
// tenant="other" (a series never changes hands, so every counter stays monotonic). A request
// refused before its key was known counts under tenant="unknown". Nothing is recorded in
// open mode (no tenants configured). Thread-safe.
class TenantMetrics {
 public:
  TenantMetrics(metrics::Registry& registry, int top_n);
  // --tenant-metrics-top; set before serving.
  void SetTopN(int top_n) {
    std::lock_guard lock(mu_);
    top_n_ = top_n;
  }

  // A request ended with HTTP `status` (0: the client left before any answer).
  void CountRequest(const std::string& tenant, int status, std::int64_t prompt_tokens,
                    std::int64_t output_tokens);
  // reason: auth | rate | concurrency | queue.
  void CountRejected(const std::string& tenant, std::string_view reason);
  // Arrival to a sequence slot (waiting for the model included).
  void ObserveQueue(const std::string& tenant, std::chrono::nanoseconds queue);
  void CountPreempted(const std::string& tenant);
  // The tenant's label value: its name while it is among the first top_n tenants seen, else
  // "other" (bounded cardinality); "" stays "" (the anonymous tenant of open mode).
  std::string Label(const std::string& tenant);

 private:
  metrics::Registry& registry_;
  int top_n_;  // GUARDED_BY(mu_)
  std::mutex mu_;
  std::map<std::string, bool> named_;  // GUARDED_BY(mu_): tenant -> has its own series
  int named_count_ = 0;                // GUARDED_BY(mu_)
};

// The series of one model. Created at start-up for every configured model, so each model's
// series exist (at zero) before it is first loaded; it outlives every load of the model.
class ModelMetrics final : public scheduler::SchedulerObserver {
 public:
  ModelMetrics(metrics::Registry& registry, TenantMetrics& tenants, History& history,
               std::string model_id);

  // Gauges read at scrape time: running, waiting, KV usage (zero while the model is not
  // loaded, when `snapshot` returns nothing). Call once.
  void BindSnapshot(std::function<std::optional<scheduler::SchedulerSnapshot>()> snapshot);

  void CountCancelled() { cancelled_.Inc(); }
  // A request the scheduler accepted. Each one later ends in exactly one OnFinished, so once
  // the server is idle: started = sum of ember_request_success_total over finished_reason.
  void CountStarted() { started_.Inc(); }
  // ember_startup_seconds{model_name,phase}: how long each phase of loading the model took.
  void SetStartupSeconds(const std::string& phase, double seconds);
  // A load finished (ok or not) after `seconds`.
  void RecordLoad(bool ok, double seconds);
  enum class UnloadReason { kIdle, kEvicted, kAdmin };
  // Lock-free, like SetLoaded/SetMemoryBytes: callable under the model manager's lock.
  void CountUnload(UnloadReason reason) { unloads_[static_cast<int>(reason)]->Inc(); }
  void SetLoaded(bool loaded) { loaded_.Set(loaded ? 1 : 0); }
  // Bytes the model holds against the memory budget now (0 when unloaded).
  void SetMemoryBytes(std::uint64_t bytes) { memory_.Set(static_cast<double>(bytes)); }
  void SetEstimateBytes(std::uint64_t bytes) { estimate_.Set(static_cast<double>(bytes)); }

  void OnAdmitted(const scheduler::GenerateRequest& request,
                  std::chrono::nanoseconds queue_time) override;
  void OnPreempted(const scheduler::TenantTag& tenant) override;
  void OnFirstToken(std::chrono::nanoseconds ttft) override;
  void OnTokenInterval(std::chrono::nanoseconds itl) override;
  void OnFinished(const scheduler::Finished& finished) override;
  void OnPrefixLookup(int prompt_tokens, int reused, bool copied, bool restored) override;
  void OnPrefixStore(std::uint64_t bytes, int entries, int evicted) override;
  void OnPrefixDisk(const scheduler::PrefixDiskStats& change) override;
  void OnStep(int tokens, int sequences, std::chrono::nanoseconds took) override;

 private:
  metrics::Registry& registry_;
  TenantMetrics& tenants_;
  History& history_;
  std::string model_id_;
  metrics::Labels model_labels_;
  metrics::Histogram& ttft_;
  metrics::Histogram& itl_;
  metrics::Histogram& e2e_;
  metrics::Histogram& queue_;
  metrics::Histogram& step_;
  metrics::Histogram& load_;
  metrics::Counter& prompt_tokens_;
  metrics::Counter& prefix_hits_;
  metrics::Counter& prefix_misses_;
  metrics::Counter& prefix_saved_;
  metrics::Counter& prefix_copies_;
  metrics::Counter& prefix_ram_hits_;
  metrics::Counter& prefix_ram_evictions_;
  metrics::Gauge& prefix_ram_bytes_;
  metrics::Gauge& prefix_ram_entries_;
  metrics::Counter& prefix_disk_writes_;
  metrics::Counter& prefix_disk_reads_;
  metrics::Counter& prefix_disk_hits_;
  metrics::Counter& prefix_disk_errors_;
  metrics::Gauge& prefix_disk_bytes_;
  metrics::Gauge& prefix_disk_entries_;
  metrics::Counter& prefix_queried_vllm_;
  metrics::Counter& prefix_hit_tokens_vllm_;
  metrics::Counter& generation_tokens_;
  metrics::Counter& cancelled_;
  metrics::Counter& started_;
  metrics::Counter& preempted_;
  metrics::Counter& step_tokens_;
  metrics::Counter& loads_;
  metrics::Counter& load_failures_;
  metrics::Gauge& loaded_;
  metrics::Gauge& memory_;
  metrics::Gauge& estimate_;
  metrics::Counter* unloads_[3];
};

class ServerMetrics {
 public:
  ServerMetrics();

  metrics::Registry& registry() { return registry_; }
  TenantMetrics& tenants() { return tenants_; }
  // The last hour, for the console's charts (fed by every model's series).
  History& history() { return history_; }
  // The series of `model_id`, created on first call. The reference stays valid for the
  // lifetime of this object. Call for every model before serving.
  ModelMetrics& ForModel(const std::string& model_id);

  void CountHttp(const std::string& endpoint, int status);
  void CountRejected(const std::string& reason);
  // ember_generation_requests_total: a generation request arrived (counted before any check).
  void CountGeneration() { generations_.Inc(); }
  // ember_generation_outcomes_total{outcome}: how it ended, counted at its completion point.
  // Once the server is idle the outcomes sum to ember_generation_requests_total.
  void CountOutcome(std::string_view outcome);
  // ember_tenancy_reloads_total{result="ok"|"error"} and ember_tenancy_tenants.
  void CountTenancyReload(bool ok, std::size_t tenants);
  // ember_plugin_reloads_total{result="ok"|"error"}: loads of the --plugins file.
  void CountPluginReload(bool ok);
  // ember_memory_budget_bytes (0 = unlimited).
  void SetMemoryBudget(std::uint64_t bytes);
  // ember_build_info{version, llama_commit, ember_patches, cpu_variant, cpu_model} 1.
  void SetBuildInfo(const metrics::Labels& labels);

 private:
  metrics::Registry registry_;
  std::mutex mu_;
  std::map<std::string, std::unique_ptr<ModelMetrics>> models_;  // GUARDED_BY(mu_)
  metrics::Counter& generations_;
  TenantMetrics tenants_{registry_, 20};
  History history_;
};

}  // namespace ember::server
