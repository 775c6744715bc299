// Embedding requests through the scheduler with the fake engine: they prefill like prompts,
// end with their vector in the step of their last chunk, and share steps with generation so
// that neither waits for the other to finish.
#include <gtest/gtest.h>

#include <thread>

#include "engine/fake/fake_engine.h"
#include "scheduler/collect_test_util.h"
#include "scheduler/scheduler.h"

namespace ember::scheduler {
namespace {

using engine::FakeEngine;
using engine::FakeEngineOptions;
using engine::FinishReason;
using engine::Token;
using namespace std::chrono_literals;

class EmbeddingSchedulerTest : public ::testing::Test {
 protected:
  void Start(FakeEngineOptions engine_options) {
    auto engine = std::make_unique<FakeEngine>(engine_options);
    engine_ = engine.get();
    scheduler_ = Scheduler::Create({}, std::move(engine), nullptr, clock_).value();
  }
  GenerateRequest Embed(std::string text) {
    GenerateRequest r;
    r.prompt = engine_->tokenizer().Tokenize(text, false).value();
    r.embed = true;
    r.max_tokens = 0;
    r.arrival = clock_.Now();
    return r;
  }
  GenerateRequest Generate(std::string prompt, int max_tokens) {
    return MakeRequest(*engine_, prompt, max_tokens, clock_.Now());
  }
  std::shared_ptr<RequestStream> Submit(GenerateRequest r) {
    return SubmitAccepted(*scheduler_, std::move(r));
  }
  std::vector<float> Expected(const std::string& text) {
    auto tokens = engine_->tokenizer().Tokenize(text, false).value();
    return FakeEngine::EmbeddingOf(tokens);
  }

