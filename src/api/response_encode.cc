// Completion bodies and server-sent-event chunks, hand-written: the chunk encoders run once per
// generated token, so they build the JSON text directly instead of going through a DOM.
#include <charconv>
#include <cmath>
#include <vector>

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

// OpenAI writes the log-probability of a token too unlikely to tell apart as -9999.0; -inf
// (a token the filters removed) is not JSON at all.
constexpr float kMinLogprob = -9999.0f;

void AppendLogprob(std::string& out, float logprob) {
  if (!std::isfinite(logprob) || logprob <= kMinLogprob) {
    out += "-9999.0";
    return;
  }
  char buf[32];
  const auto result = std::to_chars(buf, buf + sizeof(buf), logprob);
  out.append(buf, result.ptr);
}

void AppendBytes(std::string& out, std::string_view piece) {
  out += '[';
  for (std::size_t i = 0; i < piece.size(); ++i) {
    if (i > 0) out += ',';
    AppendInt(out, static_cast<unsigned char>(piece[i]));
  }
  out += ']';
}

// {"token","logprob","bytes"} without the closing brace (the chosen token adds top_logprobs).
void AppendChatTokenFields(std::string& out, const engine::PieceLogprob& token) {
  out += "{\"token\":";
  AppendQuoted(out, token.piece);
  out += ",\"logprob\":";
  AppendLogprob(out, token.logprob);
  out += ",\"bytes\":";
  AppendBytes(out, token.piece);
}

void AppendChatLogprobs(std::string& out, const ChoiceLogprobs& logprobs) {
  out += "{\"content\":[";
  for (std::size_t i = 0; i < logprobs.tokens.size(); ++i) {
    const engine::TokenLogprobs& t = logprobs.tokens[i];
    if (i > 0) out += ',';
    AppendChatTokenFields(out, t.chosen);
    out += ",\"top_logprobs\":[";
    for (std::size_t j = 0; j < t.top.size(); ++j) {
      if (j > 0) out += ',';
      AppendChatTokenFields(out, t.top[j]);
      out += '}';
    }
    out += "]}";
  }
  out += "],\"refusal\":null}";
}

// One legacy top_logprobs map: the alternatives, then the sampled token when it is not among
// them. Tokens whose texts read the same (two partial UTF-8 pieces are both U+FFFD) keep the
// first, most likely one: a JSON object cannot repeat a key.
void AppendTopMap(std::string& out, const engine::TokenLogprobs& t) {
  std::vector<std::string> keys;
  keys.reserve(t.top.size() + 1);
  auto add = [&](const engine::PieceLogprob& entry) {
    std::string key;
    AppendQuoted(key, entry.piece);
    for (const std::string& k : keys) {
      if (k == key) return;
    }
    if (!keys.empty()) out += ',';
    out += key;
    out += ':';
    AppendLogprob(out, entry.logprob);
    keys.push_back(std::move(key));
  };
  out += '{';
  for (const engine::PieceLogprob& entry : t.top) add(entry);
  add(t.chosen);
  out += '}';
}

void AppendCompletionLogprobs(std::string& out, const ChoiceLogprobs& logprobs) {
  const auto tokens = logprobs.tokens;
  out += "{\"tokens\":[";
  for (std::size_t i = 0; i < tokens.size(); ++i) {
    if (i > 0) out += ',';
    AppendQuoted(out, tokens[i].chosen.piece);
  }
  out += "],\"token_logprobs\":[";
  for (std::size_t i = 0; i < tokens.size(); ++i) {
    if (i > 0) out += ',';
    AppendLogprob(out, tokens[i].chosen.logprob);
  }
  out += "],\"top_logprobs\":[";
  for (std::size_t i = 0; i < tokens.size(); ++i) {
    if (i > 0) out += ',';
    AppendTopMap(out, tokens[i]);
  }
  out += "],\"text_offset\":[";
  std::size_t offset = logprobs.text_offset;
  for (std::size_t i = 0; i < tokens.size(); ++i) {
    if (i > 0) out += ',';
    AppendInt(out, static_cast<std::int64_t>(offset));
    offset += tokens[i].chosen.piece.size();
  }
  out += "]}";
}

