// The ledger's throughput (issue 14's target: >= 50,000 records/s sustained through the writer
// thread into SQLite) and the cost of one Append on the request path (well under 1 us).
//
//   build/release/src/ledger/bench_ledger
#include <benchmark/benchmark.h>
#include <stdlib.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <string>
#include <vector>

#include "ledger/ledger.h"

namespace ember::ledger {
namespace {

namespace fs = std::filesystem;

// A record with the field sizes a server writes: a chatcmpl- id, a tenant, a key id, a
// Hugging Face style model name, and realistic counts and costs.
UsageRecord Realistic(std::uint64_t n) {
  char id[48];
  std::snprintf(id, sizeof id, "chatcmpl-%024llx",
                static_cast<unsigned long long>(n * 2654435761u));
  UsageRecord r;
  r.request_id = id;
  r.tenant = n % 3 == 0 ? "acme-corp" : "research-team-7";
  r.key_id = "key_" + std::to_string(n % 17) + "a81f0c2e";
  r.model = n % 2 == 0 ? "meta-llama/Llama-3.1-8B-Instruct" : "stories260K";
  r.endpoint = "/v1/chat/completions";
  r.outcome = "finished";
  r.finish_reason = n % 5 == 0 ? "length" : "stop";
  r.http_status = 200;
  const std::int64_t t = 1'800'000'000'000'000'000 + static_cast<std::int64_t>(n) * 1'000'000;
  r.arrival_ns = t;
  r.admitted_ns = t + 2'000'000;
  r.first_token_ns = t + 40'000'000;
  r.finished_ns = t + 900'000'000;
  r.prompt_tokens = 512 + static_cast<std::int64_t>(n % 1000);
  r.cached_prompt_tokens = 256;
  r.completion_tokens = 128 + static_cast<std::int64_t>(n % 300);
  r.queue_ns = 2'000'000;
  r.engine_ns = 850'000'000;
  r.input_cost = 77;
  r.cached_input_cost = 13;
  r.output_cost = 154;
  r.infra_cost = 41;
  return r;
}

fs::path MakeTempDir() {
  std::string pattern = (fs::temp_directory_path() / "ember_ledger_bench.XXXXXX").string();
  if (mkdtemp(pattern.data()) == nullptr) return {};
  return pattern;
}

// Appends state.range(0) records as fast as one thread can, then flushes: records/s committed.
void Sustained(benchmark::State& state, SyncMode sync) {
  const auto n = static_cast<std::size_t>(state.range(0));
  std::uint64_t next_id = 0;
  std::int64_t commits = 0;
  for (auto _ : state) {
    state.PauseTiming();
    const fs::path dir = MakeTempDir();
    auto store = Store::Open(dir / "ledger.db", sync);
    if (!store) {
      state.SkipWithError(store.error().message.c_str());
      break;
    }
    std::vector<UsageRecord> records;
    records.reserve(n);
    for (std::size_t i = 0; i < n; ++i) records.push_back(Realistic(next_id++));
    LedgerOptions options;     // the default 100 ms commit interval
    options.max_buffered = n;  // the appending thread outruns any disk: hold the whole run
    auto ledger = std::make_unique<Ledger>(std::move(*store), options);
    state.ResumeTiming();

    for (auto& r : records) ledger->Append(std::move(r));
    auto flushed = ledger->Flush(std::chrono::minutes(5));

    state.PauseTiming();
    commits += ledger->commits_total();
    const bool all = ledger->records_written_total() == static_cast<std::int64_t>(n);
    ledger.reset();
    fs::remove_all(dir);
    if (!flushed || !all) {
      state.SkipWithError("not every record was written");
      break;
    }
    state.ResumeTiming();
  }
  state.SetItemsProcessed(state.iterations() * state.range(0));
  state.counters["commits"] =
      benchmark::Counter(static_cast<double>(commits), benchmark::Counter::kAvgIterations);
}

void BM_LedgerSustained(benchmark::State& state) { Sustained(state, SyncMode::kNormal); }
void BM_LedgerSustainedFull(benchmark::State& state) { Sustained(state, SyncMode::kFull); }
BENCHMARK(BM_LedgerSustained)->Arg(200'000)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_LedgerSustainedFull)->Arg(200'000)->Unit(benchmark::kMillisecond)->UseRealTime();

// One Append as an HTTP thread makes it, with the writer committing in the background.
void BM_LedgerAppend(benchmark::State& state) {
  const fs::path dir = MakeTempDir();
  auto store = Store::Open(dir / "ledger.db", SyncMode::kNormal);
  if (!store) {
    state.SkipWithError(store.error().message.c_str());
    return;
  }
  LedgerOptions options;
  options.max_buffered = 1'000'000;
  Ledger ledger(std::move(*store), options);
  constexpr std::size_t kBatch = 1 << 15;
  std::vector<UsageRecord> records;
  std::uint64_t next_id = 0;
  std::size_t used = kBatch;
  for (auto _ : state) {
    if (used == kBatch) {  // new records (and let the writer catch up) outside the timing
      state.PauseTiming();
      (void)ledger.Flush(std::chrono::minutes(1));
      records.clear();
      for (std::size_t i = 0; i < kBatch; ++i) records.push_back(Realistic(next_id++));
      used = 0;
      state.ResumeTiming();
    }
    benchmark::DoNotOptimize(ledger.Append(std::move(records[used++])));
  }
  state.SetItemsProcessed(state.iterations());
  ledger.Close(std::chrono::minutes(1));
  fs::remove_all(dir);
}
BENCHMARK(BM_LedgerAppend);

}  // namespace
}  // namespace ember::ledger

BENCHMARK_MAIN();
