// The carried llama.cpp patches that speed up the tokenizer's load (0004, 0006, 0008) must
// leave every vocabulary llama.cpp ships exactly as libllama built it before them: the
// fingerprints below were recorded with the build that carried only patches 0001-0005.
#include "engine/llama/vocab_fingerprint.h"

#include <gtest/gtest.h>
#include <llama.h>

#include <filesystem>
#include <string>
#include <vector>

#ifndef EMBER_LLAMA_SOURCE
#define EMBER_LLAMA_SOURCE ""
#endif

namespace ember::engine {
namespace {

struct Expected {
  const char* file;  // in llama.cpp's models/
  int tokens;
  std::uint64_t vocab;
  std::uint64_t pieces;
};

TEST(VocabFingerprint, EveryShippedVocabularyBuildsAsBeforeThePatches) {
  const std::filesystem::path models = std::filesystem::path(EMBER_LLAMA_SOURCE) / "models";
  if (!std::filesystem::exists(models / "ggml-vocab-llama-bpe.gguf")) {
    GTEST_SKIP() << "no llama.cpp source tree (EMBER_LLAMA_SOURCE) with its vocab files";
  }
  const std::vector<Expected> expected = {
      {"ggml-vocab-aquila.gguf", 100008, 0xa14a1b80bac1d33fULL, 0xad2a390b7fab14eaULL},
      {"ggml-vocab-baichuan.gguf", 64000, 0xd426a0d5ef2cf6e0ULL, 0xa890bab030977962ULL},
      {"ggml-vocab-bert-bge.gguf", 30522, 0xe859233402d0293aULL, 0xff284de8246da1f9ULL},
      {"ggml-vocab-command-r.gguf", 256000, 0xa820c50e4539e61dULL, 0xe8d19a6df2c6f084ULL},
      {"ggml-vocab-deepseek-coder.gguf", 32256, 0xff6cf2bdfeaa34ebULL, 0xc41c88d7375496a2ULL},
      {"ggml-vocab-deepseek-llm.gguf", 102400, 0xf51c122a55294241ULL, 0x3b6afc256c607924ULL},
      {"ggml-vocab-falcon.gguf", 65024, 0xd4e653038822f82bULL, 0x4d8b091cf5165af0ULL},
      {"ggml-vocab-gemma-4.gguf", 262144, 0x28737dfa5983a94cULL, 0x28845015eaf35b8bULL},
      {"ggml-vocab-gpt-2.gguf", 50257, 0x197a1c5594adc44aULL, 0xda5571c20491ce3fULL},
      {"ggml-vocab-gpt-neox.gguf", 50432, 0xd7bef1ab268b7728ULL, 0x48abef0c41fdf9d4ULL},
      {"ggml-vocab-llama-bpe.gguf", 128256, 0x5e1aa0e485c55440ULL, 0xca467bad9e7fa634ULL},
      {"ggml-vocab-llama-spm.gguf", 32000, 0xb2c9b28e353699d9ULL, 0x44d72bd8bfb37ccfULL},
      {"ggml-vocab-mpt.gguf", 50432, 0x0a420f80a1fa5838ULL, 0x87e5ca634c1e64b6ULL},
      {"ggml-vocab-nomic-bert-moe.gguf", 250048, 0x5b8d199bc65a127dULL, 0xaeb7f56fb1043d0eULL},
      {"ggml-vocab-phi-3.gguf", 32064, 0x90a10754ad982337ULL, 0xdbcc281a4a0abc88ULL},
      {"ggml-vocab-qwen2.gguf", 151936, 0x2ea0119915dbb085ULL, 0xd65750fb46e733bfULL},
      {"ggml-vocab-qwen35.gguf", 151936, 0x2ea0119915dbb085ULL, 0xd65750fb46e733bfULL},
      {"ggml-vocab-refact.gguf", 49216, 0xc26092fb7773ae76ULL, 0x2d62fa4ce1670ba3ULL},
      {"ggml-vocab-starcoder.gguf", 49152, 0xdded264b7c2db6c8ULL, 0xb1a2c0e1f4850f24ULL},
  };
  llama_log_set([](ggml_log_level, const char*, void*) {}, nullptr);
  llama_model_params params = llama_model_default_params();
  params.vocab_only = true;
  for (const Expected& e : expected) {
    const std::string path = (models / e.file).string();
    llama_model* model = llama_model_load_from_file(path.c_str(), params);
    ASSERT_NE(model, nullptr) << path;
    const llama_vocab* v = llama_model_get_vocab(model);
    EXPECT_EQ(llama_vocab_n_tokens(v), e.tokens) << e.file;
    EXPECT_EQ(VocabFingerprint(v), e.vocab) << e.file;
    EXPECT_EQ(PiecesFingerprint(v), e.pieces) << e.file;
    llama_model_free(model);
  }
}

}  // namespace
}  // namespace ember::engine
