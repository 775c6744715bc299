#include "server/metering.h"

#include <algorithm>
#include <utility>
#include <vector>

#include "common/json_text.h"
#include "common/log.h"
#include "ledger/cost.h"
#include "ledger/store.h"
#include "server/models.h"

namespace ember::server {

std::int64_t Metering::NowNs() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

Result<std::unique_ptr<Metering>> Metering::Create(MeteringOptions options,
                                                   ServerMetrics& metrics) {
  std::unique_ptr<http::WebhookSender> webhook;
  if (!options.budget_webhook.empty()) {
    auto sender = http::WebhookSender::Create(options.budget_webhook);
    if (!sender) return std::unexpected(sender.error());
    webhook = std::move(*sender);
  }
  std::unique_ptr<ledger::Ledger> book;
  if (!options.ledger_file.empty()) {
    auto store = ledger::Store::Open(options.ledger_file, options.sync);
    if (!store) return std::unexpected(store.error());
    book = std::make_unique<ledger::Ledger>(
        std::move(*store), ledger::LedgerOptions{.commit_interval = options.commit_interval,
                                                 .max_buffered = options.max_buffered});
  }
  return std::unique_ptr<Metering>(
      new Metering(std::move(options), metrics, std::move(book), std::move(webhook)));
}

Metering::Metering(MeteringOptions options, ServerMetrics& metrics,
                   std::unique_ptr<ledger::Ledger> ledger,
                   std::unique_ptr<http::WebhookSender> webhook)
    : options_(std::move(options)),
      metrics_(metrics),
      ledger_(std::move(ledger)),
      webhook_(std::move(webhook)),
      usage_records_(metrics_.registry().GetCounter(
          "ember_usage_records_total",
          "Usage records produced (one per admitted request, whatever its end).")) {
  metrics::Registry& r = metrics_.registry();
  ledger::Ledger* book = ledger_.get();
  r.AddCallbackGauge("ember_ledger_unrecorded_records",
                     "Usage records accepted but not yet committed to the ledger (they grow "
                     "while the disk is full or failing, and are written once it recovers).",
                     {}, [book] { return book ? static_cast<double>(book->Unrecorded()) : 0.0; });
  r.AddCallbackGauge("ember_ledger_healthy",
                     "1 while the ledger's last write succeeded (or it has none to do), else 0.",
                     {}, [book] { return book == nullptr || book->healthy() ? 1.0 : 0.0; });
  r.AddCallbackGauge(
      "ember_ledger_records_written", "Usage records committed to the ledger since start.", {},
      [book] { return book ? static_cast<double>(book->records_written_total()) : 0.0; });
  r.AddCallbackGauge(
      "ember_ledger_write_errors", "Failed ledger transactions since start (each is retried).", {},
      [book] { return book ? static_cast<double>(book->write_errors_total()) : 0.0; });
  r.AddCallbackGauge("ember_ledger_dropped_records",
                     "Usage records lost because the ledger's buffer was full.", {},
                     [book] { return book ? static_cast<double>(book->dropped_total()) : 0.0; });
  r.AddCallbackGauge("ember_ledger_sqlite_memory_bytes",
                     "Heap bytes SQLite holds in this process: the ledger connections' page "
                     "caches (at most 2,000 KiB each, filling as the file grows) and statements.",
                     {}, [] { return static_cast<double>(ledger::SqliteMemoryBytes()); });
  http::WebhookSender* hook = webhook_.get();
  r.AddCallbackGauge("ember_budget_webhook_delivered",
                     "Budget notices the --budget-webhook receiver accepted (2xx).", {},
                     [hook] { return hook ? static_cast<double>(hook->delivered()) : 0.0; });
  r.AddCallbackGauge("ember_budget_webhook_failed",
                     "Budget notices given up on after every retry (or dropped).", {},
                     [hook] { return hook ? static_cast<double>(hook->failed()) : 0.0; });
  period_start_ns_ = NowNs();
}

Metering::~Metering() { Stop(std::chrono::seconds(5)); }

void Metering::ApplyTenants(const tenancy::Config& config) {
  std::map<std::string, ledger::BudgetSpec> specs;
  for (const tenancy::Tenant& t : config.tenants) {
    if (!t.hard_budget && !t.soft_budget) continue;
    specs[t.name] = ledger::BudgetSpec{t.hard_budget, t.soft_budget, t.budget_window};
  }
  budgets_.Configure(specs);
  std::lock_guard lock(restored_mu_);
  hard_.clear();
  const std::int64_t now = NowNs();
  // What each tenant already spent in its window, once per (tenant, window kind): a restart
  // keeps its budget, and a change of window counts the new window's spending.
  std::vector<std::pair<std::string, BudgetWindow>> to_restore;
  for (const auto& [tenant, spec] : specs) {
    hard_[tenant] = spec.hard.has_value();
    auto it = restored_.find(tenant);
    if (it != restored_.end() && it->second == spec.window) continue;
    restored_[tenant] = spec.window;
    to_restore.emplace_back(tenant, spec.window);
  }
  if (!ledger_ || to_restore.empty()) return;
  (void)ledger_->Flush(std::chrono::seconds(5));  // what is buffered counts too
  auto reader = ledger::Store::OpenReadOnly(options_.ledger_file);
  if (!reader) {
    log::Warn("cannot read the ledger to restore budgets: ", reader.error().message);
    return;
  }
  for (const auto& [tenant, window] : to_restore) {
    auto spent = (*reader)->SpentSince(tenant, ledger::WindowStart(window, now));
    if (!spent) {
      log::Warn("cannot restore the budget of tenant '", tenant, "': ", spent.error().message);
      continue;
    }
    budgets_.Restore(tenant, *spent, now);
  }
}

std::expected<ledger::Reservation, MeterRefusal> Metering::Reserve(const std::string& tenant,
                                                                   const std::string& model,
                                                                   std::int64_t prompt_tokens,
                                                                   std::int64_t max_tokens) {
  bool hard = false;
  {
    std::lock_guard lock(restored_mu_);
    auto it = hard_.find(tenant);
    hard = it != hard_.end() && it->second;
  }
  if (ledger_ && ledger_->WouldOverflow() &&
      (hard || options_.unmetered == UnmeteredPolicy::kRefuse)) {
    metrics_.CountRejected("cannot_meter");
    return std::unexpected(MeterRefusal{
        503, "cannot_meter",
        Error{
            ErrorCode::kUnavailable,
            StrCat("the usage ledger cannot record this request (", ledger_->Unrecorded(),
                   " records are waiting for the disk: ", ledger_->last_error(), "); retry later"),
            ""},
        5});
  }
  const ledger::ModelPrice* price = options_.prices.For(model);
  const Microdollars worst =
      price != nullptr ? ledger::WorstCase(*price, prompt_tokens, max_tokens) : 0;
  auto reservation = budgets_.Reserve(tenant, worst, NowNs());
  if (!reservation) {
    metrics_.CountRejected("tenant_budget");
    metrics_.tenants().CountRejected(tenant, "budget");
    const std::int64_t resets = reservation.error().resets_at_ns;
    std::optional<std::int64_t> retry;
    if (resets != std::numeric_limits<std::int64_t>::max()) {
      retry = std::max<std::int64_t>(1, (resets - NowNs()) / 1'000'000'000 + 1);
    }
    return std::unexpected(
        MeterRefusal{402, "budget_exceeded",
                     Error{ErrorCode::kResourceExhausted, reservation.error().message, ""}, retry});
  }
  return std::move(*reservation);
}

void Metering::CountCost(const std::string& tenant, const std::string& model, const char* kind,
                         Microdollars amount) {
  if (amount == 0) return;
  metrics_.registry()
      .GetCounter("ember_cost_microdollars_total",
                  "Cost in micro-dollars by tenant, model and kind: input, cached_input, output "
                  "(list price), infra (machine time of requests), idle and cold_start (machine "
                  "time of no request; tenant and model empty).",
                  {{"tenant", metrics_.tenants().Label(tenant)}, {"model", model}, {"kind", kind}})
      .Inc(static_cast<double>(amount));
}

Metering::Priced Metering::Record(ledger::Reservation& reservation, ledger::UsageRecord r,
                                  std::function<void()> durable) {
  const ledger::ModelPrice* price = options_.prices.For(r.model);
  if (price != nullptr) {
    const ledger::TokenCost cost =
        ledger::PriceTokens(*price, r.prompt_tokens, r.cached_prompt_tokens, r.completion_tokens);
    r.input_cost = cost.input;
    r.cached_input_cost = cost.cached_input;
    r.output_cost = cost.output;
  }
  r.infra_cost = ledger::PriceTime(options_.prices.instance.price_per_hour, r.engine_ns);
  r.spot = options_.prices.instance.spot;
  const ledger::SoftCrossing crossed = budgets_.Settle(reservation, r.cost(), r.finished_ns);
  if (crossed.crossed()) {
    log::Warn("tenant '", crossed.tenant, "' reached its ", crossed.hard ? "hard" : "soft", " ",
              BudgetWindowName(crossed.window), " budget of $", FormatDollars(crossed.budget),
              " (spent $", FormatDollars(crossed.spent), "); it resets at ",
              ledger::FormatUtcTime(crossed.resets_at_ns));
    metrics_.registry()
        .GetCounter("ember_budget_crossings_total",
                    "Times a tenant's spending first reached its soft or hard budget in a window.",
                    {{"tenant", metrics_.tenants().Label(crossed.tenant)},
                     {"budget", crossed.hard ? "hard" : "soft"}})
        .Inc();
    if (webhook_) {
      webhook_->Post(StrCat(
          "{\"event\":\"budget_reached\",\"tenant\":", Quote(crossed.tenant), ",\"budget\":\"",
          crossed.hard ? "hard" : "soft", "\",\"window\":\"", BudgetWindowName(crossed.window),
          "\",\"budget_microdollars\":", crossed.budget, ",\"spent_microdollars\":", crossed.spent,
          ",\"resets_at\":", Quote(ledger::FormatUtcTime(crossed.resets_at_ns)), "}"));
    }
  }
  CountCost(r.tenant, r.model, "input", r.input_cost);
  CountCost(r.tenant, r.model, "cached_input", r.cached_input_cost);
  CountCost(r.tenant, r.model, "output", r.output_cost);
  CountCost(r.tenant, r.model, "infra", r.infra_cost);
  usage_records_.Inc();
  period_requests_.fetch_add(1, std::memory_order_relaxed);
  period_queue_ns_.fetch_add(r.queue_ns, std::memory_order_relaxed);
  const Priced priced{r.cost(), r.infra_cost};
  const bool wait = ledger_ && options_.sync == ledger::SyncMode::kFull && durable;
  if (ledger_ && !ledger_->Append(std::move(r), wait ? std::move(durable) : nullptr)) {
    log::Error("usage ledger buffer full: a usage record was lost");
    return priced;  // Append ran `durable` itself
  }
  if (!wait && durable) durable();
  return priced;
}

void Metering::Start(ModelManager& models) {
  models_ = &models;
  last_busy_ns_ = models.BusyNs();
  last_loading_ns_ = models.LoadingNs();
  // The time spent loading before the sampler started (start-up) belongs to the first period.
  last_loading_ns_ = 0;
  period_start_ns_ = std::min(period_start_ns_, NowNs());
  sampler_ = std::thread([this] { Sample(); });
}

void Metering::Event(std::string kind, std::string detail) {
  if (ledger_) ledger_->AppendEvent({NowNs(), std::move(kind), std::move(detail)});
}

void Metering::Sample() {
  std::unique_lock lock(mu_);
  auto next = std::chrono::steady_clock::now() + options_.interval;
  while (!stop_) {
    // KV use is sampled every second (or every period, when shorter).
    const auto tick =
        std::min<std::chrono::milliseconds>(options_.interval, std::chrono::seconds(1));
    wake_.wait_for(lock, tick, [this] { return stop_; });
    if (stop_) break;
    lock.unlock();
    for (const scheduler::SchedulerSnapshot& s : models_->Snapshots()) {
      if (s.kv_cells_total > 0) {
        kv_peak_permille_ = std::max<std::int64_t>(
            kv_peak_permille_, std::int64_t{s.kv_cells_used} * 1000 / s.kv_cells_total);
      }
    }
    if (std::chrono::steady_clock::now() >= next) {
      WriteInterval(NowNs(), false);
      next += options_.interval;
    }
    lock.lock();
  }
}

void Metering::WriteInterval(std::int64_t end_ns, bool final) {
  ledger::UsageInterval iv;
  iv.start_ns = period_start_ns_;
  iv.end_ns = std::max(end_ns, period_start_ns_);
  if (models_ != nullptr) {
    const std::int64_t busy = models_->BusyNs();
    const std::int64_t loading = models_->LoadingNs();
    iv.busy_ns = busy - last_busy_ns_;
    iv.cold_start_ns = loading - last_loading_ns_;
    last_busy_ns_ = busy;
    last_loading_ns_ = loading;
  }
  iv.requests = period_requests_.exchange(0);
  iv.queue_ns = period_queue_ns_.exchange(0);
  iv.kv_used_permille_max = kv_peak_permille_;
  kv_peak_permille_ = 0;
  iv.threads = options_.threads;
  const ledger::InstancePrice& instance = options_.prices.instance;
  iv.price_per_hour = instance.price_per_hour;
  iv.on_demand_price_per_hour = instance.on_demand_price_per_hour > 0
                                    ? instance.on_demand_price_per_hour
                                    : instance.price_per_hour;
  iv.spot = instance.spot;
  ledger::PriceInterval(iv);
  CountCost("", "", "idle", iv.idle_cost);
  CountCost("", "", "cold_start", iv.cold_start_cost);
  period_start_ns_ = iv.end_ns;
  if (ledger_ && (iv.end_ns > iv.start_ns || final)) ledger_->AppendInterval(iv);
}

void Metering::Stop(std::chrono::milliseconds deadline) {
  if (stopped_) return;
  stopped_ = true;
  {
    std::lock_guard lock(mu_);
    stop_ = true;
  }
  wake_.notify_all();
  if (sampler_.joinable()) sampler_.join();
  WriteInterval(NowNs(), true);
  if (ledger_) {
    if (Status flushed = ledger_->Flush(deadline); !flushed) {
      log::Error("usage ledger: ", flushed.error().message);
    }
    ledger_->Close(deadline);
  }
}

std::string Metering::Health() const {
  if (!ledger_ || ledger_->healthy()) return "";
  return StrCat("ledger: ", ledger_->Unrecorded(),
                " usage records not yet written, kept in memory and retried (",
                ledger_->last_error(), ")");
}

}  // namespace ember::server
