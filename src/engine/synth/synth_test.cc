#include "engine/synth/synth.h"

#include <gguf.h>
#include <gtest/gtest.h>
#include <llama.h>
#include <stdlib.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <memory>
#include <string>
#include <vector>

namespace ember::synth {
namespace {

namespace fs = std::filesystem;

void QuietLog(ggml_log_level level, const char* text, void*) {
  if (level == GGML_LOG_LEVEL_ERROR) std::fputs(text, stderr);
}

class SynthTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    llama_log_set(QuietLog, nullptr);
    llama_backend_init();
  }

  void SetUp() override {
    std::string pattern = (fs::temp_directory_path() / "ember_synth_test.XXXXXX").string();
    ASSERT_NE(mkdtemp(pattern.data()), nullptr);
    dir_ = pattern;
  }
  void TearDown() override {
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }

  std::string PathFor(const std::string& name) const { return (dir_ / name).string(); }

  static std::string ReadAll(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
  }

  fs::path dir_;
};

struct ModelDeleter {
  void operator()(llama_model* m) const { llama_model_free(m); }
};
struct ContextDeleter {
  void operator()(llama_context* c) const { llama_free(c); }
};
struct GgufDeleter {
  void operator()(gguf_context* c) const { gguf_free(c); }
};

// Loads the model, decodes "Once upon a time" and returns the last position's logits.
std::vector<float> DecodeOnce(llama_model* model) {
  const llama_vocab* vocab = llama_model_get_vocab(model);
  const std::string prompt = "Once upon a time";
  std::vector<llama_token> tokens(64);
  const int n = llama_tokenize(vocab, prompt.data(), static_cast<int32_t>(prompt.size()),
                               tokens.data(), static_cast<int32_t>(tokens.size()),
                               /*add_special=*/true, /*parse_special=*/false);
  EXPECT_GT(n, 2);
  if (n <= 0) return {};
  tokens.resize(n);

  llama_context_params cparams = llama_context_default_params();
  cparams.n_ctx = 128;
  cparams.n_batch = 128;
  cparams.n_threads = 2;
  cparams.n_threads_batch = 2;
  std::unique_ptr<llama_context, ContextDeleter> ctx(llama_init_from_model(model, cparams));
  EXPECT_NE(ctx, nullptr);
  if (!ctx) return {};
  EXPECT_EQ(llama_decode(ctx.get(), llama_batch_get_one(tokens.data(), n)), 0);
  const float* logits = llama_get_logits_ith(ctx.get(), -1);
  EXPECT_NE(logits, nullptr);
  if (!logits) return {};
  return {logits, logits + llama_vocab_n_tokens(vocab)};
}

TEST(SynthParseTest, ParsesShapesAndTypes) {
  EXPECT_EQ(ParseShape("tiny"), Shape::kTiny);
  EXPECT_EQ(ParseShape("110m"), Shape::k110m);
  EXPECT_EQ(ParseShape("1b"), Shape::k1b);
  ASSERT_FALSE(ParseShape("7b").has_value());
  EXPECT_EQ(ParseShape("7b").error().code, ErrorCode::kInvalidArgument);
  EXPECT_EQ(ParseWeightType("f32"), WeightType::kF32);
  EXPECT_EQ(ParseWeightType("f16"), WeightType::kF16);
  EXPECT_EQ(ParseWeightType("q8_0"), WeightType::kQ8_0);
  EXPECT_EQ(ParseWeightType("q4_0"), WeightType::kQ4_0);
  ASSERT_FALSE(ParseWeightType("q4_k").has_value());
  EXPECT_EQ(ParseWeightType("q4_k").error().param, "type");
}

TEST(SynthParseTest, DefaultVocabsComeFromTheLlamaSourceTree) {
  EXPECT_TRUE(DefaultVocabPath(Shape::kTiny).ends_with("/models/ggml-vocab-llama-spm.gguf"));
  EXPECT_TRUE(DefaultVocabPath(Shape::k1b).ends_with("/models/ggml-vocab-llama-bpe.gguf"));
  EXPECT_TRUE(fs::is_regular_file(DefaultVocabPath(Shape::kTiny)))
      << "built without a valid EMBER_LLAMA_SOURCE: " << DefaultVocabPath(Shape::kTiny);
}

class SynthLoadTest : public SynthTest, public ::testing::WithParamInterface<WeightType> {};