  FakeClock clock_;
  FakeEngine* engine_ = nullptr;
  std::unique_ptr<Scheduler> scheduler_;
};

TEST_F(EmbeddingSchedulerTest, LongInputIsPrefilledInChunksAndEndsWithItsVector) {
  Start({.parallel = 2, .batch_size = 8});
  const std::string input = "the quick brown fox jumps";  // 25 tokens: 8 + 8 + 8 + 1
  Collected c = Wait(*Submit(Embed(input)));
  ASSERT_TRUE(c.finished);
  EXPECT_EQ(c.finished->reason, FinishReason::kStop);
  EXPECT_FALSE(c.finished->error.has_value());
  EXPECT_EQ(c.text, "");
  EXPECT_EQ(c.finished->usage.prompt_tokens, 25);
  EXPECT_EQ(c.finished->usage.completion_tokens, 0);
  EXPECT_EQ(c.finished->embedding, Expected(input));
  const auto batches = engine_->Batches();
  ASSERT_EQ(batches.size(), 4u);
  for (std::size_t i = 0; i < batches.size(); ++i) {
    ASSERT_EQ(batches[i].size(), 1u);
    EXPECT_EQ(batches[i][0].pos, static_cast<int>(8 * i));
    EXPECT_EQ(batches[i][0].n_tokens, i < 3 ? 8 : 1);
    EXPECT_FALSE(batches[i][0].sample);  // nothing is ever sampled for an embedding
    EXPECT_EQ(batches[i][0].embed, i == 3) << "only the last chunk asks for the vector";
  }
  EXPECT_TRUE(scheduler_->WaitIdle(clock_.Now() + 1s));
  EXPECT_EQ(engine_->Active(), 0);
}

TEST_F(EmbeddingSchedulerTest, RepeatedInputReusesItsCellsAndGivesTheSameVector) {
  Start({.parallel = 1, .batch_size = 64});
  const std::string input(40, 'q');  // longer than the scheduler's shortest reusable prefix
  Collected first = Wait(*Submit(Embed(input)));
  Collected second = Wait(*Submit(Embed(input)));
  ASSERT_TRUE(first.finished && second.finished);
  EXPECT_EQ(first.finished->usage.cached_tokens, 0);
  EXPECT_EQ(second.finished->usage.cached_tokens, 39);  // the last token is always recomputed
  EXPECT_EQ(second.finished->usage.prompt_tokens, 40);
  EXPECT_EQ(first.finished->embedding, Expected(input));
  EXPECT_EQ(second.finished->embedding, first.finished->embedding);
  // Different inputs, different vectors.
  Collected other = Wait(*Submit(Embed("another input")));
  EXPECT_NE(other.finished->embedding, first.finished->embedding);
  EXPECT_EQ(other.finished->embedding, Expected("another input"));
}

// A generation decoding in one slot and a stream of long embedding inputs in the other: the
// generation's token is in every step while embeddings prefill (it is not starved), and the
// embeddings finish while the generation still runs (they are not starved either).
TEST_F(EmbeddingSchedulerTest, EmbeddingsAndGenerationShareSteps) {
  Start({.parallel = 2, .batch_size = 8, .step_delay = 1ms});
  auto generation = Submit(Generate("a", 60));
  while (scheduler_->Snapshot().running == 0) std::this_thread::sleep_for(1ms);
  std::vector<std::string> inputs;
  std::vector<std::shared_ptr<RequestStream>> embeds;
  for (int i = 0; i < 4; ++i) {
    inputs.push_back(std::string(20, static_cast<char>('k' + i)));
    embeds.push_back(Submit(Embed(inputs.back())));
  }
  std::vector<Collected> done;
  for (auto& e : embeds) done.push_back(Wait(*e));
  Collected g = Wait(*generation);
  ASSERT_TRUE(g.finished);
  EXPECT_EQ(g.finished->reason, FinishReason::kLength);
  EXPECT_EQ(g.finished->usage.completion_tokens, 60);
  for (std::size_t i = 0; i < done.size(); ++i) {
    ASSERT_TRUE(done[i].finished);
    EXPECT_EQ(done[i].finished->embedding, Expected(inputs[i])) << i;
    EXPECT_EQ(done[i].finished->usage.prompt_tokens, 20);
  }
  // Every step that carried an embedding chunk also carried the generation's decode token, and
  // the chunk took only what the decode left of the step's budget.
  const auto batches = engine_->Batches();
  int shared_steps = 0, embed_ends = 0, decode_steps = 0;
  std::size_t last_embed_step = 0;
  for (std::size_t i = 0; i < batches.size(); ++i) {
    bool decode = false, chunk = false;
    int tokens = 0;
    for (const auto& e : batches[i]) {
      decode = decode || (e.sample && e.n_tokens == 1 && e.pos > 0);
      chunk = chunk || !e.sample;
      if (e.embed) {
        ++embed_ends;
        last_embed_step = i;
      }
      tokens += e.n_tokens;
    }
    EXPECT_LE(tokens, 8);
    decode_steps += decode ? 1 : 0;
    if (chunk && decode) ++shared_steps;
  }
  EXPECT_EQ(embed_ends, 4);
  EXPECT_EQ(decode_steps, 60 - 1);  // one step per generated token after the first
  // 4 inputs x 20 tokens in chunks of at most 7 beside the decode: at least 12 shared steps.
  EXPECT_GE(shared_steps, 12);
  // The embeddings were done long before the generation: they did not wait for it to end.
  EXPECT_LT(last_embed_step + 20, batches.size());
}

// A preempted or cancelled embedding ends like any request; one cancelled before it ran
// reports its prompt and no vector.
TEST_F(EmbeddingSchedulerTest, CancelledEmbeddingHasNoVector) {
  Start({.parallel = 1, .batch_size = 4, .step_delay = 2ms});
  auto blocker = Submit(Generate("a", 50));
  while (scheduler_->Snapshot().running == 0) std::this_thread::sleep_for(1ms);
  auto stream = Submit(Embed("some words to embed"));
  scheduler_->Cancel(stream);
  Collected c = Wait(*stream);
  ASSERT_TRUE(c.finished);
  EXPECT_EQ(c.finished->reason, FinishReason::kCancelled);
  EXPECT_TRUE(c.finished->embedding.empty());
  scheduler_->Cancel(blocker);
  Wait(*blocker);
}

}  // namespace
}  // namespace ember::scheduler
