// Parsing steps shared by ParseCompletionRequest (request_parse.cc) and ParseChatRequest
// (chat_request.cc). Each step reads one group of fields from the request object into the
// params and returns kInvalidArgument naming the field on a client mistake. Internal to api/.
#pragma once

#include <initializer_list>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

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
// "n": 1..kMaxChoices.
[[nodiscard]] Status ParseN(const Json& request, GenerationParams& params);
// Limits on the agent fields (docs/api.md, "Tools and structured output").
inline constexpr std::size_t kMaxTools = 128;
inline constexpr std::size_t kMaxFunctionNameBytes = 64;
inline constexpr int kMaxSchemaDepth = 32;             // objects/arrays nested in one schema
inline constexpr std::size_t kMaxSchemaBytes = 65536;  // a schema as compact JSON

// tools, tool_choice (a named function must be in tools) and parallel_tool_calls (chat only;
// tools_request.cc).
[[nodiscard]] Status ParseTools(const Json& request, GenerationParams& params);
// response_format: text, json_object or json_schema {name, schema, strict}.
[[nodiscard]] Status ParseResponseFormat(const Json& request, GenerationParams& params);
// The fields of one function tool (name, description, parameters, strict) from `function`,
// the object that holds them; `where` names it in errors ("tools[2].function", "tools[2]").
[[nodiscard]] Result<ToolDefinition> ReadFunction(const Json& function, const std::string& where);
// tool_choice given as a string ("none" | "auto" | "required").
[[nodiscard]] Status ReadToolChoiceMode(const Json& choice, GenerationParams& params);
// required and named need tools; a named function must be one of them (else an error naming
// `name_param`, where the request gave the name).
[[nodiscard]] Status CheckToolChoice(const GenerationParams& params, std::string_view name_param);
// parallel_tool_calls, a boolean (accepted without tools).
[[nodiscard]] Status ReadParallelToolCalls(const Json& request, GenerationParams& params);
// A format object {type: text | json_object | json_schema}; the json_schema's name, schema and
// strict sit in the member `nested` (chat's "json_schema") or, when empty, in the object itself
// (the Responses API's text.format). `param` names the object in errors.
[[nodiscard]] Result<ResponseFormat> ReadFormat(const Json& format, const std::string& param,
                                                std::string_view nested);
// The content of a message given as a string or an array of text parts of the given types
// ({"type": T, "text": ...}), concatenated; `param` names it in errors.
[[nodiscard]] Result<std::string> ReadTextContent(const Json& content, const std::string& param,
                                                  std::initializer_list<std::string_view> types);

// An assistant message's tool_calls [{id, type: "function", function: {name, arguments}}];
// `where` names the message ("messages[3]").
[[nodiscard]] Result<std::vector<engine::ToolCall>> ParseAssistantToolCalls(
    const Json& message, const std::string& where);

// n and logit_bias, which both endpoints share.
[[nodiscard]] Status RejectUnsupportedCommon(const Json& request, GenerationParams& params);

}  // namespace ember::api
