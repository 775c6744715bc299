// ParseChatRequest (/v1/chat/completions): messages, max_completion_tokens, logprobs and the
// chat-only unsupported features (tools, response_format).
#include <string>

#include "api/openai.h"
#include "api/request_parse.h"

namespace ember::api {

namespace {

bool IsEmptyArray(const Json& value) { return value.is_array() && value.empty(); }
bool IsNone(const Json& value) {
  return value.is_string() && value.get_ref<const std::string&>() == "none";
}
bool IsTextFormat(const Json& value) {
  const auto type = value.is_object() ? value.find("type") : value.end();
  return value.is_object() && type != value.end() && *type == "text";
}

constexpr std::string_view kNoTools = " is not supported: ember does not do tool calling";

constexpr UnsupportedField kChatUnsupported[] = {
    {"tools", IsEmptyArray, "tools is not supported: ember does not do tool calling"},
    {"tool_choice", IsNone, "tool_choice is not supported: ember does not do tool calling"},
    {"functions", IsEmptyArray, "functions is not supported: ember does not do tool calling"},
    {"function_call", IsNone, "function_call is not supported: ember does not do tool calling"},
    {"response_format", IsTextFormat,
     "response_format is not supported: only {\"type\": \"text\"} is accepted"},
};

Result<std::string> ParseRole(const Json& message, const std::string& where) {
  const std::string param = where + ".role";
  const Json* role = FindField(message, "role");
  if (role == nullptr || !role->is_string()) {
    return InvalidArgument(param + " must be one of system, user, assistant, developer", param);
  }
  const auto& name = role->get_ref<const std::string&>();
  if (name == "developer") return std::string("system");
  if (name == "system" || name == "user" || name == "assistant") return name;
  if (name == "tool" || name == "function") {
    return InvalidArgument(param + " '" + name + "'" + std::string(kNoTools), param);
  }
  return InvalidArgument(
      param + " must be one of system, user, assistant, developer; got '" + Truncated(name) + "'",
      param);
}

Result<std::string> ParseContentPart(const Json& part, const std::string& where) {
  if (!part.is_object()) {
    return InvalidArgument(where + " must be an object like {\"type\": \"text\", \"text\": ...}",
                           where);
  }
  const Json* type = FindField(part, "type");
  if (type == nullptr || !type->is_string() || *type != "text") {
    std::string message = where + ".type must be \"text\" (only text content is supported), got ";
    if (type != nullptr && type->is_string()) {
      message += '\'';
      message += Truncated(type->get_ref<const std::string&>());
      message += '\'';
    } else {
      message += type != nullptr ? Describe(*type) : "nothing";
    }
    return InvalidArgument(std::move(message), where + ".type");
  }
  const Json* text = FindField(part, "text");
  if (text == nullptr || !text->is_string()) {
    return InvalidArgument(where + ".text must be a string", where + ".text");
  }
  return text->get<std::string>();
}

// A string, or an array of text parts whose texts are concatenated.
Result<std::string> ParseContent(const Json& message, const std::string& where) {
  const std::string param = where + ".content";
  const Json* content = FindField(message, "content");
  if (content != nullptr && content->is_string()) return content->get<std::string>();
  if (content == nullptr || !content->is_array()) {
    return InvalidArgument(param + " must be a string or an array of text parts, got " +
                               (content != nullptr ? Describe(*content) : "null"),
                           param);
  }
  std::string text;
  for (std::size_t i = 0; i < content->size(); ++i) {
    auto part = ParseContentPart((*content)[i], param + "[" + std::to_string(i) + "]");
    if (!part) return std::unexpected(part.error());
    text += *part;
  }
  return text;
}

Result<engine::ChatMessage> ParseMessage(const Json& message, std::size_t index) {
  const std::string where = "messages[" + std::to_string(index) + "]";
  if (!message.is_object()) {
    return InvalidArgument(
        where + " must be an object with role and content, got " + Describe(message), where);
  }
  auto role = ParseRole(message, where);
  if (!role) return std::unexpected(role.error());
  for (const std::string_view key : {"tool_calls", "function_call"}) {
    const Json* calls = FindField(message, key);
    if (calls != nullptr && !IsEmptyArray(*calls)) {
      const std::string param = where + "." + std::string(key);
      return InvalidArgument(param + std::string(kNoTools), param);
    }
  }
  auto content = ParseContent(message, where);
  if (!content) return std::unexpected(content.error());
  return engine::ChatMessage{std::move(*role), std::move(*content)};
}

Status ParseMessages(const Json& request, GenerationParams& params) {
  const Json* messages = FindField(request, "messages");
  if (messages == nullptr || !messages->is_array() || messages->empty()) {
    return InvalidArgument("messages must be a non-empty array of {role, content} objects, got " +
                               (messages != nullptr ? Describe(*messages) : "nothing"),
                           "messages");
  }
  params.messages.reserve(messages->size());
  for (std::size_t i = 0; i < messages->size(); ++i) {
    auto message = ParseMessage((*messages)[i], i);
    if (!message) return std::unexpected(message.error());
    params.messages.push_back(std::move(*message));
  }
  return {};
}

// max_completion_tokens (the current name) wins over the deprecated max_tokens.
Status ParseChatMaxTokens(const Json& request, GenerationParams& params) {
  auto max_completion_tokens = ReadMaxTokens(request, "max_completion_tokens");
  if (!max_completion_tokens) return std::unexpected(max_completion_tokens.error());
  auto max_tokens = ReadMaxTokens(request, "max_tokens");
  if (!max_tokens) return std::unexpected(max_tokens.error());
  params.max_tokens = max_completion_tokens->has_value() ? *max_completion_tokens : *max_tokens;
  return {};
}

// logprobs: true and top_logprobs 0..20, which OpenAI accepts only with logprobs: true.
Status ParseChatLogprobs(const Json& request, GenerationParams& params) {
  engine::SamplingParams& sampling = params.sampling;
  if (auto status = ReadBool(request, "logprobs", sampling.logprobs); !status) return status;
  auto top = ReadInt(request, "top_logprobs", 0, engine::kMaxTopLogprobs);
  if (!top) return std::unexpected(top.error());
  if (!top->has_value()) return {};
  if (!sampling.logprobs) {
    return InvalidArgument(
        "top_logprobs needs logprobs: true (it says how many alternatives "
        "to return with each token's log-probability)",
        "top_logprobs");
  }
  sampling.top_logprobs = static_cast<int>(**top);
  return {};
}

Status RejectUnsupportedChat(const Json& request, GenerationParams& /*params*/) {
  return RejectUnsupported(request, kChatUnsupported);
}

}  // namespace

Result<GenerationParams> ParseChatRequest(std::string_view body) {
  return RunParseSteps(
      body, Endpoint::kChatCompletions,
      {ParseModel, ParseMessages, ParseChatMaxTokens, ParseSampling, ParseStop, ParseStream,
       ParseChatLogprobs, RejectUnsupportedCommon, RejectUnsupportedChat});
}

}  // namespace ember::api
