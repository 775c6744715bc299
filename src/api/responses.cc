// POST /v1/responses: the request into GenerationParams, the answer into a Response object or
// its event stream. The Response object is built with nlohmann (a few times per request); the
// per-token delta events are written by hand like the chat chunks.
#include "api/responses.h"

#include <charconv>
#include <utility>

#include "api/json_write.h"
#include "api/request_json.h"
#include "api/request_parse.h"
#include "common/ids.h"

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
  if (type != nullptr && (!type->is_string() || *type != "message")) {
    const std::string name = type->is_string() ? type->get<std::string>() : Describe(*type);
    return InvalidArgument(where +
                               ".type must be \"message\", \"function_call\" or "
                               "\"function_call_output\", got '" +
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

std::string_view StatusFor(engine::FinishReason reason) {
  return reason == engine::FinishReason::kLength ? "incomplete" : "completed";
}

Json FormatJson(const ResponseFormat& format) {
  switch (format.type) {
    case ResponseFormat::Type::kText:
      return {{"type", "text"}};
    case ResponseFormat::Type::kJsonObject:
      return {{"type", "json_object"}};
    case ResponseFormat::Type::kJsonSchema:
      return {{"type", "json_schema"},
              {"name", format.name},
              {"schema", Json::parse(format.schema)},
              {"strict", format.strict}};
  }
  return {{"type", "text"}};
}

Json ToolChoiceJson(const ToolChoice& choice) {
  switch (choice.mode) {
    case ToolChoice::Mode::kNone:
      return "none";
    case ToolChoice::Mode::kRequired:
      return "required";
    case ToolChoice::Mode::kNamed:
      return {{"type", "function"}, {"name", choice.name}};
    case ToolChoice::Mode::kAuto:
      break;
  }
  return "auto";
}

// A float as JSON: its shortest decimal (temperature 0.7 stays 0.7, not 0.699999988).
Json FloatJson(float value) {
  char buf[32];
  const auto result = std::to_chars(buf, buf + sizeof(buf), value);
  return Json::parse(std::string_view(buf, result.ptr));
}

std::string FunctionCallItem(const engine::ToolCall& call, std::string_view status) {
  Json item = {{"type", "function_call"}, {"id", "fc_" + call.id},       {"call_id", call.id},
               {"name", call.name},       {"arguments", call.arguments}, {"status", status}};
  return item.dump(-1, ' ', false, Json::error_handler_t::replace);
}

}  // namespace

Result<GenerationParams> ParseResponsesRequest(std::string_view body) {
  return RunParseSteps(
      body, Endpoint::kResponses,
      {ParseModel, ParseInstructions, ParseInput, ParseMaxOutputTokens, ParseSampling, ParseStream,
       ParseResponsesTools, ParseText, ParseEchoFields, RejectUnsupportedResponses});
}

ResponsesEncoder::ResponsesEncoder(const GenerationParams& params, const ResponseMeta& meta)
    : params_(params), meta_(meta), message_id_(NewRequestId("msg")) {}

std::string ResponsesEncoder::MessageItem(std::string_view text, std::string_view status) const {
  std::string out = "{\"type\":\"message\",\"id\":";
  AppendQuoted(out, message_id_);
  out += ",\"status\":";
  AppendQuoted(out, status);
  out += ",\"role\":\"assistant\",\"content\":[";
  if (status == "completed") {
    out += "{\"type\":\"output_text\",\"text\":";
    AppendQuoted(out, text);
    out += ",\"annotations\":[],\"logprobs\":[]}";
  }
  out += "]}";
  return out;
}

std::string ResponsesEncoder::ResponseObject(std::string_view status,
                                             const std::vector<std::string>& items,
                                             std::optional<engine::FinishReason> reason,
                                             const engine::Usage* usage, const Error* error) const {
  Json r = {{"id", meta_.id},
            {"object", "response"},
            {"created_at", meta_.created},
            {"status", status},
            {"background", false},
            {"error", nullptr},
            {"incomplete_details", nullptr},
            {"instructions", nullptr},
            {"max_output_tokens", nullptr},
            {"model", meta_.model},
            {"output", Json::array()},
            {"parallel_tool_calls", params_.parallel_tool_calls},
            {"previous_response_id", nullptr},
            {"reasoning", {{"effort", nullptr}, {"summary", nullptr}}},
            {"store", false},
            {"temperature", FloatJson(params_.sampling.temperature)},
            {"text", {{"format", FormatJson(params_.response_format)}}},
            {"tool_choice", ToolChoiceJson(params_.tool_choice)},
            {"tools", Json::array()},
            {"top_p", FloatJson(params_.sampling.top_p)},
            {"truncation", "disabled"},
            {"usage", nullptr},
            {"user", nullptr},
            {"metadata", Json::parse(params_.responses.metadata)}};
  if (params_.responses.instructions) r["instructions"] = *params_.responses.instructions;
  if (params_.max_tokens) r["max_output_tokens"] = *params_.max_tokens;
  if (params_.responses.user) r["user"] = *params_.responses.user;
  if (!meta_.system_fingerprint.empty()) r["system_fingerprint"] = meta_.system_fingerprint;
  for (const ToolDefinition& tool : params_.tools) {
    r["tools"].push_back({{"type", "function"},
                          {"name", tool.name},
                          {"description", tool.description},
                          {"parameters", Json::parse(tool.parameters)},
                          {"strict", tool.strict}});
  }
  for (const std::string& item : items) r["output"].push_back(Json::parse(item));
  if (reason == engine::FinishReason::kLength) {
    r["incomplete_details"] = {{"reason", "max_output_tokens"}};
  }
  if (usage != nullptr) {
    r["usage"] = {{"input_tokens", usage->prompt_tokens},
                  {"input_tokens_details", {{"cached_tokens", usage->cached_tokens}}},
                  {"output_tokens", usage->completion_tokens},
                  {"output_tokens_details", {{"reasoning_tokens", 0}}},
                  {"total_tokens", usage->total_tokens()}};
    if (meta_.cold_start_seconds) {
      r["usage"]["cold_start_seconds"] = Json::parse(FormatSeconds(*meta_.cold_start_seconds));
    }
  }
  if (error != nullptr) {
    r["error"] = {{"code", "server_error"}, {"message", error->message}};
  }
  return r.dump(-1, ' ', false, Json::error_handler_t::replace);
}

std::string ResponsesEncoder::Whole(const ResponseOutput& output, engine::FinishReason reason,
                                    const engine::Usage& usage) const {
  std::vector<std::string> items;
  if (!output.text.empty() || output.tool_calls.empty()) {
    items.push_back(MessageItem(output.text, "completed"));
  }
  for (const engine::ToolCall& call : output.tool_calls) {
    items.push_back(FunctionCallItem(call, "completed"));
  }
  return ResponseObject(StatusFor(reason), items, reason, &usage, nullptr);
}

std::string ResponsesEncoder::Event(std::string_view type, std::string_view fields) {
  std::string out;
  out.reserve(fields.size() + 96);
  out += "event: ";
  out += type;
  out += "\ndata: {\"type\":\"";
  out += type;
  out += "\",\"sequence_number\":";
  AppendInt(out, sequence_++);
  out += fields;
  out += "}\n\n";
  return out;
}

std::string ResponsesEncoder::Start() {
  const std::string response = ResponseObject("in_progress", {}, std::nullopt, nullptr, nullptr);
  // One statement per event: the operands of + are evaluated in no set order, and each event
  // takes the next sequence number.
  std::string out = Event("response.created", ",\"response\":" + response);
  out += Event("response.in_progress", ",\"response\":" + response);
  return out;
}

std::string ResponsesEncoder::OpenMessage() {
  message_open_ = true;
  std::string item = ",\"output_index\":0,\"item\":" + MessageItem("", "in_progress");
  std::string part = ",\"item_id\":\"" + message_id_ +
                     "\",\"output_index\":0,\"content_index\":0,\"part\":{\"type\":\"output_text\","
                     "\"text\":\"\",\"annotations\":[],\"logprobs\":[]}";
  std::string out = Event("response.output_item.added", item);
  out += Event("response.content_part.added", part);
  return out;
}

std::string ResponsesEncoder::TextDelta(std::string_view delta) {
  std::string out = message_open_ ? std::string() : OpenMessage();
  streamed_text_ += delta;
  std::string fields =
      ",\"item_id\":\"" + message_id_ + "\",\"output_index\":0,\"content_index\":0,\"delta\":";
  AppendQuoted(fields, delta);
  fields += ",\"logprobs\":[]";
  out += Event("response.output_text.delta", fields);
  return out;
}

std::string ResponsesEncoder::CloseMessage(std::string_view text) {
  const std::string at =
      ",\"item_id\":\"" + message_id_ + "\",\"output_index\":0,\"content_index\":0";
  std::string done = at + ",\"text\":";
  AppendQuoted(done, text);
  done += ",\"logprobs\":[]";
  std::string part = at + ",\"part\":{\"type\":\"output_text\",\"text\":";
  AppendQuoted(part, text);
  part += ",\"annotations\":[],\"logprobs\":[]}";
  std::string out = Event("response.output_text.done", done);
  out += Event("response.content_part.done", part);
  out += Event("response.output_item.done",
               ",\"output_index\":0,\"item\":" + MessageItem(text, "completed"));
  return out;
}

std::string ResponsesEncoder::Finish(const ResponseOutput& output, engine::FinishReason reason,
                                     const engine::Usage& usage) {
  std::string out;
  std::vector<std::string> items;
  // A message item is always there when text was streamed, and when nothing else is.
  if (message_open_ || !output.text.empty() || output.tool_calls.empty()) {
    if (!message_open_) out += OpenMessage();
    // What the deltas have not carried yet goes out as one more, so they join into the text
    // output_text.done closes: all of it when nothing was streamed, the content a stream that
    // reads tool calls held back (it might have begun a call) when it was streamed in part.
    if (output.text.size() > streamed_text_.size() && output.text.starts_with(streamed_text_)) {
      out += TextDelta(std::string_view(output.text).substr(streamed_text_.size()));
    }
    out += CloseMessage(output.text);
    items.push_back(MessageItem(output.text, "completed"));
  }
  for (const engine::ToolCall& call : output.tool_calls) {
    const int index = static_cast<int>(items.size());
    std::string at = ",\"output_index\":";
    AppendInt(at, index);
    out += Event("response.output_item.added",
                 at + ",\"item\":" + FunctionCallItem({call.id, call.name, ""}, "in_progress"));
    // The id is the model's when its format has ids: any bytes, escaped like every string.
    std::string item_id = at + ",\"item_id\":";
    AppendQuoted(item_id, "fc_" + call.id);
    std::string args = item_id + ",\"delta\":";
    AppendQuoted(args, call.arguments);
    out += Event("response.function_call_arguments.delta", args);
    std::string done = item_id + ",\"arguments\":";
    AppendQuoted(done, call.arguments);
    out += Event("response.function_call_arguments.done", done);
    items.push_back(FunctionCallItem(call, "completed"));
    out += Event("response.output_item.done", at + ",\"item\":" + items.back());
  }
  const std::string_view status = StatusFor(reason);
  out += Event(status == "completed" ? "response.completed" : "response.incomplete",
               ",\"response\":" + ResponseObject(status, items, reason, &usage, nullptr));
  return out;
}

std::string ResponsesEncoder::Fail(const Error& error) {
  const HttpError http = ToHttpError(error);
  std::string fields = ",\"code\":";
  AppendQuoted(fields, http.status >= 500 ? "server_error" : "invalid_request_error");
  fields += ",\"message\":";
  AppendQuoted(fields, error.message);
  fields += ",\"param\":null";
  std::string out = Event("error", fields);
  out += Event("response.failed",
               ",\"response\":" + ResponseObject("failed", {}, std::nullopt, nullptr, &error));
  return out;
}

}  // namespace ember::api
