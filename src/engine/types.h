// Plain data shared by the engine, the scheduler and the API encoders: tokens, sampling
// parameters, chat messages, finish reasons and usage. No behaviour, no third-party types;
// api/ may include this header (it is the vocabulary of a generation, not the engine).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace ember::engine {

using Token = std::int32_t;

struct SamplingParams {
  float temperature = 1.0f;           // 0 = greedy
  float top_p = 1.0f;                 // (0, 1]
  int top_k = 0;                      // 0 = disabled
  float min_p = 0.0f;                 // [0, 1]
  float presence_penalty = 0.0f;      // [-2, 2], over generated tokens (OpenAI semantics)
  float frequency_penalty = 0.0f;     // [-2, 2]
  std::optional<std::uint64_t> seed;  // unset = a fresh random seed per request
  // Batch-invariant numerics: the output depends only on the request and the model, never on
  // what else shares its steps, its prompt chunking or prompt-cache hits (docs/determinism.md).
  bool deterministic = false;
};

struct ChatMessage {
  std::string role;  // "system", "user" or "assistant"
  std::string content;
};

enum class FinishReason {
  kStop,       // end-of-generation token or a stop string
  kLength,     // max_tokens or the sequence's context reached
  kCancelled,  // client went away or the request was aborted
  kError,      // the engine failed mid-request
};

// How an embedding input's per-token hidden states are pooled into one vector.
enum class Pooling {
  kLastToken,  // generative models: the last token's final hidden state (docs/api.md says why)
  kMean,       // embedding models, as their GGUF metadata declares
  kCls,
  kLast,
};

struct Usage {
  int prompt_tokens = 0;
  int completion_tokens = 0;
  int cached_tokens = 0;  // prompt tokens whose KV cells were reused, not recomputed
  int total_tokens() const { return prompt_tokens + completion_tokens; }
};

}  // namespace ember::engine
