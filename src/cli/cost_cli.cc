#include "cli/cost_cli.h"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <iostream>
#include <optional>
#include <string>
#include <vector>

#include "common/error.h"
#include "common/log.h"
#include "ledger/advise.h"
#include "ledger/prices.h"
#include "ledger/report.h"
#include "ledger/store.h"

namespace ember::cli {

struct CostCommands::Flags {
  CLI::App* cost = nullptr;
  CLI::App *report = nullptr, *advise = nullptr;
  std::string data_dir;
  std::string since, until, by, format = "table", tenant, model, key;
  std::string window = "7d", instances, prices;
  int replicas = 1;
};

namespace {

int Usage(const std::string& message) {
  std::fprintf(stderr, "ember: %s\n", message.c_str());
  return 2;
}
int Failed(const std::string& message) {
  std::fprintf(stderr, "ember: %s\n", message.c_str());
  return 1;
}

std::int64_t NowNs() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

Result<std::unique_ptr<ledger::Store>> OpenLedger(const std::string& data_dir) {
  const std::filesystem::path file = std::filesystem::path(data_dir) / "ledger.sqlite";
  auto store = ledger::Store::OpenReadOnly(file);
  if (!store && store.error().code == ErrorCode::kNotFound) {
    return std::unexpected(Error{ErrorCode::kNotFound,
                                 StrCat("no usage ledger at ", file.string(),
                                        " (ember serve --data-dir ", data_dir, " writes one)"),
                                 ""});
  }
  return store;
}

int RunReport(const CostCommands::Flags& f) {
  const std::int64_t now = NowNs();
  ledger::Filter filter;
  if (!f.since.empty()) {
    auto t = ledger::ParseTimeArg(f.since, now);
    if (!t) return Usage(StrCat("--since: ", t.error().message));
    filter.since_ns = *t;
  }
  if (!f.until.empty()) {
    auto t = ledger::ParseTimeArg(f.until, now);
    if (!t) return Usage(StrCat("--until: ", t.error().message));
    filter.until_ns = *t;
  }
  if (!f.tenant.empty()) filter.tenant = f.tenant;
  if (!f.model.empty()) filter.model = f.model;
  if (!f.key.empty()) filter.key_id = f.key;
  auto by = ledger::ParseGroupBy(f.by);
  if (!by) return Usage(StrCat("--by: ", by.error().message));
  auto store = OpenLedger(f.data_dir);
  if (!store) return Failed(store.error().message);
  auto report = ledger::BuildReport(**store, filter, *by);
  if (!report) return Failed(report.error().message);
  if (f.format == "json") {
    std::cout << ledger::ReportJson(*report) << "\n";
  } else if (f.format == "csv") {
    std::cout << ledger::ReportCsv(*report);
  } else {
    std::cout << ledger::ReportTable(*report);
  }
  std::cout << std::flush;
  return 0;
}

// The value of "NAME=" in a start event's detail ("ember 0.1.0 threads=2 idle_unload_ms=0").
std::optional<std::int64_t> DetailField(const std::string& detail, const std::string& name) {
  const std::size_t at = detail.find(" " + name + "=");
  if (at == std::string::npos) return std::nullopt;
  return std::strtoll(detail.c_str() + at + name.size() + 2, nullptr, 10);
}

std::int64_t Percentile(std::vector<std::int64_t> v, int pct) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  return v[std::min(v.size() - 1, v.size() * static_cast<std::size_t>(pct) / 100)];
}

int RunAdvise(const CostCommands::Flags& f) {
  const std::int64_t now = NowNs();
  auto since = ledger::ParseTimeArg(f.window, now);
  if (!since) return Usage(StrCat("--window: ", since.error().message));
  ledger::AdviseInput in;
  in.window_ns = now - *since;
  in.replicas = f.replicas;
  if (!f.instances.empty()) {
    auto offers = ledger::LoadInstanceTable(f.instances);
    if (!offers) return Failed(offers.error().message);
    in.offers = std::move(*offers);
  }
  if (!f.prices.empty()) {
    auto prices = ledger::LoadPrices(f.prices);
    if (!prices) return Failed(prices.error().message);
    in.prices = std::move(*prices);
  }
  auto store = OpenLedger(f.data_dir);
  if (!store) return Failed(store.error().message);
  auto intervals = (*store)->Intervals(*since, now);
  if (!intervals) return Failed(intervals.error().message);
  in.intervals = std::move(*intervals);
  if (in.intervals.empty()) {
    return Failed(StrCat("the ledger has no utilization records in the last ", f.window,
                         " (a server writes one per --ledger-interval)"));
  }
  // What the server ran with: the price in force and its last start's configuration.
  const ledger::UsageInterval& last = in.intervals.back();
  if (f.prices.empty()) {
    in.prices.instance.price_per_hour = last.price_per_hour;
    in.prices.instance.on_demand_price_per_hour = last.on_demand_price_per_hour;
    in.prices.instance.spot = last.spot;
  }
  in.threads = last.threads;
  if (auto events = (*store)->Events(0, now)) {
    for (const ledger::MachineEvent& e : *events) {
      if (e.kind != "start") continue;
      if (auto v = DetailField(e.detail, "idle_unload_ms")) in.idle_unload_enabled = *v > 0;
      if (auto v = DetailField(e.detail, "drain_timeout_ms")) in.drain_timeout_ns = *v * 1'000'000;
    }
  }
  ledger::Filter filter;
  filter.since_ns = *since;
  auto records = (*store)->Records(filter);
  if (!records) return Failed(records.error().message);
  std::vector<std::int64_t> queue, latency;
  std::vector<std::pair<std::int64_t, int>> edges;  // +1 at admission, -1 at the end
  for (const ledger::UsageRecord& r : *records) {
    ++in.requests;
    in.prompt_tokens += r.prompt_tokens;
    in.completion_tokens += r.completion_tokens;
    queue.push_back(r.queue_ns);
    latency.push_back(r.finished_ns - r.arrival_ns);
    if (r.admitted_ns > 0) {
      edges.emplace_back(r.admitted_ns, 1);
      edges.emplace_back(r.finished_ns, -1);
    }
  }
  std::sort(edges.begin(), edges.end());
  std::int64_t running = 0;
  for (const auto& [at, delta] : edges) {
    running += delta;
    in.max_concurrent_seen = std::max(in.max_concurrent_seen, running);
  }
  in.queue_ns_p50 = Percentile(queue, 50);
  in.queue_ns_p95 = Percentile(queue, 95);
  in.latency_ns_p95 = Percentile(latency, 95);
  const std::vector<ledger::Recommendation> advice = ledger::Advise(in);
  std::cout << (f.format == "json" ? ledger::AdviceJson(advice) + "\n" : ledger::AdviceText(advice))
            << std::flush;
  return 0;
}

}  // namespace

