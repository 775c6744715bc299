// Admission cost: what tenancy adds to every request before it reaches the scheduler. One
// iteration = Authenticate (SHA-256 of the key, hash lookup, constant-time compare) + Admit
// (requests/min, concurrency, queue) + Reserve (input and output tokens/min) + Started +
// Settle (refund) for a tenant with every limit set, among `range(0)` configured tenants.
//   build/release/src/tenancy/admission_bench [--benchmark_repetitions=5]
#include <benchmark/benchmark.h>

#include <string>

#include "common/sha256.h"
#include "tenancy/tenancy.h"

namespace ember::tenancy {
namespace {

Config ManyTenants(int n) {
  Config c;
  for (int i = 0; i < n; ++i) {
    Tenant t;
    t.name = "tenant-" + std::to_string(i);
    // Limits high enough that the loop never runs dry: the cost measured is the full path.
    t.limits.rpm = 1'000'000'000;
    t.limits.input_tpm = 1'000'000'000'000;
    t.limits.output_tpm = 1'000'000'000'000;
    t.limits.max_concurrent = 1'000'000;
    t.limits.max_queued = 1'000'000;
    t.limits.max_tokens = 4096;
    t.model_limits["m"].output_tpm = 1'000'000'000'000;
    c.tenants.push_back(t);
    c.keys.push_back({"key_" + std::to_string(100000000000 + i), t.name,
                      Sha256Hex("ek_key_of_tenant_" + std::to_string(i)), 1});
  }
  return c;
}

void BM_Admission(benchmark::State& state) {
  const int tenants = static_cast<int>(state.range(0));
  Tenancy tenancy(Clock::Real());
  tenancy.Apply(ManyTenants(tenants));
  const std::string header = "Bearer ek_key_of_tenant_" + std::to_string(tenants / 2);
  for (auto _ : state) {
    auto caller = tenancy.Authenticate(header);
    auto grant = tenancy.Admit(*caller, "m");
    auto refused = (*grant)->Reserve(200, 256);
    (*grant)->Started();
    (*grant)->Settle(100);
    benchmark::DoNotOptimize(refused);
  }
}
BENCHMARK(BM_Admission)->Arg(1)->Arg(100)->Arg(10000);

// The same without the key's SHA-256: the lookup and limit bookkeeping alone.
void BM_AdmitReserveSettle(benchmark::State& state) {
  Tenancy tenancy(Clock::Real());
  tenancy.Apply(ManyTenants(100));
  auto caller = *tenancy.Authenticate("Bearer ek_key_of_tenant_50");
  for (auto _ : state) {
    auto grant = tenancy.Admit(caller, "m");
    auto refused = (*grant)->Reserve(200, 256);
    (*grant)->Settle(100);
    benchmark::DoNotOptimize(refused);
  }
}
BENCHMARK(BM_AdmitReserveSettle);

}  // namespace
}  // namespace ember::tenancy

BENCHMARK_MAIN();
