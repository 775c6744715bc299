// llguidance's sampler over the real tiny model's vocabulary (stories260K, a SentencePiece
// vocabulary of 512 tokens): what it lets through at each point of a JSON value, checked one
// token at a time (the engine's sample-first path) and by the whole-vocabulary mask, agree.
#include "engine/llama/llguidance_sampler.h"

#include <gtest/gtest.h>
#include <llama.h>

#include <cmath>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#ifndef EMBER_TEST_MODEL
#define EMBER_TEST_MODEL ""
#endif

namespace ember::engine {
namespace {

struct ModelDeleter {
  void operator()(llama_model* m) const { llama_model_free(m); }
};
struct SamplerDeleter {
  void operator()(llama_sampler* s) const { llama_sampler_free(s); }
};
using SamplerPtr = std::unique_ptr<llama_sampler, SamplerDeleter>;

constexpr const char* kPerson =
    R"({"type":"object","properties":{"name":{"type":"string","maxLength":8},)"
    R"("age":{"type":"integer"}},"required":["name","age"],"additionalProperties":false})";

class LlgSamplerTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    if (!std::filesystem::exists(EMBER_TEST_MODEL)) return;
    llama_model_params params = llama_model_default_params();
    params.vocab_only = true;
    model_ = llama_model_load_from_file(EMBER_TEST_MODEL, params);
    ASSERT_NE(model_, nullptr);
    vocab_ = NewLlgVocabulary(llama_model_get_vocab(model_));
    ASSERT_NE(vocab_, nullptr);
  }
  static void TearDownTestSuite() {
    vocab_.reset();
    if (model_ != nullptr) llama_model_free(model_);
    model_ = nullptr;
  }
  void SetUp() override {
    if (model_ == nullptr) GTEST_SKIP() << "no test model at " << EMBER_TEST_MODEL;
  }

  static const llama_vocab* Vocab() { return llama_model_get_vocab(model_); }

  // The tokens whose text is exactly `piece`, most likely one merged token and one byte token
  // (SentencePiece's byte fallback). Checked alone either passes; llguidance's mask holds one
  // token per byte string.
  static std::vector<llama_token> Spellings(const std::string& piece) {
    std::vector<llama_token> out;
    for (llama_token id = 0; id < llama_vocab_n_tokens(Vocab()); ++id) {
      char buf[32];
      const int n = llama_token_to_piece(Vocab(), id, buf, sizeof(buf), 0, false);
      if (n >= 0 && std::string(buf, static_cast<std::size_t>(n)) == piece) out.push_back(id);
    }
    EXPECT_FALSE(out.empty()) << "no token '" << piece << "'";
    return out;
  }
  static llama_token Token(const std::string& piece) {
    const auto all = Spellings(piece);
    return all.empty() ? 0 : all.front();
  }
  // Whether `piece` passes when each of its spellings is checked alone (all must agree), and
  // whether the whole-vocabulary mask lets one of them through.
  static std::pair<bool, bool> Allowed(llama_sampler* s, const std::string& piece) {
    std::vector<llama_token> ids = Spellings(piece);
    std::vector<bool> passes;
    for (const llama_token id : ids) {
      llama_token_data one{id, 1.0f, 0.0f};
      llama_token_data_array single{&one, 1, -1, false};
      llama_sampler_apply(s, &single);
      passes.push_back(!std::isinf(one.logit));
    }
    for (const bool p : passes) EXPECT_EQ(p, passes.front()) << "'" << piece << "' spellings";
    return {!passes.empty() && passes.front(), MaskAllows(s, ids)};
  }
  static std::pair<bool, bool> Allowed(llama_sampler* s, llama_token token) {
    llama_token_data one{token, 1.0f, 0.0f};
    llama_token_data_array single{&one, 1, -1, false};
    llama_sampler_apply(s, &single);
    return {!std::isinf(one.logit), MaskAllows(s, {token})};
  }
  static bool MaskAllows(llama_sampler* s, const std::vector<llama_token>& ids) {
    const int n_vocab = llama_vocab_n_tokens(Vocab());
    std::vector<llama_token_data> all(static_cast<std::size_t>(n_vocab));
    for (int i = 0; i < n_vocab; ++i) all[static_cast<std::size_t>(i)] = {i, 1.0f, 0.0f};
    llama_token_data_array cur{all.data(), all.size(), -1, false};
    llama_sampler_apply(s, &cur);
    bool any = false;
    for (const llama_token id : ids)
      any = any || !std::isinf(all[static_cast<std::size_t>(id)].logit);
    return any;
  }