CostCommands::CostCommands(CLI::App& app) : flags_(std::make_unique<Flags>()) {
  Flags& f = *flags_;
  f.cost = app.add_subcommand("cost", "Where the money went, and how to spend less (the ledger)");
  f.cost->require_subcommand(1);
  f.report = f.cost->add_subcommand(
      "report", "Usage and cost from the ledger, grouped by tenant, model, key and/or day");
  f.advise = f.cost->add_subcommand(
      "advise", "Recommendations to spend less, from the ledger's utilization records");
  for (CLI::App* cmd : {f.report, f.advise}) {
    cmd->add_option("--data-dir", f.data_dir, "The server's data directory (its ledger.sqlite)")
        ->envname("EMBER_DATA_DIR");
  }
  f.report->add_option("--since", f.since,
                       "From (inclusive): 2026-12-01, 2026-12-01T10:00:00Z, unix seconds, or "
                       "7d / 24h / 30m ago");
  f.report->add_option("--until", f.until, "To (exclusive), same forms as --since");
  f.report->add_option("--by", f.by, "Group by any of tenant,model,key,day (comma-separated)");
  f.report->add_option("--format", f.format, "table, csv or json")
      ->check(CLI::IsMember({"table", "csv", "json"}));
  f.report->add_option("--tenant", f.tenant, "Only this tenant");
  f.report->add_option("--model", f.model, "Only this model");
  f.report->add_option("--key", f.key, "Only this API key id");
  f.advise->add_option("--window", f.window, "How far back to look: 7d, 24h, ...");
  f.advise->add_option("--instances", f.instances,
                       "Instance price table (TOML; docs/examples/instances.toml is a sample)");
  f.advise->add_option("--prices", f.prices, "The server's prices file (its instance price)")
      ->envname("EMBER_PRICES");
  f.advise->add_option("--replicas", f.replicas, "Replicas serving this traffic")
      ->check(CLI::Range(1, 100000));
  f.advise->add_option("--format", f.format, "table (text) or json")
      ->check(CLI::IsMember({"table", "text", "json"}));
}

CostCommands::~CostCommands() = default;

bool CostCommands::Selected() const { return flags_->cost->parsed(); }

int CostCommands::Run() {
  if (flags_->data_dir.empty()) {
    return Usage(
        "cost needs --data-dir DIR (or EMBER_DATA_DIR): the directory `ember serve` "
        "keeps its ledger in (DIR/ledger.sqlite)");
  }
  if (flags_->report->parsed()) return RunReport(*flags_);
  return RunAdvise(*flags_);
}

}  // namespace ember::cli
