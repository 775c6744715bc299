// The fair queue's share of admission cost: one request pushed and one picked, with a steady
// backlog of `waiting` requests spread over `tenants` tenants (issue 13 budgets the whole
// admission path, key lookup and limits included, at 5 us per request).
//
//   build/release/src/scheduler/bench_admission
#include <benchmark/benchmark.h>

#include <memory>
#include <string>
#include <vector>

#include "scheduler/fair_queue.h"

namespace ember::scheduler {
namespace {

struct Item {
  int tenant = 0;
};

void BM_PushAndPick(benchmark::State& state) {
  const int waiting = static_cast<int>(state.range(0));
  const int tenants = static_cast<int>(state.range(1));
  std::vector<TenantTag> tags;
  for (int t = 0; t < tenants; ++t) {
    // Realistic ids (longer than the short-string buffer) and mixed weights.
    tags.push_back(TenantTag{"tenant-" + std::to_string(t) + "-0123456789", 1.0 + t % 4, 0});
  }
  FairQueue<std::unique_ptr<Item>> queue;
  std::uint64_t order = 0;
  for (int i = 0; i < waiting; ++i) {
    queue.Push(tags[i % tenants], order++, std::make_unique<Item>(Item{i % tenants}));
  }
  int next = 0;
  for (auto _ : state) {
    const int t = next++ % tenants;
    queue.Push(tags[t], order++, std::make_unique<Item>(Item{t}));
    std::unique_ptr<Item> item = queue.Pop();
    const TenantTag& tag = tags[item->tenant];
    queue.Charge(tag, 200, 100);  // what a served request adds
    queue.Done(tag);
    benchmark::DoNotOptimize(item);
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_PushAndPick)->Args({1000, 100})->Args({1000, 10})->Args({10000, 1000});

}  // namespace
}  // namespace ember::scheduler
