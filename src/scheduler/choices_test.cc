// Requests with several choices (GenerateRequest::n) through the Scheduler with the fake
// engine: one prefill shared by copies, independent sampling, cancellation and preemption.
#include <gtest/gtest.h>

#include <chrono>
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

struct Choices {
  std::vector<std::string> text;
  std::vector<std::optional<Finished>> finished;
  std::vector<int> order;  // choice of every text delta, as taken
  int admitted = 0;
  bool done() const {
    for (const auto& f : finished)
      if (!f) return false;
    return true;
  }
};

Choices WaitChoices(RequestStream& stream, int n) {
  Choices out;
  out.text.resize(n);
  out.finished.resize(n);
  const auto deadline = std::chrono::steady_clock::now() + 20s;
  while (!out.done() && std::chrono::steady_clock::now() < deadline) {
    for (Event& e : stream.Take()) {
      if (auto* d = std::get_if<TextDelta>(&e)) {
        out.text.at(d->choice) += d->text;
        out.order.push_back(d->choice);
      } else if (auto* f = std::get_if<Finished>(&e)) {
        EXPECT_FALSE(out.finished.at(f->choice)) << "two Finished events for one choice";
        out.finished.at(f->choice) = *f;
      } else {
        ++out.admitted;
      }
    }
    std::this_thread::sleep_for(1ms);
  }
  return out;
}

class PreemptionCounter : public SchedulerObserver {
 public:
  void OnPreempted(const TenantTag&) override { ++preempted; }
  std::atomic<int> preempted{0};
};

class ChoicesTest : public ::testing::Test {
 protected:
  void Start(FakeEngineOptions engine_options, SchedulerOptions options = {}) {
    auto engine = std::make_unique<FakeEngine>(engine_options);
    engine_ = engine.get();
    scheduler_ = Scheduler::Create(options, std::move(engine), &observer_, clock_).value();
  }
  GenerateRequest Request(std::string prompt, int max_tokens, int n) {
    GenerateRequest r = MakeRequest(*engine_, prompt, max_tokens, clock_.Now());
    r.n = n;
    return r;
  }
  std::shared_ptr<RequestStream> Submit(GenerateRequest r) {
    return SubmitAccepted(*scheduler_, std::move(r));
  }

  FakeClock clock_;
  PreemptionCounter observer_;
  FakeEngine* engine_ = nullptr;
  std::unique_ptr<Scheduler> scheduler_;
};

TEST_F(ChoicesTest, PromptIsPrefilledOnceAndItsCellsCopiedToTheOtherChoices) {
  Start({.parallel = 4});
  const Choices c = WaitChoices(*Submit(Request("abcdefghij", 4, 3)), 3);
  ASSERT_TRUE(c.done());
  EXPECT_EQ(c.admitted, 1);
  for (int i = 0; i < 3; ++i) {
    EXPECT_EQ(c.text[i], "klmn") << "choice " << i;
    EXPECT_EQ(c.finished[i]->reason, FinishReason::kLength);
    EXPECT_EQ(c.finished[i]->usage.completion_tokens, 4);
    // The prompt is counted once, with the first choice.
    EXPECT_EQ(c.finished[i]->usage.prompt_tokens, i == 0 ? 10 : 0);
  }
  // Prompt positions fed: the whole prompt once, then only its last token per other choice.
  int prompt_tokens_fed = 0, from_zero = 0;
  for (const auto& step : engine_->Batches()) {
    for (const auto& e : step) {
      if (e.pos < 10) prompt_tokens_fed += e.n_tokens;
      from_zero += e.pos == 0;
    }
  }
  EXPECT_EQ(from_zero, 1);
  EXPECT_EQ(prompt_tokens_fed, 10 + 2);
  const auto copies = engine_->Copies();
  ASSERT_EQ(copies.size(), 2u);
  EXPECT_EQ(copies[0].src, 0);
  EXPECT_EQ(copies[0].dst, 1);
  EXPECT_EQ(copies[1].dst, 2);
  EXPECT_EQ(copies[0].n_pos, 9);
  EXPECT_EQ(copies[1].n_pos, 9);
  EXPECT_TRUE(scheduler_->WaitIdle(clock_.Now() + 5s));
  EXPECT_EQ(engine_->Active(), 0);
}

TEST_F(ChoicesTest, SeededChoicesDifferAndAreReproducible) {
  Start({.parallel = 4});
  auto run = [&] {
    GenerateRequest r = Request("abc", 3, 3);
    r.sampling.seed = 1;
    return WaitChoices(*Submit(std::move(r)), 3);
  };
  const Choices first = run();
  const Choices second = run();
  // The fake shifts each letter by the seed: choice i samples with seed 1 + i.
  EXPECT_EQ(first.text, (std::vector<std::string>{"egi", "fil", "gko"}));
  EXPECT_NE(first.text[0], first.text[1]);
  EXPECT_NE(first.text[1], first.text[2]);
  EXPECT_NE(first.text[0], first.text[2]);
  EXPECT_EQ(first.text, second.text);
  GenerateRequest alone = Request("abc", 3, 1);
  alone.sampling.seed = 2;  // choice 1's seed
  const Choices single = WaitChoices(*Submit(std::move(alone)), 1);
  EXPECT_EQ(single.text[0], first.text[1]);
}