// Writes `,"logprobs":…,"finish_reason":…}]` closing the choice and (close_array) the array.
void AppendChoiceTail(std::string& out, std::optional<engine::FinishReason> finish,
                      Endpoint endpoint = Endpoint::kCompletions,
                      const ChoiceLogprobs* logprobs = nullptr, bool close_array = true) {
  out += ",\"logprobs\":";
  if (logprobs == nullptr) {
    out += "null";
  } else if (endpoint == Endpoint::kChatCompletions) {
    AppendChatLogprobs(out, *logprobs);
  } else {
    AppendCompletionLogprobs(out, *logprobs);
  }
  out += ",\"finish_reason\":";
  if (finish.has_value()) {
    AppendQuoted(out, FinishReasonString(*finish));
  } else {
    out += "null";
  }
  out += close_array ? "}]" : "}";
}

// Writes `,"choices":[{"index":i,` opening a chunk's one choice.
void AppendChoiceStart(std::string& out, std::size_t index) {
  out += ",\"choices\":[{\"index\":";
  AppendInt(out, static_cast<std::int64_t>(index));
  out += ',';
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

// Writes `"message":{"role":"assistant","content":…}`; with tool calls the message carries
// them, and "content": null when there is no text (OpenAI's shape); reasoning, when there is
// some, is "reasoning_content" (llama-server's and vLLM's field).
void AppendChatMessage(std::string& out, std::string_view text,
                       std::span<const engine::ToolCall> tool_calls, std::string_view reasoning) {
  out += "\"message\":{\"role\":\"assistant\",\"content\":";
  if (text.empty() && !tool_calls.empty()) {
    out += "null";
  } else {
    AppendQuoted(out, text);
  }
  if (!reasoning.empty()) {
    out += ",\"reasoning_content\":";
    AppendQuoted(out, reasoning);
  }
  if (!tool_calls.empty()) {
    out += ",\"tool_calls\":[";
    for (std::size_t i = 0; i < tool_calls.size(); ++i) {
      if (i > 0) out += ',';
      out += "{\"id\":";
      AppendQuoted(out, tool_calls[i].id);
      out += ",\"type\":\"function\",\"function\":{\"name\":";
      AppendQuoted(out, tool_calls[i].name);
      out += ",\"arguments\":";
      AppendQuoted(out, tool_calls[i].arguments);
      out += "}}";
    }
    out += ']';
  }
  out += '}';
}

}  // namespace

std::string EncodeCompletion(const ResponseMeta& meta, std::string_view text,
                             engine::FinishReason reason, const engine::Usage& usage,
                             const ChoiceLogprobs* logprobs) {
  std::string out;
  out.reserve(text.size() + kEnvelopeReserve);
  AppendHead(out, meta, kCompletionObject);
  out += ",\"choices\":[{\"index\":0,\"text\":";
  AppendQuoted(out, text);
  AppendChoiceTail(out, reason, Endpoint::kCompletions, logprobs);
  out += ",\"usage\":";
  AppendUsage(out, usage, meta.cold_start_seconds);
  out += '}';
  return out;
}

std::string EncodeChatCompletion(const ResponseMeta& meta, std::string_view text,
                                 engine::FinishReason reason, const engine::Usage& usage,
                                 const ChoiceLogprobs* logprobs,
                                 std::span<const engine::ToolCall> tool_calls,
                                 std::string_view reasoning) {
  std::string out;
  out.reserve(text.size() + kEnvelopeReserve);
  AppendHead(out, meta, kChatObject);
  out += ",\"choices\":[{\"index\":0,";
  AppendChatMessage(out, text, tool_calls, reasoning);
  AppendChoiceTail(out, reason, Endpoint::kChatCompletions, logprobs);
  out += ",\"usage\":";
  AppendUsage(out, usage, meta.cold_start_seconds);
  out += '}';
  return out;
}

