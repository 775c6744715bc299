// Completion bodies and server-sent-event chunks, hand-written: the chunk encoders run once per
// generated token, so they build the JSON text directly instead of going through a DOM.
#include "api/json_write.h"
#include "api/openai.h"

namespace ember::api {

namespace {

constexpr std::string_view kCompletionObject = "text_completion";
constexpr std::string_view kChatObject = "chat.completion";
constexpr std::string_view kChatChunkObject = "chat.completion.chunk";
constexpr std::size_t kEnvelopeReserve = 256;

// Opens the object and writes "id", "object", "created" and "model".
void AppendHead(std::string& out, const ResponseMeta& meta, std::string_view object) {
  out += "{\"id\":";
  AppendQuoted(out, meta.id);
  out += ",\"object\":\"";
  out += object;
  out += "\",\"created\":";
  AppendInt(out, meta.created);
  out += ",\"model\":";
  AppendQuoted(out, meta.model);
  if (!meta.system_fingerprint.empty()) {
    out += ",\"system_fingerprint\":";
    AppendQuoted(out, meta.system_fingerprint);
  }
}

void AppendUsage(std::string& out, const engine::Usage& usage,
                 std::optional<double> cold_start_seconds) {
  out += "{\"prompt_tokens\":";
  AppendInt(out, usage.prompt_tokens);
  out += ",\"completion_tokens\":";
  AppendInt(out, usage.completion_tokens);
  out += ",\"total_tokens\":";
  AppendInt(out, usage.total_tokens());
  out += ",\"prompt_tokens_details\":{\"cached_tokens\":";
  AppendInt(out, usage.cached_tokens);
  out += '}';
  if (cold_start_seconds) {
    out += ",\"cold_start_seconds\":";
    out += FormatSeconds(*cold_start_seconds);
  }
  out += '}';
}

// Writes `,"logprobs":null,"finish_reason":…}]` closing the single choice and the array.
void AppendChoiceTail(std::string& out, std::optional<engine::FinishReason> finish) {
  out += ",\"logprobs\":null,\"finish_reason\":";
  if (finish.has_value()) {
    AppendQuoted(out, FinishReasonString(*finish));
  } else {
    out += "null";
  }
  out += "}]";
}

// Closes a chunk object and its SSE frame.
void EndChunk(std::string& out, bool include_usage) {
  if (include_usage) out += ",\"usage\":null";
  out += "}\n\n";
}

std::string StartFrame(std::size_t text_size) {
  std::string out;
  out.reserve(text_size + kEnvelopeReserve);
  out += "data: ";
  return out;
}

}  // namespace

std::string EncodeCompletion(const ResponseMeta& meta, std::string_view text,
                             engine::FinishReason reason, const engine::Usage& usage) {
  std::string out;
  out.reserve(text.size() + kEnvelopeReserve);
  AppendHead(out, meta, kCompletionObject);
  out += ",\"choices\":[{\"index\":0,\"text\":";
  AppendQuoted(out, text);
  AppendChoiceTail(out, reason);
  out += ",\"usage\":";
  AppendUsage(out, usage, meta.cold_start_seconds);
  out += '}';
  return out;
}

std::string EncodeChatCompletion(const ResponseMeta& meta, std::string_view text,
                                 engine::FinishReason reason, const engine::Usage& usage) {
  std::string out;
  out.reserve(text.size() + kEnvelopeReserve);
  AppendHead(out, meta, kChatObject);
  out += ",\"choices\":[{\"index\":0,\"message\":{\"role\":\"assistant\",\"content\":";
  AppendQuoted(out, text);
  out += '}';
  AppendChoiceTail(out, reason);
  out += ",\"usage\":";
  AppendUsage(out, usage, meta.cold_start_seconds);
  out += '}';
  return out;
}

std::string EncodeCompletionChunk(const ResponseMeta& meta, std::string_view text,
                                  std::optional<engine::FinishReason> finish, bool include_usage) {
  std::string out = StartFrame(text.size());
  AppendHead(out, meta, kCompletionObject);
  out += ",\"choices\":[{\"index\":0,\"text\":";
  AppendQuoted(out, text);
  AppendChoiceTail(out, finish);
  EndChunk(out, include_usage);
  return out;
}

std::string EncodeChatRoleChunk(const ResponseMeta& meta, bool include_usage) {
  std::string out = StartFrame(0);
  AppendHead(out, meta, kChatChunkObject);
  out += ",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\"}";
  AppendChoiceTail(out, std::nullopt);
  EndChunk(out, include_usage);
  return out;
}

// The finishing chunk carries an empty delta when it has no text, as OpenAI sends it.
std::string EncodeChatChunk(const ResponseMeta& meta, std::string_view text,
                            std::optional<engine::FinishReason> finish, bool include_usage) {
  std::string out = StartFrame(text.size());
  AppendHead(out, meta, kChatChunkObject);
  out += ",\"choices\":[{\"index\":0,\"delta\":{";
  if (!text.empty() || !finish.has_value()) {
    out += "\"content\":";
    AppendQuoted(out, text);
  }
  out += '}';
  AppendChoiceTail(out, finish);
  EndChunk(out, include_usage);
  return out;
}

std::string EncodeUsageChunk(const ResponseMeta& meta, Endpoint endpoint,
                             const engine::Usage& usage) {
  std::string out = StartFrame(0);
  AppendHead(out, meta,
             endpoint == Endpoint::kChatCompletions ? kChatChunkObject : kCompletionObject);
  out += ",\"choices\":[],\"usage\":";
  AppendUsage(out, usage, meta.cold_start_seconds);
  out += "}\n\n";
  return out;
}

}  // namespace ember::api
