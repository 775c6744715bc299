// What step traces (SchedulerOptions::trace_steps, the console's timelines) cost the step loop:
// 32 requests decoding together through the fake engine, whose steps cost next to nothing, so
// the difference between trace_steps = 0 and 128 is the recording itself, per engine step.
// Issue 18 budgets the console at <= 1% of tok/s at c = 32.
//
//   build/release/src/scheduler/bench_trace
#include <benchmark/benchmark.h>

#include <memory>
#include <thread>
#include <variant>
#include <vector>

#include "engine/fake/fake_engine.h"
#include "scheduler/scheduler.h"

namespace ember::scheduler {
namespace {

// Takes events until the Finished one, without sleeping (so the wait adds no timer slack).
void WaitFinished(RequestStream& stream) {
  for (;;) {
    for (Event& e : stream.Take()) {
      if (std::holds_alternative<Finished>(e)) return;
    }
    std::this_thread::yield();
  }
}

// One iteration: `parallel` requests of 8 prompt tokens and 64 output tokens, run to the end
// together. Reports time per engine step (64 decode steps + 1 prefill step).
void BM_Steps(benchmark::State& state) {
  const int trace_steps = static_cast<int>(state.range(0));
  const int parallel = 32;
  auto engine = std::make_unique<engine::FakeEngine>(
      engine::FakeEngineOptions{.parallel = parallel, .ctx_per_seq = 128, .batch_size = 512});
  engine::FakeEngine* fake = engine.get();
  FakeClock clock;
  auto scheduler = Scheduler::Create({.queue_size = 1024, .trace_steps = trace_steps},
                                     std::move(engine), nullptr, clock)
                       .value();
  for (auto _ : state) {
    std::vector<std::shared_ptr<RequestStream>> streams;
    for (int i = 0; i < parallel; ++i) {
      GenerateRequest r;
      r.prompt = fake->tokenizer().Tokenize("abcdefgh", false).value();
      r.max_tokens = 64;
      r.arrival = clock.Now();
      r.id = "chatcmpl-0123456789abcdef0123456789";
      auto stream = std::make_shared<RequestStream>();
      if (!scheduler->Submit(std::move(r), stream)) state.SkipWithError("submit refused");
      streams.push_back(std::move(stream));
    }
    for (auto& s : streams) WaitFinished(*s);
  }
  state.SetItemsProcessed(state.iterations() * parallel * 64);  // output tokens
}
BENCHMARK(BM_Steps)->Arg(0)->Arg(128)->Unit(benchmark::kMillisecond)->UseRealTime();

}  // namespace
}  // namespace ember::scheduler

BENCHMARK_MAIN();
