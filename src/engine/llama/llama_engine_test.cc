// The libllama adapter on the real tiny model (stories260K): the log-probabilities it reports
// are a distribution's, match what it samples, and asking for them never changes the tokens.
#include "engine/llama/llama_engine.h"

#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <vector>

#ifndef EMBER_TEST_MODEL
#define EMBER_TEST_MODEL ""
#endif

namespace ember::engine {
namespace {

class LlamaEngineTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    if (!std::filesystem::exists(EMBER_TEST_MODEL)) return;
    LlamaOptions options;
    options.model_path = EMBER_TEST_MODEL;
    options.ctx_size = 512;
    options.parallel = 2;
    options.batch_size = 64;
    options.threads = 2;
    auto engine = CreateLlamaEngine(options);
    ASSERT_TRUE(engine.has_value()) << engine.error().message;
    engine_ = std::move(*engine).release();
  }
  static void TearDownTestSuite() {
    delete engine_;
    engine_ = nullptr;
  }
  void SetUp() override {
    if (engine_ == nullptr) GTEST_SKIP() << "no test model at " << EMBER_TEST_MODEL;
  }

  // Prefills the prompt in `slot` and samples `n` tokens one step at a time.
  static std::vector<Sampled> Generate(const SamplingParams& params, int n, int slot = 0) {
    std::vector<Sampled> out;
    auto prompt = engine_->tokenizer().Tokenize("Once upon a time, there was a", true);
    EXPECT_TRUE(prompt.has_value());
    if (!prompt) return out;
    EXPECT_TRUE(engine_->BeginSequence(slot, params, 0).has_value());
    BatchEntry entry{slot, *prompt, 0, true};
    int pos = static_cast<int>(prompt->size());
    Token next = 0;
    for (int i = 0; i < n; ++i) {
      auto step = engine_->Step(std::span<const BatchEntry>(&entry, 1));
      EXPECT_TRUE(step.has_value());
      if (!step || step->size() != 1) break;
      out.push_back((*step)[0]);
      next = out.back().token;
      entry = BatchEntry{slot, std::span<const Token>(&next, 1), pos++, true};
    }
    engine_->EndSequence(slot, false);
    return out;
  }

  static Engine* engine_;
};

Engine* LlamaEngineTest::engine_ = nullptr;

SamplingParams Sampling(float temperature, bool logprobs, int top = 0) {
  SamplingParams p;
  p.temperature = temperature;
  p.seed = 1234;
  p.logprobs = logprobs;
  p.top_logprobs = top;
  return p;
}

void ExpectDistribution(const Sampled& s, int want_top) {
  ASSERT_TRUE(s.has_logprobs);
  EXPECT_LE(s.logprob, 0.0f);
  EXPECT_TRUE(std::isfinite(s.logprob));
  ASSERT_EQ(s.n_top, want_top);
  double mass = 0;
  for (int i = 0; i < s.n_top; ++i) {
    mass += std::exp(double{s.top[i].logprob});
    if (i > 0) {
      EXPECT_GE(s.top[i - 1].logprob, s.top[i].logprob) << "most likely first";
    }
  }
  EXPECT_LE(mass, 1.0 + 1e-5);
}

TEST_F(LlamaEngineTest, GreedyReportsTheLogSoftmaxWithTheChosenTokenFirst) {
  const auto tokens = Generate(Sampling(0.0f, true, 5), 12);
  ASSERT_EQ(tokens.size(), 12u);
  for (const Sampled& s : tokens) {
    ExpectDistribution(s, 5);
    EXPECT_EQ(s.token, s.top[0].token);
    EXPECT_EQ(s.logprob, s.top[0].logprob);
    EXPECT_LT(s.logprob, 0.0f) << "greedy reports the softmax, not a certainty";
  }
}

TEST_F(LlamaEngineTest, LogprobsDoNotChangeTheSampledTokens) {
  for (float temperature : {0.0f, 0.9f}) {
    SamplingParams off = Sampling(temperature, false);
    off.top_p = 0.95f;
    off.presence_penalty = 1.5f;  // strong: the penalty history must be kept the same way
    off.frequency_penalty = 1.5f;
    SamplingParams on = off;
    on.logprobs = true;
    on.top_logprobs = 20;
    const auto plain = Generate(off, 48);
    const auto with = Generate(on, 48, /*slot=*/1);
    ASSERT_EQ(plain.size(), with.size());
    for (std::size_t i = 0; i < plain.size(); ++i) {
      EXPECT_FALSE(plain[i].has_logprobs);
      EXPECT_EQ(plain[i].token, with[i].token) << "token " << i << " at T=" << temperature;
      ASSERT_TRUE(with[i].has_logprobs);
      ASSERT_GE(with[i].n_top, 1);
      EXPECT_LE(with[i].n_top, 20);
      double mass = 0;
      for (const TokenLogprob& t : with[i].top_logprobs()) mass += std::exp(double{t.logprob});
      EXPECT_LE(mass, 1.0 + 1e-5);
    }
  }
}

TEST_F(LlamaEngineTest, FilteredTokensAreNotInTheDistribution) {
  // top_k 3: the distribution sampled from has three tokens, whose probabilities sum to 1,
  // and the sampled one is among them.
  SamplingParams p = Sampling(0.8f, true, 10);
  p.top_k = 3;
  const auto tokens = Generate(p, 16);
  ASSERT_EQ(tokens.size(), 16u);
  for (const Sampled& s : tokens) {
    ExpectDistribution(s, 3);
    double mass = 0;
    bool found = false;
    for (const TokenLogprob& t : s.top_logprobs()) {
      mass += std::exp(double{t.logprob});
      if (t.token == s.token) {
        found = true;
        EXPECT_FLOAT_EQ(t.logprob, s.logprob);
      }
    }
    EXPECT_NEAR(mass, 1.0, 1e-4);
    EXPECT_TRUE(found);
  }
}

TEST_F(LlamaEngineTest, TemperatureSharpensTheReportedDistribution) {
  // The same first position: a lower temperature gives the most likely token more mass.
  const auto cold = Generate(Sampling(0.3f, true, 1), 1);
  const auto warm = Generate(Sampling(1.5f, true, 1), 1);
  const auto greedy = Generate(Sampling(0.0f, true, 1), 1);
  ASSERT_EQ(cold.size(), 1u);
  ASSERT_EQ(warm.size(), 1u);
  ASSERT_EQ(greedy.size(), 1u);
  EXPECT_EQ(cold[0].top[0].token, greedy[0].top[0].token);
  EXPECT_GT(cold[0].top[0].logprob, greedy[0].top[0].logprob);
  EXPECT_GT(greedy[0].top[0].logprob, warm[0].top[0].logprob);
}

}  // namespace
}  // namespace ember::engine