TEST_F(ChoicesTest, TextDeltasOfTheChoicesInterleave) {
  Start({.parallel = 3, .ctx_per_seq = 512, .step_delay = 1ms});
  const Choices c = WaitChoices(*Submit(Request("a", 20, 3)), 3);
  ASSERT_TRUE(c.done());
  bool interleaved = false;
  for (std::size_t i = 1; i < c.order.size(); ++i) interleaved |= c.order[i] != c.order[i - 1];
  EXPECT_TRUE(interleaved);
  EXPECT_EQ(c.text[0].size(), 20u);
}

TEST_F(ChoicesTest, CancellingTheRequestEndsEveryChoice) {
  Start({.parallel = 3, .ctx_per_seq = 512, .step_delay = 1ms});
  auto stream = Submit(Request("a", 400, 3));
  while (engine_->Batches().size() < 5) std::this_thread::sleep_for(1ms);
  scheduler_->Cancel(stream);
  const Choices c = WaitChoices(*stream, 3);
  ASSERT_TRUE(c.done());
  for (const auto& f : c.finished) EXPECT_EQ(f->reason, FinishReason::kCancelled);
  EXPECT_TRUE(scheduler_->WaitIdle(clock_.Now() + 5s));
  EXPECT_EQ(engine_->Active(), 0);
}

TEST_F(ChoicesTest, APreemptedChoiceResumesWithTheSameAnswer) {
  Start({.parallel = 3, .ctx_per_seq = 512, .step_delay = 1ms, .eos_after = 30});
  GenerateRequest batch = Request("a", 100, 3);
  batch.tenant.priority = 1;
  auto stream = Submit(std::move(batch));
  while (engine_->Batches().size() < 10) std::this_thread::sleep_for(1ms);
  GenerateRequest urgent = Request("m", 5, 1);
  urgent.tenant.id = "i";
  const Choices interactive = WaitChoices(*Submit(std::move(urgent)), 1);
  const Choices c = WaitChoices(*stream, 3);
  EXPECT_EQ(observer_.preempted.load(), 1);
  EXPECT_EQ(interactive.text[0], "nopqr");
  ASSERT_TRUE(c.done());
  EXPECT_EQ(c.admitted, 1);
  for (int i = 0; i < 3; ++i) {
    EXPECT_EQ(c.text[i], "bcdefghijklmnopqrstuvwxyzabcde") << "choice " << i;
    EXPECT_EQ(c.finished[i]->reason, FinishReason::kStop);
    EXPECT_EQ(c.finished[i]->usage.completion_tokens, 31);
  }
  EXPECT_TRUE(scheduler_->WaitIdle(clock_.Now() + 5s));
  EXPECT_EQ(engine_->Active(), 0);
}

TEST_F(ChoicesTest, ChoicesAreAdmittedTogetherWhenEnoughSlotsAreFree) {
  Start({.parallel = 2, .ctx_per_seq = 512, .step_delay = 1ms});
  auto running = Submit(Request("a", 30, 1));
  while (engine_->Batches().empty()) std::this_thread::sleep_for(1ms);
  auto pair = Submit(Request("b", 3, 2));
  const Choices first = WaitChoices(*running, 1);
  const Choices both = WaitChoices(*pair, 2);
  ASSERT_TRUE(both.done());
  EXPECT_EQ(both.text, (std::vector<std::string>{"cde", "cde"}));
  ASSERT_TRUE(first.done());
  // The pair started only after the running request ended (never one choice alone): from its
  // prefill on, no step carries the running request's positions (up to 31).
  const auto steps = engine_->Batches();
  std::size_t pair_start = 0;
  int prefills = 0;
  for (std::size_t i = 0; i < steps.size() && prefills < 2; ++i) {
    for (const auto& e : steps[i]) {
      if (e.pos == 0 && ++prefills == 2) pair_start = i;
    }
  }
  ASSERT_EQ(prefills, 2);
  for (std::size_t i = pair_start; i < steps.size(); ++i) {
    for (const auto& e : steps[i]) EXPECT_LT(e.pos, 5) << "step " << i;
  }
}

TEST_F(ChoicesTest, MoreChoicesThanSlotsIsRefused) {
  Start({.parallel = 2});
  auto stream = std::make_shared<RequestStream>();
  auto refused = scheduler_->Submit(Request("a", 3, 3), stream);
  ASSERT_FALSE(refused.has_value());
  EXPECT_EQ(refused.error().code, ErrorCode::kInvalidArgument);
  EXPECT_EQ(refused.error().param, "n");
}

}  // namespace
}  // namespace ember::scheduler
