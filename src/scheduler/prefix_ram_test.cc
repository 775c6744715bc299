// The prefix cache's RAM tier through the scheduler, with the fake engine: prompts that no slot
// holds any more come back from host memory, cached_tokens says exactly what was restored, and
// the tier keeps its bound, its tenancy scopes and the deterministic-cells rule.
#include <gtest/gtest.h>

#include <mutex>

#include "engine/fake/fake_engine.h"
#include "scheduler/collect_test_util.h"
#include "scheduler/scheduler.h"

namespace ember::scheduler {
namespace {

using engine::FakeEngine;
using engine::FakeEngineOptions;
using namespace std::chrono_literals;

class StoreObserver final : public SchedulerObserver {
 public:
  void OnPrefixLookup(int /*prompt*/, int reused, bool /*copied*/, bool restored) override {
    std::lock_guard lock(mu_);
    if (restored && reused > 0) ++ram_hits_;
  }
  void OnPrefixStore(std::uint64_t bytes, int entries, int evicted) override {
    std::lock_guard lock(mu_);
    max_bytes_ = std::max(max_bytes_, bytes);
    bytes_ = bytes;
    entries_ = entries;
    evicted_ += evicted;
  }
  int ram_hits() const {
    std::lock_guard lock(mu_);
    return ram_hits_;
  }
  std::uint64_t max_bytes() const {
    std::lock_guard lock(mu_);
    return max_bytes_;
  }
  std::uint64_t bytes() const {
    std::lock_guard lock(mu_);
    return bytes_;
  }
  int evicted() const {
    std::lock_guard lock(mu_);
    return evicted_;
  }

 private:
  mutable std::mutex mu_;
  int ram_hits_ = 0;
  std::uint64_t max_bytes_ = 0;
  std::uint64_t bytes_ = 0;
  int entries_ = 0;
  int evicted_ = 0;
};

// Prompt i of 41 tokens: 40 that differ from every other prompt's at the first, then "?".
std::string Prompt(int i) {
  return std::string(1, static_cast<char>('A' + i)) + std::string(39, '.') + "?";
}

class PrefixRamTest : public ::testing::Test {
 protected:
  void Start(SchedulerOptions options, int parallel = 2) {
    auto engine = std::make_unique<FakeEngine>(
        FakeEngineOptions{.parallel = parallel, .step_delay = 1ms, .cell_bytes = 100});
    engine_ = engine.get();
    scheduler_ = Scheduler::Create(options, std::move(engine), &observer_, clock_).value();
  }
  // Runs prompt i to completion (3 output tokens) and returns what its client saw.
  Collected Run(int i, std::string tenant = "", bool deterministic = false) {
    GenerateRequest r = MakeRequest(*engine_, Prompt(i), 3, clock_.Now());
    r.tenant.id = std::move(tenant);
    r.sampling.deterministic = deterministic;
    return Wait(*SubmitAccepted(*scheduler_, std::move(r)));
  }

  FakeClock clock_;
  StoreObserver observer_;
  FakeEngine* engine_ = nullptr;
  std::unique_ptr<Scheduler> scheduler_;
};

TEST_F(PrefixRamTest, PromptsNoSlotHoldsAnyMoreComeBackFromHostMemory) {
  Start({.prefix_cache_bytes = 1 << 20});
  for (int i = 0; i < 6; ++i) EXPECT_EQ(Run(i).finished->usage.cached_tokens, 0);
  // Two slots hold the last two prompts; the other four were saved before being overwritten.
  for (int i = 0; i < 6; ++i) {
    Collected c = Run(i);
    ASSERT_FALSE(c.finished->error);
    // All of the prompt but its last token, whose logits give the first output token.
    EXPECT_EQ(c.finished->usage.cached_tokens, 40) << "prompt " << i;
    EXPECT_EQ(c.text, "abc");
  }
  EXPECT_GE(observer_.ram_hits(), 4);
  // A restored request computed only its last prompt token: one prefill entry of one token at
  // position 40.
  bool saw_restored_prefill = false;
  for (const auto& batch : engine_->Batches()) {
    for (const auto& e : batch) {
      if (e.pos == 40 && e.n_tokens == 1 && e.sample) saw_restored_prefill = true;
    }
  }
  EXPECT_TRUE(saw_restored_prefill);
}

TEST_F(PrefixRamTest, WithoutTheTierTheSamePromptsAreRecomputed) {
  Start({.prefix_cache_bytes = 0});
  for (int i = 0; i < 6; ++i) Run(i);
  EXPECT_EQ(Run(0).finished->usage.cached_tokens, 0);
  EXPECT_TRUE(engine_->Saves().empty());
}

TEST_F(PrefixRamTest, TheTierStaysWithinItsBytesAndEvicts) {
  // A saved slot holds 43 cells (41 prompt + 2 fed outputs) of 100 bytes: room for two.
  Start({.prefix_cache_bytes = 9000});
  for (int i = 0; i < 8; ++i) Run(i);
  EXPECT_LE(observer_.max_bytes(), 9000u);
  EXPECT_GT(observer_.max_bytes(), 0u);
  EXPECT_GE(observer_.evicted(), 2);
  // The oldest prompts were evicted: recomputed in full.
  EXPECT_EQ(Run(0).finished->usage.cached_tokens, 0);
  EXPECT_GT(observer_.bytes(), 0u);
  scheduler_.reset();  // an unloaded model's tier is gone, and its gauge says so
  EXPECT_EQ(observer_.bytes(), 0u);
}

TEST_F(PrefixRamTest, AnotherTenantsSavedPrefixIsNotRestored) {
  Start({.prefix_cache_bytes = 1 << 20});
  for (int i = 0; i < 4; ++i) Run(i, "acme");
  EXPECT_EQ(Run(0, "globex").finished->usage.cached_tokens, 0);
  EXPECT_EQ(Run(1, "acme").finished->usage.cached_tokens, 40);
}

TEST_F(PrefixRamTest, SharingAllRestoresAcrossTenants) {
  Start({.prefix_share = PrefixShare::kAll, .prefix_cache_bytes = 1 << 20});
  for (int i = 0; i < 4; ++i) Run(i, "acme");
  EXPECT_EQ(Run(0, "globex").finished->usage.cached_tokens, 40);
}

TEST_F(PrefixRamTest, ADeterministicRequestRestoresOnlyCellsDeterministicStepsComputed) {
  Start({.prefix_cache_bytes = 1 << 20});
  Run(0);                              // default numerics
  Run(1, "", /*deterministic=*/true);  // batch-invariant cells
  for (int i = 2; i < 5; ++i) Run(i);  // both are pushed out of the slots into the tier
  EXPECT_EQ(Run(0, "", true).finished->usage.cached_tokens, 0);
  Collected c = Run(1, "", true);
  EXPECT_EQ(c.finished->usage.cached_tokens, 40);
  EXPECT_EQ(c.text, "abc");
}

}  // namespace
}  // namespace ember::scheduler
