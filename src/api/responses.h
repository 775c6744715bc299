// OpenAI's Responses API (POST /v1/responses), stateless: the request is turned into the same
// GenerationParams a chat request gives (instructions and input items become chat messages),
// and the answer is encoded as a Response object or as its stream of typed events
// (response.created … response.output_text.delta … response.completed). Pure functions and
// one per-request encoder; no I/O.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "api/openai.h"
#include "engine/types.h"

namespace ember::api {

// Parses and validates a Responses request (kInvalidArgument naming the field, as the other
// endpoints do). previous_response_id and conversation → 400: ember keeps no responses.
[[nodiscard]] Result<GenerationParams> ParseResponsesRequest(std::string_view body);

// What the answer was: its text, the calls it made, and the reasoning a reasoning template's
// block held (a "reasoning" output item when not empty).
struct ResponseOutput {
  std::string text;
  std::vector<engine::ToolCall> tool_calls;
  std::string reasoning = {};
};

// Encodes one response: the whole object, or its events in order. The Response object echoes
// the request's settings (model, instructions, tools, text format, sampling) as OpenAI's does.
// Threads: one request's strand.
//
// Streamed, the output is a list of items, each added when its first piece arrives: reasoning
// (reasoning_text deltas), a message (output_text deltas), a function_call (arguments deltas).
// Reasoning or text that comes before another item is closed before that item is added, as
// OpenAI orders them; text after a call opens a new message item. Calls stay open until
// Finish, which knows their final arguments. The final Response's `output` is the streamed
// items, in their output_index order.
class ResponsesEncoder {
 public:
  ResponsesEncoder(const GenerationParams& params, const ResponseMeta& meta);

  // The non-streamed body: a Response with status "completed" (or "incomplete" with
  // incomplete_details.reason "max_output_tokens" when the answer was cut by its limit).
  std::string Whole(const ResponseOutput& output, engine::FinishReason reason,
                    const engine::Usage& usage) const;

  // Streamed: response.created and response.in_progress.
  std::string Start();
  // response.output_text.delta, preceded, when the last item is not an open message, by a new
  // message item's response.output_item.added and response.content_part.added.
  std::string TextDelta(std::string_view delta);
  // response.reasoning_text.delta, the same way in a reasoning item (summary [], its text as a
  // reasoning_text content part).
  std::string ReasoningDelta(std::string_view delta);
  // A stream's tool-call fragments (ToolCallFragment, as the chat stream sends them). A call's
  // first fragment (it has a name) closes an open message item and the call before it (whose
  // arguments are then whole: done with them) and adds a function_call item
  // (arguments "", status "in_progress"); each fragment's arguments, when any, are a
  // response.function_call_arguments.delta of that item.
  std::string CallFragments(std::span<const ToolCallFragment> fragments);
  // Ends the stream. `output` is the whole answer as parsed at the end: what of it was not
  // streamed (reasoning, text, calls) is added now. Then every open item is closed in
  // output_index order: a message with output_text.done, content_part.done and
  // output_item.done (reasoning with reasoning_text.done instead); a call with
  // function_call_arguments.done (its final arguments) and output_item.done, status "completed", or
  // "incomplete" for a call the final output does not hold (cut by the token limit: its arguments
  // are what was streamed). Last, response.completed or response.incomplete with the whole
  // Response.
  std::string Finish(const ResponseOutput& output, engine::FinishReason reason,
                     const engine::Usage& usage);
  // An error after the stream began: an "error" event then response.failed.
  std::string Fail(const Error& error);

 private:
  struct Item {
    enum class Kind { kMessage, kReasoning, kFunctionCall };
    Kind kind = Kind::kMessage;
    std::string id;              // the item's: "msg-…", "rs-…", or "fc_" and the call's id
    std::string text;            // a message's or reasoning's text so far
    engine::ToolCall call;       // a function call: its call_id, name and arguments so far
    std::size_t call_index = 0;  // a function call's index among the answer's calls
    bool open = true;
    std::string_view status = "completed";  // once closed
  };

  // The Response object with `status`, the given output items (JSON texts) and usage.
  std::string ResponseObject(std::string_view status, const std::vector<std::string>& items,
                             std::optional<engine::FinishReason> reason, const engine::Usage* usage,
                             const Error* error) const;
  // One "event: TYPE\ndata: {...}\n\n" frame; `fields` is the JSON members after "type" and
  // "sequence_number" (empty, or starting with a comma).
  std::string Event(std::string_view type, std::string_view fields);
  // Closes the last item when it is an open message or reasoning (calls wait for Finish).
  std::string CloseOpenText();
  std::string OpenText(Item::Kind kind);
  std::string AppendText(Item::Kind kind, std::string_view delta);
  std::string AddCall(const ToolCallFragment& first);
  // A function_call_arguments.delta of `item` (a call), or nothing for no arguments.
  std::string ArgumentsDelta(Item& item, std::string_view arguments);
  Item* FindCall(std::size_t call_index);  // null: not streamed
  // The events that close the item at `index`; `final_call`: a call's arguments at the end
  // (null: the call is not in the final output).
  std::string CloseItem(std::size_t index, const engine::ToolCall* final_call);
  std::string ItemJson(const Item& item, std::string_view status) const;

  GenerationParams params_;
  ResponseMeta meta_;
  int sequence_ = 0;
  std::vector<Item> items_;  // streamed, by output_index
};

}  // namespace ember::api
