// OpenAI-compatible request parsing/validation and response encoding. Pure functions, no I/O,
// callable from any thread. nlohmann::json is private to this component: parsing uses it;
// the per-token encoders (chunks) are hand-written string builders because they sit on the
// streaming hot path.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "common/error.h"
#include "engine/types.h"

namespace ember::api {

// The endpoints a Generation serves (server/generation.h).
enum class Endpoint { kCompletions, kChatCompletions, kResponses, kEmbeddings };

// A function the model may call (`tools[i]` with type "function").
struct ToolDefinition {
  std::string name;         // [A-Za-z0-9_-]{1,64}, unique within the request
  std::string description;  // may be empty
  std::string parameters;   // JSON text of the parameters' JSON Schema; "{}" when absent
  bool strict = false;
};

// tool_choice: "auto" (the default with tools), "none", "required", or one named function.
struct ToolChoice {
  enum class Mode { kAuto, kNone, kRequired, kNamed };
  Mode mode = Mode::kAuto;
  std::string name;  // kNamed: a function of `tools`
};

// response_format: free text, any JSON object, or JSON matching a schema.
struct ResponseFormat {
  enum class Type { kText, kJsonObject, kJsonSchema };
  Type type = Type::kText;
  std::string name;    // kJsonSchema: json_schema.name
  std::string schema;  // kJsonSchema: JSON text of json_schema.schema; "{}" when absent
  bool strict = false;
};

// The Responses API's own fields, echoed in its Response object (api/responses.h).
struct ResponsesFields {
  std::optional<std::string> instructions;  // also the first (system) message
  std::string metadata = "{}";              // JSON text of up to 16 string pairs
  std::optional<std::string> user;
};

// A validated generation request. Model-dependent checks (model name, token ids < n_vocab,
// prompt + max_tokens <= context) are done by the caller, which knows the model.
// The most choices ("n") one request may ask for. OpenAI allows 128; here each choice holds one
// of the model's sequence slots for the whole request, so a larger n would only ever be
// refused by a model with fewer slots (docs/api.md).
inline constexpr int kMaxChoices = 8;

struct GenerationParams {
  Endpoint endpoint = Endpoint::kCompletions;
  std::string model;                                             // as sent; may be empty
  std::variant<std::string, std::vector<engine::Token>> prompt;  // completions only
  std::vector<engine::ChatMessage> messages;                     // chat only, non-empty
  std::optional<int> max_tokens;  // unset = as many as fit in the sequence's context
  engine::SamplingParams sampling;
  std::vector<std::string> stop;  // at most 4, each non-empty
  bool stream = false;
  bool include_usage = false;  // stream_options.include_usage
  int n = 1;                   // choices, 1..kMaxChoices
  // Chat only: functions the model may call, whether and which it must, and the answer's form.
  std::vector<ToolDefinition> tools;
  ToolChoice tool_choice;
  bool parallel_tool_calls = true;
  ResponseFormat response_format;
  ResponsesFields responses;  // /v1/responses only
};

// Both return kInvalidArgument with `param` naming the offending field on any client mistake:
// malformed JSON, invalid UTF-8, wrong types, out-of-range values, unsupported features
// (best_of, echo, suffix, logit_bias, tools, response_format, ...). logprobs land in
// sampling.logprobs / top_logprobs: chat's logprobs + top_logprobs (0..20), completions'
// logprobs (0..5).
[[nodiscard]] Result<GenerationParams> ParseCompletionRequest(std::string_view body);
[[nodiscard]] Result<GenerationParams> ParseChatRequest(std::string_view body);

struct ResponseMeta {
  std::string id;  // "cmpl-…" or "chatcmpl-…"
  std::int64_t created = 0;
  std::string model;
  // OpenAI's system_fingerprint: changes whenever the numerics behind the output may change
  // (docs/determinism.md). Omitted when empty.
  std::string system_fingerprint;
  // ember extension: seconds the request waited for its model to load (idle unload, several
  // models; docs/coldstart.md). Sent as usage.cold_start_seconds only when set.
  std::optional<double> cold_start_seconds;
  // The choice a streamed chunk belongs to (its "index"); bodies number their choices.
  std::size_t choice = 0;
};
// "1.234": cold_start_seconds as sent in usage and the x-ember-cold-start header.
std::string FormatSeconds(double seconds);

// "stop" | "length" | "error" ("cancelled" is never sent to a client).
std::string_view FinishReasonString(engine::FinishReason reason);

// The log-probabilities that go with a choice's text, or with one chunk's text
// (docs/api.md, "Log-probabilities"). The encoders take a pointer: null writes
// "logprobs": null, as for a request that did not ask for them. Chat writes OpenAI's
// {"content": [{token, logprob, bytes, top_logprobs}], "refusal": null}; completions the
// legacy {tokens, token_logprobs, top_logprobs, text_offset}, whose top_logprobs maps hold the
// alternatives and the sampled token. A token's text is its bytes with any incomplete UTF-8
// sequence shown as U+FFFD; a log-probability below -9999 (or -inf) is written as -9999.0.
struct ChoiceLogprobs {
  std::span<const engine::TokenLogprobs> tokens;
  std::size_t text_offset = 0;  // completions: bytes of the choice's text before tokens[0]
};

// Non-streamed bodies (always carry usage).
// One fragment of a streamed tool call (OpenAI's delta.tool_calls[i]): the first fragment of a
// call carries its id and name, later ones pieces of its arguments.
struct ToolCallFragment {
  std::size_t index = 0;
  std::string id;    // first fragment only
  std::string name;  // first fragment only
  std::string arguments;
};

std::string EncodeCompletion(const ResponseMeta& meta, std::string_view text,
                             engine::FinishReason reason, const engine::Usage& usage,
                             const ChoiceLogprobs* logprobs = nullptr);
// With tool_calls the message carries them, and "content": null when there is no text.
// `reasoning`: what a reasoning template's block held, as "reasoning_content" (the field
// llama-server and vLLM use); absent when empty.
std::string EncodeChatCompletion(const ResponseMeta& meta, std::string_view text,
                                 engine::FinishReason reason, const engine::Usage& usage,
                                 const ChoiceLogprobs* logprobs = nullptr,
                                 std::span<const engine::ToolCall> tool_calls = {},
                                 std::string_view reasoning = {});

// A body with several choices (n > 1), numbered in order: completions' {index, text, ...} or
// chat's {index, message: {role, content, tool_calls?, reasoning_content?}, ...} (each
// choice's as EncodeChatCompletion writes them); usage sums them (the caller's).
struct EncodedChoice {
  std::string_view text;
  engine::FinishReason reason = engine::FinishReason::kStop;
  const ChoiceLogprobs* logprobs = nullptr;           // null: "logprobs": null
  std::span<const engine::ToolCall> tool_calls = {};  // chat only
  std::string_view reasoning = {};                    // chat only
};
std::string EncodeChoices(const ResponseMeta& meta, Endpoint endpoint,
                          std::span<const EncodedChoice> choices, const engine::Usage& usage);

// Server-sent events, each a complete "data: {...}\n\n" frame. With include_usage every
// chunk carries "usage": null except the final usage chunk (OpenAI's shape). A text chunk
// carries the logprobs of the tokens of its text.
std::string EncodeCompletionChunk(const ResponseMeta& meta, std::string_view text,
                                  std::optional<engine::FinishReason> finish, bool include_usage,
                                  const ChoiceLogprobs* logprobs = nullptr);
// The first chat chunk carries delta {"role":"assistant","content":""}.
std::string EncodeChatRoleChunk(const ResponseMeta& meta, bool include_usage);
// `reasoning`: a piece of the reasoning block, as delta.reasoning_content (absent when empty).
std::string EncodeChatChunk(const ResponseMeta& meta, std::string_view text,
                            std::optional<engine::FinishReason> finish, bool include_usage,
                            const ChoiceLogprobs* logprobs = nullptr,
                            std::span<const ToolCallFragment> tool_calls = {},
                            std::string_view reasoning = {});
// The usage chunk: "choices": [] and the usage object.
std::string EncodeUsageChunk(const ResponseMeta& meta, Endpoint endpoint,
                             const engine::Usage& usage);
// An error that happens after streaming began: a data frame with the error envelope.
std::string EncodeErrorEvent(const Error& error);
inline constexpr std::string_view kSseDone = "data: [DONE]\n\n";

struct ModelCard {
  std::string id;
  std::int64_t created = 0;
  std::string owned_by = "ember";
  int context_length = 0;        // extension: the per-sequence context
  std::string status;            // extension: "loaded" | "loading" | "unloaded"; omitted when empty
  int embedding_dimensions = 0;  // extension: /v1/embeddings vector length; omitted when 0
  bool embedding_only = false;   // extension: answers /v1/embeddings only; omitted when false
};
std::string EncodeModelList(const std::vector<ModelCard>& models);

// The one table from Error codes to HTTP statuses and OpenAI error types:
// InvalidArgument 400 invalid_request_error, NotFound 404 invalid_request_error (code
// "model_not_found" when param == "model"), Unauthenticated 401 authentication_error,
// PermissionDenied 403 permission_error, ResourceExhausted 429 rate_limit_error,
// Unavailable 503 server_error ("service_unavailable"), DeadlineExceeded 503
// server_error ("queue_timeout"), Internal 500 server_error.
struct HttpError {
  int status = 500;
  std::string body;  // {"error":{"message","type","param","code"}}
};
HttpError ToHttpError(const Error& error);
// The same envelope with another status and code, for the few errors the table cannot tell
// apart by their code: 413 "model_too_large", 409 "model_busy".
HttpError ToHttpError(const Error& error, int status, std::string_view code);

// Appends `text` to `out` as the inside of a JSON string literal. Invalid UTF-8 becomes
// U+FFFD, so model output can never produce invalid JSON.
void AppendJsonEscaped(std::string& out, std::string_view text);

}  // namespace ember::api
