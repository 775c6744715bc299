// Internal to synth: the hyperparameters of each shape and the GGUF metadata + tensor list
// (names, ggml shapes and types as llama.cpp's LLM_ARCH_LLAMA loader expects them).
// Only synth's own .cc files include this header (it pulls in gguf.h and ggml.h).
#pragma once

#include <gguf.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "common/error.h"
#include "engine/synth/synth.h"

namespace ember::synth {

struct ShapeSpec {
  const char* name;
  std::uint32_t n_embd;
  std::uint32_t n_layer;
  std::uint32_t n_head;
  std::uint32_t n_head_kv;
  std::uint32_t n_ff;
  std::uint32_t n_ctx_train;
  float rope_freq_base;
  bool tied_embeddings;  // no output.weight; llama.cpp reuses token_embd
  const char* vocab_file;
};

const ShapeSpec& SpecFor(Shape shape);

enum class Fill { kOnes, kRandom };

struct TensorPlan {
  std::string name;
  ggml_type type;
  std::int64_t ne0;  // row length (the input dimension)
  std::int64_t ne1;  // rows; 1 for vectors
  Fill fill;
};

struct GgufDeleter {
  void operator()(gguf_context* ctx) const { gguf_free(ctx); }
};
using GgufPtr = std::unique_ptr<gguf_context, GgufDeleter>;

struct Layout {
  GgufPtr gguf;                     // metadata and tensor infos, no data
  std::vector<TensorPlan> tensors;  // same order as the GGUF's tensor infos
};

// Reads only the metadata of a vocab GGUF and checks it has a usable tokenizer.
[[nodiscard]] Result<GgufPtr> ReadVocab(const std::string& path);

// Builds the output GGUF's metadata (tokenizer.* keys copied from `vocab`) and tensor infos.
[[nodiscard]] Result<Layout> BuildLayout(const ShapeSpec& spec, WeightType type, std::uint64_t seed,
                                         const gguf_context& vocab);

}  // namespace ember::synth
