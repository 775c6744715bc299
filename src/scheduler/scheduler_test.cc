#include "scheduler/scheduler.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <map>
#include <thread>

#include "engine/fake/fake_engine.h"
#include "scheduler/collect_test_util.h"

namespace ember::scheduler {
namespace {

using engine::FakeEngine;
using engine::FakeEngineOptions;
using engine::FinishReason;
using namespace std::chrono_literals;

class SchedulerTest : public ::testing::Test {
 protected:
  void Start(FakeEngineOptions engine_options, SchedulerOptions options = {}) {
    auto engine = std::make_unique<FakeEngine>(engine_options);
    engine_ = engine.get();
    scheduler_ = Scheduler::Create(options, std::move(engine), nullptr, clock_).value();
  }
  GenerateRequest Request(std::string prompt, int max_tokens) {
    return MakeRequest(*engine_, prompt, max_tokens, clock_.Now());
  }
  std::shared_ptr<RequestStream> Submit(GenerateRequest r) {
    return SubmitAccepted(*scheduler_, std::move(r));
  }

  FakeClock clock_;
  FakeEngine* engine_ = nullptr;
  std::unique_ptr<Scheduler> scheduler_;
};

TEST_F(SchedulerTest, GeneratesUntilMaxTokensAndReportsUsage) {
  Start({});
  auto stream = Submit(Request("abc", 5));
  Collected c = Wait(*stream);
  ASSERT_TRUE(c.finished);
  EXPECT_EQ(c.text, "defgh");
  EXPECT_EQ(c.finished->reason, FinishReason::kLength);
  EXPECT_EQ(c.finished->usage.prompt_tokens, 3);
  EXPECT_EQ(c.finished->usage.completion_tokens, 5);
  EXPECT_EQ(c.admitted, 1);
  EXPECT_TRUE(scheduler_->WaitIdle(clock_.Now() + 1s) || true);
  EXPECT_EQ(engine_->Active(), 0);
}

TEST_F(SchedulerTest, EndOfGenerationTokenStopsWithoutText) {
  Start({.eos_after = 2});
  Collected c = Wait(*Submit(Request("a", 10)));
  EXPECT_EQ(c.text, "bc");
  EXPECT_EQ(c.finished->reason, FinishReason::kStop);
  EXPECT_EQ(c.finished->usage.completion_tokens, 3);
}

TEST_F(SchedulerTest, StopStringCutsTextAndFreesSlot) {
  Start({});
  GenerateRequest r = Request("a", 20);
  r.stop = {"de"};
  Collected c = Wait(*Submit(std::move(r)));
  EXPECT_EQ(c.text, "bc");
  EXPECT_EQ(c.finished->reason, FinishReason::kStop);
  EXPECT_EQ(engine_->Active(), 0);
}

// The logprobs of every delta, in order, with a check that each delta's text is the pieces of
// its tokens (the fake's tokens are single bytes, so nothing straddles a delta).
std::vector<engine::TokenLogprobs> LogprobsOf(const Collected& c) {
  std::vector<engine::TokenLogprobs> all;
  for (const TextDelta& d : c.deltas) {
    std::string pieces;
    for (const engine::TokenLogprobs& t : d.logprobs) pieces += t.chosen.piece;
    EXPECT_EQ(pieces, d.text) << "a delta's logprobs are those of its text";
    all.insert(all.end(), d.logprobs.begin(), d.logprobs.end());
  }
  return all;
}

TEST_F(SchedulerTest, LogprobsTravelWithTheirText) {
  Start({.eos_after = 4});
  GenerateRequest r = Request("a", 10);
  r.sampling.logprobs = true;
  r.sampling.top_logprobs = 2;
  Collected c = Wait(*Submit(std::move(r)));
  EXPECT_EQ(c.text, "bcde");
  const auto logprobs = LogprobsOf(c);
  ASSERT_EQ(logprobs.size(), 4u) << "the end-of-generation token has no text and no entry";
  for (int i = 0; i < 4; ++i) {
    const engine::TokenLogprobs& t = logprobs[i];
    EXPECT_EQ(t.chosen.piece, std::string(1, static_cast<char>('b' + i)));
    EXPECT_FLOAT_EQ(t.chosen.logprob, -0.01f * static_cast<float>(i + 1));
    ASSERT_EQ(t.top.size(), 2u);
    EXPECT_EQ(t.top[0].piece, t.chosen.piece);
    EXPECT_EQ(t.top[1].piece, std::string(1, static_cast<char>('c' + i)));
    EXPECT_FLOAT_EQ(t.top[1].logprob, t.chosen.logprob - 1.0f);
  }
}

TEST_F(SchedulerTest, LogprobsAreOffUnlessAskedFor) {
  Start({});
  Collected c = Wait(*Submit(Request("a", 5)));
  EXPECT_EQ(c.text, "bcdef");
  for (const TextDelta& d : c.deltas) EXPECT_TRUE(d.logprobs.empty());
}

TEST_F(SchedulerTest, StopStringDropsTheLogprobsOfTheTokensItCuts) {
  Start({});
  GenerateRequest r = Request("a", 20);
  r.stop = {"def"};
  r.sampling.logprobs = true;
  Collected c = Wait(*Submit(std::move(r)));
  EXPECT_EQ(c.text, "bc");
  EXPECT_EQ(c.finished->usage.completion_tokens, 5);
  const auto logprobs = LogprobsOf(c);
  ASSERT_EQ(logprobs.size(), 2u) << "d, e and f are the stop string";
  EXPECT_EQ(logprobs[1].chosen.piece, "c");
  EXPECT_TRUE(logprobs[1].top.empty());
}

TEST_F(SchedulerTest, HeldBackStopPrefixKeepsItsLogprobsUntilReleased) {
  Start({});
  GenerateRequest r = Request("a", 4);
  r.stop = {"cdx"};  // c and d are held back, then released with e
  r.sampling.logprobs = true;
  Collected c = Wait(*Submit(std::move(r)));
  EXPECT_EQ(c.text, "bcde");
  const auto logprobs = LogprobsOf(c);
  ASSERT_EQ(logprobs.size(), 4u);
  for (int i = 0; i < 4; ++i) {
    EXPECT_FLOAT_EQ(logprobs[i].chosen.logprob, -0.01f * static_cast<float>(i + 1));
  }
}

TEST_F(SchedulerTest, FullQueueIsRejected) {
  Start({.parallel = 1, .step_delay = 2ms}, {.queue_size = 1});
  auto running = Submit(Request("a", 200));
  while (scheduler_->Snapshot().running == 0) std::this_thread::sleep_for(1ms);
  auto waiting = Submit(Request("a", 2));
  auto rejected = scheduler_->Submit(Request("a", 2), std::make_shared<RequestStream>());
  ASSERT_FALSE(rejected.has_value());
  EXPECT_EQ(rejected.error().code, ErrorCode::kResourceExhausted);
  running->Cancel();
  EXPECT_EQ(Wait(*waiting).finished->reason, FinishReason::kLength);
}

TEST_F(SchedulerTest, QueueTimeoutFailsWaitingRequest) {
  Start({.parallel = 1, .step_delay = 1ms}, {.queue_timeout = 50ms});
  auto running = Submit(Request("a", 200));
  while (scheduler_->Snapshot().running == 0) std::this_thread::sleep_for(1ms);
  auto waiting = Submit(Request("a", 2));
  clock_.Advance(100ms);
  Collected c = Wait(*waiting);
  ASSERT_TRUE(c.finished->error);
  EXPECT_EQ(c.finished->error->code, ErrorCode::kDeadlineExceeded);
  EXPECT_EQ(c.admitted, 0) << "a request that never got a slot is never admitted";
  running->Cancel();
}

TEST_F(SchedulerTest, DecodesNeverWaitAndPromptsAreChunkedToTheBudget) {
  Start({.parallel = 3, .ctx_per_seq = 512, .batch_size = 16, .step_delay = 1ms});
  auto first = Submit(Request("ab", 60));
  while (engine_->Batches().empty()) std::this_thread::sleep_for(1ms);
  auto second = Submit(Request(std::string(40, 'x'), 3));
  auto third = Submit(Request(std::string(30, 'y'), 3));
  Wait(*second);
  Wait(*third);
  first->Cancel();
  Wait(*first);
  int prefill[3] = {0, 0, 0};
  for (const auto& batch : engine_->Batches()) {
    int total = 0, last_slot = -1;
    bool first_decoded = false, prompts_fed = false;
    for (const auto& e : batch) {
      total += e.n_tokens;
      EXPECT_GT(e.slot, last_slot) << "entries must be in slot order";
      last_slot = e.slot;
      if (e.slot == 0 && e.n_tokens == 1 && e.pos > 0) first_decoded = true;
      if (e.slot > 0 && (e.n_tokens > 1 || !e.sample)) {
        prefill[e.slot] += e.n_tokens;
        prompts_fed = true;
      }
    }
    EXPECT_LE(total, 16);
    if (prompts_fed) {
      EXPECT_TRUE(first_decoded) << "the running sequence missed a step while prompts were fed";
    }
  }
  // The prompts went through in budget-sized chunks, around the running decode.
  EXPECT_EQ(prefill[1], 40);
  EXPECT_EQ(prefill[2], 30);
}

TEST_F(SchedulerTest, DeterministicRequestsMarkTheirEntries) {
  // Steps take 1 ms and the plain request runs 20 of them, so it still holds slot 0 when the
  // deterministic one arrives (without the delay it could finish first and free slot 0).
  Start({.parallel = 2, .batch_size = 64, .step_delay = 1ms});
  GenerateRequest plain = Request("plain prompt", 20);
  GenerateRequest det = Request("deterministic prompt", 4);
  det.sampling.deterministic = true;
  auto a = Submit(std::move(plain));
  auto b = Submit(std::move(det));
  Wait(*a);
  Wait(*b);
  int det_entries = 0, plain_entries = 0;
  for (const auto& batch : engine_->Batches()) {
    for (const auto& e : batch) (e.deterministic ? det_entries : plain_entries) += 1;
  }
  // Each request's prompt and decodes: one entry per step, flagged by its own request.
  EXPECT_GE(det_entries, 4);
  EXPECT_GE(plain_entries, 4);
  for (const auto& batch : engine_->Batches()) {
    for (const auto& e : batch) {
      if (e.deterministic) {
        EXPECT_EQ(e.slot, 1) << "only the deterministic request is flagged";
      }
    }
  }
}

TEST_F(SchedulerTest, NewSequencesTakeTheLowestFreeSlot) {
  Start({.parallel = 4, .step_delay = 1ms});
  auto a = Submit(Request("a", 100));
  auto b = Submit(Request("b", 2));
  auto c = Submit(Request("c", 100));
  Wait(*b);  // frees slot 1 between two running sequences
  auto d = Submit(Request("d", 2));
  Wait(*d);
  a->Cancel();
  c->Cancel();
  Wait(*a);
  Wait(*c);
  int slot_1_starts = 0, slot_3_used = 0;
  for (const auto& batch : engine_->Batches()) {
    for (const auto& e : batch) {
      slot_1_starts += e.slot == 1 && e.pos == 0;
      slot_3_used += e.slot == 3;
    }
  }
  EXPECT_EQ(slot_1_starts, 2) << "b, then d in the slot b freed between a and c";
  EXPECT_EQ(slot_3_used, 0);
}

TEST_F(SchedulerTest, CancelDuringPrefillStopsWithinAStep) {
  Start({.parallel = 1, .ctx_per_seq = 4096, .batch_size = 8, .step_delay = 5ms});
  auto stream = Submit(Request(std::string(2000, 'x'), 5));
  while (engine_->Batches().size() < 2) std::this_thread::sleep_for(1ms);
  scheduler_->Cancel(stream);
  Collected c = Wait(*stream);
  EXPECT_EQ(c.finished->reason, FinishReason::kCancelled);
  EXPECT_EQ(c.finished->usage.completion_tokens, 0);
  EXPECT_EQ(engine_->Active(), 0);
  EXPECT_LT(engine_->Batches().size(), 20u);  // far from the 250 steps the prompt needs
}

TEST_F(SchedulerTest, DrainRejectsNewWorkAndFinishesRunning) {
  Start({.parallel = 1, .step_delay = 1ms});
  auto running = Submit(Request("a", 20));
  scheduler_->BeginDrain();
  auto late = scheduler_->Submit(Request("a", 2), std::make_shared<RequestStream>());
  ASSERT_FALSE(late.has_value());
  EXPECT_EQ(late.error().code, ErrorCode::kUnavailable);
  EXPECT_EQ(Wait(*running).finished->usage.completion_tokens, 20);
  EXPECT_TRUE(scheduler_->WaitIdle(clock_.Now() + 5s));
}

TEST_F(SchedulerTest, EngineFailureFailsTheBatchAndKeepsServing) {
  Start({.step_delay = 1ms});
  engine_->FailNextStep();
  Collected failed = Wait(*Submit(Request("a", 3)));
  ASSERT_TRUE(failed.finished->error);
  EXPECT_EQ(failed.finished->reason, FinishReason::kError);
  EXPECT_EQ(Wait(*Submit(Request("a", 3))).text, "bcd");
}

}  // namespace
}  // namespace ember::scheduler