TEST_P(SynthLoadTest, TinyModelLoadsAndDecodesToFiniteLogits) {
  const std::string path = PathFor("tiny.gguf");
  ASSERT_TRUE(SynthesizeModel({Shape::kTiny, GetParam(), path, 7, ""}).has_value());
  EXPECT_FALSE(fs::exists(path + ".tmp"));

  llama_model_params mparams = llama_model_default_params();
  mparams.vocab_only = false;
  std::unique_ptr<llama_model, ModelDeleter> model(
      llama_model_load_from_file(path.c_str(), mparams));
  ASSERT_NE(model, nullptr);
  EXPECT_EQ(llama_model_n_embd(model.get()), 256);
  EXPECT_EQ(llama_model_n_layer(model.get()), 4);
  EXPECT_EQ(llama_model_n_head(model.get()), 8);
  EXPECT_EQ(llama_model_n_head_kv(model.get()), 4);
  EXPECT_EQ(llama_model_n_ctx_train(model.get()), 2048);
  EXPECT_EQ(llama_vocab_n_tokens(llama_model_get_vocab(model.get())), 32000);

  const std::vector<float> logits = DecodeOnce(model.get());
  ASSERT_EQ(logits.size(), 32000u);
  float lo = logits[0], hi = logits[0];
  for (float v : logits) {
    ASSERT_TRUE(std::isfinite(v));
    lo = std::min(lo, v);
    hi = std::max(hi, v);
  }
  EXPECT_GT(hi - lo, 0.01f) << "random weights should give varied logits";
}

INSTANTIATE_TEST_SUITE_P(Types, SynthLoadTest,
                         ::testing::Values(WeightType::kF32, WeightType::kF16, WeightType::kQ8_0,
                                           WeightType::kQ4_0),
                         [](const auto& info) { return std::string(WeightTypeName(info.param)); });

TEST_F(SynthTest, WritesLlamaTensorsWithExpectedShapesAndTypes) {
  const std::string path = PathFor("q4.gguf");
  ASSERT_TRUE(SynthesizeModel({Shape::kTiny, WeightType::kQ4_0, path, 1, ""}).has_value());
  std::unique_ptr<gguf_context, GgufDeleter> gguf(
      gguf_init_from_file(path.c_str(), gguf_init_params{true, nullptr}));
  ASSERT_NE(gguf, nullptr);
  EXPECT_STREQ(gguf_get_val_str(gguf.get(), gguf_find_key(gguf.get(), "general.architecture")),
               "llama");
  EXPECT_STREQ(gguf_get_val_str(gguf.get(), gguf_find_key(gguf.get(), "tokenizer.ggml.model")),
               "llama");
  EXPECT_EQ(gguf_get_val_u32(gguf.get(), gguf_find_key(gguf.get(), "general.file_type")), 2u);
  EXPECT_EQ(gguf_get_n_tensors(gguf.get()), 2 + 4 * 9 + 1);

  const int64_t k = gguf_find_tensor(gguf.get(), "blk.3.attn_k.weight");
  ASSERT_GE(k, 0);
  EXPECT_EQ(gguf_get_tensor_type(gguf.get(), k), GGML_TYPE_Q4_0);
  EXPECT_EQ(gguf_get_tensor_ne(gguf.get(), k)[0], 256);
  EXPECT_EQ(gguf_get_tensor_ne(gguf.get(), k)[1], 128);
  const int64_t down = gguf_find_tensor(gguf.get(), "blk.0.ffn_down.weight");
  ASSERT_GE(down, 0);
  EXPECT_EQ(gguf_get_tensor_ne(gguf.get(), down)[0], 768);
  const int64_t norm = gguf_find_tensor(gguf.get(), "output_norm.weight");
  ASSERT_GE(norm, 0);
  EXPECT_EQ(gguf_get_tensor_type(gguf.get(), norm), GGML_TYPE_F32);
  const int64_t embd = gguf_find_tensor(gguf.get(), "token_embd.weight");
  ASSERT_GE(embd, 0);
  EXPECT_EQ(gguf_get_tensor_ne(gguf.get(), embd)[1], 32000);
}

TEST_F(SynthTest, SameSeedGivesIdenticalBytesAndOtherSeedDiffers) {
  const std::string a = PathFor("a.gguf"), b = PathFor("b.gguf"), c = PathFor("c.gguf");
  ASSERT_TRUE(SynthesizeModel({Shape::kTiny, WeightType::kQ8_0, a, 42, ""}).has_value());
  ASSERT_TRUE(SynthesizeModel({Shape::kTiny, WeightType::kQ8_0, b, 42, ""}).has_value());
  ASSERT_TRUE(SynthesizeModel({Shape::kTiny, WeightType::kQ8_0, c, 43, ""}).has_value());
  const std::string bytes_a = ReadAll(a);
  EXPECT_GT(bytes_a.size(), 10'000'000u);
  EXPECT_TRUE(bytes_a == ReadAll(b)) << "same seed must give a byte-identical file";
  EXPECT_FALSE(bytes_a == ReadAll(c));
}

