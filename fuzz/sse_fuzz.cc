// libFuzzer target: the response encoders in api/openai.h (SSE chunks, completion bodies,
// error envelopes) fed fuzzed ids, model names, texts (any bytes, invalid UTF-8 included), token
// counts, finish reasons, errors, log-probabilities and tool calls. A response is assembled the
// way server/generation.cc writes it and then read back the way a client reads it: every event
// is one "data: " line ended by "\n\n" holding a JSON object (or the final [DONE]), no object
// names a member twice, and every text comes back as sent, with each ill-formed UTF-8 subpart
// turned into U+FFFD: contents, tool-call ids, names and arguments (joined per call index),
// and each token of the log-probabilities (whose `bytes` are its raw bytes).
//
// Input (see fuzz/corpus/sse/): fields separated by the byte 0x1E.
//   header 0x1E id 0x1E model 0x1E delta (0x1E delta)*
// The header is space-separated words: `chat` (else /v1/completions), `usage`
// (stream_options.include_usage), `whole` (a non-streamed body), `choices` (with `whole`: one
// choice per delta, as an n > 1 body), `index=N` (the choice streamed chunks belong to), `tail`
// (the last delta rides on the finishing chunk), `finish=stop|length|cancelled|error|tool_calls`,
// `error=CODE` (the response ends in an error; the last two fields are its message and param),
// `prompt=N`, `completion=N`, `cached=N`, `created=N`, `fp=TEXT` (the system_fingerprint),
// `logprobs` (each delta is its tokens with their log-probabilities) and `tools` (chat: deltas
// carry tool-call fragments; a whole body carries the calls they make up).
//
// A delta is its content, then with `tools` its call fragments, each after a byte 0x1A:
//   content (0x1A fragment)*
// With `logprobs` the content is the delta's tokens, whose chosen pieces make its text:
//   content:  token (0x1F token)*        (empty: no tokens)
//   token:    entry (0x1D entry)*        (the chosen piece, then up to 20 alternatives)
//   entry:    [logprob 0x1C] piece       (logprob as from_chars reads a float: "-0.5",
//                                         "-inf", "nan", "-1e4"; 0 when absent)
// A fragment is a byte, the call's index, then for the first fragment of that index
//   name 0x1B id 0x1B arguments          (an empty name reads as "f": a first fragment names
//                                         its call)
// and for a later one the next piece of the call's arguments.
#include <charconv>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <map>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
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

// A function call as its fragments announced and continued it, in the order calls first appear.
struct Call {
  std::size_t index = 0;
  std::string id;
  std::string name;
  std::string arguments;  // the fragments' pieces, joined
  std::string repaired;   // each piece as a client reads it, joined
};

// One delta of the output: its text, the log-probabilities of its tokens and the tool-call
// fragments it carries.
struct Delta {
  std::string text;
  std::vector<engine::TokenLogprobs> tokens;
  std::vector<api::ToolCallFragment> calls;
};

struct Scenario {
  bool chat = false;
  bool include_usage = false;
  bool whole = false;
  bool choices = false;
  bool tail = false;
  bool logprobs = false;
  bool tools = false;
  FinishReason finish = FinishReason::kStop;
  const ErrorRow* error_row = nullptr;
  Error error;
  engine::Usage usage;
  api::ResponseMeta meta;
  std::vector<Delta> deltas;
  std::vector<Call> calls;
};

// Token counts come from the engine and never exceed the context size (an int), so the target
// keeps them well inside int: prompt + completion cannot overflow.
int Count(std::string_view text) { return static_cast<int>(Number(text) & 0x3FFFFFFF); }

// A float as from_chars reads it ("-1.5", "-inf", "nan", "1e-45"); 0 when it reads none.
float Float(std::string_view text) {
  float value = 0.0f;
  std::from_chars(text.data(), text.data() + text.size(), value);
  return value;
}

