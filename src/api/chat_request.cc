// ParseChatRequest (/v1/chat/completions): messages (tool calls and tool answers included),
// max_completion_tokens, logprobs, and the chat-only fields that are refused (functions).
#include <string>

#include "api/openai.h"
#include "api/request_parse.h"

namespace ember::api {

namespace {

bool IsEmptyArray(const Json& value) { return value.is_array() && value.empty(); }
bool IsNone(const Json& value) {
  return value.is_string() && value.get_ref<const std::string&>() == "none";
}

constexpr UnsupportedField kChatUnsupported[] = {
    {"functions", IsEmptyArray, "functions is deprecated and not supported: send tools"},
    {"function_call", IsNone, "function_call is deprecated and not supported: send tool_choice"},
};

Result<std::string> ParseRole(const Json& message, const std::string& where) {
  const std::string param = where + ".role";
  const Json* role = FindField(message, "role");
  if (role == nullptr || !role->is_string()) {
    return InvalidArgument(param + " must be one of system, user, assistant, tool, developer",
                           param);
  }
  const auto& name = role->get_ref<const std::string&>();
  if (name == "developer") return std::string("system");
  if (name == "system" || name == "user" || name == "assistant" || name == "tool") return name;
  if (name == "function") {
    return InvalidArgument(param + " 'function' is deprecated and not supported: send tool", param);
  }
  return InvalidArgument(param + " must be one of system, user, assistant, tool, developer; got '" +
                             Truncated(name) + "'",
                         param);
}

// One {"type": T, "text": ...} part whose T is one of `types`.
Result<std::string> ParseContentPart(const Json& part, const std::string& where,
                                     std::initializer_list<std::string_view> types) {
  std::string expected;
  for (const std::string_view type : types) {
    expected += expected.empty() ? "\"" : " or \"";
    expected += type;
    expected += '"';
  }
  if (!part.is_object()) {
    return InvalidArgument(
        where + " must be an object like {\"type\": " + expected + ", \"text\": ...}", where);
  }
  const Json* type = FindField(part, "type");
  bool known = false;
  if (type != nullptr && type->is_string()) {
    for (const std::string_view t : types) known = known || *type == t;
  }
  if (!known) {
    std::string message =
        where + ".type must be " + expected + " (only text content is supported), got ";
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
  if (content == nullptr) {
    return InvalidArgument(param + " must be a string or an array of text parts, got null", param);
  }
  return ReadTextContent(*content, param, {"text"});
}

Result<engine::ChatMessage> ParseMessage(const Json& message, std::size_t index) {
  const std::string where = "messages[" + std::to_string(index) + "]";
  if (!message.is_object()) {
    return InvalidArgument(
        where + " must be an object with role and content, got " + Describe(message), where);
  }
  auto role = ParseRole(message, where);
  if (!role) return std::unexpected(role.error());
  engine::ChatMessage out;
  out.role = std::move(*role);
  if (const Json* legacy = FindField(message, "function_call"); legacy != nullptr) {
    return InvalidArgument(
        where + ".function_call is deprecated and not supported: send tool_calls",
        where + ".function_call");
  }
  if (const Json* calls = FindField(message, "tool_calls");
      calls != nullptr && out.role != "assistant" && !IsEmptyArray(*calls)) {
    return InvalidArgument(where + ".tool_calls is only allowed on assistant messages",
                           where + ".tool_calls");
  }
  if (out.role == "assistant") {
    auto calls = ParseAssistantToolCalls(message, where);
    if (!calls) return std::unexpected(calls.error());
    out.tool_calls = std::move(*calls);
  }
  if (out.role == "tool") {
    const Json* id = FindField(message, "tool_call_id");
    if (id == nullptr || !id->is_string() || id->get_ref<const std::string&>().empty()) {
      return InvalidArgument(where +
                                 ".tool_call_id is required on tool messages: the id of the "
                                 "call this answers",
                             where + ".tool_call_id");
    }
    out.tool_call_id = id->get<std::string>();
  }
  // An assistant turn that only calls tools has no content (null or absent).
  if (!(out.role == "assistant" && !out.tool_calls.empty() &&
        FindField(message, "content") == nullptr)) {
    auto content = ParseContent(message, where);
    if (!content) return std::unexpected(content.error());
    out.content = std::move(*content);
  }
  return out;
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
  return RunParseSteps(body, Endpoint::kChatCompletions,
                       {ParseModel, ParseMessages, ParseChatMaxTokens, ParseSampling, ParseStop,
                        ParseStream, ParseN, ParseChatLogprobs, ParseTools, ParseResponseFormat,
                        RejectUnsupportedCommon, RejectUnsupportedChat});
}

Result<std::string> ReadTextContent(const Json& content, const std::string& param,
                                    std::initializer_list<std::string_view> types) {
  if (content.is_string()) return content.get<std::string>();
  if (!content.is_array()) {
    return InvalidArgument(
        param + " must be a string or an array of text parts, got " + Describe(content), param);
  }
  std::string text;
  for (std::size_t i = 0; i < content.size(); ++i) {
    auto part = ParseContentPart(content[i], param + "[" + std::to_string(i) + "]", types);
    if (!part) return std::unexpected(part.error());
    text += *part;
  }
  return text;
}

}  // namespace ember::api