// 33 tokens make token_embd (q8_0, 33 rows of 272 bytes) end off the 32-byte alignment, so
// the next tensor's data only lands where gguf looks for it if the padding is right.
TEST_F(SynthTest, TensorDataSitsAtGgufOffsetsWhenPaddingIsNeeded) {
  const std::string vocab = PathFor("odd_vocab.gguf");
  std::vector<std::string> names;
  for (int i = 0; i < 33; ++i) names.push_back("tok" + std::to_string(i));
  std::vector<const char*> tokens;
  for (const std::string& name : names) tokens.push_back(name.c_str());
  std::unique_ptr<gguf_context, GgufDeleter> src(gguf_init_empty());
  gguf_set_val_str(src.get(), "tokenizer.ggml.model", "gpt2");
  gguf_set_val_str(src.get(), "qwen2.context_length", "belongs to another architecture");
  gguf_set_arr_str(src.get(), "tokenizer.ggml.tokens", tokens.data(), tokens.size());
  ASSERT_TRUE(gguf_write_to_file(src.get(), vocab.c_str(), false));

  const std::string path = PathFor("odd.gguf");
  ASSERT_TRUE(SynthesizeModel({Shape::kTiny, WeightType::kQ8_0, path, 1, vocab}).has_value());
  std::unique_ptr<gguf_context, GgufDeleter> gguf(
      gguf_init_from_file(path.c_str(), gguf_init_params{true, nullptr}));
  ASSERT_NE(gguf, nullptr);
  EXPECT_LT(gguf_find_key(gguf.get(), "qwen2.context_length"), 0);
  EXPECT_EQ(gguf_get_val_u32(gguf.get(), gguf_find_key(gguf.get(), "llama.vocab_size")), 33u);
  EXPECT_EQ(gguf_get_arr_n(gguf.get(), gguf_find_key(gguf.get(), "tokenizer.ggml.tokens")), 33u);

  const int64_t norm = gguf_find_tensor(gguf.get(), "blk.0.attn_norm.weight");
  ASSERT_GE(norm, 0);
  std::vector<float> values(256);
  std::ifstream in(path, std::ios::binary);
  in.seekg(static_cast<std::streamoff>(gguf_get_data_offset(gguf.get()) +
                                       gguf_get_tensor_offset(gguf.get(), norm)));
  in.read(reinterpret_cast<char*>(values.data()), values.size() * sizeof(float));
  ASSERT_TRUE(in.good());
  for (float v : values) ASSERT_EQ(v, 1.0f);
}

TEST_F(SynthTest, MissingVocabIsNotFoundAndLeavesNoFile) {
  const std::string out = PathFor("out.gguf");
  auto status = SynthesizeModel({Shape::kTiny, WeightType::kF32, out, 1, PathFor("nope.gguf")});
  ASSERT_FALSE(status.has_value());
  EXPECT_EQ(status.error().code, ErrorCode::kNotFound);
  EXPECT_NE(status.error().message.find("nope.gguf"), std::string::npos);
  EXPECT_FALSE(fs::exists(out));
  EXPECT_FALSE(fs::exists(out + ".tmp"));
}

TEST_F(SynthTest, VocabThatIsNotAGgufIsInvalidArgument) {
  const std::string vocab = PathFor("vocab.txt");
  std::ofstream(vocab) << "not a gguf file at all\n";
  auto status = SynthesizeModel({Shape::kTiny, WeightType::kF32, PathFor("o.gguf"), 1, vocab});
  ASSERT_FALSE(status.has_value());
  EXPECT_EQ(status.error().code, ErrorCode::kInvalidArgument);
}

TEST_F(SynthTest, GgufWithoutTokenizerIsInvalidArgument) {
  const std::string vocab = PathFor("empty.gguf");
  std::unique_ptr<gguf_context, GgufDeleter> empty(gguf_init_empty());
  gguf_set_val_str(empty.get(), "general.architecture", "llama");
  ASSERT_TRUE(gguf_write_to_file(empty.get(), vocab.c_str(), false));
  auto status = SynthesizeModel({Shape::kTiny, WeightType::kF32, PathFor("o.gguf"), 1, vocab});
  ASSERT_FALSE(status.has_value());
  EXPECT_EQ(status.error().code, ErrorCode::kInvalidArgument);
  EXPECT_NE(status.error().message.find("tokenizer"), std::string::npos);
}

TEST_F(SynthTest, UnwritableOutputIsAnErrorNotACrash) {
  auto status =
      SynthesizeModel({Shape::kTiny, WeightType::kF32, PathFor("no/such/dir/model.gguf"), 1, ""});
  ASSERT_FALSE(status.has_value());
  EXPECT_EQ(status.error().code, ErrorCode::kUnavailable);
  auto empty = SynthesizeModel({Shape::kTiny, WeightType::kF32, "", 1, ""});
  ASSERT_FALSE(empty.has_value());
  EXPECT_EQ(empty.error().code, ErrorCode::kInvalidArgument);
}

}  // namespace
}  // namespace ember::synth
