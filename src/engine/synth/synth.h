// Model synthesis: writes a llama-architecture GGUF with seeded random weights and a real
// tokenizer vocabulary, so load tests and benchmarks run at realistic size without
// downloading weights. Called by `ember model synth` (src/cli) on the caller's thread;
// SynthesizeModel blocks until the file is complete and may use one extra worker thread.
//
// The output is written to "<output_path>.tmp", fsync'ed and renamed over output_path, so a
// reader never sees a partial model. The same options (seed included) give a byte-identical
// file. The model's numbers are meaningless; its shapes, tensor types and vocabulary are real.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "common/error.h"

namespace ember::synth {

// tiny: 256 wide, 4 layers, llama-spm vocab (32000). 110m: the stories110M / llama2-110M
// shape, llama-spm vocab. 1b: the Llama-3.2-1B shape (GQA, tied embeddings, rope base
// 500000, ctx_train 8192), llama-bpe vocab (128256).
enum class Shape { kTiny, k110m, k1b };

// Type of the 2-D weight matrices (token_embd included). Norm vectors are always F32.
enum class WeightType { kF32, kF16, kQ8_0, kQ4_0 };

struct SynthOptions {
  Shape shape = Shape::kTiny;
  WeightType type = WeightType::kF32;
  std::string output_path;
  std::uint64_t seed = 1;
  std::string vocab_path;  // a GGUF holding tokenizer.* keys; empty = DefaultVocabPath(shape)
};

// Accept "tiny", "110m", "1b" (case-sensitive); InvalidArgument otherwise.
[[nodiscard]] Result<Shape> ParseShape(std::string_view text);
// Accept "f32", "f16", "q8_0", "q4_0"; InvalidArgument otherwise.
[[nodiscard]] Result<WeightType> ParseWeightType(std::string_view text);

std::string_view ShapeName(Shape shape);
std::string_view WeightTypeName(WeightType type);

// The vocab-only GGUF shipped in the llama.cpp source tree ember was built against
// (<EMBER_LLAMA_SOURCE>/models/ggml-vocab-llama-{spm,bpe}.gguf). Empty when ember was
// built without EMBER_LLAMA_SOURCE.
std::string DefaultVocabPath(Shape shape);

// Writes the model. Errors: InvalidArgument (empty output path, vocab file that is not a
// GGUF or has no tokenizer.ggml.tokens, no default vocab), NotFound (vocab file missing),
// Unavailable (cannot create/write/rename the output), Internal (layout self-check failed).
// An existing output_path is replaced only on success; output_path.tmp never outlives the
// call.
[[nodiscard]] Status SynthesizeModel(const SynthOptions& options);

}  // namespace ember::synth