  static inline llama_model* model_ = nullptr;
  static inline std::shared_ptr<LlgVocabulary> vocab_;
};

TEST_F(LlgSamplerTest, OnlyTheValueTheSchemaDescribesPasses) {
  auto made = NewLlgSampler(vocab_, kPerson);
  ASSERT_TRUE(made.has_value()) << made.error().message;
  SamplerPtr s(*made);
  const llama_token eos = llama_vocab_eos(Vocab());
  // Before anything: '{' passes; a letter, a space and the end do not.
  EXPECT_EQ(Allowed(s.get(), "{"), std::make_pair(true, true));
  for (const char* bad : {"a", " ", "["}) {
    EXPECT_EQ(Allowed(s.get(), bad), std::make_pair(false, false)) << "'" << bad << "'";
  }
  EXPECT_EQ(Allowed(s.get(), eos), std::make_pair(false, false));
  // Through a whole value: every token of it passes both ways, the end only after it.
  const std::string value = R"({"name": "Ann", "age": 7})";
  for (const char c : value) {
    const std::string piece(1, c);
    EXPECT_EQ(Allowed(s.get(), piece), std::make_pair(true, true)) << "'" << piece << "'";
    EXPECT_EQ(Allowed(s.get(), eos), std::make_pair(false, false));
    llama_sampler_accept(s.get(), Token(piece));
  }
  EXPECT_EQ(Allowed(s.get(), eos), std::make_pair(true, true));
  EXPECT_EQ(Allowed(s.get(), "a"), std::make_pair(false, false));
}

TEST_F(LlgSamplerTest, ATokenItDoesNotAllowThrowsAndAClonedStateIsIndependent) {
  auto made = NewLlgSampler(vocab_, kPerson);
  ASSERT_TRUE(made.has_value()) << made.error().message;
  SamplerPtr s(*made);
  llama_sampler_accept(s.get(), Token("{"));
  SamplerPtr copy(llama_sampler_clone(s.get()));
  EXPECT_THROW(llama_sampler_accept(s.get(), Token("}")), std::exception);  // name is required
  // The copy kept the state before the refused token.
  EXPECT_EQ(Allowed(copy.get(), "\""), std::make_pair(true, true));
}

TEST_F(LlgSamplerTest, LongRunsOfWhitespaceAreCutAsTheGbnfConverterCutsThem) {
  auto made = NewLlgSampler(vocab_, R"({"type":"array","items":{"type":"integer"}})");
  ASSERT_TRUE(made.has_value()) << made.error().message;
  SamplerPtr s(*made);
  llama_sampler_accept(s.get(), Token("["));
  const llama_token nl = Token("\n");
  llama_sampler_accept(s.get(), nl);
  llama_sampler_accept(s.get(), nl);
  EXPECT_EQ(Allowed(s.get(), "\n"), std::make_pair(false, false));  // a third newline
}

TEST_F(LlgSamplerTest, ASchemaItCannotEnforceIsAnErrorNotASilentlyLooserConstraint) {
  auto made = NewLlgSampler(vocab_, R"({"type":"string","format":"no-such-format"})");
  ASSERT_FALSE(made.has_value());
  EXPECT_NE(made.error().message.find("no-such-format"), std::string::npos) << made.error().message;
  EXPECT_FALSE(NewLlgSampler(vocab_, R"({"type": )").has_value());
}

}  // namespace
}  // namespace ember::engine