namespace ember::scheduler {
namespace {

TEST_F(SchedulerTest, SharedPrefixReusesTheIdleSlotsCells) {
  Start({.parallel = 2, .step_delay = 1ms});
  Collected first = Wait(*Submit(Request("abcdef", 3)));
  EXPECT_EQ(first.finished->usage.cached_tokens, 0);
  // The slot now holds "abcdef" + the two fed outputs "gh": a prompt sharing six tokens
  // starts from position 6 (the fake engine rejects a step that skips or repeats cells).
  Collected second = Wait(*Submit(Request("abcdefXY", 2)));
  ASSERT_FALSE(second.finished->error) << second.finished->error->message;
  EXPECT_EQ(second.finished->usage.cached_tokens, 6);
  EXPECT_EQ(second.finished->usage.prompt_tokens, 8);
  EXPECT_EQ(second.text, "ab");
  // A whole-prompt hit still recomputes the last token to get its logits.
  Collected third = Wait(*Submit(Request("abcdefXY", 2)));
  EXPECT_EQ(third.finished->usage.cached_tokens, 7);
  EXPECT_EQ(scheduler_->Snapshot().kv_cells_used, 0);
}

}  // namespace
}  // namespace ember::scheduler

namespace ember::scheduler {
namespace {

TEST(SplitStepTimeTest, SharesAreProportionalAndAddUpExactly) {
  std::vector<std::int64_t> out(3);
  const std::vector<int> tokens = {1, 1, 510};  // two decodes and a prompt chunk
  SplitStepTime(1'000'003, tokens, out);
  EXPECT_EQ(out[0] + out[1] + out[2], 1'000'003);
  // Floors 1953, 1953, 996096; the leftover nanosecond goes to the largest remainder.
  EXPECT_EQ(out[0], 1'953);
  EXPECT_EQ(out[1], 1'953);
  EXPECT_EQ(out[2], 996'097);
  const std::vector<int> none = {0, 0, 0};
  SplitStepTime(10, none, out);  // nothing computed: evenly, the remainder to the first
  EXPECT_EQ(out, (std::vector<std::int64_t>{4, 3, 3}));
}

// Every step's time lands on the requests in it: their engine times add up to the
// scheduler's busy time, to the nanosecond.
TEST(EngineTimeTest, RequestsEngineTimesAddUpToBusyTime) {
  auto engine = std::make_unique<engine::FakeEngine>(
      engine::FakeEngineOptions{.parallel = 3, .step_delay = std::chrono::microseconds(300)});
  engine::FakeEngine* fake = engine.get();
  auto scheduler = Scheduler::Create({}, std::move(engine), nullptr, Clock::Real()).value();
  std::vector<std::shared_ptr<RequestStream>> streams;
  for (int i = 0; i < 5; ++i) {
    GenerateRequest r;
    r.prompt = fake->tokenizer().Tokenize(std::string(1 + i * 7, 'a'), false).value();
    r.max_tokens = 4 + i;
    r.arrival = Clock::Real().Now();
    auto stream = std::make_shared<RequestStream>();
    ASSERT_TRUE(scheduler->Submit(std::move(r), stream).has_value());
    streams.push_back(stream);
  }
  std::int64_t sum = 0;
  for (auto& s : streams) {
    Collected c = Wait(*s);
    ASSERT_TRUE(c.finished);
    EXPECT_GT(c.finished->timings.engine.count(), 0);
    sum += c.finished->timings.engine.count();
  }
  EXPECT_EQ(sum, scheduler->busy_ns());
  EXPECT_GE(sum, 9 * 300'000);  // the longest request alone takes 9 steps of >= 300 us
}

}  // namespace
}  // namespace ember::scheduler

namespace ember::scheduler {
namespace {

// The other requests of a trace's step, by id, with their tokens in it.
std::map<std::string, int> PeersOf(const Trace& trace, const TraceStep& step) {
  std::map<std::string, int> out;
  for (std::uint32_t i = step.peers_begin; i < step.peers_end; ++i) {
    out[trace.peer_ids[trace.peers[i].id]] = trace.peers[i].tokens;
  }
  return out;
}

class TraceTest : public ::testing::Test {
 protected:
  void Start(int trace_steps) {
    auto engine = std::make_unique<FakeEngine>(FakeEngineOptions{.step_delay = 500us});
    engine_ = engine.get();
    scheduler_ =
        Scheduler::Create({.trace_steps = trace_steps}, std::move(engine), nullptr, clock_).value();
  }
  std::shared_ptr<RequestStream> Submit(std::string id, int max_tokens) {
    GenerateRequest r = MakeRequest(*engine_, "abc", max_tokens, clock_.Now());
    r.id = std::move(id);
    return SubmitAccepted(*scheduler_, std::move(r));
  }
  FakeClock clock_;
  FakeEngine* engine_ = nullptr;
  std::unique_ptr<Scheduler> scheduler_;
};

TEST_F(TraceTest, ARequestThatSharedStepsWithTwoOthersNamesBoth) {
  Start(64);
  auto a = Submit("req-a", 20);
  auto b = Submit("req-b", 20);
  auto c = Submit("req-c", 20);
  Collected ca = Wait(*a), cb = Wait(*b), cc = Wait(*c);
  ASSERT_TRUE(ca.finished && cb.finished && cc.finished);
  ASSERT_TRUE(ca.finished->trace && cb.finished->trace);
  const Trace& ta = *ca.finished->trace;
  const Trace& tb = *cb.finished->trace;
  // One step of its 3-token prompt (which samples the first token), then 19 decode steps.
  EXPECT_EQ(ta.steps_total, 20);
  ASSERT_EQ(ta.steps.size(), 20u);
  EXPECT_TRUE(ta.steps.front().prefill);
  EXPECT_EQ(ta.steps.front().tokens, 3);
  EXPECT_FALSE(ta.steps.back().prefill);
  EXPECT_EQ(ta.steps.back().tokens, 1);
  // A decode step all three shared: A's trace names B and C with one token each, and B's
  // trace has the same step (same number) naming A and C.
  const std::map<std::string, int> decoding{{"req-b", 1}, {"req-c", 1}};
  const auto shared = std::find_if(ta.steps.begin(), ta.steps.end(), [&](const TraceStep& s) {
    return !s.prefill && PeersOf(ta, s) == decoding;
  });
  ASSERT_NE(shared, ta.steps.end()) << "no decode step shared with both others";
  EXPECT_EQ(shared->batch_tokens, 3);
  const auto same = std::find_if(tb.steps.begin(), tb.steps.end(),
                                 [&](const TraceStep& s) { return s.step == shared->step; });
  ASSERT_NE(same, tb.steps.end());
  EXPECT_EQ(PeersOf(tb, *same), (std::map<std::string, int>{{"req-a", 1}, {"req-c", 1}}));
  // Each peer is named once however many steps it shared.
  EXPECT_EQ(ta.peer_ids.size(), 2u);
  ASSERT_GE(ta.marks.size(), 2u);
  EXPECT_EQ(ta.marks[0].kind, TraceMark::Kind::kAdmitted);
  EXPECT_EQ(ta.marks[1].kind, TraceMark::Kind::kFirstToken);
}

TEST_F(TraceTest, KeepsOnlyTheFirstStepsButCountsAll) {
  Start(5);
  Collected c = Wait(*Submit("req-a", 20));
  ASSERT_TRUE(c.finished && c.finished->trace);
  EXPECT_EQ(c.finished->trace->steps.size(), 5u);
  EXPECT_EQ(c.finished->trace->steps_total, 20);
}

TEST_F(TraceTest, NoTraceWhenOff) {
  Start(0);
  Collected c = Wait(*Submit("req-a", 3));
  ASSERT_TRUE(c.finished);
  EXPECT_EQ(c.finished->trace, nullptr);
}

}  // namespace
}  // namespace ember::scheduler

namespace ember::scheduler {
namespace {

// 40 tokens that differ from kPrefix at the first one.
const std::string kPrefix = "the same long system prompt, shared.....";
const std::string kOther = "a different prompt of forty tokens......";

class PrefixReuseTest : public SchedulerTest {
 protected:
  // A request of `tenant` whose prompt is kPrefix and then `suffix`.
  GenerateRequest Prefixed(std::string suffix, int max_tokens, std::string tenant = "") {
    GenerateRequest r = Request(kPrefix + suffix, max_tokens);
    r.tenant.id = std::move(tenant);
    return r;
  }
  // Submits a long-running request with kPrefix and waits until its prompt is computed.
  std::shared_ptr<RequestStream> Running(std::string tenant) {
    auto stream = Submit(Prefixed("!", 1000, std::move(tenant)));
    while (engine_->Batches().size() < 2) std::this_thread::sleep_for(1ms);
    return stream;
  }
};

TEST_F(PrefixReuseTest, ANewRequestCopiesTheRunningSequencesPrefix) {
  Start({.parallel = 2, .step_delay = 1ms});
  auto running = Running("acme");
  Collected c = Wait(*Submit(Prefixed("?", 3, "acme")));
  ASSERT_FALSE(c.finished->error) << c.finished->error->message;
  EXPECT_EQ(c.finished->usage.cached_tokens, 40);
  EXPECT_EQ(c.finished->usage.prompt_tokens, 41);
  EXPECT_EQ(c.text, "abc");
  ASSERT_EQ(engine_->Copies().size(), 1u);
  EXPECT_EQ(engine_->Copies()[0].src, 0);
  EXPECT_EQ(engine_->Copies()[0].dst, 1);
  EXPECT_EQ(engine_->Copies()[0].n_pos, 40);
  running->Cancel();
  Wait(*running);
}

TEST_F(PrefixReuseTest, AnotherTenantsPrefixIsNotReusedByDefault) {
  Start({.parallel = 2, .step_delay = 1ms});
  auto running = Running("acme");
  Collected c = Wait(*Submit(Prefixed("?", 3, "globex")));
  EXPECT_EQ(c.finished->usage.cached_tokens, 0);
  EXPECT_TRUE(engine_->Copies().empty());
  // Nor does an idle slot's cache: both slots now hold "acme"'s kPrefix.
  EXPECT_EQ(Wait(*Submit(Prefixed("?", 3, "acme"))).finished->usage.cached_tokens, 40);
  running->Cancel();
  Wait(*running);
  EXPECT_EQ(Wait(*Submit(Prefixed("?", 3, "globex"))).finished->usage.cached_tokens, 0);
  EXPECT_EQ(Wait(*Submit(Prefixed("?", 3, "acme"))).finished->usage.cached_tokens, 40);
}

TEST_F(PrefixReuseTest, SharingAllReusesAcrossTenants) {
  Start({.parallel = 2, .step_delay = 1ms}, {.prefix_share = PrefixShare::kAll});
  auto running = Running("acme");
  EXPECT_EQ(Wait(*Submit(Prefixed("?", 3, "globex"))).finished->usage.cached_tokens, 40);
  running->Cancel();
  Wait(*running);
}

TEST_F(PrefixReuseTest, SharingOffReusesNothing) {
  Start({.parallel = 1, .step_delay = 1ms}, {.prefix_share = PrefixShare::kOff});
  Wait(*Submit(Prefixed("?", 3)));
  EXPECT_EQ(Wait(*Submit(Prefixed("?", 3))).finished->usage.cached_tokens, 0);
}

TEST_F(PrefixReuseTest, ACacheAboutToBeOverwrittenMovesToTheLeastRecentlyUsedSlot) {
  Start({.parallel = 3, .step_delay = 1ms});
  Wait(*Submit(Prefixed("?", 3)));  // slot 0 caches kPrefix + "?" + two outputs
  // Takes the lowest free slot, 0 (contiguity): the cache there moves to slot 1 first.
  Wait(*Submit(Request(kOther, 3)));
  ASSERT_EQ(engine_->Copies().size(), 1u);
  EXPECT_EQ(engine_->Copies()[0].src, 0);
  EXPECT_EQ(engine_->Copies()[0].dst, 1);
  Collected again = Wait(*Submit(Prefixed("?", 3)));
  EXPECT_EQ(again.finished->usage.cached_tokens, 40);  // the last prompt token is recomputed
  EXPECT_EQ(again.text, "abc");
}

// Prompt tokens the engine computed for `slot` below position `end` (prefill, not decode).
int PrefilledTokens(const FakeEngine& engine, int slot, int end) {
  int n = 0;
  for (const auto& batch : engine.Batches()) {
    for (const auto& e : batch) {
      if (e.slot == slot && e.pos < end) n += e.n_tokens;
    }
  }
  return n;
}

TEST_F(PrefixReuseTest, RequestsArrivingTogetherComputeTheirSharedBeginningOnce) {
  // 8 tokens a step, 20 ms each: the first request needs 5 steps for kPrefix. The others arrive
  // before it has 32 of them (nothing to copy yet), wait for them and copy them.
  Start({.parallel = 4, .batch_size = 8, .step_delay = 20ms});
  std::vector<std::shared_ptr<RequestStream>> streams;
  for (const char* suffix : {"?", "!", ":", ";"}) streams.push_back(Submit(Prefixed(suffix, 3)));
  int computed = 0;
  for (std::size_t i = 0; i < streams.size(); ++i) {
    Collected c = Wait(*streams[i]);
    ASSERT_FALSE(c.finished->error) << c.finished->error->message;
    EXPECT_EQ(c.text, "abc");
    EXPECT_EQ(c.finished->usage.cached_tokens, i == 0 ? 0 : 40) << i;
  }
  for (int slot = 0; slot < 4; ++slot) computed += PrefilledTokens(*engine_, slot, 41);
  EXPECT_EQ(computed, 41 + 3);  // not 4 x 41
  ASSERT_EQ(engine_->Copies().size(), 3u);
  for (const auto& copy : engine_->Copies()) {
    EXPECT_EQ(copy.src, 0);
    EXPECT_EQ(copy.n_pos, 40);
  }
}

TEST_F(PrefixReuseTest, AWaitingRequestWhoseSourceIsCancelledComputesTheRest) {
  Start({.parallel = 2, .batch_size = 8, .step_delay = 20ms});
  const std::string shared(200, 's');
  auto source = Submit(Request(shared + "!", 1000));
  auto waiter = Submit(Request(shared + "?", 3));
  std::this_thread::sleep_for(100ms);
  source->Cancel();
  Wait(*source);
  Collected c = Wait(*waiter);
  ASSERT_FALSE(c.finished->error) << c.finished->error->message;
  EXPECT_EQ(c.text, "abc");
  // What the source had computed was copied (when 32 or more) and the rest computed: every
  // prompt position exactly once, and cached_tokens says which.
  const int cached = c.finished->usage.cached_tokens;
  EXPECT_LT(cached, 200);
  EXPECT_EQ(PrefilledTokens(*engine_, 1, 201), 201 - cached);
}

TEST_F(PrefixReuseTest, AnotherTenantsPromptInFlightIsNotWaitedFor) {
  Start({.parallel = 2, .batch_size = 8, .step_delay = 20ms});
  auto a = Submit(Prefixed("?", 3, "acme"));
  auto b = Submit(Prefixed("!", 3, "globex"));
  EXPECT_EQ(Wait(*a).finished->usage.cached_tokens, 0);
  EXPECT_EQ(Wait(*b).finished->usage.cached_tokens, 0);
  EXPECT_TRUE(engine_->Copies().empty());
}

TEST_F(PrefixReuseTest, AMoreUrgentRequestDoesNotWaitForALessUrgentPrompt) {
  // PlanStep feeds the more urgent class first: waiting for the batch tenant's prompt would
  // put the interactive request behind it.
  Start({.parallel = 2, .batch_size = 8, .step_delay = 20ms}, {.prefix_share = PrefixShare::kAll});
  GenerateRequest batch = Prefixed("?", 3, "batch");
  batch.tenant.priority = 1;
  auto a = Submit(std::move(batch));
  Collected urgent = Wait(*Submit(Prefixed("!", 3, "interactive")));
  EXPECT_EQ(urgent.finished->usage.cached_tokens, 0);
  EXPECT_EQ(Wait(*a).finished->usage.cached_tokens, 0);
  EXPECT_TRUE(engine_->Copies().empty());
}

TEST_F(PrefixReuseTest, ALongCacheThatDiffersOnlyAtItsEndIsNeitherMovedNorSaved) {
  // 300 shared tokens, then 33 of each prompt's own: the next prompt keeps the 300 and loses
  // 35 (its suffix and 2 output cells), under 1/8 of the 335 held. Moving or saving them
  // would copy all 335 cells to keep 35 (a shared system prompt's previous user message).
  Start({.parallel = 2, .ctx_per_seq = 512, .step_delay = 1ms});
  const std::string shared(300, 's');
  Wait(*Submit(Request(shared + std::string(33, 'a'), 3)));
  Collected next = Wait(*Submit(Request(shared + std::string(33, 'b'), 3)));
  EXPECT_EQ(next.finished->usage.cached_tokens, 300);
  EXPECT_TRUE(engine_->Copies().empty());
  EXPECT_TRUE(engine_->Saves().empty());
  // With as many of its own tokens as shared ones, the cache is moved aside first.
  Collected other = Wait(*Submit(Request(shared + std::string(300, 'c'), 3)));
  EXPECT_EQ(other.finished->usage.cached_tokens, 300);
  Wait(*Submit(Request(shared + std::string(300, 'd'), 3)));
  EXPECT_EQ(engine_->Copies().size(), 1u);
}

TEST_F(PrefixReuseTest, AShortSharedPrefixIsNotWorthACopy) {
  Start({.parallel = 2, .step_delay = 1ms});
  auto running = Submit(Request("short prefix!", 1000));
  while (engine_->Batches().size() < 2) std::this_thread::sleep_for(1ms);
  EXPECT_EQ(Wait(*Submit(Request("short prefix?", 3))).finished->usage.cached_tokens, 0);
  EXPECT_TRUE(engine_->Copies().empty());
  running->Cancel();
  Wait(*running);
}

}  // namespace
}  // namespace ember::scheduler
