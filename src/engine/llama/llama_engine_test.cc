// The libllama adapter on the real tiny model (stories260K): the log-probabilities it reports
// are a distribution's, match what it samples, and asking for them never changes the tokens;
// a grammar constrains every sampled token, with and without logprobs and across preemption.
#include "engine/llama/llama_engine.h"

#include <gtest/gtest.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <string>
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

  // Slot 1 holds all but the last of `tokens`: feeds that one and then each token it samples,
  // and expects `reference`'s tokens, step by step; ends the sequence.
  static void ExpectSlot1DecodesLike(const std::vector<Token>& tokens,
                                     const std::vector<Sampled>& reference) {
    const int n = static_cast<int>(tokens.size());
    BatchEntry entry{1, std::span<const Token>(tokens.data() + n - 1, 1), n - 1, true};
    int pos = n;
    Token next = 0;
    for (std::size_t i = 0; i < reference.size(); ++i) {
      auto step = engine_->Step(std::span<const BatchEntry>(&entry, 1));
      ASSERT_TRUE(step.has_value()) << step.error().message;
      EXPECT_EQ((*step)[0].token, reference[i].token) << "token " << i;
      next = (*step)[0].token;
      entry = BatchEntry{1, std::span<const Token>(&next, 1), pos++, true};
    }
    engine_->EndSequence(1, false);
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

// Text of the tokens up to the end of generation; `ended` says whether it came.
std::string TextUntilEnd(const Tokenizer& tok, const std::vector<Sampled>& tokens, bool& ended) {
  std::string text;
  ended = false;
  for (const Sampled& s : tokens) {
    if (tok.IsEndOfGeneration(s.token)) {
      ended = true;
      break;
    }
    text += tok.TokenPiece(s.token);
  }
  return text;
}

std::shared_ptr<const Grammar> Gbnf(std::string text) {
  auto g = std::make_shared<Grammar>();
  g->gbnf = std::move(text);
  return g;
}

TEST_F(LlamaEngineTest, AGrammarConstrainsEverySampleAndEndsTheOutput) {
  // A tiny random-ish model left to itself never writes these; under the grammar it must, and
  // it must stop when the grammar is complete.
  const auto choice = Gbnf(R"(root ::= "yes" | "no")");
  const auto number = Gbnf(R"(root ::= "{\"n\":" [1-9] [0-9]? "}")");
  for (std::uint64_t seed = 1; seed <= 6; ++seed) {
    SamplingParams p = Sampling(1.0f, false);
    p.seed = seed;
    p.grammar = choice;
    bool ended = false;
    const std::string answer = TextUntilEnd(engine_->tokenizer(), Generate(p, 8), ended);
    EXPECT_TRUE(answer == "yes" || answer == "no") << "seed " << seed << ": '" << answer << "'";
    EXPECT_TRUE(ended) << "the grammar is complete: only the end may follow";
    p.grammar = number;
    const std::string json = TextUntilEnd(engine_->tokenizer(), Generate(p, 16), ended);
    EXPECT_TRUE(ended);
    ASSERT_GE(json.size(), 7u) << json;
    EXPECT_EQ(json.substr(0, 5), "{\"n\":") << json;
    EXPECT_EQ(json.back(), '}') << json;
  }
}

TEST_F(LlamaEngineTest, ConstrainedLogprobsAreOfTheMaskedDistribution) {
  SamplingParams p = Sampling(1.0f, true, 20);
  p.grammar = Gbnf(R"(root ::= "yes" | "no")");
  const auto tokens = Generate(p, 1);
  ASSERT_EQ(tokens.size(), 1u);
  ASSERT_TRUE(tokens[0].has_logprobs);
  double mass = 0;
  for (const TokenLogprob& t : tokens[0].top_logprobs()) {
    const std::string piece = engine_->tokenizer().TokenPiece(t.token);
    EXPECT_TRUE(!piece.empty() &&
                (std::string("yes").starts_with(piece) || std::string("no").starts_with(piece)))
        << "'" << piece << "' is not allowed by the grammar";
    mass += std::exp(double{t.logprob});
  }
  EXPECT_NEAR(mass, 1.0, 1e-4) << "the allowed tokens carry all the probability";
}

TEST_F(LlamaEngineTest, ConstrainedTokensAreTheSameWithAndWithoutLogprobs) {
  // Greedy: the check-first path and the mask-first path must pick the same token.
  SamplingParams off = Sampling(0.0f, false);
  off.grammar = Gbnf(R"(root ::= "{\"n\":" [1-9] [0-9]? "}")");
  SamplingParams on = off;
  on.logprobs = true;
  on.top_logprobs = 3;
  const auto plain = Generate(off, 10);
  const auto with = Generate(on, 10, /*slot=*/1);
  ASSERT_EQ(plain.size(), with.size());
  for (std::size_t i = 0; i < plain.size(); ++i) EXPECT_EQ(plain[i].token, with[i].token) << i;
}

TEST_F(LlamaEngineTest, SamplingCountersCountEveryPathOfTheGrammar) {
  // Unconstrained tokens, check-first tokens (the greedy pick of this model is rarely "{"),
  // and mask-first tokens each add to their counters; the time only grows.
  const SamplingCounters start = engine_->sampling_counters();
  Generate(Sampling(1.0f, false), 3);
  SamplingParams check = Sampling(0.0f, false);
  check.grammar = Gbnf(R"(root ::= "{\"n\":" [1-9] [0-9]? "}")");
  Generate(check, 4);
  SamplingParams mask = check;
  mask.logprobs = true;
  Generate(mask, 4);
  const SamplingCounters end = engine_->sampling_counters();
  EXPECT_EQ(end.tokens - start.tokens, 11u);
  EXPECT_EQ(end.constrained - start.constrained, 8u);
  EXPECT_EQ(end.mask_first - start.mask_first, 4u);
  EXPECT_GE(end.check_rejected - start.check_rejected, 1u) << "the first pick is not '{'";
  EXPECT_LE(end.check_rejected - start.check_rejected, 4u);
  EXPECT_GT(end.nanoseconds, start.nanoseconds);
}

TEST_F(LlamaEngineTest, AGrammarThatDoesNotCompileIsTheRequestsError) {
  SamplingParams p = Sampling(0.0f, false);
  p.grammar = Gbnf("root ::= (");
  auto begun = engine_->BeginSequence(0, p, 0);
  ASSERT_FALSE(begun);
  EXPECT_EQ(begun.error().code, ErrorCode::kInvalidArgument);
  engine_->EndSequence(0, false);
}

// A schema carries its GBNF too; the engine enforces the schema itself where llguidance is
// built in (JsonSchemaEngine()), else the grammar. Either way every answer is the value.
std::shared_ptr<const Grammar> SmallSchema() {
  auto g = std::make_shared<Grammar>();
  g->json_schema = R"({"type":"object","properties":{"n":{"type":"integer","minimum":1,)"
                   R"("maximum":99}},"required":["n"],"additionalProperties":false})";
  g->gbnf = R"(root ::= "{" space "\"n\"" space ":" space [1-9] [0-9]? space "}"
space ::= | " " | "\n"{1,2} [ \t]{0,20})";
  // Prefill is the GBNF path's only: a schema enforced by llguidance starts at the value.
  return g;
}

std::string WithoutWhitespace(const std::string& s) {
  std::string out;
  for (const char c : s) {
    if (c != ' ' && c != '\n' && c != '\t') out += c;
  }
  return out;
}

TEST_F(LlamaEngineTest, AJsonSchemaConstraintEndsWithACompleteValue) {
  for (const bool logprobs : {false, true}) {
    for (std::uint64_t seed = 1; seed <= 4; ++seed) {
      SamplingParams p = Sampling(1.0f, logprobs, logprobs ? 2 : 0);
      p.seed = seed;
      p.grammar = SmallSchema();
      bool ended = false;
      const std::string json = TextUntilEnd(engine_->tokenizer(), Generate(p, 40), ended);
      EXPECT_TRUE(ended) << "seed " << seed << ": '" << json << "'";
      const std::string bare = WithoutWhitespace(json);
      ASSERT_GE(bare.size(), 7u) << json;
      EXPECT_EQ(bare.substr(0, 5), "{\"n\":") << json;
      EXPECT_EQ(bare.back(), '}') << json;
      const int n = std::atoi(bare.substr(5).c_str());
      EXPECT_TRUE(n >= 1 && n <= 99) << json;
    }
  }
}

TEST_F(LlamaEngineTest, LlguidanceSequencesMaskFirstAndGbnfOnesCheckFirst) {
  if (JsonSchemaEngine() == "gbnf") GTEST_SKIP() << "no llguidance: schemas run as their GBNF";
  SamplingParams p = Sampling(1.0f, false);
  p.seed = 5;
  p.grammar = SmallSchema();
  const SamplingCounters start = engine_->sampling_counters();
  const auto tokens = Generate(p, 6);
  const SamplingCounters mid = engine_->sampling_counters();
  EXPECT_EQ(mid.constrained - start.constrained, tokens.size());
  EXPECT_EQ(mid.mask_first - start.mask_first, tokens.size()) << "llguidance masks first";
  EXPECT_EQ(mid.check_rejected, start.check_rejected) << "so nothing is checked";
  auto gbnf = std::make_shared<Grammar>(*SmallSchema());
  gbnf->json_schema.clear();  // the same constraint as GBNF alone
  p.grammar = gbnf;
  Generate(p, 6);
  const SamplingCounters end = engine_->sampling_counters();
  EXPECT_EQ(end.mask_first, mid.mask_first) << "GBNF checks first";
  EXPECT_GE(end.check_rejected - mid.check_rejected, 1u);
}

TEST_F(LlamaEngineTest, ASchemaTheEngineCannotReadIsTheRequestsError) {
  if (JsonSchemaEngine() == "gbnf") GTEST_SKIP() << "no llguidance: schemas run as their GBNF";
  auto g = std::make_shared<Grammar>();
  g->json_schema = R"({"type": "object", "properties": )";
  g->gbnf = R"(root ::= "{}")";
  SamplingParams p = Sampling(0.0f, false);
  p.grammar = g;
  auto begun = engine_->BeginSequence(0, p, 0);
  ASSERT_FALSE(begun);
  EXPECT_EQ(begun.error().code, ErrorCode::kInvalidArgument);
  EXPECT_NE(begun.error().message.find("JSON schema"), std::string::npos) << begun.error().message;
  engine_->EndSequence(0, false);
}

TEST_F(LlamaEngineTest, ASuspendedGrammarResumesWhereItStopped) {
  SamplingParams p = Sampling(1.0f, false);
  p.seed = 99;
  p.grammar = Gbnf(R"(root ::= "{\"n\":" [1-9] [0-9] [0-9] "}")");
  const auto whole = Generate(p, 12);
  // The same request, preempted after 3 tokens and resumed in the other slot.
  auto prompt = engine_->tokenizer().Tokenize("Once upon a time, there was a", true);
  ASSERT_TRUE(prompt);
  ASSERT_TRUE(engine_->BeginSequence(0, p, 0));
  std::vector<Token> fed(*prompt);
  std::vector<Token> out;
  auto step = [&](int slot, std::span<const Token> tokens, int pos) {
    BatchEntry entry{slot, tokens, pos, true};
    auto r = engine_->Step(std::span<const BatchEntry>(&entry, 1));
    ASSERT_TRUE(r && r->size() == 1);
    out.push_back((*r)[0].token);
  };
  step(0, fed, 0);
  for (int i = 0; i < 2; ++i) {
    fed.push_back(out.back());
    step(0, std::span<const Token>(&fed.back(), 1), static_cast<int>(fed.size()) - 1);
  }
  auto state = engine_->SuspendSampler(0);
  engine_->EndSequence(0, false);
  ASSERT_TRUE(engine_->BeginSequence(1, p, 0));
  engine_->ResumeSampler(1, std::move(state));
  fed.push_back(out.back());
  step(1, fed, 0);  // recompute the prefix, sample the next token
  while (out.size() < whole.size()) {
    fed.push_back(out.back());
    step(1, std::span<const Token>(&fed.back(), 1), static_cast<int>(fed.size()) - 1);
  }
  engine_->EndSequence(1, false);
  for (std::size_t i = 0; i < whole.size(); ++i) EXPECT_EQ(out[i], whole[i].token) << i;
}

// A prompt prefilled once in slot 0 and copied to slot 1 (all but its last token, which slot 1
// recomputes): slot 1 then samples what slot 0 does, greedily, token after token, even once
// slot 0's own cells are gone (the copy is a copy, not a reference).
TEST_F(LlamaEngineTest, CopiedPromptCellsSampleLikeTheSource) {
  const std::vector<Sampled> reference = Generate(Sampling(0.0f, false), 6, 0);
  ASSERT_EQ(reference.size(), 6u);
  auto prompt = engine_->tokenizer().Tokenize("Once upon a time, there was a", true);
  ASSERT_TRUE(prompt.has_value());
  const int n = static_cast<int>(prompt->size());
  ASSERT_TRUE(engine_->BeginSequence(0, Sampling(0.0f, false), 0).has_value());
  BatchEntry prefill{0, *prompt, 0, true};
  auto first = engine_->Step(std::span<const BatchEntry>(&prefill, 1));
  ASSERT_TRUE(first.has_value());
  ASSERT_EQ((*first)[0].token, reference[0].token);
  ASSERT_TRUE(engine_->BeginSequence(1, Sampling(0.0f, false), 0).has_value());
  ASSERT_TRUE(engine_->CopyPrefix(0, 1, n - 1).has_value());
  engine_->EndSequence(0, false);
  ExpectSlot1DecodesLike(*prompt, reference);
  EXPECT_FALSE(engine_->CopyPrefix(0, 0, 1).has_value());
}

// The RAM tier's round trip: a slot's cells saved to host memory, rebuilt from their bytes (as
// the disk tier reads them) and restored into the other slot (all but the prompt's last token, as
// the scheduler restores them) sample what the source sampled, even after the source's cells are
// gone. Prints the cost, measured once (not asserted: timings belong in BENCHMARKS.md).
TEST_F(LlamaEngineTest, SavedCellsRestoredIntoAnotherSlotSampleLikeTheSource) {
  const std::vector<Sampled> reference = Generate(Sampling(0.0f, false), 6, 0);
  ASSERT_EQ(reference.size(), 6u);
  auto prompt = engine_->tokenizer().Tokenize(
      "Once upon a time, there was a little girl named Lily. She loved to play outside in the "
      "park with her big red ball. One day, her mom said they would go to the beach.",
      true);
  ASSERT_TRUE(prompt.has_value());
  std::vector<Token> tokens = *engine_->tokenizer().Tokenize("Once upon a time, there was a", true);
  const int n = static_cast<int>(tokens.size());
  ASSERT_TRUE(engine_->BeginSequence(0, Sampling(0.0f, false), 0).has_value());
  BatchEntry prefill{0, tokens, 0, false};
  ASSERT_TRUE(engine_->Step(std::span<const BatchEntry>(&prefill, 1)).has_value());
  engine_->EndSequence(0, true);
  const auto t0 = std::chrono::steady_clock::now();
  auto saved = engine_->SaveCells(0);
  const auto t1 = std::chrono::steady_clock::now();
  ASSERT_TRUE(saved.has_value()) << saved.error().message;
  EXPECT_EQ((*saved)->n_pos(), n);
  EXPECT_GT((*saved)->bytes(), 0u);
  ASSERT_TRUE(engine_->BeginSequence(0, Sampling(0.0f, false), 0).has_value());  // clears slot 0
  engine_->EndSequence(0, false);
  ASSERT_TRUE(engine_->BeginSequence(1, Sampling(0.0f, false), 0).has_value());
  // Restored from its bytes, as the disk tier reads them back in another process.
  const std::span<const std::uint8_t> data = (*saved)->data();
  EXPECT_EQ(data.size(), (*saved)->bytes());
  auto rebuilt = engine_->CellsFromBytes({data.begin(), data.end()}, n, (*saved)->invariant());
  ASSERT_NE(rebuilt, nullptr);
  EXPECT_EQ(
      engine_->CellsFromBytes({data.begin(), data.end()}, engine_->Info().n_ctx_per_seq + 1, true),
      nullptr);
  const auto t2 = std::chrono::steady_clock::now();
  ASSERT_TRUE(engine_->RestoreCells(1, *rebuilt, n - 1).has_value());
  const auto t3 = std::chrono::steady_clock::now();
  std::printf("save %d cells: %zu bytes, %lld us; restore: %lld us\n", n, (*saved)->bytes(),
              static_cast<long long>((t1 - t0) / std::chrono::microseconds(1)),
              static_cast<long long>((t3 - t2) / std::chrono::microseconds(1)));
  ExpectSlot1DecodesLike(tokens, reference);
  // More positions than were saved: refused, and the slot holds nothing.
  ASSERT_TRUE(engine_->BeginSequence(1, Sampling(0.0f, false), 0).has_value());
  EXPECT_FALSE(engine_->RestoreCells(1, **saved, n + 1).has_value());
  engine_->EndSequence(1, false);
  // A longer prompt: bytes grow with the cells saved.
  ASSERT_TRUE(engine_->BeginSequence(0, Sampling(0.0f, false), 0).has_value());
  BatchEntry longer{0, *prompt, 0, false};
  ASSERT_TRUE(engine_->Step(std::span<const BatchEntry>(&longer, 1)).has_value());
  engine_->EndSequence(0, true);
  auto big = engine_->SaveCells(0);
  ASSERT_TRUE(big.has_value());
  EXPECT_GT((*big)->bytes(), (*saved)->bytes());
  std::printf("save %zu cells: %zu bytes\n", prompt->size(), (*big)->bytes());
  ASSERT_TRUE(engine_->BeginSequence(0, Sampling(0.0f, false), 0).has_value());
  engine_->EndSequence(0, false);
}

// A stream copy lands at the next decode: until then the destination can be neither saved nor
// restored into (its buffer is not there yet, and the copy would overwrite a restore).
TEST_F(LlamaEngineTest, ASlotAwaitingAStreamCopyIsNeitherSavedNorRestoredInto) {
  std::vector<Token> tokens = *engine_->tokenizer().Tokenize("Once upon a time, there was a", true);
  const int n = static_cast<int>(tokens.size());
  ASSERT_TRUE(engine_->BeginSequence(0, Sampling(0.0f, false), 0).has_value());
  BatchEntry prefill{0, tokens, 0, false};
  ASSERT_TRUE(engine_->Step(std::span<const BatchEntry>(&prefill, 1)).has_value());
  engine_->EndSequence(0, true);
  auto saved = engine_->SaveCells(0);
  ASSERT_TRUE(saved.has_value());
  ASSERT_TRUE(engine_->BeginSequence(1, Sampling(0.0f, false), 0).has_value());
  ASSERT_TRUE(engine_->CopyPrefix(0, 1, n).has_value());
  EXPECT_FALSE(engine_->SaveCells(1).has_value());
  EXPECT_FALSE(engine_->RestoreCells(1, **saved, n - 1).has_value());
  // After a step the copy has landed (the failed restore left slot 1 empty: it prefills).
  BatchEntry next{1, tokens, 0, false};
  ASSERT_TRUE(engine_->Step(std::span<const BatchEntry>(&next, 1)).has_value());
  EXPECT_TRUE(engine_->SaveCells(1).has_value());
  engine_->EndSequence(1, false);
  ASSERT_TRUE(engine_->BeginSequence(0, Sampling(0.0f, false), 0).has_value());
  engine_->EndSequence(0, false);
}

}  // namespace
}  // namespace ember::engine
