// The libllama adapter: the only code in ember that includes llama.h. Loads a GGUF model,
// owns its llama_context (one KV stream per sequence slot) and one sampler chain per slot.
//
// Threads: Create() runs on the caller's thread; afterwards Step/BeginSequence/EndSequence
// run only on the scheduler's engine thread. The Tokenizer is immutable and callable from
// any thread.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>

#include "common/error.h"
#include "engine/engine.h"

namespace ember::engine {

enum class FlashAttention { kAuto, kOn, kOff };

struct LlamaOptions {
  std::string model_path;
  std::string model_id;  // empty = file name without ".gguf"
  int ctx_size = 4096;   // KV cells in all, split evenly over `parallel` sequences
  int parallel = 4;
  int batch_size = 512;  // most tokens per step
  int threads = 0;       // 0 = caller must decide; Create() rejects it
  FlashAttention flash_attn = FlashAttention::kAuto;
  // Where repacked weights are persisted and mapped back from (docs/coldstart.md); empty =
  // repack on every load, persist nothing.
  std::string repack_cache_dir;
  // Its disk use: a cap on all its files (0 = none), and the free space a write must leave.
  std::uint64_t repack_cache_max_bytes = 0;
  std::uint64_t repack_cache_min_free_bytes = std::uint64_t{1} << 30;
  // Hash every cache file at every start, even one already verified during this boot.
  bool repack_cache_verify_every_start = false;
  // false: quantized weights stay as stored (no repack): a faster start without a cache, a
  // slower decode (docs/coldstart.md has the figures).
  bool repack = true;
  // Called on the loading thread as each phase of ModelInfo::startup begins.
  std::function<void(std::string_view phase)> on_phase;
};

[[nodiscard]] Result<std::unique_ptr<Engine>> CreateLlamaEngine(const LlamaOptions& options);

// What enforces a Grammar's json_schema in this build: "llguidance <version>" where it is built
// in (scripts/llguidance.sh), else "gbnf" (the schema's GBNF grammar, Grammar::gbnf).
std::string JsonSchemaEngine();

// One constraint timed on its own, with no forward pass (bench/grammar_bench.cc): at each
// position of a token sequence, the whole-vocabulary mask and the one-token check the engine's
// sample-first path makes, then the token accepted.
class ConstraintProbe {
 public:
  struct Timing {
    double mask_seconds = 0;
    double check_seconds = 0;
    bool allowed = false;  // the check's verdict on the token
  };
  virtual ~ConstraintProbe() = default;
  [[nodiscard]] virtual Result<Timing> MaskCheckAccept(Token next) = 0;
};
// A probe for `grammar` over the vocabulary of `engine`, which CreateLlamaEngine made.
[[nodiscard]] Result<std::unique_ptr<ConstraintProbe>> ProbeConstraint(const Engine& engine,
                                                                       const Grammar& grammar);

// The id a model gets without --model-id: its file name without ".gguf".
std::string DefaultModelId(const std::string& path);

}  // namespace ember::engine
