// OpenAI's Responses API (POST /v1/responses), stateless: the request is turned into the same
// GenerationParams a chat request gives (instructions and input items become chat messages),
// and the answer is encoded as a Response object or as its stream of typed events
// (response.created … response.output_text.delta … response.completed). Pure functions and
// one per-request encoder; no I/O.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "api/openai.h"
#include "engine/types.h"

namespace ember::api {

// Parses and validates a Responses request (kInvalidArgument naming the field, as the other
// endpoints do). previous_response_id and conversation → 400: ember keeps no responses.
[[nodiscard]] Result<GenerationParams> ParseResponsesRequest(std::string_view body);

// What the answer was: its text and the calls it made (empty until tools are served).
struct ResponseOutput {
  std::string text;
  std::vector<engine::ToolCall> tool_calls;
};

// Encodes one response: the whole object, or its events in order. The Response object echoes
// the request's settings (model, instructions, tools, text format, sampling) as OpenAI's does.
// Threads: one request's strand.
class ResponsesEncoder {
 public:
  ResponsesEncoder(const GenerationParams& params, const ResponseMeta& meta);

  // The non-streamed body: a Response with status "completed" (or "incomplete" with
  // incomplete_details.reason "max_output_tokens" when the answer was cut by its limit).
  std::string Whole(const ResponseOutput& output, engine::FinishReason reason,
                    const engine::Usage& usage) const;

  // Streamed: response.created and response.in_progress.
  std::string Start();
  // response.output_text.delta (preceded, the first time, by the message item's
  // response.output_item.added and response.content_part.added).
  std::string TextDelta(std::string_view delta);
  // Closes the text (output_text.done, content_part.done, output_item.done), adds each call as
  // a function_call item (added, arguments delta and done, item done), then
  // response.completed or response.incomplete with the whole Response. The part of
  // output.text beyond what TextDelta streamed goes out first as one more delta, so the deltas
  // join into the text (when output.text continues it).
  std::string Finish(const ResponseOutput& output, engine::FinishReason reason,
                     const engine::Usage& usage);
  // An error after the stream began: an "error" event then response.failed.
  std::string Fail(const Error& error);

 private:
  // The Response object with `status`, the given output items (JSON texts) and usage.
  std::string ResponseObject(std::string_view status, const std::vector<std::string>& items,
                             std::optional<engine::FinishReason> reason, const engine::Usage* usage,
                             const Error* error) const;
  // One "event: TYPE\ndata: {...}\n\n" frame; `fields` is the JSON members after "type" and
  // "sequence_number" (empty, or starting with a comma).
  std::string Event(std::string_view type, std::string_view fields);
  std::string MessageItem(std::string_view text, std::string_view status) const;
  std::string OpenMessage();
  std::string CloseMessage(std::string_view text);

  GenerationParams params_;
  ResponseMeta meta_;
  std::string message_id_;
  int sequence_ = 0;
  bool message_open_ = false;
  std::string streamed_text_;
};

}  // namespace ember::api