// The part of `rest` before the first `separator` (all of it when there is none); `rest` keeps
// what follows the separator.
std::string_view Cut(std::string_view& rest, char separator) {
  const std::size_t end = rest.find(separator);
  const std::string_view head = rest.substr(0, end);
  rest = end == std::string_view::npos ? std::string_view() : rest.substr(end + 1);
  return head;
}

void ApplyWord(Scenario& s, std::string_view word) {
  const std::size_t eq = word.find('=');
  const std::string_view key = word.substr(0, eq);
  const std::string_view value = eq == std::string_view::npos ? "" : word.substr(eq + 1);
  if (key == "chat") s.chat = true;
  if (key == "usage") s.include_usage = true;
  if (key == "whole") s.whole = true;
  if (key == "choices") s.choices = true;
  if (key == "tail") s.tail = true;
  if (key == "logprobs") s.logprobs = true;
  if (key == "tools") s.tools = true;
  if (key == "index") s.meta.choice = static_cast<std::size_t>(Count(value));
  if (key == "prompt") s.usage.prompt_tokens = Count(value);
  if (key == "completion") s.usage.completion_tokens = Count(value);
  if (key == "cached") s.usage.cached_tokens = Count(value);
  if (key == "created") s.meta.created = Number(value);
  if (key == "fp") s.meta.system_fingerprint = value;
  if (key == "finish") {
    if (value == "length") s.finish = FinishReason::kLength;
    if (value == "cancelled") s.finish = FinishReason::kCancelled;
    if (value == "error") s.finish = FinishReason::kError;
    if (value == "tool_calls") s.finish = FinishReason::kToolCalls;
  }
  if (key == "error") {
    for (const ErrorRow& row : kErrorTable) {
      if (row.name == value) s.error_row = &row;
    }
  }
}

// The most alternatives a token carries: chat's top_logprobs limit (completions allow 5).
constexpr std::size_t kMaxAlternatives = 20;

engine::PieceLogprob Entry(std::string_view entry) {
  const std::size_t at = entry.find('\x1C');
  if (at == std::string_view::npos) return {std::string(entry), 0.0f};
  return {std::string(entry.substr(at + 1)), Float(entry.substr(0, at))};
}

// One call fragment: the first of its index announces the call (id and name), a later one
// continues its arguments.
api::ToolCallFragment Fragment(Scenario& s, std::string_view field) {
  api::ToolCallFragment fragment;
  if (!field.empty()) {
    fragment.index = static_cast<unsigned char>(field[0]);
    field.remove_prefix(1);
  }
  Call* call = nullptr;
  for (Call& c : s.calls) {
    if (c.index == fragment.index) call = &c;
  }
  if (call == nullptr) {
    const std::string_view name = Cut(field, '\x1B');
    fragment.name = name.empty() ? "f" : name;
    fragment.id = Cut(field, '\x1B');
    call = &s.calls.emplace_back(Call{fragment.index, fragment.id, fragment.name, "", ""});
  }
  fragment.arguments = field;
  call->arguments += fragment.arguments;
  call->repaired += ReferenceRepair(fragment.arguments);
  return fragment;
}

Delta ParseDelta(Scenario& s, std::string_view field) {
  Delta d;
  const std::string_view content = s.tools ? Cut(field, '\x1A') : field;
  if (!s.logprobs) {
    d.text = content;
  } else if (!content.empty()) {
    for (std::string_view token : Split(content, '\x1F')) {
      const std::vector<std::string_view> entries = Split(token, '\x1D');
      engine::TokenLogprobs& t = d.tokens.emplace_back();
      t.chosen = Entry(entries[0]);
      for (std::size_t j = 1; j < entries.size() && j <= kMaxAlternatives; ++j) {
        t.top.push_back(Entry(entries[j]));
      }
      d.text += t.chosen.piece;
    }
  }
  if (s.tools) {
    while (!field.empty()) d.calls.push_back(Fragment(s, Cut(field, '\x1A')));
  }
  return d;
}

