// OpenAI-compatible request parsing/validation and response encoding. Pure functions, no I/O,
// callable from any thread. nlohmann::json is private to this component: parsing uses it;
// the per-token encoders (chunks) are hand-written string builders because they sit on the
// streaming hot path.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "common/error.h"
#include "engine/types.h"

namespace ember::api {

// The endpoints a Generation serves (server/generation.h).
enum class Endpoint { kCompletions, kChatCompletions, kEmbeddings };

// A validated generation request. Model-dependent checks (model name, token ids < n_vocab,
// prompt + max_tokens <= context) are done by the caller, which knows the model.
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
};

// Both return kInvalidArgument with `param` naming the offending field on any client mistake:
// malformed JSON, invalid UTF-8, wrong types, out-of-range values, unsupported features
// (n != 1, best_of, echo, logprobs, suffix, logit_bias, tools, response_format, ...).
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
};
// "1.234": cold_start_seconds as sent in usage and the x-ember-cold-start header.
std::string FormatSeconds(double seconds);

// "stop" | "length" | "error" ("cancelled" is never sent to a client).
std::string_view FinishReasonString(engine::FinishReason reason);

// Non-streamed bodies (always carry usage).
std::string EncodeCompletion(const ResponseMeta& meta, std::string_view text,
                             engine::FinishReason reason, const engine::Usage& usage);
std::string EncodeChatCompletion(const ResponseMeta& meta, std::string_view text,
                                 engine::FinishReason reason, const engine::Usage& usage);

// Server-sent events, each a complete "data: {...}\n\n" frame. With include_usage every
// chunk carries "usage": null except the final usage chunk (OpenAI's shape).
std::string EncodeCompletionChunk(const ResponseMeta& meta, std::string_view text,
                                  std::optional<engine::FinishReason> finish, bool include_usage);
// The first chat chunk carries delta {"role":"assistant","content":""}.
std::string EncodeChatRoleChunk(const ResponseMeta& meta, bool include_usage);
std::string EncodeChatChunk(const ResponseMeta& meta, std::string_view text,
                            std::optional<engine::FinishReason> finish, bool include_usage);
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
