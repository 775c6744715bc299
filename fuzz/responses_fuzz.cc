// libFuzzer target: the Responses API encoder (api/responses.h) fed fuzzed ids, model names,
// texts, function calls (ids, names and arguments of any bytes, invalid UTF-8 included), token
// counts, finish reasons and errors. A response is encoded the way server/generation.cc drives
// the encoder (Start, TextDelta per streamed piece, then Finish or Fail; Whole when not
// streamed) and read back the way a client reads it: every event is an "event: TYPE" line and a
// "data: " line holding a JSON object whose "type" is TYPE, ended by a blank line; sequence
// numbers strictly increase; the events come in the order responses.h gives; item ids tie the
// events to their items; the streamed deltas join into the text sent and each call's arguments
// come back whole, with each ill-formed UTF-8 subpart turned into U+FFFD; and the final Response
// (completed, incomplete or failed) holds the output items and the usage sent.
//
// Input (see fuzz/corpus/responses/): fields separated by the byte 0x1E.
//   header 0x1E id 0x1E model 0x1E item (0x1E item)*
// An item is a piece of text as the engine streams it, or a function call the answer made:
//   0x1F call_id 0x1F name 0x1F arguments
// The header is space-separated words: `finish=stop|length|cancelled|error`, `error=CODE` (the
// stream ends in Fail; the last field is the message; CODE as in sse_fuzz.cc), `held` (the last
// text item is not streamed: only Finish's output holds it, as the content a tool-reading
// stream holds back until the end), `prompt=N`, `completion=N`, `cached=N`, `created=N`,
// `max=N` (max_output_tokens, echoed), `fp=TEXT` (the system_fingerprint).
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "api/openai.h"
#include "api/responses.h"
#include "fuzz/fuzz_util.h"