Scenario ParseScenario(std::string_view input) {
  Scenario s;
  std::vector<std::string_view> fields = Split(input, '\x1E');
  for (std::string_view word : Split(fields[0], ' ')) ApplyWord(s, word);
  s.tools = s.tools && s.chat;  // completions have no tools
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
  for (std::size_t i = 3; i < fields.size(); ++i) s.deltas.push_back(ParseDelta(s, fields[i]));
  return s;
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
  for (const Delta& delta : s.deltas) text += ReferenceRepair(delta.text);
  return text;
}

// A log-probability as api/openai.h promises it: a JSON number, the value itself, or -9999.0
// for one below -9999 (or -inf). NaN and +inf are not log-probabilities and are promised
// nothing beyond valid JSON.
void CheckLogprob(const Json& got, float sent) {
  FUZZ_CHECK(got.is_number(), "logprob %s for %g", got.dump().c_str(), sent);
  if (std::isnan(sent) || sent == std::numeric_limits<float>::infinity()) return;
  const double value = got.get<double>();
  if (sent <= -9999.0f) {
    FUZZ_CHECK(value == -9999.0, "logprob %s for %g", got.dump().c_str(), sent);
  } else {
    FUZZ_CHECK(static_cast<float>(value) == sent, "logprob %s for %.9g", got.dump().c_str(), sent);
  }
}

// Chat's {token, logprob, bytes} (and the chosen token's top_logprobs, checked by the caller).
void CheckChatEntry(const Json& got, const engine::PieceLogprob& sent, std::size_t members) {
  FUZZ_CHECK(got.is_object() && got.size() == members, "%s", got.dump().c_str());
  FUZZ_CHECK(Member(got, "token") == ReferenceRepair(sent.piece), "%s", got.dump().c_str());
  CheckLogprob(Member(got, "logprob"), sent.logprob);
  Json bytes = Json::array();
  for (const char c : sent.piece) bytes.push_back(static_cast<unsigned char>(c));
  FUZZ_CHECK(Member(got, "bytes") == bytes, "%s", got.dump().c_str());
}

void CheckChatLogprobs(const Json& got, std::span<const engine::TokenLogprobs> tokens) {
  FUZZ_CHECK(got.is_object() && got.size() == 2 && got.contains("refusal") &&
                 Member(got, "refusal").is_null(),
             "%s", got.dump().c_str());
  const Json content = Member(got, "content");
  FUZZ_CHECK(content.is_array() && content.size() == tokens.size(), "%s", got.dump().c_str());
  for (std::size_t i = 0; i < tokens.size(); ++i) {
    CheckChatEntry(content[i], tokens[i].chosen, 4);
    const Json top = Member(content[i], "top_logprobs");
    FUZZ_CHECK(top.is_array() && top.size() == tokens[i].top.size(), "%s", got.dump().c_str());
    for (std::size_t j = 0; j < top.size(); ++j) CheckChatEntry(top[j], tokens[i].top[j], 3);
  }
}

// The legacy shape: tokens, token_logprobs, top_logprobs (each map the alternatives and the
// sampled token, a text read twice keeping its first, most likely entry) and text_offset
// (bytes of the choice's text before the token, counted from `offset`).
void CheckCompletionLogprobs(const Json& got, std::span<const engine::TokenLogprobs> tokens,
                             std::size_t offset) {
  FUZZ_CHECK(got.is_object() && got.size() == 4, "%s", got.dump().c_str());
  const Json texts = Member(got, "tokens");
  const Json logprobs = Member(got, "token_logprobs");
  const Json tops = Member(got, "top_logprobs");
  const Json offsets = Member(got, "text_offset");
  for (const Json* array : {&texts, &logprobs, &tops, &offsets}) {
    FUZZ_CHECK(array->is_array() && array->size() == tokens.size(), "%s", got.dump().c_str());
  }
  for (std::size_t i = 0; i < tokens.size(); ++i) {
    const engine::TokenLogprobs& t = tokens[i];
    FUZZ_CHECK(texts[i] == ReferenceRepair(t.chosen.piece), "%s", got.dump().c_str());
    CheckLogprob(logprobs[i], t.chosen.logprob);
    FUZZ_CHECK(offsets[i] == offset, "text_offset %s, want %zu", offsets[i].dump().c_str(), offset);
    offset += t.chosen.piece.size();
    std::vector<std::pair<std::string, float>> want;
    auto add = [&](const engine::PieceLogprob& entry) {
      std::string key = ReferenceRepair(entry.piece);
      for (const auto& [k, v] : want) {
        if (k == key) return;
      }
      want.emplace_back(std::move(key), entry.logprob);
    };
    for (const engine::PieceLogprob& entry : t.top) add(entry);
    add(t.chosen);
    FUZZ_CHECK(tops[i].is_object() && tops[i].size() == want.size(), "%s", got.dump().c_str());
    for (const auto& [key, logprob] : want) {
      FUZZ_CHECK(tops[i].contains(key), "%s", got.dump().c_str());
      CheckLogprob(tops[i][key], logprob);
    }
  }
}

