// Embeddings from a generative model through the libllama engine, on the real tiny model
// (../shared/models/stories260K.gguf): the vector's size and norm, and that an input's vector
// is the same bits alone, chunked and beside other sequences when the step is
// batch-invariant (deterministic mode), and that sampling in the same step is undisturbed.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <vector>

#include "engine/llama/llama_engine.h"

namespace ember::engine {
namespace {

class LlamaEmbeddingTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    if (!std::filesystem::exists(EMBER_TEST_MODEL)) return;
    LlamaOptions options;
    options.model_path = EMBER_TEST_MODEL;
    options.ctx_size = 4 * 256;
    options.parallel = 4;
    options.batch_size = 64;
    options.threads = 1;
    auto engine = CreateLlamaEngine(options);
    ASSERT_TRUE(engine.has_value()) << engine.error().message;
    engine_ = std::move(*engine).release();
    ASSERT_TRUE(engine_->WarmUp().has_value());
    invariant_ = engine_->VerifyBatchInvariance().has_value();
  }
  static void TearDownTestSuite() {
    delete engine_;
    engine_ = nullptr;
  }
  void SetUp() override {
    if (engine_ == nullptr) GTEST_SKIP() << "no model at " << EMBER_TEST_MODEL;
  }

  static std::vector<Token> Tokens(const std::string& text) {
    return engine_->tokenizer().Tokenize(text, true).value();
  }
  static SamplingParams Params() {
    SamplingParams p;
    p.temperature = 0;
    p.deterministic = true;
    return p;
  }
  // The input alone in `slot`, whole, in one step.
  static std::vector<float> EmbedAlone(int slot, const std::vector<Token>& tokens) {
    EXPECT_EQ(engine_->BeginSequence(slot, Params(), 0).value(), 0);
    BatchEntry e{slot, tokens, 0, false, true, true};
    EXPECT_TRUE(engine_->Step(std::span<const BatchEntry>(&e, 1)).has_value());
    auto v = engine_->TakeEmbedding(slot);
    engine_->EndSequence(slot, false);
    EXPECT_TRUE(v.has_value());
    return v.value_or(std::vector<float>{});
  }

  static inline Engine* engine_ = nullptr;
  static inline bool invariant_ = false;
};

TEST_F(LlamaEmbeddingTest, VectorHasTheModelsSizeAndUnitNorm) {
  const ModelInfo& info = engine_->Info();
  EXPECT_EQ(info.pooling, Pooling::kLastToken);  // a generative model
  EXPECT_FALSE(info.embedding_only());
  ASSERT_GT(info.n_embd, 0);
  const std::vector<float> v = EmbedAlone(0, Tokens("Once upon a time"));
  ASSERT_EQ(static_cast<int>(v.size()), info.n_embd);
  double norm = 0;
  for (float x : v) {
    ASSERT_TRUE(std::isfinite(x));
    norm += static_cast<double>(x) * x;
  }
  EXPECT_NEAR(std::sqrt(norm), 1.0, 1e-5);
}

TEST_F(LlamaEmbeddingTest, DifferentInputsGiveDifferentVectorsAndTheSameInputTheSame) {
  const std::vector<float> a = EmbedAlone(0, Tokens("Once upon a time"));
  const std::vector<float> b = EmbedAlone(0, Tokens("The cat sat on the mat"));
  const std::vector<float> a2 = EmbedAlone(1, Tokens("Once upon a time"));
  EXPECT_NE(a, b);
  EXPECT_EQ(a, a2);
}

TEST_F(LlamaEmbeddingTest, TakeEmbeddingOnlyOnceAndOnlyAfterAnEmbedEntry) {
  EmbedAlone(0, Tokens("hello"));
  EXPECT_FALSE(engine_->TakeEmbedding(0).has_value());
  EXPECT_FALSE(engine_->TakeEmbedding(2).has_value());
}

// The input chunked in slot 2, its last chunk in a step with another embedding input (slot 1)
// and a generation's prefill that samples (slot 3): bit-identical to alone, and the generation
// samples the token it samples alone.
TEST_F(LlamaEmbeddingTest, BatchedAndChunkedEqualsAloneInDeterministicMode) {
  if (!invariant_) GTEST_SKIP() << "deterministic mode is not available on this CPU";
  const std::vector<Token> input = Tokens("Once upon a time there was a little girl named Lily");
  const std::vector<Token> other = Tokens("She liked to play outside");
  const std::vector<Token> prompt = Tokens("One day, a big dog");
  const std::vector<float> alone = EmbedAlone(0, input);
  const std::vector<float> other_alone = EmbedAlone(0, other);
  Token sampled_alone = 0;
  {
    ASSERT_TRUE(engine_->BeginSequence(0, Params(), 0).has_value());
    BatchEntry e{0, prompt, 0, true, true, false};
    auto t = engine_->Step(std::span<const BatchEntry>(&e, 1));
    ASSERT_TRUE(t.has_value() && t->size() == 1);
    sampled_alone = (*t)[0].token;
    engine_->EndSequence(0, false);
  }
  for (int slot : {1, 2, 3}) ASSERT_TRUE(engine_->BeginSequence(slot, Params(), 0).has_value());
  const std::size_t cut = input.size() / 2;
  const std::span<const Token> in(input);
  BatchEntry first{2, in.subspan(0, cut), 0, false, true, false};
  ASSERT_TRUE(engine_->Step(std::span<const BatchEntry>(&first, 1)).has_value());
  const BatchEntry step[] = {
      {1, other, 0, false, true, true},
      {2, in.subspan(cut), static_cast<int>(cut), false, true, true},
      {3, prompt, 0, true, true, false},
  };
  auto sampled = engine_->Step(step);
  ASSERT_TRUE(sampled.has_value());
  ASSERT_EQ(sampled->size(), 1u);
  EXPECT_EQ((*sampled)[0].token, sampled_alone);
  EXPECT_EQ(engine_->TakeEmbedding(2).value(), alone);
  EXPECT_EQ(engine_->TakeEmbedding(1).value(), other_alone);
  for (int slot : {1, 2, 3}) engine_->EndSequence(slot, false);
}

}  // namespace
}  // namespace ember::engine
