// Parsing steps shared by ParseCompletionRequest (request_parse.cc) and ParseChatRequest
// (chat_request.cc). Each step reads one group of fields from the request object into the
// params and returns kInvalidArgument naming the field on a client mistake. Internal to api/.
#pragma once

#include <initializer_list>
#include <optional>
#include <span>
#include <string_view>

#include "api/openai.h"
#include "api/request_json.h"

namespace ember::api {

using ParseStep = Status (*)(const Json& request, GenerationParams& params);

// Parses `body` as a JSON object and runs `steps` in order; the first error wins.
[[nodiscard]] Result<GenerationParams> RunParseSteps(std::string_view body, Endpoint endpoint,
                                                     std::initializer_list<ParseStep> steps);

// A field ember accepts only at its default (null is always accepted).
struct UnsupportedField {
  std::string_view key;
  bool (*is_default)(const Json& value);
  std::string_view message;
};
[[nodiscard]] Status RejectUnsupported(const Json& request,
                                       std::span<const UnsupportedField> fields);

bool IsOne(const Json& value);

// max_tokens-style field: an integer in [1, kMaxTokensLimit].
inline constexpr std::int64_t kMaxTokensLimit = 1'000'000;
[[nodiscard]] Result<std::optional<int>> ReadMaxTokens(const Json& request, std::string_view key);

[[nodiscard]] Status ParseModel(const Json& request, GenerationParams& params);
// temperature, top_p, top_k, min_p, presence_penalty, frequency_penalty, seed and ember's
// deterministic (which needs a seed when temperature > 0).
[[nodiscard]] Status ParseSampling(const Json& request, GenerationParams& params);
[[nodiscard]] Status ParseStop(const Json& request, GenerationParams& params);
// stream and stream_options.include_usage (kept only when streaming).
[[nodiscard]] Status ParseStream(const Json& request, GenerationParams& params);
// n and logit_bias, which both endpoints share.
[[nodiscard]] Status RejectUnsupportedCommon(const Json& request, GenerationParams& params);

}  // namespace ember::api