void CheckLogprobs(const Json& got, const Scenario& s,
                   std::span<const engine::TokenLogprobs> tokens, std::size_t offset) {
  if (s.chat) return CheckChatLogprobs(got, tokens);
  CheckCompletionLogprobs(got, tokens, offset);
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
    auto doc = ParseEncoded(payload);
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

Json FinishJson(std::optional<FinishReason> reason) {
  if (!reason) return nullptr;
  return *reason == FinishReason::kStop        ? "stop"
         : *reason == FinishReason::kLength    ? "length"
         : *reason == FinishReason::kToolCalls ? "tool_calls"
                                               : "error";
}

std::optional<Error> ErrorOf(const Scenario& s) {
  if (s.error_row == nullptr) return std::nullopt;
  return s.error;
}

// A streamed tool-call fragment as OpenAI sends it: the first of a call with its id, type and
// name, a later one with the next piece of the arguments only.
Json FragmentJson(const api::ToolCallFragment& f) {
  if (f.name.empty()) {
    return {{"index", f.index}, {"function", {{"arguments", ReferenceRepair(f.arguments)}}}};
  }
  return {{"index", f.index},
          {"id", ReferenceRepair(f.id)},
          {"type", "function"},
          {"function",
           {{"name", ReferenceRepair(f.name)}, {"arguments", ReferenceRepair(f.arguments)}}}};
}

// One chunk with a choice as it was written: what a client must read back from it.
struct Sent {
  const Delta* delta = nullptr;  // null: no text, logprobs or calls
  std::optional<FinishReason> finish;
  std::size_t text_offset = 0;  // completions: bytes of text before the chunk's first token
};

struct Written {
  std::string stream;
  std::vector<Sent> chunks;  // after the role chunk, before the usage chunk or error
};

// The stream server/generation.cc writes for this scenario.
Written WriteStream(const Scenario& s) {
  const bool tail = s.tail && !s.deltas.empty() && !ErrorOf(s);  // an error has no final chunk
  const std::size_t n_text = tail ? s.deltas.size() - 1 : s.deltas.size();
  Written w;
  std::string& out = w.stream;
  std::size_t offset = 0;
  auto write = [&](const Delta* d, std::optional<FinishReason> finish) {
    const std::span<const engine::TokenLogprobs> tokens =
        d != nullptr ? std::span(d->tokens) : std::span<const engine::TokenLogprobs>();
    const api::ChoiceLogprobs logprobs{tokens, offset};
    const api::ChoiceLogprobs* lp = s.logprobs && d != nullptr ? &logprobs : nullptr;
    const std::string_view text = d != nullptr ? std::string_view(d->text) : "";
    out += s.chat ? api::EncodeChatChunk(s.meta, text, finish, s.include_usage, lp,
                                         d != nullptr ? std::span(d->calls)
                                                      : std::span<const api::ToolCallFragment>())
                  : api::EncodeCompletionChunk(s.meta, text, finish, s.include_usage, lp);
    w.chunks.push_back({d, finish, offset});
    for (const engine::TokenLogprobs& t : tokens) offset += t.chosen.piece.size();
  };
  if (s.chat) out += api::EncodeChatRoleChunk(s.meta, s.include_usage);
  for (std::size_t i = 0; i < n_text; ++i) {
    const Delta& d = s.deltas[i];
    if (d.text.empty() && d.tokens.empty() && d.calls.empty()) continue;
    write(&d, std::nullopt);
  }
  if (const auto error = ErrorOf(s)) {
    out += api::EncodeErrorEvent(*error);
  } else {
    write(tail ? &s.deltas.back() : nullptr, s.finish);
    if (s.include_usage) {
      out += api::EncodeUsageChunk(
          s.meta, s.chat ? api::Endpoint::kChatCompletions : api::Endpoint::kCompletions, s.usage);
    }
  }
  out += api::kSseDone;
  return w;
}

// The calls a client assembles from the fragments: by index, its id, name and arguments.
struct ReadCall {
  Json id;
  Json name;
  std::string arguments;
};

// One chunk with a choice: its head, its choice as sent, and the calls it announces or
// continues (into `calls`). Returns its text.
std::string CheckChunk(const Json& chunk, const Scenario& s, const Sent& sent,
                       std::map<std::size_t, ReadCall>& calls) {
  CheckHead(chunk, s, s.chat ? "chat.completion.chunk" : "text_completion");
  FUZZ_CHECK(chunk.size() == (s.include_usage ? 6u : 5u) + ExtraHead(s), "%s",
             chunk.dump().c_str());
  if (s.include_usage) FUZZ_CHECK(Member(chunk, "usage").is_null(), "%s", chunk.dump().c_str());
  const Json choices = Member(chunk, "choices");
  FUZZ_CHECK(choices.is_array() && choices.size() == 1, "%s", chunk.dump().c_str());
  const Json& choice = choices[0];
  FUZZ_CHECK(choice.size() == 4 && Member(choice, "index") == s.meta.choice &&
                 Member(choice, "finish_reason") == FinishJson(sent.finish),
             "%s", chunk.dump().c_str());
  if (s.logprobs && sent.delta != nullptr) {
    CheckLogprobs(Member(choice, "logprobs"), s, sent.delta->tokens, sent.text_offset);
  } else {
    FUZZ_CHECK(Member(choice, "logprobs").is_null(), "%s", chunk.dump().c_str());
  }
  const std::string text = sent.delta != nullptr ? ReferenceRepair(sent.delta->text) : "";
  if (!s.chat) {
    FUZZ_CHECK(Member(choice, "text") == text, "%s", chunk.dump().c_str());
    return text;
  }
  const Json delta = Member(choice, "delta");
  const std::span<const api::ToolCallFragment> fragments =
      sent.delta != nullptr ? std::span(sent.delta->calls)
                            : std::span<const api::ToolCallFragment>();
  const Json content = Member(delta, "content");
  const Json tool_calls = Member(delta, "tool_calls");
  FUZZ_CHECK(delta.is_object() && delta.size() == !content.is_null() + !tool_calls.is_null(), "%s",
             chunk.dump().c_str());
  // An empty text may go unsaid where the chunk says something else; the finishing chunk
  // without text or calls carries an empty delta, as OpenAI sends it.
  if (!text.empty() || (!sent.finish && fragments.empty())) {
    FUZZ_CHECK(content == text, "%s", chunk.dump().c_str());
  } else {
    FUZZ_CHECK(content.is_null() || content == "", "%s", chunk.dump().c_str());
  }
  if (sent.finish && text.empty() && fragments.empty()) {
    FUZZ_CHECK(delta == Json::object(), "%s", chunk.dump().c_str());
  }
  if (fragments.empty()) {
    FUZZ_CHECK(tool_calls.is_null(), "%s", chunk.dump().c_str());
    return text;
  }
  FUZZ_CHECK(tool_calls.is_array() && tool_calls.size() == fragments.size(), "%s",
             chunk.dump().c_str());
  for (std::size_t k = 0; k < fragments.size(); ++k) {
    const Json& f = tool_calls[k];
    FUZZ_CHECK(f == FragmentJson(fragments[k]), "fragment %s", f.dump().c_str());
    // id, type and name exactly on a call's first fragment.
    const std::size_t index = f["index"].get<std::size_t>();
    const bool first = f.contains("id");
    FUZZ_CHECK(first == !calls.contains(index), "fragment %s", f.dump().c_str());
    if (first) calls[index] = {f["id"], f["function"]["name"], ""};
    calls[index].arguments += f["function"]["arguments"].get<std::string>();
  }
  return text;
}

void CheckStream(const Scenario& s) {
  const Written w = WriteStream(s);
  const std::vector<Json> events = ReadEvents(w.stream);
  std::size_t next = 0;
  if (s.chat) {
    const Json& role = events.at(next++);
    CheckHead(role, s, "chat.completion.chunk");
    FUZZ_CHECK(role.size() == (s.include_usage ? 6u : 5u) + ExtraHead(s), "%s",
               role.dump().c_str());
    const Json choices = Member(role, "choices");
    FUZZ_CHECK(choices == Json::array({{{"index", s.meta.choice},
                                        {"delta", {{"role", "assistant"}, {"content", ""}}},
                                        {"logprobs", nullptr},
                                        {"finish_reason", nullptr}}}),
               "%s", role.dump().c_str());
  }
  const std::size_t n_after = ErrorOf(s) || s.include_usage ? 1 : 0;
  FUZZ_CHECK(events.size() == next + w.chunks.size() + n_after, "%zu events", events.size());
  std::string text;
  std::map<std::size_t, ReadCall> calls;
  for (const Sent& sent : w.chunks) text += CheckChunk(events[next++], s, sent, calls);
  FUZZ_CHECK(text == RepairedText(s), "text does not round-trip");
  FUZZ_CHECK(calls.size() == s.calls.size(), "%zu calls read", calls.size());
  for (const Call& call : s.calls) {
    const ReadCall& read = calls[call.index];
    FUZZ_CHECK(read.id == ReferenceRepair(call.id) && read.name == ReferenceRepair(call.name) &&
                   read.arguments == call.repaired,
               "call %zu does not round-trip", call.index);
  }
  if (const auto error = ErrorOf(s)) return CheckEnvelope(events[next], *error, *s.error_row);
  if (!s.include_usage) return;
  const Json& usage = events[next];
  CheckHead(usage, s, s.chat ? "chat.completion.chunk" : "text_completion");
  FUZZ_CHECK(usage.size() == 6 + ExtraHead(s) && Member(usage, "choices") == Json::array(), "%s",
             usage.dump().c_str());
  CheckUsage(Member(usage, "usage"), s.usage);
}

// A body's choice: its text (or message, with the calls), finish reason and logprobs.
void CheckChoiceBody(const Json& choice, const Scenario& s, std::size_t index,
                     std::string_view text, const std::vector<engine::TokenLogprobs>& tokens,
                     std::span<const Call> calls) {
  FUZZ_CHECK(choice.is_object() && choice.size() == 4 && Member(choice, "index") == index, "%s",
             choice.dump().c_str());
  FUZZ_CHECK(Member(choice, "finish_reason") == FinishJson(s.finish), "%s", choice.dump().c_str());
  if (s.logprobs) {
    CheckLogprobs(Member(choice, "logprobs"), s, tokens, 0);
  } else {
    FUZZ_CHECK(Member(choice, "logprobs").is_null(), "%s", choice.dump().c_str());
  }
  if (!s.chat) {
    FUZZ_CHECK(Member(choice, "text") == ReferenceRepair(text), "%s", choice.dump().c_str());
    return;
  }
  // With calls and no text, "content" is null.
  Json want = {{"role", "assistant"},
               {"content", text.empty() && !calls.empty() ? Json() : Json(ReferenceRepair(text))}};
  if (!calls.empty()) {
    want["tool_calls"] = Json::array();
    for (const Call& call : calls) {
      want["tool_calls"].push_back({{"id", ReferenceRepair(call.id)},
                                    {"type", "function"},
                                    {"function",
                                     {{"name", ReferenceRepair(call.name)},
                                      {"arguments", ReferenceRepair(call.arguments)}}}});
    }
  }
  FUZZ_CHECK(Member(choice, "message") == want, "%s", choice.dump().c_str());
}

// A body with one choice per delta, as n > 1 answers.
void CheckChoices(const Scenario& s) {
  std::vector<api::ChoiceLogprobs> logprobs;
  logprobs.reserve(s.deltas.size());  // the choices point into it
  std::vector<api::EncodedChoice> choices;
  for (const Delta& d : s.deltas) {
    logprobs.push_back({d.tokens, 0});
    choices.push_back({d.text, s.finish, s.logprobs ? &logprobs.back() : nullptr});
  }
  const std::string body = api::EncodeChoices(
      s.meta, s.chat ? api::Endpoint::kChatCompletions : api::Endpoint::kCompletions, choices,
      s.usage);
  const auto doc = ParseEncoded(body);
  FUZZ_CHECK(doc && doc->is_object() && doc->size() == 6 + ExtraHead(s), "body %s", body.c_str());
  CheckHead(*doc, s, s.chat ? "chat.completion" : "text_completion");
  const Json got = Member(*doc, "choices");
  FUZZ_CHECK(got.is_array() && got.size() == s.deltas.size(), "body %s", body.c_str());
  for (std::size_t i = 0; i < s.deltas.size(); ++i) {
    CheckChoiceBody(got[i], s, i, s.deltas[i].text, s.deltas[i].tokens, {});
  }
  CheckUsage(Member(*doc, "usage"), s.usage);
}

// A non-streamed response: the whole body, or the error a handler answers with.
void CheckWhole(const Scenario& s) {
  if (const auto error = ErrorOf(s)) {
    const api::HttpError http = api::ToHttpError(*error);
    FUZZ_CHECK(http.status == s.error_row->status, "status %d", http.status);
    const auto doc = ParseEncoded(http.body);
    FUZZ_CHECK(doc.has_value(), "error body is not JSON: %s", http.body.c_str());
    return CheckEnvelope(*doc, *error, *s.error_row);
  }
  if (s.choices) return CheckChoices(s);
  std::string text;
  std::vector<engine::TokenLogprobs> tokens;
  for (const Delta& delta : s.deltas) {
    text += delta.text;
    tokens.insert(tokens.end(), delta.tokens.begin(), delta.tokens.end());
  }
  std::vector<engine::ToolCall> calls;
  for (const Call& call : s.calls) calls.push_back({call.id, call.name, call.arguments});
  const api::ChoiceLogprobs logprobs{tokens, 0};
  const api::ChoiceLogprobs* lp = s.logprobs ? &logprobs : nullptr;
  const std::string body =
      s.chat ? api::EncodeChatCompletion(s.meta, text, s.finish, s.usage, lp, calls)
             : api::EncodeCompletion(s.meta, text, s.finish, s.usage, lp);
  const auto doc = ParseEncoded(body);
  FUZZ_CHECK(doc && doc->is_object() && doc->size() == 6 + ExtraHead(s), "body %s", body.c_str());
  CheckHead(*doc, s, s.chat ? "chat.completion" : "text_completion");
  const Json choices = Member(*doc, "choices");
  FUZZ_CHECK(choices.is_array() && choices.size() == 1, "body %s", body.c_str());
  CheckChoiceBody(choices[0], s, 0, text, tokens, s.calls);
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
  const auto list = ParseEncoded(models);
  FUZZ_CHECK(list && Member(*list, "data").size() == 1, "%s", models.c_str());
  FUZZ_CHECK(Member(Member(*list, "data")[0], "id") == ReferenceRepair(s.meta.model), "%s",
             models.c_str());
  std::vector<engine::Token> tokens;
  for (const Delta& delta : s.deltas) {
    tokens.push_back(static_cast<engine::Token>(Number(delta.text)));
  }
  const auto encoded = ParseEncoded(api::EncodeTokens(tokens));
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
