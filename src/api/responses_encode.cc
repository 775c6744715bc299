// POST /v1/responses, the answer: a Response object or its event stream. The Response object is
// built with nlohmann (a few times per request); the per-token delta events are written by hand
// like the chat chunks.
#include <algorithm>
#include <charconv>
#include <utility>

#include "api/json_write.h"
#include "api/request_json.h"
#include "api/responses.h"
#include "common/ids.h"

namespace ember::api {

namespace {

// A failed response's error.code, from the Responses API's set: the server's own failures are
// server_error, a rate limit rate_limit_exceeded, anything the client sent invalid_prompt.
std::string_view ResponseErrorCode(const Error& error) {
  const int status = ToHttpError(error).status;
  if (status == 429) return "rate_limit_exceeded";
  return status >= 500 ? "server_error" : "invalid_prompt";
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

std::string MessageItemJson(std::string_view id, std::string_view text, std::string_view status) {
  std::string out = "{\"type\":\"message\",\"id\":";
  AppendQuoted(out, id);
  out += ",\"status\":";
  AppendQuoted(out, status);
  out += ",\"role\":\"assistant\",\"content\":[";
  if (status != "in_progress") {
    out += "{\"type\":\"output_text\",\"text\":";
    AppendQuoted(out, text);
    out += ",\"annotations\":[],\"logprobs\":[]}";
  }
  out += "]}";
  return out;
}

// A text item's content part: output_text for a message, reasoning_text for reasoning.
std::string PartJson(bool reasoning, std::string_view text) {
  std::string out =
      reasoning ? "{\"type\":\"reasoning_text\",\"text\":" : "{\"type\":\"output_text\",\"text\":";
  AppendQuoted(out, text);
  out += reasoning ? "}" : ",\"annotations\":[],\"logprobs\":[]}";
  return out;
}

// OpenAI's reasoning item: no summary (ember makes none), the reasoning as reasoning_text.
std::string ReasoningItemJson(std::string_view id, std::string_view text, std::string_view status) {
  std::string out = "{\"type\":\"reasoning\",\"id\":";
  AppendQuoted(out, id);
  out += ",\"summary\":[],\"content\":[";
  if (status != "in_progress") out += PartJson(true, text);
  out += "],\"status\":";
  AppendQuoted(out, status);
  out += '}';
  return out;
}

std::string FunctionCallItemJson(std::string_view id, const engine::ToolCall& call,
                                 std::string_view status) {
  Json item = {{"type", "function_call"},     {"id", id},
               {"call_id", call.id},          {"name", call.name},
               {"arguments", call.arguments}, {"status", status}};
  return item.dump(-1, ' ', false, Json::error_handler_t::replace);
}

// ,"output_index":N
std::string IndexField(std::size_t index) {
  std::string out = ",\"output_index\":";
  AppendInt(out, static_cast<std::int64_t>(index));
  return out;
}

// ,"item_id":"…","output_index":N
std::string ItemFields(std::string_view id, std::size_t index) {
  std::string out = ",\"item_id\":";
  AppendQuoted(out, id);
  out += IndexField(index);
  return out;
}

}  // namespace

ResponsesEncoder::ResponsesEncoder(const GenerationParams& params, const ResponseMeta& meta)
    : params_(params), meta_(meta) {}

std::string ResponsesEncoder::ItemJson(const Item& item, std::string_view status) const {
  switch (item.kind) {
    case Item::Kind::kMessage:
      return MessageItemJson(item.id, item.text, status);
    case Item::Kind::kReasoning:
      return ReasoningItemJson(item.id, item.text, status);
    case Item::Kind::kFunctionCall:
      break;
  }
  return FunctionCallItemJson(item.id, item.call, status);
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
    r["error"] = {{"code", ResponseErrorCode(*error)}, {"message", error->message}};
  }
  return r.dump(-1, ' ', false, Json::error_handler_t::replace);
}

std::string ResponsesEncoder::Whole(const ResponseOutput& output, engine::FinishReason reason,
                                    const engine::Usage& usage) const {
  std::vector<std::string> items;
  if (!output.reasoning.empty()) {
    items.push_back(ReasoningItemJson(NewRequestId("rs"), output.reasoning, "completed"));
  }
  if (!output.text.empty() || output.tool_calls.empty()) {
    items.push_back(MessageItemJson(NewRequestId("msg"), output.text, "completed"));
  }
  for (const engine::ToolCall& call : output.tool_calls) {
    items.push_back(FunctionCallItemJson("fc_" + call.id, call, "completed"));
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

std::string ResponsesEncoder::CloseOpenText() {
  if (items_.empty() || !items_.back().open || items_.back().kind == Item::Kind::kFunctionCall) {
    return {};
  }
  return CloseItem(items_.size() - 1, nullptr);
}

std::string ResponsesEncoder::OpenText(Item::Kind kind) {
  std::string out = CloseOpenText();
  const bool reasoning = kind == Item::Kind::kReasoning;
  const std::size_t index = items_.size();
  Item& item = items_.emplace_back();
  item.kind = kind;
  item.id = NewRequestId(reasoning ? "rs" : "msg");
  out += Event("response.output_item.added",
               IndexField(index) + ",\"item\":" + ItemJson(item, "in_progress"));
  out += Event(
      "response.content_part.added",
      ItemFields(item.id, index) + ",\"content_index\":0,\"part\":" + PartJson(reasoning, ""));
  return out;
}

std::string ResponsesEncoder::AppendText(Item::Kind kind, std::string_view delta) {
  if (delta.empty()) return {};
  std::string out;
  if (items_.empty() || items_.back().kind != kind || !items_.back().open) out += OpenText(kind);
  const std::size_t index = items_.size() - 1;
  Item& item = items_.back();
  item.text += delta;
  std::string fields = ItemFields(item.id, index) + ",\"content_index\":0,\"delta\":";
  AppendQuoted(fields, delta);
  if (kind == Item::Kind::kMessage) {
    fields += ",\"logprobs\":[]";
    out += Event("response.output_text.delta", fields);
  } else {
    out += Event("response.reasoning_text.delta", fields);
  }
  return out;
}

std::string ResponsesEncoder::TextDelta(std::string_view delta) {
  return AppendText(Item::Kind::kMessage, delta);
}

std::string ResponsesEncoder::ReasoningDelta(std::string_view delta) {
  return AppendText(Item::Kind::kReasoning, delta);
}

std::string ResponsesEncoder::AddCall(const ToolCallFragment& first) {
  // Text before the call is a message of its own, done before the call's item is added.
  std::string out = CloseOpenText();
  // So is a call before it: a call's arguments are whole once the next call begins (only the
  // last call of an answer grows, or is cut by the token limit), so one call is open at a time,
  // as OpenAI streams them.
  for (std::size_t index = 0; index < items_.size(); ++index) {
    if (items_[index].open && items_[index].kind == Item::Kind::kFunctionCall) {
      const engine::ToolCall whole = items_[index].call;
      out += CloseItem(index, &whole);
    }
  }
  const std::size_t index = items_.size();
  Item& item = items_.emplace_back();
  item.kind = Item::Kind::kFunctionCall;
  item.id = "fc_" + first.id;
  item.call = {first.id, first.name, ""};
  item.call_index = first.index;
  out += Event("response.output_item.added",
               IndexField(index) + ",\"item\":" + ItemJson(item, "in_progress"));
  return out;
}

ResponsesEncoder::Item* ResponsesEncoder::FindCall(std::size_t call_index) {
  for (Item& item : items_) {
    if (item.kind == Item::Kind::kFunctionCall && item.call_index == call_index) return &item;
  }
  return nullptr;
}

std::string ResponsesEncoder::CallFragments(std::span<const ToolCallFragment> fragments) {
  std::string out;
  for (const ToolCallFragment& f : fragments) {
    Item* item = FindCall(f.index);
    if (item == nullptr) {
      if (f.name.empty()) continue;  // a continuation of a call never announced
      out += AddCall(f);
      item = &items_.back();
    }
    out += ArgumentsDelta(*item, f.arguments);
  }
  return out;
}

std::string ResponsesEncoder::ArgumentsDelta(Item& item, std::string_view arguments) {
  if (arguments.empty()) return {};
  item.call.arguments += arguments;
  std::string fields =
      ItemFields(item.id, static_cast<std::size_t>(&item - items_.data())) + ",\"delta\":";
  AppendQuoted(fields, arguments);
  return Event("response.function_call_arguments.delta", fields);
}

std::string ResponsesEncoder::CloseItem(std::size_t index, const engine::ToolCall* final_call) {
  Item& item = items_[index];
  item.open = false;
  std::string out;
  if (item.kind != Item::Kind::kFunctionCall) {
    const bool reasoning = item.kind == Item::Kind::kReasoning;
    const std::string at = ItemFields(item.id, index) + ",\"content_index\":0";
    std::string done = at + ",\"text\":";
    AppendQuoted(done, item.text);
    if (!reasoning) done += ",\"logprobs\":[]";
    out += Event(reasoning ? "response.reasoning_text.done" : "response.output_text.done", done);
    out += Event("response.content_part.done", at + ",\"part\":" + PartJson(reasoning, item.text));
  } else if (final_call != nullptr) {
    item.call.arguments = final_call->arguments;
    std::string done = ItemFields(item.id, index) + ",\"name\":";
    AppendQuoted(done, item.call.name);
    done += ",\"arguments\":";
    AppendQuoted(done, item.call.arguments);
    out += Event("response.function_call_arguments.done", done);
  } else {
    item.status = "incomplete";  // its arguments never became a whole call
  }
  out += Event("response.output_item.done",
               IndexField(index) + ",\"item\":" + ItemJson(item, item.status));
  return out;
}

std::string ResponsesEncoder::Finish(const ResponseOutput& output, engine::FinishReason reason,
                                     const engine::Usage& usage) {
  std::string out;
  auto has = [this](Item::Kind kind) {
    return std::any_of(items_.begin(), items_.end(),
                       [kind](const Item& i) { return i.kind == kind; });
  };
  // What was not streamed (an answer read only at its end) is added now: its reasoning, a
  // message item when the answer has text, or nothing else, and its calls.
  if (!has(Item::Kind::kReasoning)) out += ReasoningDelta(output.reasoning);
  if (!has(Item::Kind::kMessage) && (!output.text.empty() || output.tool_calls.empty())) {
    out += OpenText(Item::Kind::kMessage);
    out += TextDelta(output.text);
  } else {
    // Text the stream held back (it might have begun a call) and its caller did not send as a
    // last delta: so that the deltas still join into the text (when the text continues them).
    std::string streamed;
    for (const Item& item : items_) {
      if (item.kind == Item::Kind::kMessage) streamed += item.text;
    }
    if (output.text.size() > streamed.size() && output.text.starts_with(streamed)) {
      out += TextDelta(std::string_view(output.text).substr(streamed.size()));
    }
  }
  for (std::size_t i = 0; i < output.tool_calls.size(); ++i) {
    if (FindCall(i) != nullptr) continue;
    // Added whatever its name (a stream's fragment without one continues a call; this is the
    // whole call).
    const engine::ToolCall& call = output.tool_calls[i];
    out += AddCall({i, call.id, call.name, ""});
    out += ArgumentsDelta(items_.back(), call.arguments);
  }
  for (std::size_t index = 0; index < items_.size(); ++index) {
    const Item& item = items_[index];
    if (!item.open) continue;
    const bool final =
        item.kind == Item::Kind::kFunctionCall && item.call_index < output.tool_calls.size();
    out += CloseItem(index, final ? &output.tool_calls[item.call_index] : nullptr);
  }
  std::vector<std::string> items;
  items.reserve(items_.size());
  for (const Item& item : items_) items.push_back(ItemJson(item, item.status));
  const std::string_view status = StatusFor(reason);
  out += Event(status == "completed" ? "response.completed" : "response.incomplete",
               ",\"response\":" + ResponseObject(status, items, reason, &usage, nullptr));
  return out;
}

std::string ResponsesEncoder::Fail(const Error& error) {
  std::string fields = ",\"code\":";
  AppendQuoted(fields, ResponseErrorCode(error));
  fields += ",\"message\":";
  AppendQuoted(fields, error.message);
  fields += ",\"param\":null";
  std::string out = Event("error", fields);
  out += Event("response.failed",
               ",\"response\":" + ResponseObject("failed", {}, std::nullopt, nullptr, &error));
  return out;
}

}  // namespace ember::api
