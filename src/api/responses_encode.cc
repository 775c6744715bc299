// POST /v1/responses, the answer: a Response object or its event stream. The Response object is
// built with nlohmann (a few times per request); the per-token delta events are written by hand
// like the chat chunks.
#include <charconv>
#include <utility>

#include "api/json_write.h"
#include "api/request_json.h"
#include "api/responses.h"
#include "common/ids.h"

namespace ember::api {

namespace {

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
    if (!output.text.empty() && streamed_text_.empty()) out += TextDelta(output.text);
    out += CloseMessage(output.text);
    items.push_back(MessageItem(output.text, "completed"));
  }
  for (const engine::ToolCall& call : output.tool_calls) {
    const int index = static_cast<int>(items.size());
    std::string at = ",\"output_index\":";
    AppendInt(at, index);
    out += Event("response.output_item.added",
                 at + ",\"item\":" + FunctionCallItem({call.id, call.name, ""}, "in_progress"));
    std::string args = at + ",\"item_id\":\"fc_" + call.id + "\",\"delta\":";
    AppendQuoted(args, call.arguments);
    out += Event("response.function_call_arguments.delta", args);
    std::string done = at + ",\"item_id\":\"fc_" + call.id + "\",\"arguments\":";
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