std::string EncodeCompletionChunk(const ResponseMeta& meta, std::string_view text,
                                  std::optional<engine::FinishReason> finish, bool include_usage,
                                  const ChoiceLogprobs* logprobs) {
  std::string out = StartFrame(text.size());
  AppendHead(out, meta, kCompletionObject);
  AppendChoiceStart(out, meta.choice);
  out += "\"text\":";
  AppendQuoted(out, text);
  AppendChoiceTail(out, finish, Endpoint::kCompletions, logprobs);
  EndChunk(out, include_usage);
  return out;
}

std::string EncodeChatRoleChunk(const ResponseMeta& meta, bool include_usage) {
  std::string out = StartFrame(0);
  AppendHead(out, meta, kChatChunkObject);
  AppendChoiceStart(out, meta.choice);
  out += "\"delta\":{\"role\":\"assistant\",\"content\":\"\"}";
  AppendChoiceTail(out, std::nullopt);
  EndChunk(out, include_usage);
  return out;
}

// The finishing chunk carries an empty delta when it has no text, as OpenAI sends it.
std::string EncodeChatChunk(const ResponseMeta& meta, std::string_view text,
                            std::optional<engine::FinishReason> finish, bool include_usage,
                            const ChoiceLogprobs* logprobs,
                            std::span<const ToolCallFragment> tool_calls,
                            std::string_view reasoning) {
  std::string out = StartFrame(text.size() + reasoning.size());
  AppendHead(out, meta, kChatChunkObject);
  AppendChoiceStart(out, meta.choice);
  out += "\"delta\":{";
  if (!reasoning.empty()) {
    out += "\"reasoning_content\":";
    AppendQuoted(out, reasoning);
  }
  const bool content =
      !text.empty() || (!finish.has_value() && tool_calls.empty() && reasoning.empty());
  if (content) {
    out += reasoning.empty() ? "\"content\":" : ",\"content\":";
    AppendQuoted(out, text);
  }
  if (!tool_calls.empty()) {
    out += content || !reasoning.empty() ? ",\"tool_calls\":[" : "\"tool_calls\":[";
    for (std::size_t i = 0; i < tool_calls.size(); ++i) {
      const ToolCallFragment& f = tool_calls[i];
      if (i > 0) out += ',';
      out += "{\"index\":";
      AppendInt(out, static_cast<std::int64_t>(f.index));
      if (!f.name.empty()) {
        out += ",\"id\":";
        AppendQuoted(out, f.id);
        out += ",\"type\":\"function\",\"function\":{\"name\":";
        AppendQuoted(out, f.name);
        out += ",\"arguments\":";
      } else {
        out += ",\"function\":{\"arguments\":";
      }
      AppendQuoted(out, f.arguments);
      out += "}}";
    }
    out += ']';
  }
  out += '}';
  AppendChoiceTail(out, finish, Endpoint::kChatCompletions, logprobs);
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

std::string EncodeChoices(const ResponseMeta& meta, Endpoint endpoint,
                          std::span<const EncodedChoice> choices, const engine::Usage& usage) {
  const bool chat = endpoint == Endpoint::kChatCompletions;
  std::size_t size = kEnvelopeReserve;
  for (const EncodedChoice& c : choices) size += c.text.size() + kEnvelopeReserve / 2;
  std::string out;
  out.reserve(size);
  AppendHead(out, meta, chat ? kChatObject : kCompletionObject);
  out += ",\"choices\":[";
  for (std::size_t i = 0; i < choices.size(); ++i) {
    if (i > 0) out += ',';
    out += "{\"index\":";
    AppendInt(out, static_cast<std::int64_t>(i));
    if (chat) {
      out += ',';
      AppendChatMessage(out, choices[i].text, choices[i].tool_calls, choices[i].reasoning);
    } else {
      out += ",\"text\":";
      AppendQuoted(out, choices[i].text);
    }
    AppendChoiceTail(out, choices[i].reason, endpoint, choices[i].logprobs,
                     /*close_array=*/false);
  }
  out += "],\"usage\":";
  AppendUsage(out, usage, meta.cold_start_seconds);
  out += '}';
  return out;
}

}  // namespace ember::api
