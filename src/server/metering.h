// Metering: the server's side of the usage ledger (docs/finops.md). At admission it reserves a
// request's worst-case cost against its tenant's hard budget (402 when it does not fit) and
// refuses hard-budgeted requests it could not record (503 "cannot meter"); at the completion
// point it prices the request (prices.toml), settles the budget, counts the cost metrics and
// hands one UsageRecord to the ledger's writer thread. A sampler thread writes the machine's
// busy / cold-start / idle time (and their cost) as one UsageInterval per period.
//
// Threads: Reserve and Record run on HTTP strands and never do I/O (the ledger's Append is a
// queue push); the sampler and the ledger writer have their own threads. Stop() is called once
// by the server's shutdown sequence, after the last request completed: it writes the last
// interval and the stop event and flushes the ledger.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <expected>
#include <filesystem>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>

#include "common/error.h"
#include "http/webhook.h"
#include "ledger/budget.h"
#include "ledger/ledger.h"
#include "ledger/prices.h"
#include "ledger/record.h"
#include "metrics/metrics.h"
#include "server/server_metrics.h"
#include "tenancy/config.h"

namespace ember::server {

class ModelManager;

// What to do with a request the ledger could not record (its buffer is full because the disk
// has been failing for long): tenants with a hard budget are always refused.
enum class UnmeteredPolicy { kServe, kRefuse };

struct MeteringOptions {
  ledger::Prices prices;
  std::filesystem::path ledger_file;  // empty: no ledger (no --data-dir); costs still counted
  ledger::SyncMode sync = ledger::SyncMode::kNormal;
  std::size_t max_buffered = 100'000;
  UnmeteredPolicy unmetered = UnmeteredPolicy::kServe;
  std::chrono::milliseconds interval{60'000};  // one UsageInterval per period
  std::chrono::milliseconds commit_interval{100};
  int threads = 0;  // engine threads configured, for the intervals (advise reads them)
  // --budget-webhook: http:// URL POSTed a JSON notice when a tenant first reaches a soft or
  // hard budget in a window (retried from its own thread; never blocks a request).
  std::string budget_webhook;
};

// A refusal at admission: 402 (budget) or 503 (cannot meter), with the OpenAI error.
struct MeterRefusal {
  int status = 402;
  std::string code;  // "budget_exceeded" | "cannot_meter"
  Error error;
  std::optional<std::int64_t> retry_after_s;
};

class Metering {
 public:
  [[nodiscard]] static Result<std::unique_ptr<Metering>> Create(MeteringOptions options,
                                                                ServerMetrics& metrics);
  ~Metering();  // Stop()s if the server did not

  // The tenants' budgets from tenants.toml; restores what each spent in its current window
  // from the ledger the first time a tenant's budget is seen.
  void ApplyTenants(const tenancy::Config& config);

  // Admission of a request that will read `prompt_tokens` and write up to `max_tokens`.
  [[nodiscard]] std::expected<ledger::Reservation, MeterRefusal> Reserve(const std::string& tenant,
                                                                         const std::string& model,
                                                                         std::int64_t prompt_tokens,
                                                                         std::int64_t max_tokens);
  // The completion point: prices `record`, settles `reservation` (a default one when the
  // request ended before it reserved), counts the metrics and appends the record.
  // `durable` (may be null) runs once the record is safe: at once, or with --ledger-sync full
  // on the writer thread after its commit (also after a failed commit: a failing disk must not
  // hold answers back; the record stays buffered and is retried).
  // Returns what the record was priced at (for the console's request timeline).
  struct Priced {
    Microdollars cost = 0;  // list price of its tokens
    Microdollars infra = 0;
  };
  Priced Record(ledger::Reservation& reservation, ledger::UsageRecord record,
                std::function<void()> durable = nullptr);

  // Starts the interval sampler over `models` (which must outlive Stop()).
  void Start(ModelManager& models);
  // Records a machine event ("start", "stop", "spot_interruption").
  void Event(std::string kind, std::string detail);
  // Last interval, flush, close; `deadline` bounds the flush.
  void Stop(std::chrono::milliseconds deadline);

  // "" while every record is written; else what /ready reports ("ledger: N records not yet
  // written (disk full?): ...").
  std::string Health() const;
  bool has_ledger() const { return ledger_ != nullptr; }
  const std::filesystem::path& ledger_file() const { return options_.ledger_file; }
  const ledger::Prices& prices() const { return options_.prices; }
  // Wall clock, unix ns.
  static std::int64_t NowNs();

 private:
  Metering(MeteringOptions options, ServerMetrics& metrics, std::unique_ptr<ledger::Ledger> ledger,
           std::unique_ptr<http::WebhookSender> webhook);
  void Sample();  // the sampler thread
  void WriteInterval(std::int64_t end_ns, bool final);
  void CountCost(const std::string& tenant, const std::string& model, const char* kind,
                 Microdollars amount);

  MeteringOptions options_;
  ServerMetrics& metrics_;
  std::unique_ptr<ledger::Ledger> ledger_;
  std::unique_ptr<http::WebhookSender> webhook_;  // null without --budget-webhook
  metrics::Counter& usage_records_;               // looked up once: Record runs for every request
  ledger::Budgets budgets_;
  std::mutex restored_mu_;
  std::map<std::string, BudgetWindow> restored_;  // GUARDED_BY(restored_mu_)
  std::map<std::string, bool> hard_;              // GUARDED_BY(restored_mu_)

  // Sampler state (sampler thread, and Stop after it joined).
  ModelManager* models_ = nullptr;
  std::int64_t period_start_ns_ = 0;
  std::int64_t last_busy_ns_ = 0;
  std::int64_t last_loading_ns_ = 0;
  std::int64_t kv_peak_permille_ = 0;
  std::atomic<std::int64_t> period_requests_{0};
  std::atomic<std::int64_t> period_queue_ns_{0};
  std::mutex mu_;
  std::condition_variable wake_;
  bool stop_ = false;  // GUARDED_BY(mu_)
  bool stopped_ = false;
  std::thread sampler_;
};

}  // namespace ember::server