namespace ember::fuzz {
namespace {

using engine::FinishReason;

struct ErrorName {
  std::string_view name;
  ErrorCode code;
};
constexpr ErrorName kErrors[] = {
    {"invalid", ErrorCode::kInvalidArgument},         {"not_found", ErrorCode::kNotFound},
    {"unauthenticated", ErrorCode::kUnauthenticated}, {"permission", ErrorCode::kPermissionDenied},
    {"exhausted", ErrorCode::kResourceExhausted},     {"unavailable", ErrorCode::kUnavailable},
    {"deadline", ErrorCode::kDeadlineExceeded},       {"internal", ErrorCode::kInternal},
};

struct Scenario {
  FinishReason finish = FinishReason::kStop;
  std::optional<Error> error;
  bool held = false;
  engine::Usage usage;
  api::ResponseMeta meta;
  api::GenerationParams params;
  std::vector<std::string> texts;  // the text items, in order
  api::ResponseOutput output;      // all the text, and the calls
};

// Token counts come from the engine and never exceed the context size (an int).
int Count(std::string_view text) { return static_cast<int>(Number(text) & 0x3FFFFFFF); }

void ApplyWord(Scenario& s, std::string_view word) {
  const std::size_t eq = word.find('=');
  const std::string_view key = word.substr(0, eq);
  const std::string_view value = eq == std::string_view::npos ? "" : word.substr(eq + 1);
  if (key == "held") s.held = true;
  if (key == "prompt") s.usage.prompt_tokens = Count(value);
  if (key == "completion") s.usage.completion_tokens = Count(value);
  if (key == "cached") s.usage.cached_tokens = Count(value);
  if (key == "created") s.meta.created = Number(value);
  if (key == "max") s.params.max_tokens = Count(value);
  if (key == "fp") s.meta.system_fingerprint = value;
  if (key == "finish") {
    if (value == "length") s.finish = FinishReason::kLength;
    if (value == "cancelled") s.finish = FinishReason::kCancelled;
    if (value == "error") s.finish = FinishReason::kError;
  }
  if (key == "error") {
    for (const ErrorName& e : kErrors) {
      if (e.name == value) s.error = Error{e.code, "", ""};
    }
  }
}

Scenario ParseScenario(std::string_view input) {
  Scenario s;
  s.params.endpoint = api::Endpoint::kResponses;
  s.params.stream = true;
  std::vector<std::string_view> fields = Split(input, '\x1E');
  for (std::string_view word : Split(fields[0], ' ')) ApplyWord(s, word);
  if (fields.size() > 1) s.meta.id = fields[1];
  if (fields.size() > 2) s.meta.model = fields[2];
  if (s.error && fields.size() > 3) {
    s.error->message = fields.back();
    fields.pop_back();
  }
  for (std::size_t i = 3; i < fields.size(); ++i) {
    const std::string_view item = fields[i];
    if (!item.starts_with('\x1F')) {
      s.texts.emplace_back(item);
      s.output.text += item;
      continue;
    }
    const std::vector<std::string_view> parts = Split(item.substr(1), '\x1F');
    engine::ToolCall& call = s.output.tool_calls.emplace_back();
    call.id = parts[0];
    if (parts.size() > 1) call.name = parts[1];
    if (parts.size() > 2) call.arguments = parts[2];
  }
  return s;
}

// The text items TextDelta is given: all but a held last one, and no empty one (the server
// streams only text it has).
std::vector<std::string> Streamed(const Scenario& s) {
  std::vector<std::string> streamed;
  const std::size_t n = s.held && !s.texts.empty() ? s.texts.size() - 1 : s.texts.size();
  for (std::size_t i = 0; i < n; ++i) {
    if (!s.texts[i].empty()) streamed.push_back(s.texts[i]);
  }
  return streamed;
}

bool HasMessage(const Scenario& s, bool streamed) {
  return streamed || !s.output.text.empty() || s.output.tool_calls.empty();
}

std::string_view StatusOf(FinishReason reason) {
  return reason == FinishReason::kLength ? "incomplete" : "completed";
}

// The events responses.h says the encoder writes, in order.
std::vector<std::string> ExpectedTypes(const Scenario& s) {
  const std::vector<std::string> streamed = Streamed(s);
  std::vector<std::string> types = {"response.created", "response.in_progress"};
  if (!streamed.empty()) {
    types.insert(types.end(), {"response.output_item.added", "response.content_part.added"});
    types.insert(types.end(), streamed.size(), "response.output_text.delta");
  }
  if (s.error) {
    types.insert(types.end(), {"error", "response.failed"});
    return types;
  }
  if (HasMessage(s, !streamed.empty())) {
    if (streamed.empty()) {
      types.insert(types.end(), {"response.output_item.added", "response.content_part.added"});
    }
    std::size_t sent = 0;
    for (const std::string& piece : streamed) sent += piece.size();
    // What was not streamed goes out as one more delta before the text closes.
    if (s.output.text.size() > sent) types.emplace_back("response.output_text.delta");
    types.insert(types.end(), {"response.output_text.done", "response.content_part.done",
                               "response.output_item.done"});
  }
  for (const engine::ToolCall& call : s.output.tool_calls) {
    types.emplace_back("response.output_item.added");
    // A call with no arguments has no delta (responses.h: "its arguments, when any").
    if (!call.arguments.empty()) types.emplace_back("response.function_call_arguments.delta");
    types.insert(types.end(),
                 {"response.function_call_arguments.done", "response.output_item.done"});
  }
  types.emplace_back(s.finish == FinishReason::kLength ? "response.incomplete"
                                                       : "response.completed");
  return types;
}

struct Event {
  std::string type;
  Json data;
};

// The stream as a client reads it: "event: TYPE\ndata: {...}\n\n" frames, each payload a JSON
// object of that type, with strictly increasing sequence numbers.
std::vector<Event> ReadEvents(std::string_view stream) {
  FUZZ_CHECK(stream.ends_with("\n\n"), "stream does not end with a blank line");
  stream.remove_suffix(2);
  const std::vector<std::string_view> lines = Split(stream, '\n');
  FUZZ_CHECK(lines.size() % 3 == 2, "%zu lines", lines.size());
  std::vector<Event> events;
  std::optional<std::int64_t> last;
  for (std::size_t i = 0; i < lines.size(); i += 3) {
    FUZZ_CHECK(i + 2 >= lines.size() || lines[i + 2].empty(), "an event spans lines: %.200s",
               lines[i + 2].data());
    FUZZ_CHECK(lines[i].starts_with("event: "), "line %.200s", lines[i].data());
    FUZZ_CHECK(lines[i + 1].starts_with("data: "), "line %.200s", lines[i + 1].data());
    const std::string_view payload = lines[i + 1].substr(6);
    for (const char c : payload) {
      FUZZ_CHECK(static_cast<unsigned char>(c) >= 0x20, "raw control byte 0x%02X", c & 0xFF);
    }
    auto doc = ParseEncoded(payload);
    FUZZ_CHECK(doc && doc->is_object(), "payload is not a JSON object: %.200s", payload.data());
    Event& e = events.emplace_back(Event{std::string(lines[i].substr(7)), std::move(*doc)});
    FUZZ_CHECK(Member(e.data, "type") == e.type, "%s", e.data.dump().c_str());
    const Json sequence = Member(e.data, "sequence_number");
    FUZZ_CHECK(sequence.is_number_integer() && (!last || sequence.get<std::int64_t>() > *last),
               "sequence_number %s after %lld", sequence.dump().c_str(),
               static_cast<long long>(last.value_or(-1)));
    last = sequence.get<std::int64_t>();
  }
  return events;
}

Json UsageJson(const engine::Usage& usage) {
  return {{"input_tokens", usage.prompt_tokens},
          {"input_tokens_details", {{"cached_tokens", usage.cached_tokens}}},
          {"output_tokens", usage.completion_tokens},
          {"output_tokens_details", {{"reasoning_tokens", 0}}},
          {"total_tokens", usage.prompt_tokens + usage.completion_tokens}};
}

// The ids a client ties events and items by: the message's, then each call's.
struct ItemIds {
  Json message;
  std::vector<Json> calls;
};

void CheckMessageItem(const Json& item, const Scenario& s, const Json& id) {
  FUZZ_CHECK(Member(item, "type") == "message" && Member(item, "id") == id &&
                 Member(item, "status") == "completed" && Member(item, "role") == "assistant",
             "%s", item.dump().c_str());
  const Json content = Member(item, "content");
  FUZZ_CHECK(content.is_array() && content.size() == 1 &&
                 Member(content[0], "type") == "output_text" &&
                 Member(content[0], "text") == ReferenceRepair(s.output.text),
             "%s", item.dump().c_str());
}

void CheckCallItem(const Json& item, const engine::ToolCall& call, const Json& id,
                   std::string_view status, std::string_view arguments) {
  FUZZ_CHECK(Member(item, "type") == "function_call" && Member(item, "id") == id &&
                 Member(item, "call_id") == ReferenceRepair(call.id) &&
                 Member(item, "name") == ReferenceRepair(call.name) &&
                 Member(item, "arguments") == arguments && Member(item, "status") == status,
             "%s", item.dump().c_str());
}

// A Response object: its head, status, output items and usage.
void CheckResponse(const Json& r, const Scenario& s, std::string_view status, const ItemIds* ids,
                   const engine::Usage* usage) {
  FUZZ_CHECK(r.is_object(), "%s", r.dump().c_str());
  FUZZ_CHECK(Member(r, "id") == ReferenceRepair(s.meta.id) && Member(r, "object") == "response" &&
                 Member(r, "created_at") == s.meta.created && Member(r, "status") == status &&
                 Member(r, "model") == ReferenceRepair(s.meta.model),
             "%s", r.dump().c_str());
  FUZZ_CHECK(s.meta.system_fingerprint.empty()
                 ? !r.contains("system_fingerprint")
                 : Member(r, "system_fingerprint") == ReferenceRepair(s.meta.system_fingerprint),
             "%s", r.dump().c_str());
  const Json max = Member(r, "max_output_tokens");
  FUZZ_CHECK(s.params.max_tokens ? max == *s.params.max_tokens : max.is_null(), "%s",
             r.dump().c_str());
  FUZZ_CHECK(usage ? Member(r, "usage") == UsageJson(*usage) : Member(r, "usage").is_null(), "%s",
             r.dump().c_str());
  const Json incomplete = Member(r, "incomplete_details");
  FUZZ_CHECK(status == "incomplete" ? incomplete == Json({{"reason", "max_output_tokens"}})
                                    : incomplete.is_null(),
             "%s", r.dump().c_str());
  const Json output = Member(r, "output");
  FUZZ_CHECK(output.is_array(), "%s", r.dump().c_str());
  if (ids == nullptr) return;  // in progress or failed: no answer yet
  const bool message = !ids->message.is_null();
  FUZZ_CHECK(output.size() == message + s.output.tool_calls.size(), "%s", r.dump().c_str());
  if (message) CheckMessageItem(output[0], s, ids->message);
  for (std::size_t i = 0; i < s.output.tool_calls.size(); ++i) {
    const engine::ToolCall& call = s.output.tool_calls[i];
    CheckCallItem(output[message + i], call, ids->calls[i], "completed",
                  ReferenceRepair(call.arguments));
  }
}

void CheckStream(const Scenario& s) {
  const std::vector<std::string> streamed = Streamed(s);
  api::ResponsesEncoder encoder(s.params, s.meta);
  std::string stream = encoder.Start();
  for (const std::string& piece : streamed) stream += encoder.TextDelta(piece);
  stream += s.error ? encoder.Fail(*s.error) : encoder.Finish(s.output, s.finish, s.usage);
  const std::vector<Event> events = ReadEvents(stream);

  const std::vector<std::string> types = ExpectedTypes(s);
  FUZZ_CHECK(events.size() == types.size(), "%zu events, want %zu", events.size(), types.size());
  for (std::size_t i = 0; i < types.size(); ++i) {
    FUZZ_CHECK(events[i].type == types[i], "event %zu is %s, want %s", i, events[i].type.c_str(),
               types[i].c_str());
  }
  CheckResponse(Member(events[0].data, "response"), s, "in_progress", nullptr, nullptr);
  CheckResponse(Member(events[1].data, "response"), s, "in_progress", nullptr, nullptr);

  ItemIds ids;
  std::string text;  // the deltas, joined
  std::size_t next = 2;
  const bool message = s.error ? !streamed.empty() : HasMessage(s, !streamed.empty());
  if (message) {
    const Json& added = events[next++].data;
    const Json item = Member(added, "item");
    ids.message = Member(item, "id");
    FUZZ_CHECK(ids.message.is_string() && Member(added, "output_index") == 0 &&
                   Member(item, "type") == "message" && Member(item, "status") == "in_progress" &&
                   Member(item, "content") == Json::array(),
               "%s", added.dump().c_str());
    const Json& part = events[next++].data;
    FUZZ_CHECK(Member(part, "item_id") == ids.message && Member(part, "output_index") == 0 &&
                   Member(part, "content_index") == 0 && Member(Member(part, "part"), "text") == "",
               "%s", part.dump().c_str());
  }
  for (; next < events.size() && events[next].type == "response.output_text.delta"; ++next) {
    const Json& delta = events[next].data;
    FUZZ_CHECK(Member(delta, "item_id") == ids.message && Member(delta, "output_index") == 0 &&
                   Member(delta, "content_index") == 0 && Member(delta, "delta").is_string(),
               "%s", delta.dump().c_str());
    text += Member(delta, "delta").get<std::string>();
  }
  std::string want;  // each piece as a client reads it: the streamed ones, then the rest
  for (const std::string& piece : streamed) want += ReferenceRepair(piece);
  if (s.held && !s.error && !s.texts.empty()) want += ReferenceRepair(s.texts.back());
  FUZZ_CHECK(text == want, "the deltas do not join into the text sent");

  if (s.error) {
    const Json& error = events[next++].data;
    FUZZ_CHECK(Member(error, "message") == ReferenceRepair(s.error->message) &&
                   Member(error, "code").is_string(),
               "%s", error.dump().c_str());
    const Json failed = Member(events[next].data, "response");
    CheckResponse(failed, s, "failed", nullptr, nullptr);
    FUZZ_CHECK(Member(Member(failed, "error"), "message") == ReferenceRepair(s.error->message),
               "%s", failed.dump().c_str());
    return;
  }

  const std::string repaired = ReferenceRepair(s.output.text);
  if (message) {
    const Json& done = events[next++].data;
    FUZZ_CHECK(Member(done, "item_id") == ids.message && Member(done, "text") == repaired, "%s",
               done.dump().c_str());
    const Json& part = events[next++].data;
    FUZZ_CHECK(
        Member(part, "item_id") == ids.message && Member(Member(part, "part"), "text") == repaired,
        "%s", part.dump().c_str());
    const Json& item_done = events[next++].data;
    FUZZ_CHECK(Member(item_done, "output_index") == 0, "%s", item_done.dump().c_str());
    CheckMessageItem(Member(item_done, "item"), s, ids.message);
  }
  for (std::size_t i = 0; i < s.output.tool_calls.size(); ++i) {
    const engine::ToolCall& call = s.output.tool_calls[i];
    const std::size_t index = message + i;
    const Json& added = events[next++].data;
    const Json id = Member(Member(added, "item"), "id");
    FUZZ_CHECK(id.is_string() && Member(added, "output_index") == index, "%s",
               added.dump().c_str());
    CheckCallItem(Member(added, "item"), call, id, "in_progress", "");
    const std::string arguments = ReferenceRepair(call.arguments);
    if (!call.arguments.empty()) {
      const Json& delta = events[next++].data;
      FUZZ_CHECK(Member(delta, "item_id") == id && Member(delta, "output_index") == index &&
                     Member(delta, "delta") == arguments,
                 "%s", delta.dump().c_str());
    }
    const Json& done = events[next++].data;
    FUZZ_CHECK(Member(done, "item_id") == id && Member(done, "output_index") == index &&
                   Member(done, "arguments") == arguments,
               "%s", done.dump().c_str());
    const Json& item_done = events[next++].data;
    FUZZ_CHECK(Member(item_done, "output_index") == index, "%s", item_done.dump().c_str());
    CheckCallItem(Member(item_done, "item"), call, id, "completed", arguments);
    ids.calls.push_back(id);
  }
  CheckResponse(Member(events[next].data, "response"), s, StatusOf(s.finish), &ids, &s.usage);
}

// The non-streamed body: the same Response, its items' ids whatever the encoder chose.
void CheckWhole(const Scenario& s) {
  const api::ResponsesEncoder encoder(s.params, s.meta);
  const std::string body = encoder.Whole(s.output, s.finish, s.usage);
  const auto doc = ParseEncoded(body);
  FUZZ_CHECK(doc && doc->is_object(), "body %s", body.c_str());
  const Json output = Member(*doc, "output");
  FUZZ_CHECK(output.is_array(), "body %s", body.c_str());
  ItemIds ids;
  const bool message = HasMessage(s, false);
  std::size_t at = 0;
  if (message && at < output.size()) ids.message = Member(output[at++], "id");
  FUZZ_CHECK(!message || ids.message.is_string(), "body %s", body.c_str());
  for (; at < output.size(); ++at) ids.calls.push_back(Member(output[at], "id"));
  for (const Json& id : ids.calls) FUZZ_CHECK(id.is_string(), "body %s", body.c_str());
  CheckResponse(*doc, s, StatusOf(s.finish), &ids, &s.usage);
}

}  // namespace
}  // namespace ember::fuzz

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace ember::fuzz;
  const Scenario s = ParseScenario(std::string_view(reinterpret_cast<const char*>(data), size));
  CheckStream(s);
  if (!s.error) CheckWhole(s);
  return 0;
}
