// Fair share, priority classes and preemption through the Scheduler with the fake engine.
// FairQueue's arithmetic has its own tests (fair_queue_test.cc); these check that admission,
// prompt chunking and preemption follow it in a running scheduler.
#include <gtest/gtest.h>

#include <algorithm>
#include <map>
#include <mutex>
#include <thread>

#include "engine/fake/fake_engine.h"
#include "scheduler/collect_test_util.h"
#include "scheduler/scheduler.h"

namespace ember::scheduler {
namespace {

using engine::FakeEngine;
using engine::FakeEngineOptions;
using engine::FinishReason;
using namespace std::chrono_literals;

class Recorder final : public SchedulerObserver {
 public:
  void OnAdmitted(const GenerateRequest& request, std::chrono::nanoseconds) override {
    std::lock_guard lock(mu_);
    admitted_.push_back(request.tenant.id);
  }
  void OnPreempted(const TenantTag& tenant) override {
    std::lock_guard lock(mu_);
    preempted_.push_back(tenant.id);
  }
  std::vector<std::string> admitted() const {
    std::lock_guard lock(mu_);
    return admitted_;
  }
  std::vector<std::string> preempted() const {
    std::lock_guard lock(mu_);
    return preempted_;
  }

 private:
  mutable std::mutex mu_;
  std::vector<std::string> admitted_;
  std::vector<std::string> preempted_;
};

// The admissions after the first `skip`, as a string of tenant ids (one letter each).
std::string Order(const std::vector<std::string>& admitted, std::size_t skip) {
  std::string out;
  for (std::size_t i = skip; i < admitted.size(); ++i) out += admitted[i];
  return out;
}

class FairShareTest : public ::testing::Test {
 protected:
  void Start(FakeEngineOptions engine_options, SchedulerOptions options = {}) {
    auto engine = std::make_unique<FakeEngine>(engine_options);
    engine_ = engine.get();
    scheduler_ = Scheduler::Create(options, std::move(engine), &recorder_, clock_).value();
  }
  GenerateRequest Request(std::string tenant, std::string prompt, int max_tokens, int priority = 0,
                          double weight = 1.0) {
    GenerateRequest r = MakeRequest(*engine_, prompt, max_tokens, clock_.Now());
    r.tenant = TenantTag{std::move(tenant), weight, priority};
    return r;
  }
  // "bcd" behind a first byte no other prompt or output has: no prompt-cache hits, which
  // would make requests' prompt charges differ with timing.
  std::string Distinct() { return std::string(1, static_cast<char>(128 + distinct_++)) + "bcd"; }
  std::shared_ptr<RequestStream> Submit(GenerateRequest r) {
    return SubmitAccepted(*scheduler_, std::move(r));
  }
  // Fills every slot with a long interactive request of tenant "z", so that what is submitted
  // next queues up; Release() lets it all through at once.
  void Block(int slots) {
    for (int i = 0; i < slots; ++i) blockers_.push_back(Submit(Request("z", "a", 4000)));
    while (scheduler_->Snapshot().running < slots) std::this_thread::sleep_for(1ms);
  }
  void Release() {
    for (auto& b : blockers_) scheduler_->Cancel(b);
  }
  void WaitAll(std::vector<std::shared_ptr<RequestStream>>& streams) {
    for (auto& s : streams) ASSERT_TRUE(Wait(*s).finished);
  }

