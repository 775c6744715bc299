// POST /v1/responses, the request: its fields and input items into GenerationParams, each
// mistake a 400 naming the field (the answer's encoder is responses_encode.cc).
#include "api/responses.h"

#include <utility>

#include "api/request_json.h"
#include "api/request_parse.h"

namespace ember::api {

namespace {

constexpr std::size_t kMaxMetadataPairs = 16;
constexpr std::size_t kMaxMetadataKeyBytes = 64;
constexpr std::size_t kMaxMetadataValueBytes = 512;

bool IsFalseOrNull(const Json& value) { return value.is_boolean() && !value.get<bool>(); }
bool IsDisabled(const Json& value) { return value.is_string() && value == "disabled"; }
bool IsEmptyArray(const Json& value) { return value.is_array() && value.empty(); }
bool IsZero(const Json& value) {
  return value.is_number_integer() && value.get<std::int64_t>() == 0;
}
bool IsNoReasoning(const Json& value) {
  if (!value.is_object()) return false;
  for (const auto& [key, v] : value.items()) {
    if (!v.is_null()) return false;
  }
  return true;
}

constexpr UnsupportedField kResponsesUnsupported[] = {
    {"previous_response_id", [](const Json&) { return false; },
     "previous_response_id is not supported: ember keeps no responses (the API is served "
     "stateless); send the whole conversation as input items"},
    {"conversation", [](const Json&) { return false; },
     "conversation is not supported: ember keeps no conversations; send the whole conversation "
     "as input items"},
    {"background", IsFalseOrNull, "background is not supported: send the request and wait"},
    {"truncation", IsDisabled,
     "truncation must be \"disabled\": ember never drops input to make it fit"},
    {"include", IsEmptyArray, "include is not supported: send an empty array or nothing"},
    {"top_logprobs", IsZero, "top_logprobs is not supported on /v1/responses"},
    {"reasoning", IsNoReasoning,
     "reasoning is not supported: the served models have no reasoning settings"},
    {"prompt", [](const Json&) { return false; },
     "prompt (stored prompt templates) is not supported: send instructions and input"},
    {"max_tool_calls", [](const Json&) { return false; }, "max_tool_calls is not supported"},
};

Status ParseInstructions(const Json& request, GenerationParams& params) {
  const Json* instructions = FindField(request, "instructions");
  if (instructions == nullptr) return {};
  if (!instructions->is_string()) {
    return InvalidArgument("instructions must be a string, got " + Describe(*instructions),
                           "instructions");
  }
  params.responses.instructions = instructions->get<std::string>();
  params.messages.push_back({"system", *params.responses.instructions});
  return {};
}

Result<std::string> ItemRole(const Json& item, const std::string& where) {
  const Json* role = FindField(item, "role");
  if (role == nullptr || !role->is_string()) {
    return InvalidArgument(where + ".role must be one of user, assistant, system, developer",
                           where + ".role");
  }
  const auto& name = role->get_ref<const std::string&>();
  if (name == "developer") return std::string("system");
  if (name == "user" || name == "assistant" || name == "system") return name;
  return InvalidArgument(where + ".role must be one of user, assistant, system, developer; got '" +
                             Truncated(name) + "'",
                         where + ".role");
}

// A function_call input item: a call the assistant made, joined to the assistant message
// before it (or to a new one), as the chat history carries it.
Status ParseFunctionCallItem(const Json& item, const std::string& where, GenerationParams& params) {
  const Json* call_id = FindField(item, "call_id");
  const Json* name = FindField(item, "name");
  const Json* arguments = FindField(item, "arguments");
  if (call_id == nullptr || !call_id->is_string() ||
      call_id->get_ref<const std::string&>().empty()) {
    return InvalidArgument(where + ".call_id is required: the id its output answers",
                           where + ".call_id");
  }
  if (name == nullptr || !name->is_string()) {
    return InvalidArgument(where + ".name is required: the function called", where + ".name");
  }
  if (arguments == nullptr || !arguments->is_string() ||
      !ParseJsonObject(arguments->get_ref<const std::string&>())) {
    return InvalidArgument(where + ".arguments must be the JSON text of an object",
                           where + ".arguments");
  }
  engine::ToolCall call{call_id->get<std::string>(), name->get<std::string>(),
                        arguments->get<std::string>()};
  if (params.messages.empty() || params.messages.back().role != "assistant") {
    params.messages.push_back({"assistant", ""});
  }
  params.messages.back().tool_calls.push_back(std::move(call));
  return {};
}

// A function_call_output item: what a call returned, as a tool message.
Status ParseFunctionOutputItem(const Json& item, const std::string& where,
                               GenerationParams& params) {
  const Json* call_id = FindField(item, "call_id");
  if (call_id == nullptr || !call_id->is_string() ||
      call_id->get_ref<const std::string&>().empty()) {
    return InvalidArgument(where + ".call_id is required: the id of the call this answers",
                           where + ".call_id");
  }
  const Json* output = FindField(item, "output");
  if (output == nullptr) return InvalidArgument(where + ".output is required", where + ".output");
  auto text = ReadTextContent(*output, where + ".output", {"input_text", "output_text"});
  if (!text) return std::unexpected(text.error());
  engine::ChatMessage message{"tool", std::move(*text)};
  message.tool_call_id = call_id->get<std::string>();
  params.messages.push_back(std::move(message));
  return {};
}

// One input item: a message ({role, content}, type "message" or none), a function call or a
// function call's output.
Status ParseInputItem(const Json& item, std::size_t index, GenerationParams& params) {
  const std::string where = "input[" + std::to_string(index) + "]";
  if (!item.is_object()) {
    return InvalidArgument(where + " must be an object like {\"role\": \"user\", \"content\": ...}",
                           where);
  }
  const Json* type = FindField(item, "type");
  if (type != nullptr && type->is_string() && *type == "function_call") {
    return ParseFunctionCallItem(item, where, params);
  }
  if (type != nullptr && type->is_string() && *type == "function_call_output") {
    return ParseFunctionOutputItem(item, where, params);
  }
  // A reasoning item a previous response returned (clients send its whole output back): ember
  // hands no earlier turn's reasoning to the template (nor chat's reasoning_content), so it is
  // accepted and dropped.
  if (type != nullptr && type->is_string() && *type == "reasoning") return {};
  if (type != nullptr && (!type->is_string() || *type != "message")) {
    const std::string name = type->is_string() ? type->get<std::string>() : Describe(*type);
    return InvalidArgument(where +
                               ".type must be \"message\", \"function_call\", "
                               "\"function_call_output\" or \"reasoning\", got '" +
                               Truncated(name) + "'",
                           where + ".type");
  }
  auto role = ItemRole(item, where);
  if (!role) return std::unexpected(role.error());
  const Json* content = FindField(item, "content");
  if (content == nullptr) {
    return InvalidArgument(where + ".content is required", where + ".content");
  }
  auto text = *role == "assistant"
                  ? ReadTextContent(*content, where + ".content", {"output_text", "input_text"})
                  : ReadTextContent(*content, where + ".content", {"input_text"});
  if (!text) return std::unexpected(text.error());
  params.messages.push_back({std::move(*role), std::move(*text)});
  return {};
}

Status ParseInput(const Json& request, GenerationParams& params) {
  const Json* input = FindField(request, "input");
  if (input == nullptr) {
    return InvalidArgument("input is required: a string or an array of input items", "input");
  }
  if (input->is_string()) {
    params.messages.push_back({"user", input->get<std::string>()});
    return {};
  }
  if (!input->is_array() || input->empty()) {
    return InvalidArgument(
        "input must be a string or a non-empty array of input items, got " + Describe(*input),
        "input");
  }
  for (std::size_t i = 0; i < input->size(); ++i) {
    if (auto item = ParseInputItem((*input)[i], i, params); !item) return item;
  }
  return {};
}

Status ParseMaxOutputTokens(const Json& request, GenerationParams& params) {
  auto max = ReadMaxTokens(request, "max_output_tokens");
  if (!max) return std::unexpected(max.error());
  params.max_tokens = *max;
  return {};
}

// tools as the Responses API gives them: {type: "function", name, description, parameters,
// strict}, flat; tool_choice "none" | "auto" | "required" | {type: "function", name}.
Status ParseResponsesTools(const Json& request, GenerationParams& params) {
  if (const Json* tools = FindField(request, "tools"); tools != nullptr) {
    if (!tools->is_array()) {
      return InvalidArgument("tools must be an array of function tools, got " + Describe(*tools),
                             "tools");
    }
    if (tools->size() > kMaxTools) {
      return InvalidArgument("tools holds at most " + std::to_string(kMaxTools) + " functions",
                             "tools");
    }
    for (std::size_t i = 0; i < tools->size(); ++i) {
      const Json& tool = (*tools)[i];
      const std::string where = "tools[" + std::to_string(i) + "]";
      const Json* type = tool.is_object() ? FindField(tool, "type") : nullptr;
      if (type == nullptr || !type->is_string() || *type != "function") {
        return InvalidArgument(
            where +
                " must be {\"type\": \"function\", \"name\": ..., \"parameters\": ...} "
                "(function tools are the only ones served)",
            where + ".type");
      }
      auto def = ReadFunction(tool, where);
      if (!def) return std::unexpected(def.error());
      for (const ToolDefinition& seen : params.tools) {
        if (seen.name == def->name) {
          return InvalidArgument("tools has two functions named '" + def->name + "'",
                                 where + ".name");
        }
      }
      params.tools.push_back(std::move(*def));
    }
  }
  const Json* choice = FindField(request, "tool_choice");
  if (choice != nullptr && choice->is_object()) {
    const Json* type = FindField(*choice, "type");
    if (type == nullptr || !type->is_string() || *type != "function") {
      return InvalidArgument(
          "tool_choice as an object must be {\"type\": \"function\", \"name\": ...}",
          "tool_choice");
    }
    const Json* name = FindField(*choice, "name");
    if (name == nullptr || !name->is_string()) {
      return InvalidArgument("tool_choice.name is required: the function to call",
                             "tool_choice.name");
    }
    params.tool_choice = {ToolChoice::Mode::kNamed, name->get<std::string>()};
  } else if (choice != nullptr) {
    if (auto mode = ReadToolChoiceMode(*choice, params); !mode) return mode;
  }
  if (auto checked = CheckToolChoice(params, "tool_choice.name"); !checked) return checked;
  return ReadParallelToolCalls(request, params);
}

// text: {format: {type: text | json_object | json_schema (name, schema, strict flat)}}.
Status ParseText(const Json& request, GenerationParams& params) {
  const Json* text = FindField(request, "text");
  if (text == nullptr) return {};
  if (!text->is_object()) {
    return InvalidArgument(
        "text must be an object like {\"format\": {\"type\": ...}}, got " + Describe(*text),
        "text");
  }
  for (const auto& [key, value] : text->items()) {
    if (key != "format" && key != "verbosity" && !value.is_null()) {
      return InvalidArgument("text." + Truncated(key) + " is not supported", "text." + key);
    }
  }
  if (const Json* verbosity = FindField(*text, "verbosity");
      verbosity != nullptr && !(verbosity->is_string() && *verbosity == "medium")) {
    return InvalidArgument("text.verbosity is not supported: send \"medium\" or nothing",
                           "text.verbosity");
  }
  const Json* format = FindField(*text, "format");
  if (format == nullptr) return {};
  auto parsed = ReadFormat(*format, "text.format", "");
  if (!parsed) return std::unexpected(parsed.error());
  params.response_format = std::move(*parsed);
  return {};
}

// metadata (up to 16 string pairs, echoed), user, store (accepted: nothing is stored either
// way, and the Response says "store": false).
Status ParseEchoFields(const Json& request, GenerationParams& params) {
  if (const Json* metadata = FindField(request, "metadata"); metadata != nullptr) {
    if (!metadata->is_object() || metadata->size() > kMaxMetadataPairs) {
      return InvalidArgument("metadata must be an object of at most 16 string pairs", "metadata");
    }
    for (const auto& [key, value] : metadata->items()) {
      if (key.size() > kMaxMetadataKeyBytes || !value.is_string() ||
          value.get_ref<const std::string&>().size() > kMaxMetadataValueBytes) {
        return InvalidArgument(
            "metadata keys are at most 64 bytes and values strings of at most 512 bytes",
            "metadata");
      }
    }
    params.responses.metadata = metadata->dump();
  }
  if (const Json* user = FindField(request, "user"); user != nullptr) {
    if (!user->is_string()) {
      return InvalidArgument("user must be a string, got " + Describe(*user), "user");
    }
    params.responses.user = user->get<std::string>();
  }
  bool store = false;
  return ReadBool(request, "store", store);
}

Status RejectUnsupportedResponses(const Json& request, GenerationParams& /*params*/) {
  return RejectUnsupported(request, kResponsesUnsupported);
}

}  // namespace

Result<GenerationParams> ParseResponsesRequest(std::string_view body) {
  return RunParseSteps(
      body, Endpoint::kResponses,
      {ParseModel, ParseInstructions, ParseInput, ParseMaxOutputTokens, ParseSampling, ParseStream,
       ParseResponsesTools, ParseText, ParseEchoFields, RejectUnsupportedResponses});
}

}  // namespace ember::api
