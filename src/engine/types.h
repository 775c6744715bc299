// Plain data shared by the engine, the scheduler and the API encoders: tokens, sampling
// parameters, chat messages, finish reasons and usage. No behaviour, no third-party types;
// api/ may include this header (it is the vocabulary of a generation, not the engine).
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

namespace ember::engine {

using Token = std::int32_t;

// A constraint on what a sequence may generate: a GBNF grammar (llama.cpp's grammar format)
// whose root rule the whole output must match, or, when lazy, the part of the output from the
// first trigger on (a tool call the model may or may not start). Built by the chat component
// from a JSON Schema or a template's tool-call format; immutable and shared between requests.
struct Grammar {
  std::string gbnf;
  bool lazy = false;
  std::vector<std::string> trigger_patterns;  // regexes matched against the output so far
  std::vector<std::int32_t> trigger_tokens;   // tokens that start the constrained part
  // Text the prompt already ends with that the (eager) grammar begins with: the template's
  // generation prompt. Fed to the grammar before the first sampled token.
  std::string prefill;
  // When the whole output is one JSON value: its JSON Schema (text), the same constraint as
  // `gbnf`. An engine with llguidance enforces this instead of the grammar (a mask in tens of
  // microseconds, not milliseconds); `gbnf`, `lazy` and `prefill` are then unused.
  std::string json_schema;
};

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
  // Report each sampled token's log-probability and its `top_logprobs` most likely
  // alternatives ([0, kMaxTopLogprobs]) in the distribution it was sampled from
  // (docs/api.md, "Log-probabilities"). Off costs nothing; on never changes the tokens.
  bool logprobs = false;
  int top_logprobs = 0;
  // Constrained decoding; null = unconstrained.
  std::shared_ptr<const Grammar> grammar;
};

// The most alternatives a sequence may ask for (OpenAI's chat limit).
inline constexpr int kMaxTopLogprobs = 20;

struct TokenLogprob {
  Token token = 0;
  float logprob = 0.0f;
};

// One entry's output of an engine step: the sampled token and, when its sequence asked for
// them, its log-probability and the most likely tokens, most likely first. Fixed-size so a
// step allocates nothing per token whether or not logprobs are asked for.
struct Sampled {
  Token token = 0;
  bool has_logprobs = false;
  float logprob = 0.0f;
  int n_top = 0;
  std::array<TokenLogprob, kMaxTopLogprobs> top{};

  std::span<const TokenLogprob> top_logprobs() const {
    return {top.data(), static_cast<std::size_t>(n_top)};
  }
};

// A token as a client sees it in logprobs: its bytes (possibly a partial UTF-8 sequence) and
// its log-probability.
struct PieceLogprob {
  std::string piece;
  float logprob = 0.0f;
};

// A sampled token with the alternatives its sequence asked for, most likely first.
struct TokenLogprobs {
  PieceLogprob chosen;
  std::vector<PieceLogprob> top;
};

// A function call the assistant made, as the history carries it and as parsed from output.
struct ToolCall {
  std::string id;         // "call_…"; ties the tool's answer to the call
  std::string name;       // the function's name
  std::string arguments;  // JSON text of an object (as the model wrote it)
};

struct ChatMessage {
  std::string role;  // "system", "user", "assistant" or "tool"
  std::string content;
  std::vector<ToolCall> tool_calls = {};  // assistant messages only
  std::string tool_call_id = {};          // tool messages only: the call this answers
};

enum class FinishReason {
  kStop,       // end-of-generation token or a stop string
  kLength,     // max_tokens or the sequence's context reached
  kCancelled,  // client went away or the request was aborted
  kError,      // the engine failed mid-request
  // The output is tool calls (set by the server after parsing a finished output: the
  // scheduler never ends a sequence with it).
  kToolCalls,
  // A plugin's response hook ended the stream (a guardrail; set by the server, never the
  // scheduler).
  kContentFilter,
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