  FakeClock clock_;
  Recorder recorder_;
  FakeEngine* engine_ = nullptr;
  std::unique_ptr<Scheduler> scheduler_;
  std::vector<std::shared_ptr<RequestStream>> blockers_;
  int distinct_ = 0;
};

TEST_F(FairShareTest, EqualWeightsInterleaveUnderAFloodFromOneTenant) {
  Start({.parallel = 1, .ctx_per_seq = 8192, .step_delay = 200us});
  Block(1);
  std::vector<std::shared_ptr<RequestStream>> streams;
  for (int i = 0; i < 10; ++i) streams.push_back(Submit(Request("a", Distinct(), 4)));
  for (int i = 0; i < 5; ++i) streams.push_back(Submit(Request("b", Distinct(), 4)));
  Release();
  WaitAll(streams);
  EXPECT_EQ(Order(recorder_.admitted(), 1),
            "ababababab"
            "aaaaa");
}

TEST_F(FairShareTest, DoubleWeightIsServedTwiceTheTokens) {
  Start({.parallel = 2, .ctx_per_seq = 8192, .step_delay = 200us});
  Block(2);
  std::vector<std::shared_ptr<RequestStream>> streams;
  for (int i = 0; i < 30; ++i) {
    streams.push_back(Submit(Request("a", Distinct(), 8, 0, 2.0)));
    streams.push_back(Submit(Request("b", Distinct(), 8, 0, 1.0)));
  }
  Release();
  WaitAll(streams);
  // Every request is served the same tokens, so tokens served while both tenants were
  // backlogged go as the admissions: the first 30 of 60.
  const std::string order = Order(recorder_.admitted(), 2).substr(0, 30);
  const auto a = std::count(order.begin(), order.end(), 'a');
  const auto b = std::count(order.begin(), order.end(), 'b');
  EXPECT_NEAR(1.0 * a / b, 2.0, 0.3) << order;
}

TEST_F(FairShareTest, NewcomerIsNeitherStarvedNorGivenABankedBurst) {
  Start({.parallel = 1, .ctx_per_seq = 8192, .step_delay = 200us});
  std::vector<std::shared_ptr<RequestStream>> streams;
  for (int i = 0; i < 24; ++i) streams.push_back(Submit(Request("a", Distinct(), 6)));
  while (recorder_.admitted().size() < 8) std::this_thread::sleep_for(1ms);
  const std::size_t before = recorder_.admitted().size();
  for (int i = 0; i < 6; ++i) streams.push_back(Submit(Request("b", Distinct(), 6)));
  WaitAll(streams);
  const std::string order = Order(recorder_.admitted(), 0);
  const std::size_t first_b = order.find('b');
  // Not starved: b waits for a's running request, and at most one more of a's on a tie (plus
  // one admission for the race between reading `before` and submitting).
  EXPECT_LE(first_b, before + 2) << order;
  // No burst: a's counter had grown while b asked for nothing; b starts level with it, so the
  // two alternate instead of b taking six admissions in a row.
  const std::string window = order.substr(first_b, 6);
  EXPECT_EQ(std::count(window.begin(), window.end(), 'b'), 3) << order;
}

TEST_F(FairShareTest, InteractiveClassIsAdmittedStrictlyBeforeBatch) {
  Start({.parallel = 1, .ctx_per_seq = 8192, .step_delay = 200us});
  Block(1);
  std::vector<std::shared_ptr<RequestStream>> streams;
  for (int i = 0; i < 4; ++i) streams.push_back(Submit(Request("x", Distinct(), 4, 1, 100.0)));
  for (int i = 0; i < 4; ++i) streams.push_back(Submit(Request("i", Distinct(), 4, 0)));
  Release();
  WaitAll(streams);
  EXPECT_EQ(Order(recorder_.admitted(), 1), "iiiixxxx");
  EXPECT_TRUE(recorder_.preempted().empty()) << "the interactive blocker is never preempted";
}

TEST_F(FairShareTest, PromptBudgetGoesFirstToTheTenantServedLeast) {
  Start({.parallel = 3, .ctx_per_seq = 1024, .batch_size = 16, .step_delay = 1ms});
  auto running = Submit(Request("h", "a", 900));  // h is served a token every step
  while (engine_->Batches().size() < 20) std::this_thread::sleep_for(1ms);
  auto older = Submit(Request("h", std::string(64, 'x'), 1));  // slot 1
  auto newer = Submit(Request("l", std::string(64, 'y'), 1));  // slot 2
  Wait(*older);
  Wait(*newer);
  scheduler_->Cancel(running);
  Wait(*running);
  // The step in which each prompt's last chunk went in.
  std::size_t done[3] = {0, 0, 0};
  const auto batches = engine_->Batches();
  for (std::size_t i = 0; i < batches.size(); ++i) {
    for (const auto& e : batches[i]) {
      if (e.slot > 0 && e.sample && e.pos + e.n_tokens == 64) done[e.slot] = i;
    }
  }
  ASSERT_GT(done[1], 0u);
  ASSERT_GT(done[2], 0u);
  // h has been served 20+ tokens more than l: l's prompt goes first although admitted later.
  EXPECT_LT(done[2], done[1]);
}

// The batch request's answer when nothing interrupts it: the fake engine stops after 30
// sampled tokens (its per-sequence sampler state), and the stop string, which never matches,
// keeps "c" and "cd" held back in the text state.
GenerateRequest BatchRequest(GenerateRequest r) {
  r.stop = {"cdX"};
  r.sampling.deterministic = true;
  return r;
}

TEST_F(FairShareTest, PreemptedRequestResumesWithTheSameAnswerAndOneAdmittedEvent) {
  Start({.parallel = 1, .ctx_per_seq = 512, .step_delay = 1ms, .eos_after = 30});
  const Collected alone = Wait(*Submit(BatchRequest(Request("x", "a", 100, 1))));
  ASSERT_EQ(alone.finished->reason, FinishReason::kStop);
  ASSERT_EQ(alone.text, "bcdefghijklmnopqrstuvwxyzabcde");

  auto batch = Submit(BatchRequest(Request("x", "a", 100, 1)));
  const std::size_t steps_before = engine_->Batches().size();
  while (engine_->Batches().size() < steps_before + 10) std::this_thread::sleep_for(1ms);
  const Collected interactive = Wait(*Submit(Request("i", "m", 5, 0)));
  const Collected resumed = Wait(*batch);

  EXPECT_EQ(interactive.text, "nopqr");
  EXPECT_EQ(recorder_.preempted(), std::vector<std::string>{"x"});
  EXPECT_EQ(resumed.text, alone.text);
  EXPECT_EQ(resumed.finished->reason, FinishReason::kStop);
  EXPECT_EQ(resumed.finished->usage.completion_tokens, alone.finished->usage.completion_tokens);
  EXPECT_EQ(resumed.finished->usage.prompt_tokens, 1);
  EXPECT_EQ(resumed.admitted, 1);
  EXPECT_EQ(interactive.admitted, 1);
  // The resume recomputed the prompt and the output so far in one deterministic prefill.
  int replays = 0;
  for (const auto& step : engine_->Batches()) {
    for (const auto& e : step) replays += e.pos == 0 && e.n_tokens > 1 && e.deterministic;
  }
  EXPECT_EQ(replays, 1);
  EXPECT_EQ(engine_->Active(), 0);
  EXPECT_TRUE(scheduler_->WaitIdle(clock_.Now() + 5s));
}

TEST_F(FairShareTest, PreemptedRequestKeepsItsLogprobsInStep) {
  Start({.parallel = 1, .ctx_per_seq = 512, .step_delay = 1ms, .eos_after = 30});
  GenerateRequest r = BatchRequest(Request("x", "a", 100, 1));
  r.sampling.logprobs = true;
  r.sampling.top_logprobs = 1;
  auto batch = Submit(std::move(r));
  const std::size_t steps_before = engine_->Batches().size();
  while (engine_->Batches().size() < steps_before + 10) std::this_thread::sleep_for(1ms);
  Wait(*Submit(Request("i", "m", 5, 0)));
  const Collected resumed = Wait(*batch);
  ASSERT_EQ(recorder_.preempted(), std::vector<std::string>{"x"});
  ASSERT_EQ(resumed.text, "bcdefghijklmnopqrstuvwxyzabcde");
  std::string pieces;
  std::vector<float> logprobs;
  for (const TextDelta& d : resumed.deltas) {
    for (const engine::TokenLogprobs& t : d.logprobs) {
      pieces += t.chosen.piece;
      logprobs.push_back(t.chosen.logprob);
      ASSERT_EQ(t.top.size(), 1u);
      EXPECT_EQ(t.top[0].piece, t.chosen.piece);
    }
  }
  EXPECT_EQ(pieces, resumed.text);
  ASSERT_EQ(logprobs.size(), 30u);
  // The fake numbers each token by its sampler's count, which the preemption carried over.
  for (int i = 0; i < 30; ++i) EXPECT_FLOAT_EQ(logprobs[i], -0.01f * static_cast<float>(i + 1));
}

TEST_F(FairShareTest, VictimIsTheBatchSequenceOfTheTenantFurthestAhead) {
  Start({.parallel = 2, .ctx_per_seq = 1024, .step_delay = 1ms});
  auto heavy = Submit(Request("h", std::string(60, 'x'), 500, 1));  // charged 60 prompt tokens
  auto light = Submit(Request("l", "a", 500, 1));
  while (engine_->Batches().size() < 10) std::this_thread::sleep_for(1ms);
  const Collected interactive = Wait(*Submit(Request("i", "m", 3, 0)));
  EXPECT_EQ(interactive.text, "nop");
  EXPECT_EQ(recorder_.preempted(), std::vector<std::string>{"h"});
  scheduler_->Cancel(heavy);
  scheduler_->Cancel(light);
  EXPECT_EQ(Wait(*heavy).admitted, 1);
  EXPECT_EQ(Wait(*light).admitted, 1);
}

TEST_F(FairShareTest, PreemptedRequestCanBeCancelledAndOutlivesTheQueueTimeout) {
  Start({.parallel = 1, .ctx_per_seq = 1024, .step_delay = 1ms}, {.queue_timeout = 50ms});
  auto batch = Submit(Request("x", "a", 500, 1));
  while (engine_->Batches().size() < 5) std::this_thread::sleep_for(1ms);
  auto interactive = Submit(Request("i", "m", 500, 0));
  // Admitted is pushed once the interactive request holds the batch request's slot.
  bool admitted = false;
  while (!admitted) {
    for (Event& e : interactive->Take()) admitted |= std::holds_alternative<Admitted>(e);
    std::this_thread::sleep_for(1ms);
  }
  EXPECT_EQ(recorder_.preempted(), std::vector<std::string>{"x"});
  EXPECT_EQ(scheduler_->Snapshot().waiting, 1) << "a preempted request counts as waiting";
  clock_.Advance(100ms);  // past the queue timeout: only never-admitted requests expire
  std::this_thread::sleep_for(20ms);
  scheduler_->Cancel(batch);
  const Collected cancelled = Wait(*batch);
  EXPECT_EQ(cancelled.finished->reason, FinishReason::kCancelled);
  EXPECT_FALSE(cancelled.finished->error);
  EXPECT_GE(cancelled.finished->usage.completion_tokens, 5);
  EXPECT_EQ(cancelled.admitted, 1);
  scheduler_->Cancel(interactive);
  Wait(*interactive);
  EXPECT_TRUE(scheduler_->WaitIdle(clock_.Now() + 5s));
  EXPECT_EQ(scheduler_->Snapshot().waiting, 0);
}

TEST_F(FairShareTest, FairSharePreemptionGivesAnIdleTenantASlotFromTheOneHoggingThem) {
  Start({.parallel = 4, .ctx_per_seq = 1024, .step_delay = 1ms, .eos_after = 200},
        {.fair_share_preemption = true});
  // a fills all four slots with long requests and queues four more.
  std::vector<std::shared_ptr<RequestStream>> flood;
  for (int i = 0; i < 8; ++i) flood.push_back(Submit(BatchRequest(Request("a", Distinct(), 150))));
  while (scheduler_->Snapshot().running < 4) std::this_thread::sleep_for(1ms);
  while (engine_->Batches().size() < 10) std::this_thread::sleep_for(1ms);
  const Collected b = Wait(*Submit(Request("b", "m", 3)));
  EXPECT_EQ(b.text, "nop");
  EXPECT_EQ(recorder_.preempted(), std::vector<std::string>{"a"});
  // b went in before any of a's queued requests (one slot, not a turn behind a's queue).
  EXPECT_EQ(Order(recorder_.admitted(), 4).substr(0, 1), "b");
  for (auto& s : flood) {
    const Collected c = Wait(*s);
    EXPECT_EQ(c.finished->usage.completion_tokens, 150) << "the preempted one resumed whole";
    EXPECT_EQ(c.admitted, 1);
  }
}

TEST_F(FairShareTest, FairSharePreemptionNeverTakesATenantsLastSlot) {
  // One slot: taking it would only hand the slot back and forth between two tenants.
  Start({.parallel = 1, .ctx_per_seq = 1024, .step_delay = 1ms}, {.fair_share_preemption = true});
  auto a = Submit(Request("a", "a", 60));
  while (engine_->Batches().size() < 5) std::this_thread::sleep_for(1ms);
  auto b = Submit(Request("b", "m", 3));
  Wait(*a);
  Wait(*b);
  EXPECT_TRUE(recorder_.preempted().empty());
  EXPECT_EQ(Order(recorder_.admitted(), 0), "ab");
}

TEST_F(FairShareTest, WithoutFairSharePreemptionTheIdleTenantWaitsForASlot) {
  Start({.parallel = 2, .ctx_per_seq = 1024, .step_delay = 1ms});
  auto a1 = Submit(Request("a", "a", 60));
  auto a2 = Submit(Request("a", "x", 60));
  while (engine_->Batches().size() < 5) std::this_thread::sleep_for(1ms);
  auto b = Submit(Request("b", "m", 3));
  Wait(*b);
  Wait(*a1);
  Wait(*a2);
  EXPECT_TRUE(recorder_.preempted().empty());
}

TEST_F(FairShareTest, NonPositiveWeightIsRejected) {
  Start({});
  auto r = scheduler_->Submit(Request("a", "abc", 2, 0, 0.0), std::make_shared<RequestStream>());
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().code, ErrorCode::kInvalidArgument);
}

}  // namespace
}  // namespace ember::scheduler
