// What metering adds to one request on its path (issue 14's target: <= 50 us p99): Reserve (the
// tenant's hard budget, worst case at list price) at admission and Record at the completion point
// (price the tokens and the engine time, settle the budget, count the cost metrics, queue the
// record for the ledger's writer thread, which commits it to SQLite in the background). Each
// iteration is timed on its own; p50/p99 are reported as counters, in nanoseconds.
//   build/release/src/server/bench_metering [--benchmark_repetitions=3]
#include <benchmark/benchmark.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <string>
#include <vector>

#include "common/log.h"
#include "ledger/prices.h"
#include "server/metering.h"
#include "server/server_metrics.h"
#include "tenancy/config.h"

namespace ember::server {
namespace {

void BM_MeterOneRequest(benchmark::State& state) {
  const bool with_ledger = state.range(0) != 0;
  const std::filesystem::path dir = std::filesystem::temp_directory_path() /
                                    ("ember_bench_metering_" + std::to_string(::getpid()));
  std::filesystem::remove_all(dir);
  static ServerMetrics metrics;
  MeteringOptions options;
  auto prices = ledger::ParsePrices(
      "[models.\"m\"]\ninput_per_mtok = 0.15\noutput_per_mtok = 0.60\n"
      "[instance]\nprice_per_hour = 3.06\n",
      "prices.toml");
  if (!prices) return state.SkipWithError(prices.error().message.c_str());
  options.prices = std::move(*prices);
  if (with_ledger) options.ledger_file = dir / "ledger.sqlite";
  // The loop appends far faster than any server completes requests (and than the writer
  // commits): a buffer that holds them all, so every iteration takes the full path.
  options.max_buffered = 1'000'000;
  auto created = Metering::Create(options, metrics);
  if (!created) return state.SkipWithError(created.error().message.c_str());
  auto metering = std::move(*created);
  tenancy::Config tenants;
  tenancy::Tenant t;
  t.name = "acme";
  t.hard_budget = 1'000'000'000'000;  // never reached: the full reserve/settle path
  tenants.tenants.push_back(t);
  metering->ApplyTenants(tenants);
  std::vector<std::int64_t> ns;
  ns.reserve(1 << 20);
  std::int64_t i = 0;
  for (auto _ : state) {
    const auto start = std::chrono::steady_clock::now();
    auto reservation = metering->Reserve("acme", "m", 120, 64);
    if (!reservation) return state.SkipWithError(reservation.error().error.message.c_str());
    ledger::UsageRecord r;
    r.request_id = StrCat("cmpl-bench-", i++);
    r.tenant = "acme";
    r.key_id = "key_0123456789ab";
    r.model = "m";
    r.endpoint = "/v1/completions";
    r.outcome = "finished";
    r.finish_reason = "length";
    r.http_status = 200;
    r.prompt_tokens = 120;
    r.completion_tokens = 64;
    r.engine_ns = 25'000'000;
    r.finished_ns = Metering::NowNs();
    metering->Record(*reservation, std::move(r));
    ns.push_back(std::chrono::duration_cast<std::chrono::nanoseconds>(
                     std::chrono::steady_clock::now() - start)
                     .count());
  }
  std::sort(ns.begin(), ns.end());
  if (!ns.empty()) {
    state.counters["p50_ns"] = static_cast<double>(ns[ns.size() / 2]);
    state.counters["p99_ns"] = static_cast<double>(ns[ns.size() * 99 / 100]);
    state.counters["max_ns"] = static_cast<double>(ns.back());
  }
  metering->Stop(std::chrono::seconds(30));
  std::filesystem::remove_all(dir);
}
BENCHMARK(BM_MeterOneRequest)->Arg(0)->Arg(1)->ArgName("ledger")->Iterations(200'000);

}  // namespace
}  // namespace ember::server

BENCHMARK_MAIN();
