// libFuzzer target: the response encoders in api/ (SSE chunks, completion bodies, error
// envelopes) fed fuzzed ids, model names, texts (any bytes, invalid UTF-8 included), token
// counts, finish reasons and errors. A response is assembled the way server/generation.cc
// writes it and then read back the way a client reads it: every event is one "data: " line
// ended by "\n\n" holding a JSON object (or the final [DONE]), and every text comes back as
// sent, with each ill-formed UTF-8 subpart turned into U+FFFD.
//
// Input (see fuzz/corpus/sse/): fields separated by the byte 0x1E.
//   header 0x1E id 0x1E model 0x1E delta (0x1E delta)*
// The header is space-separated words: `chat` (else /v1/completions), `usage`
// (stream_options.include_usage), `whole` (a non-streamed body), `tail` (the last delta rides
// on the finishing chunk), `finish=stop|length|cancelled|error`, `error=CODE` (the response
// ends in an error; the last two fields are its message and param), `prompt=N`,
// `completion=N`, `cached=N`, `created=N`, `fp=TEXT` (the system_fingerprint).
#include <charconv>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "api/openai.h"
#include "api/tokenize.h"
#include "fuzz/fuzz_util.h"

namespace ember::fuzz {
namespace {

using engine::FinishReason;

struct ErrorRow {
  std::string_view name;
  ErrorCode code;
  int status;
  std::string_view type;
  std::string_view code_string;
};
// api/openai.h's table, written out again to check ToHttpError and EncodeErrorEvent against.
constexpr ErrorRow kErrorTable[] = {
    {"invalid", ErrorCode::kInvalidArgument, 400, "invalid_request_error", "invalid_value"},
    {"not_found", ErrorCode::kNotFound, 404, "invalid_request_error", "not_found"},
    {"unauthenticated", ErrorCode::kUnauthenticated, 401, "authentication_error",
     "unauthenticated"},
    {"permission", ErrorCode::kPermissionDenied, 403, "permission_error", "permission_denied"},
    {"exhausted", ErrorCode::kResourceExhausted, 429, "rate_limit_error", "rate_limit_exceeded"},
    {"unavailable", ErrorCode::kUnavailable, 503, "server_error", "service_unavailable"},
    {"deadline", ErrorCode::kDeadlineExceeded, 503, "server_error", "queue_timeout"},
    {"internal", ErrorCode::kInternal, 500, "server_error", "internal_error"},
};

struct Scenario {
  bool chat = false;
  bool include_usage = false;
  bool whole = false;
  bool tail = false;
  FinishReason finish = FinishReason::kStop;
  const ErrorRow* error_row = nullptr;
  Error error;
  engine::Usage usage;
  api::ResponseMeta meta;
  std::vector<std::string> deltas;
};

std::vector<std::string_view> Split(std::string_view text, char separator) {
  std::vector<std::string_view> parts;
  while (true) {
    const std::size_t end = text.find(separator);
    parts.push_back(text.substr(0, end));
    if (end == std::string_view::npos) return parts;
    text.remove_prefix(end + 1);
  }
}

std::int64_t Number(std::string_view text) {
  std::int64_t value = 0;
  std::from_chars(text.data(), text.data() + text.size(), value);
  return value;
}

// Token counts come from the engine and never exceed the context size (an int), so the target
// keeps them well inside int: prompt + completion cannot overflow.
int Count(std::string_view text) { return static_cast<int>(Number(text) & 0x3FFFFFFF); }

void ApplyWord(Scenario& s, std::string_view word) {
  const std::size_t eq = word.find('=');
  const std::string_view key = word.substr(0, eq);
  const std::string_view value = eq == std::string_view::npos ? "" : word.substr(eq + 1);
  if (key == "chat") s.chat = true;
  if (key == "usage") s.include_usage = true;
  if (key == "whole") s.whole = true;
  if (key == "tail") s.tail = true;
  if (key == "prompt") s.usage.prompt_tokens = Count(value);
  if (key == "completion") s.usage.completion_tokens = Count(value);
  if (key == "cached") s.usage.cached_tokens = Count(value);
  if (key == "created") s.meta.created = Number(value);
  if (key == "fp") s.meta.system_fingerprint = value;
  if (key == "finish") {
    if (value == "length") s.finish = FinishReason::kLength;
    if (value == "cancelled") s.finish = FinishReason::kCancelled;
    if (value == "error") s.finish = FinishReason::kError;
  }
  if (key == "error") {
    for (const ErrorRow& row : kErrorTable) {
      if (row.name == value) s.error_row = &row;
    }
  }
}

Scenario ParseScenario(std::string_view input) {
  Scenario s;
  std::vector<std::string_view> fields = Split(input, '\x1E');
  for (std::string_view word : Split(fields[0], ' ')) ApplyWord(s, word);
  if (fields.size() > 1) s.meta.id = fields[1];
  if (fields.size() > 2) s.meta.model = fields[2];
  if (s.error_row != nullptr) {
    s.error.code = s.error_row->code;
    if (fields.size() > 4) {
      s.error.param = fields.back();
      fields.pop_back();
    }
    if (fields.size() > 3) {
      s.error.message = fields.back();
      fields.pop_back();
    }
  }
  for (std::size_t i = 3; i < fields.size(); ++i) s.deltas.emplace_back(fields[i]);
  return s;
}

Json Member(const Json& object, const char* key) {
  const auto it = object.find(key);
  return it == object.end() ? Json() : *it;
}

// The error envelope OpenAI clients expect, with the message and param as sent.
void CheckEnvelope(const Json& doc, const Error& error, const ErrorRow& row) {
  FUZZ_CHECK(doc.is_object() && doc.size() == 1, "%s", doc.dump().c_str());
  const Json e = Member(doc, "error");
  FUZZ_CHECK(e.is_object() && e.size() == 4, "%s", doc.dump().c_str());
  FUZZ_CHECK(Member(e, "message") == ReferenceRepair(error.message), "%s", doc.dump().c_str());
  FUZZ_CHECK(Member(e, "type") == row.type, "%s", doc.dump().c_str());
  FUZZ_CHECK(Member(e, "code") == row.code_string ||
                 (row.code == ErrorCode::kNotFound && error.param == "model" &&
                  Member(e, "code") == "model_not_found"),
             "%s", doc.dump().c_str());
  const Json param = Member(e, "param");
  FUZZ_CHECK(error.param.empty() ? param.is_null() : param == ReferenceRepair(error.param), "%s",
             doc.dump().c_str());
}

void CheckUsage(const Json& usage, const engine::Usage& expected) {
  const Json want = {{"prompt_tokens", expected.prompt_tokens},
                     {"completion_tokens", expected.completion_tokens},
                     {"total_tokens", expected.prompt_tokens + expected.completion_tokens},
                     {"prompt_tokens_details", {{"cached_tokens", expected.cached_tokens}}}};
  FUZZ_CHECK(usage == want, "usage %s", usage.dump().c_str());
}

std::string RepairedText(const Scenario& s) {
  std::string text;
  for (const std::string& delta : s.deltas) text += ReferenceRepair(delta);
  return text;
}

// The SSE stream as a client reads it: the JSON payload of each event, [DONE] last.
std::vector<Json> ReadEvents(std::string_view stream) {
  FUZZ_CHECK(stream.ends_with("\n\n"), "stream does not end with a blank line");
  stream.remove_suffix(2);
  std::vector<Json> events;
  const std::vector<std::string_view> frames = Split(stream, '\n');
  for (std::size_t i = 0; i < frames.size(); ++i) {
    const std::string_view frame = frames[i];
    if (i % 2 == 1) {
      FUZZ_CHECK(frame.empty(), "an event spans lines: %.200s", frame.data());
      continue;
    }
    FUZZ_CHECK(frame.starts_with("data: "), "frame %.200s", frame.data());
    const std::string_view payload = frame.substr(6);
    for (char c : payload) {
      FUZZ_CHECK(static_cast<unsigned char>(c) >= 0x20, "raw control byte 0x%02X", c & 0xFF);
    }
    FUZZ_CHECK(payload.find("\xE2\x80\xA8") == std::string_view::npos &&
                   payload.find("\xE2\x80\xA9") == std::string_view::npos,
               "raw U+2028/U+2029");
    if (payload == "[DONE]") {
      FUZZ_CHECK(i + 1 == frames.size(), "[DONE] is not last");
      continue;
    }
    auto doc = ParseStrict(payload);
    FUZZ_CHECK(doc && doc->is_object(), "payload is not a JSON object: %.200s", payload.data());
    events.push_back(std::move(*doc));
  }
  FUZZ_CHECK(frames.back() == "data: [DONE]", "no [DONE] at the end");
  return events;
}

void CheckHead(const Json& chunk, const Scenario& s, std::string_view object) {
  FUZZ_CHECK(Member(chunk, "id") == ReferenceRepair(s.meta.id), "id %s", chunk.dump().c_str());
  FUZZ_CHECK(Member(chunk, "object") == object, "%s", chunk.dump().c_str());
  FUZZ_CHECK(Member(chunk, "created") == s.meta.created, "%s", chunk.dump().c_str());
  FUZZ_CHECK(Member(chunk, "model") == ReferenceRepair(s.meta.model), "model %s",
             chunk.dump().c_str());
  if (s.meta.system_fingerprint.empty()) {
    FUZZ_CHECK(!chunk.contains("system_fingerprint"), "%s", chunk.dump().c_str());
  } else {
    FUZZ_CHECK(Member(chunk, "system_fingerprint") == ReferenceRepair(s.meta.system_fingerprint),
               "%s", chunk.dump().c_str());
  }
}

// Members of the head beyond id, object, created and model.
std::size_t ExtraHead(const Scenario& s) { return s.meta.system_fingerprint.empty() ? 0 : 1; }

// One text chunk (or the role chunk); returns its text and adds nothing else.
std::string ChunkText(const Json& chunk, const Scenario& s, const Json& finish) {
  CheckHead(chunk, s, s.chat ? "chat.completion.chunk" : "text_completion");
  FUZZ_CHECK(chunk.size() == (s.include_usage ? 6u : 5u) + ExtraHead(s), "%s",
             chunk.dump().c_str());
  if (s.include_usage) FUZZ_CHECK(Member(chunk, "usage").is_null(), "%s", chunk.dump().c_str());
  const Json choices = Member(chunk, "choices");
  FUZZ_CHECK(choices.is_array() && choices.size() == 1, "%s", chunk.dump().c_str());
  const Json& choice = choices[0];
  FUZZ_CHECK(choice.size() == 4 && Member(choice, "index") == 0 &&
                 Member(choice, "logprobs").is_null() && Member(choice, "finish_reason") == finish,
             "%s", chunk.dump().c_str());
  const Json text = s.chat ? Member(Member(choice, "delta"), "content") : Member(choice, "text");
  FUZZ_CHECK(text.is_string() || (s.chat && text.is_null()), "%s", chunk.dump().c_str());
  return text.is_string() ? text.get<std::string>() : "";
}

Json FinishJson(FinishReason reason) {
  return reason == FinishReason::kStop     ? "stop"
         : reason == FinishReason::kLength ? "length"
                                           : "error";
}

std::optional<Error> ErrorOf(const Scenario& s) {
  if (s.error_row == nullptr) return std::nullopt;
  return s.error;
}

// The stream server/generation.cc writes for this scenario.
std::string WriteStream(const Scenario& s) {
  const bool tail = s.tail && !s.deltas.empty() && !ErrorOf(s);  // an error has no final chunk
  const std::size_t n_text = tail ? s.deltas.size() - 1 : s.deltas.size();
  std::string out;
  if (s.chat) out += api::EncodeChatRoleChunk(s.meta, s.include_usage);
  for (std::size_t i = 0; i < n_text; ++i) {
    if (s.deltas[i].empty()) continue;
    out += s.chat ? api::EncodeChatChunk(s.meta, s.deltas[i], std::nullopt, s.include_usage)
                  : api::EncodeCompletionChunk(s.meta, s.deltas[i], std::nullopt, s.include_usage);
  }
  if (const auto error = ErrorOf(s)) {
    out += api::EncodeErrorEvent(*error);
  } else {
    const std::string_view tail =
        n_text < s.deltas.size() ? std::string_view(s.deltas.back()) : std::string_view();
    out += s.chat ? api::EncodeChatChunk(s.meta, tail, s.finish, s.include_usage)
                  : api::EncodeCompletionChunk(s.meta, tail, s.finish, s.include_usage);
    if (s.include_usage) {
      out += api::EncodeUsageChunk(
          s.meta, s.chat ? api::Endpoint::kChatCompletions : api::Endpoint::kCompletions, s.usage);
    }
  }
  out += api::kSseDone;
  return out;
}

void CheckStream(const Scenario& s) {
  const std::vector<Json> events = ReadEvents(WriteStream(s));
  std::size_t next = 0;
  if (s.chat) {
    FUZZ_CHECK(ChunkText(events.at(next), s, nullptr).empty(), "role chunk with text");
    const Json delta = Member(events.at(next++)["choices"][0], "delta");
    FUZZ_CHECK(delta == Json({{"role", "assistant"}, {"content", ""}}), "%s", delta.dump().c_str());
  }
  const std::size_t n_final = ErrorOf(s) ? 1 : (s.include_usage ? 2 : 1);
  FUZZ_CHECK(events.size() >= next + n_final, "%zu events", events.size());
  std::string text;
  for (; next + n_final < events.size(); ++next) {
    const std::string piece = ChunkText(events[next], s, nullptr);
    FUZZ_CHECK(!piece.empty(), "a text chunk without text");
    text += piece;
  }
  if (const auto error = ErrorOf(s)) {
    FUZZ_CHECK(text == RepairedText(s), "text does not round-trip");
    return CheckEnvelope(events[next], *error, *s.error_row);
  }
  const Json& last = events[next++];
  text += ChunkText(last, s, FinishJson(s.finish));
  if (s.chat && (!s.tail || s.deltas.empty() || s.deltas.back().empty())) {
    FUZZ_CHECK(Member(last["choices"][0], "delta") == Json::object(), "%s", last.dump().c_str());
  }
  FUZZ_CHECK(text == RepairedText(s), "text does not round-trip");
  if (!s.include_usage) return;
  const Json& usage = events[next];
  CheckHead(usage, s, s.chat ? "chat.completion.chunk" : "text_completion");
  FUZZ_CHECK(usage.size() == 6 + ExtraHead(s) && Member(usage, "choices") == Json::array(), "%s",
             usage.dump().c_str());
  CheckUsage(Member(usage, "usage"), s.usage);
}

// A non-streamed response: the whole body, or the error a handler answers with.
void CheckWhole(const Scenario& s) {
  if (const auto error = ErrorOf(s)) {
    const api::HttpError http = api::ToHttpError(*error);
    FUZZ_CHECK(http.status == s.error_row->status, "status %d", http.status);
    const auto doc = ParseStrict(http.body);
    FUZZ_CHECK(doc.has_value(), "error body is not JSON: %s", http.body.c_str());
    return CheckEnvelope(*doc, *error, *s.error_row);
  }
  std::string text;
  for (const std::string& delta : s.deltas) text += delta;
  const std::string body = s.chat ? api::EncodeChatCompletion(s.meta, text, s.finish, s.usage)
                                  : api::EncodeCompletion(s.meta, text, s.finish, s.usage);
  const auto doc = ParseStrict(body);
  FUZZ_CHECK(doc && doc->is_object() && doc->size() == 6 + ExtraHead(s), "body %s", body.c_str());
  CheckHead(*doc, s, s.chat ? "chat.completion" : "text_completion");
  const Json choice = Member(*doc, "choices")[0];
  const Json got = s.chat ? Member(choice, "message") : Member(choice, "text");
  const Json want = s.chat ? Json({{"role", "assistant"}, {"content", ReferenceRepair(text)}})
                           : Json(ReferenceRepair(text));
  FUZZ_CHECK(got == want, "body %s", body.c_str());
  FUZZ_CHECK(Member(choice, "finish_reason") == FinishJson(s.finish), "body %s", body.c_str());
  CheckUsage(Member(*doc, "usage"), s.usage);
}

// GET /v1/models and POST /tokenize bodies, from the same fields.
void CheckSmallBodies(const Scenario& s) {
  const std::string models = api::EncodeModelList({{.id = s.meta.model,
                                                    .created = s.meta.created,
                                                    .owned_by = ReferenceRepair(s.meta.id),
                                                    .context_length = s.usage.prompt_tokens,
                                                    .status = {},
                                                    .embedding_dimensions = 0,
                                                    .embedding_only = false}});
  const auto list = ParseStrict(models);
  FUZZ_CHECK(list && Member(*list, "data").size() == 1, "%s", models.c_str());
  FUZZ_CHECK(Member(Member(*list, "data")[0], "id") == ReferenceRepair(s.meta.model), "%s",
             models.c_str());
  std::vector<engine::Token> tokens;
  for (const std::string& delta : s.deltas) {
    tokens.push_back(static_cast<engine::Token>(Number(delta)));
  }
  const auto encoded = ParseStrict(api::EncodeTokens(tokens));
  FUZZ_CHECK(encoded && *encoded == Json({{"tokens", tokens}}), "tokens");
}

}  // namespace
}  // namespace ember::fuzz

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace ember::fuzz;
  const Scenario s = ParseScenario(std::string_view(reinterpret_cast<const char*>(data), size));
  if (s.whole) {
    CheckWhole(s);
  } else {
    CheckStream(s);
  }
  CheckSmallBodies(s);
  return 0;
}
