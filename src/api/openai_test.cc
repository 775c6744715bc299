#include "api/openai.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cstdint>
#include <limits>
#include <nlohmann/json.hpp>
#include <random>
#include <span>
#include <string>
#include <vector>

namespace ember::api {
namespace {

using Json = nlohmann::json;
using engine::FinishReason;
using engine::Usage;

constexpr std::string_view kFffd = "\xEF\xBF\xBD";

std::string Escaped(std::string_view text) {
  std::string out;
  AppendJsonEscaped(out, text);
  return out;
}

// Decodes `text` the way a client would: escaped, wrapped in quotes, parsed as JSON.
std::string RoundTrip(std::string_view text) {
  std::string literal = "\"";
  AppendJsonEscaped(literal, text);
  literal += '"';
  return Json::parse(literal).get<std::string>();
}

// The JSON inside one SSE frame; the frame must be "data: <json>\n\n".
Json ParseFrame(std::string_view frame) {
  EXPECT_TRUE(frame.starts_with("data: ")) << frame;
  EXPECT_TRUE(frame.ends_with("\n\n")) << frame;
  if (frame.size() < 8) return Json();
  return Json::parse(frame.substr(6, frame.size() - 8));
}

const ResponseMeta kMeta{.id = "cmpl-abc",
                         .created = 1700000000,
                         .model = "stories",
                         .system_fingerprint = {},
                         .cold_start_seconds = {}};

TEST(AppendJsonEscapedTest, EscapesQuotesBackslashesAndControlCharacters) {
  EXPECT_EQ(Escaped("plain text"), "plain text");
  EXPECT_EQ(Escaped("say \"hi\" \\o/"), "say \\\"hi\\\" \\\\o/");
  EXPECT_EQ(Escaped("a\nb\rc\td\be\ff"), "a\\nb\\rc\\td\\be\\ff");
  EXPECT_EQ(Escaped(std::string_view("\x01\x1f\0", 3)), "\\u0001\\u001f\\u0000");
  EXPECT_EQ(Escaped("\x7f"), "\x7f");
}

TEST(AppendJsonEscapedTest, PassesValidMultibyteUtf8Through) {
  const std::string text = "caf\xC3\xA9 \xE6\x97\xA5\xE6\x9C\xAC \xF0\x9F\x99\x82";  // café 日本 🙂
  EXPECT_EQ(Escaped(text), text);
  EXPECT_EQ(RoundTrip(text), text);
}

TEST(AppendJsonEscapedTest, EscapesLineAndParagraphSeparators) {
  EXPECT_EQ(Escaped("a\xE2\x80\xA8"
                    "b\xE2\x80\xA9"),
            "a\\u2028b\\u2029");
  EXPECT_EQ(RoundTrip("\xE2\x80\xA8"), "\xE2\x80\xA8");
}

TEST(AppendJsonEscapedTest, ReplacesInvalidBytesWithReplacementCharacter) {
  const std::string r(kFffd);
  EXPECT_EQ(Escaped("\xFF"), r);
  EXPECT_EQ(Escaped("a\x80"
                    "b"),
            "a" + r + "b");                               // lone continuation
  EXPECT_EQ(Escaped("\xC0\xAF"), r + r);                  // overlong '/'
  EXPECT_EQ(Escaped("\xE0\x80\x80"), r + r + r);          // overlong NUL
  EXPECT_EQ(Escaped("\xED\xA0\x80"), r + r + r);          // surrogate U+D800
  EXPECT_EQ(Escaped("\xF4\x90\x80\x80"), r + r + r + r);  // above U+10FFFF
  EXPECT_EQ(Escaped("\xE6\x97x\"y"), r + "x\\\"y");       // cut short mid-text
}

TEST(AppendJsonEscapedTest, ReplacesSequenceTruncatedAtEndWithOneReplacementCharacter) {
  EXPECT_EQ(Escaped("ab\xE6\x97"), "ab" + std::string(kFffd));
  EXPECT_EQ(Escaped("\xF0\x9F\x99"), std::string(kFffd));
}

TEST(AppendJsonEscapedTest, AppendsWithoutClearingOutput) {
  std::string out = "{\"text\":\"";
  AppendJsonEscaped(out, "x\n");
  EXPECT_EQ(out, "{\"text\":\"x\\n");
}

TEST(AppendJsonEscapedTest, ArbitraryBytesAlwaysProduceParsableJson) {
  std::mt19937 rng(12345);
  for (int i = 0; i < 2000; ++i) {
    std::string bytes(rng() % 16, '\0');
    for (char& c : bytes) c = static_cast<char>(rng() & 0xFF);
    EXPECT_NO_THROW(RoundTrip(bytes)) << "input #" << i;
  }
}

TEST(EncodeTest, CompletionBodyMatchesOpenAiShape) {
  const Json body =
      Json::parse(EncodeCompletion(kMeta, "Once \"upon\"\n", FinishReason::kLength, Usage{5, 7}));
  EXPECT_EQ(body["id"], "cmpl-abc");
  EXPECT_EQ(body["object"], "text_completion");
  EXPECT_EQ(body["created"], 1700000000);
  EXPECT_EQ(body["model"], "stories");
  ASSERT_EQ(body["choices"].size(), 1u);
  EXPECT_EQ(body["choices"][0]["index"], 0);
  EXPECT_EQ(body["choices"][0]["text"], "Once \"upon\"\n");
  EXPECT_TRUE(body["choices"][0]["logprobs"].is_null());
  EXPECT_EQ(body["choices"][0]["finish_reason"], "length");
  EXPECT_EQ(body["usage"], Json::parse(R"({"prompt_tokens":5,"completion_tokens":7,
                                           "total_tokens":12,
                                           "prompt_tokens_details":{"cached_tokens":0}})"));
}

TEST(EncodeTest, SystemFingerprintOnlyWhenSet) {
  EXPECT_FALSE(Json::parse(EncodeCompletion(kMeta, "x", FinishReason::kStop, Usage{1, 1}))
                   .contains("system_fingerprint"));
  ResponseMeta meta = kMeta;
  meta.system_fingerprint = "fp_0123456789abcdef";
  EXPECT_EQ(Json::parse(EncodeChatCompletion(meta, "x", FinishReason::kStop,
                                             Usage{1, 1}))["system_fingerprint"],
            "fp_0123456789abcdef");
  const std::string chunk = EncodeChatChunk(meta, "x", std::nullopt, false);
  EXPECT_EQ(Json::parse(chunk.substr(6))["system_fingerprint"], "fp_0123456789abcdef");
}

TEST(EncodeTest, ChatBodyMatchesOpenAiShape) {
  const Json body =
      Json::parse(EncodeChatCompletion(kMeta, "Hi there", FinishReason::kStop, Usage{3, 2}));
  EXPECT_EQ(body["object"], "chat.completion");
  EXPECT_EQ(body["choices"][0]["message"], Json::parse(R"({"role":"assistant",
                                                          "content":"Hi there"})"));
  EXPECT_EQ(body["choices"][0]["finish_reason"], "stop");
  EXPECT_TRUE(body["choices"][0]["logprobs"].is_null());
  EXPECT_EQ(body["usage"]["total_tokens"], 5);
}

TEST(EncodeTest, BodiesWithSeveralChoicesNumberThemInOrder) {
  const engine::TokenLogprobs token{{"b", -0.5f}, {}};
  const ChoiceLogprobs lp{std::span<const engine::TokenLogprobs>(&token, 1), 0};
  const EncodedChoice choices[] = {{"first", FinishReason::kStop, &lp},
                                   {"second", FinishReason::kLength, nullptr}};
  const Json completion =
      Json::parse(EncodeChoices(kMeta, Endpoint::kCompletions, choices, Usage{4, 9}));
  ASSERT_EQ(completion["choices"].size(), 2u);
  EXPECT_EQ(completion["object"], "text_completion");
  EXPECT_EQ(completion["choices"][0]["index"], 0);
  EXPECT_EQ(completion["choices"][0]["text"], "first");
  EXPECT_EQ(completion["choices"][0]["finish_reason"], "stop");
  EXPECT_EQ(completion["choices"][0]["logprobs"]["tokens"], Json::parse(R"(["b"])"));
  EXPECT_EQ(completion["choices"][1]["index"], 1);
  EXPECT_EQ(completion["choices"][1]["text"], "second");
  EXPECT_EQ(completion["choices"][1]["finish_reason"], "length");
  EXPECT_TRUE(completion["choices"][1]["logprobs"].is_null());
  EXPECT_EQ(completion["usage"]["completion_tokens"], 9);
  EXPECT_EQ(completion["usage"]["total_tokens"], 13);

  const Json chat =
      Json::parse(EncodeChoices(kMeta, Endpoint::kChatCompletions, choices, Usage{4, 9}));
  EXPECT_EQ(chat["object"], "chat.completion");
  ASSERT_EQ(chat["choices"].size(), 2u);
  EXPECT_EQ(chat["choices"][1]["index"], 1);
  EXPECT_EQ(chat["choices"][1]["message"],
            Json::parse(R"({"role":"assistant","content":"second"})"));
  EXPECT_EQ(chat["choices"][0]["logprobs"]["content"][0]["token"], "b");
}

TEST(EncodeTest, EachChoiceCarriesItsOwnToolCalls) {
  const engine::ToolCall paris{"call_a", "get_weather", R"({"city":"Paris"})"};
  const engine::ToolCall rome{"call_b", "get_weather", R"({"city":"Rome"})"};
  const engine::ToolCall both[] = {paris, rome};
  const EncodedChoice choices[] = {{"", FinishReason::kToolCalls, nullptr, both},
                                   {"No call.", FinishReason::kStop, nullptr, {}},
                                   {"Checking.", FinishReason::kToolCalls, nullptr, {&rome, 1}}};
  const Json chat =
      Json::parse(EncodeChoices(kMeta, Endpoint::kChatCompletions, choices, Usage{4, 9}));
  ASSERT_EQ(chat["choices"].size(), 3u);
  const Json& first = chat["choices"][0];
  EXPECT_EQ(first["finish_reason"], "tool_calls");
  EXPECT_TRUE(first["message"]["content"].is_null()) << "no text: content is null";
  ASSERT_EQ(first["message"]["tool_calls"].size(), 2u);
  EXPECT_EQ(first["message"]["tool_calls"][1], Json::parse(R"({"id":"call_b","type":"function",
                            "function":{"name":"get_weather","arguments":"{\"city\":\"Rome\"}"}})"));
  EXPECT_EQ(chat["choices"][1]["message"],
            Json::parse(R"({"role":"assistant","content":"No call."})"));
  EXPECT_EQ(chat["choices"][1]["finish_reason"], "stop");
  EXPECT_EQ(chat["choices"][2]["message"]["content"], "Checking.");
  ASSERT_EQ(chat["choices"][2]["message"]["tool_calls"].size(), 1u);
  EXPECT_EQ(chat["choices"][2]["message"]["tool_calls"][0]["id"], "call_b");
}

TEST(EncodeTest, ChunksCarryTheIndexOfTheirChoice) {
  ResponseMeta meta = kMeta;
  meta.choice = 1;
  const Json text = ParseFrame(EncodeCompletionChunk(meta, "x", std::nullopt, false));
  ASSERT_EQ(text["choices"].size(), 1u);
  EXPECT_EQ(text["choices"][0]["index"], 1);
  EXPECT_EQ(text["choices"][0]["text"], "x");
  meta.choice = 2;
  const Json role = ParseFrame(EncodeChatRoleChunk(meta, false));
  EXPECT_EQ(role["choices"][0]["index"], 2);
  EXPECT_EQ(role["choices"][0]["delta"]["role"], "assistant");
  const Json end = ParseFrame(EncodeChatChunk(meta, "", FinishReason::kLength, true));
  EXPECT_EQ(end["choices"][0]["index"], 2);
  EXPECT_EQ(end["choices"][0]["finish_reason"], "length");
  EXPECT_TRUE(end["usage"].is_null());
  EXPECT_EQ(
      ParseFrame(EncodeCompletionChunk(kMeta, "y", std::nullopt, false))["choices"][0]["index"], 0);
}

TEST(EncodeTest, FinishReasonStrings) {
  EXPECT_EQ(FinishReasonString(FinishReason::kStop), "stop");
  EXPECT_EQ(FinishReasonString(FinishReason::kLength), "length");
  EXPECT_EQ(FinishReasonString(FinishReason::kError), "error");
  EXPECT_EQ(FinishReasonString(FinishReason::kCancelled), "error");
}

TEST(EncodeTest, CompletionChunksCarryTextAndFinishReason) {
  const Json chunk = ParseFrame(EncodeCompletionChunk(kMeta, " upon", std::nullopt, false));
  EXPECT_EQ(chunk["object"], "text_completion");
  EXPECT_EQ(chunk["id"], "cmpl-abc");
  EXPECT_EQ(chunk["choices"][0]["text"], " upon");
  EXPECT_TRUE(chunk["choices"][0]["finish_reason"].is_null());
  EXPECT_FALSE(chunk.contains("usage"));

  const Json last = ParseFrame(EncodeCompletionChunk(kMeta, "", FinishReason::kStop, true));
  EXPECT_EQ(last["choices"][0]["finish_reason"], "stop");
  EXPECT_TRUE(last.contains("usage"));
  EXPECT_TRUE(last["usage"].is_null());
}

TEST(EncodeTest, ChatChunksFollowRoleThenContentThenEmptyDelta) {
  const Json role = ParseFrame(EncodeChatRoleChunk(kMeta, true));
  EXPECT_EQ(role["object"], "chat.completion.chunk");
  EXPECT_EQ(role["choices"][0]["delta"], Json::parse(R"({"role":"assistant","content":""})"));
  EXPECT_TRUE(role["choices"][0]["finish_reason"].is_null());
  EXPECT_TRUE(role["usage"].is_null());

  const Json content = ParseFrame(EncodeChatChunk(kMeta, "\xE6\x97\xA5\t", std::nullopt, false));
  EXPECT_EQ(content["choices"][0]["delta"], Json::parse(R"({"content":"日\t"})"));
  EXPECT_FALSE(content.contains("usage"));

  const Json last = ParseFrame(EncodeChatChunk(kMeta, "", FinishReason::kLength, false));
  EXPECT_EQ(last["choices"][0]["delta"], Json::object());
  EXPECT_EQ(last["choices"][0]["finish_reason"], "length");
}

TEST(EncodeTest, ToolCallsInTheMessageWithNullContent) {
  const engine::ToolCall calls[] = {{"call_1", "get_weather", R"({"city":"Paris"})"},
                                    {"call_2", "now", "{}"}};
  const Json body =
      Json::parse(EncodeChatCompletion(kMeta, "", FinishReason::kToolCalls, {}, nullptr, calls));
  const Json& choice = body["choices"][0];
  EXPECT_EQ(choice["finish_reason"], "tool_calls");
  EXPECT_TRUE(choice["message"]["content"].is_null());
  ASSERT_EQ(choice["message"]["tool_calls"].size(), 2u);
  EXPECT_EQ(choice["message"]["tool_calls"][0],
            Json({{"id", "call_1"},
                  {"type", "function"},
                  {"function", {{"name", "get_weather"}, {"arguments", R"({"city":"Paris"})"}}}}));
  EXPECT_EQ(choice["message"]["tool_calls"][1]["function"]["name"], "now");
  // Text beside the calls stays.
  const Json both = Json::parse(
      EncodeChatCompletion(kMeta, "Checking.", FinishReason::kToolCalls, {}, nullptr, calls));
  EXPECT_EQ(both["choices"][0]["message"]["content"], "Checking.");
}

TEST(EncodeTest, ToolCallFragmentsInChunksAsOpenAISendsThem) {
  const ToolCallFragment first[] = {{0, "call_1", "get_weather", "{\"ci"}};
  const Json announce = ParseFrame(EncodeChatChunk(kMeta, "", std::nullopt, false, nullptr, first));
  const Json& delta = announce["choices"][0]["delta"];
  EXPECT_FALSE(delta.contains("content")) << delta;
  EXPECT_EQ(delta["tool_calls"][0],
            Json({{"index", 0},
                  {"id", "call_1"},
                  {"type", "function"},
                  {"function", {{"name", "get_weather"}, {"arguments", "{\"ci"}}}}));
  const ToolCallFragment more[] = {{0, "", "", "ty\":1}"}, {1, "call_2", "now", ""}};
  const Json next = ParseFrame(EncodeChatChunk(kMeta, "", std::nullopt, false, nullptr, more));
  EXPECT_EQ(next["choices"][0]["delta"]["tool_calls"][0],
            Json({{"index", 0}, {"function", {{"arguments", "ty\":1}"}}}}));
  EXPECT_EQ(next["choices"][0]["delta"]["tool_calls"][1]["id"], "call_2");
  const Json last = ParseFrame(EncodeChatChunk(kMeta, "", FinishReason::kToolCalls, false));
  EXPECT_EQ(last["choices"][0]["finish_reason"], "tool_calls");
  EXPECT_EQ(last["choices"][0]["delta"], Json::object());
}

TEST(EncodeTest, ReasoningIsReasoningContentOnlyWhenThereIsSome) {
  const Json plain = Json::parse(EncodeChatCompletion(kMeta, "Hi.", FinishReason::kStop, {}));
  EXPECT_FALSE(plain["choices"][0]["message"].contains("reasoning_content"));
  const Json body = Json::parse(
      EncodeChatCompletion(kMeta, "Hi.", FinishReason::kStop, {}, nullptr, {}, "A greeting."));
  EXPECT_EQ(
      body["choices"][0]["message"],
      Json::parse(R"({"role":"assistant","content":"Hi.","reasoning_content":"A greeting."})"));
  const engine::ToolCall call{"call_1", "now", "{}"};
  const Json with_call = Json::parse(EncodeChatCompletion(kMeta, "", FinishReason::kToolCalls, {},
                                                          nullptr, {&call, 1}, "Needs the time."));
  EXPECT_TRUE(with_call["choices"][0]["message"]["content"].is_null());
  EXPECT_EQ(with_call["choices"][0]["message"]["reasoning_content"], "Needs the time.");
  const EncodedChoice choices[] = {{"a", FinishReason::kStop, nullptr, {}, "r0"},
                                   {"b", FinishReason::kStop, nullptr, {}, ""}};
  const Json two =
      Json::parse(EncodeChoices(kMeta, Endpoint::kChatCompletions, choices, Usage{4, 9}));
  EXPECT_EQ(two["choices"][0]["message"]["reasoning_content"], "r0");
  EXPECT_FALSE(two["choices"][1]["message"].contains("reasoning_content"));
}

TEST(EncodeTest, ReasoningChunksCarryDeltaReasoningContent) {
  const Json only =
      ParseFrame(EncodeChatChunk(kMeta, "", std::nullopt, false, nullptr, {}, "Think"));
  EXPECT_EQ(only["choices"][0]["delta"], Json::parse(R"({"reasoning_content":"Think"})"))
      << "no empty content beside it";
  const Json both =
      ParseFrame(EncodeChatChunk(kMeta, "Hi", std::nullopt, false, nullptr, {}, "ing."));
  EXPECT_EQ(both["choices"][0]["delta"],
            Json::parse(R"({"reasoning_content":"ing.","content":"Hi"})"));
  const ToolCallFragment call[] = {{0, "call_1", "now", ""}};
  const Json with_call =
      ParseFrame(EncodeChatChunk(kMeta, "", FinishReason::kToolCalls, false, nullptr, call, "."));
  EXPECT_EQ(with_call["choices"][0]["delta"]["reasoning_content"], ".");
  EXPECT_EQ(with_call["choices"][0]["delta"]["tool_calls"][0]["id"], "call_1");
  EXPECT_FALSE(with_call["choices"][0]["delta"].contains("content"));
  EXPECT_FALSE(
      ParseFrame(EncodeChatChunk(kMeta, "x", std::nullopt, false))["choices"][0]["delta"].contains(
          "reasoning_content"));
}

TEST(EncodeTest, ChunkWithInvalidUtf8TextStillParses) {
  const Json chunk = ParseFrame(EncodeChatChunk(kMeta, "ok\xF0\x9F", std::nullopt, false));
  EXPECT_EQ(chunk["choices"][0]["delta"]["content"], "ok\xEF\xBF\xBD");
}

TEST(EncodeTest, UsageChunkHasEmptyChoicesAndEndpointObject) {
  const Json chat = ParseFrame(EncodeUsageChunk(kMeta, Endpoint::kChatCompletions, Usage{4, 6}));
  EXPECT_EQ(chat["object"], "chat.completion.chunk");
  EXPECT_EQ(chat["choices"], Json::array());
  EXPECT_EQ(chat["usage"]["prompt_tokens"], 4);
  EXPECT_EQ(chat["usage"]["completion_tokens"], 6);
  EXPECT_EQ(chat["usage"]["total_tokens"], 10);
  const Json completion = ParseFrame(EncodeUsageChunk(kMeta, Endpoint::kCompletions, Usage{}));
  EXPECT_EQ(completion["object"], "text_completion");
  EXPECT_EQ(completion["usage"]["total_tokens"], 0);
}

TEST(EncodeTest, DoneFrame) { EXPECT_EQ(kSseDone, "data: [DONE]\n\n"); }

TEST(EncodeTest, ModelListMatchesOpenAiShape) {
  const Json list = Json::parse(EncodeModelList(
      {{"stories", 1700000000, "ember", 512, ""}, {"other\"model", 1, "me", 4096, ""}}));
  EXPECT_EQ(list["object"], "list");
  ASSERT_EQ(list["data"].size(), 2u);
  EXPECT_EQ(list["data"][0], Json::parse(R"({"id":"stories","object":"model","created":1700000000,
                                             "owned_by":"ember","context_length":512})"));
  EXPECT_EQ(list["data"][1]["id"], "other\"model");
  EXPECT_EQ(Json::parse(EncodeModelList({})), Json::parse(R"({"object":"list","data":[]})"));
}

struct HttpCase {
  ErrorCode code;
  std::string param;
  int status;
  std::string type;
  std::string error_code;
};

class ToHttpErrorTest : public ::testing::TestWithParam<HttpCase> {};

TEST_P(ToHttpErrorTest, MapsCodeToStatusTypeAndEnvelope) {
  const HttpCase& c = GetParam();
  const HttpError http = ToHttpError(Error{c.code, "bad \"thing\"\n", c.param});
  EXPECT_EQ(http.status, c.status);
  const Json error = Json::parse(http.body)["error"];
  EXPECT_EQ(error["message"], "bad \"thing\"\n");
  EXPECT_EQ(error["type"], c.type);
  EXPECT_EQ(error["code"], c.error_code);
  if (c.param.empty()) {
    EXPECT_TRUE(error["param"].is_null());
  } else {
    EXPECT_EQ(error["param"], c.param);
  }
}

INSTANTIATE_TEST_SUITE_P(
    Table, ToHttpErrorTest,
    ::testing::Values(
        HttpCase{ErrorCode::kInvalidArgument, "max_tokens", 400, "invalid_request_error",
                 "invalid_value"},
        HttpCase{ErrorCode::kNotFound, "model", 404, "invalid_request_error", "model_not_found"},
        HttpCase{ErrorCode::kNotFound, "", 404, "invalid_request_error", "not_found"},
        HttpCase{ErrorCode::kUnauthenticated, "", 401, "authentication_error", "unauthenticated"},
        HttpCase{ErrorCode::kPermissionDenied, "", 403, "permission_error", "permission_denied"},
        HttpCase{ErrorCode::kResourceExhausted, "", 429, "rate_limit_error", "rate_limit_exceeded"},
        HttpCase{ErrorCode::kUnavailable, "", 503, "server_error", "service_unavailable"},
        HttpCase{ErrorCode::kDeadlineExceeded, "", 503, "server_error", "queue_timeout"},
        HttpCase{ErrorCode::kInternal, "", 500, "server_error", "internal_error"}));

TEST(ErrorEventTest, IsADataFrameWithTheErrorEnvelope) {
  const Json event = ParseFrame(EncodeErrorEvent(Error{ErrorCode::kInternal, "engine \xFF", ""}));
  EXPECT_EQ(event["error"]["message"], "engine \xEF\xBF\xBD");
  EXPECT_EQ(event["error"]["type"], "server_error");
  EXPECT_TRUE(event["error"]["param"].is_null());
}

// Two tokens, "Hi" and "\xC3" (half of "é"), with two alternatives each; the second's top
// list lacks the sampled token.
std::vector<engine::TokenLogprobs> SampleLogprobs() {
  return {
      {{"Hi", -0.25f}, {{"Hi", -0.25f}, {"Hello", -1.5f}}},
      {{"\xC3", -2.0f}, {{" there", -0.5f}, {"!", -std::numeric_limits<float>::infinity()}}},
  };
}

TEST(EncodeLogprobsTest, ChatBodyHasOpenAiShape) {
  const auto tokens = SampleLogprobs();
  const ChoiceLogprobs logprobs{tokens, 0};
  const Json body = Json::parse(
      EncodeChatCompletion(kMeta, "Hi\xC3", FinishReason::kStop, Usage{3, 2}, &logprobs));
  const std::string fffd(kFffd);
  const Json expected = Json::parse(R"({"content":[
      {"token":"Hi","logprob":-0.25,"bytes":[72,105],"top_logprobs":[
          {"token":"Hi","logprob":-0.25,"bytes":[72,105]},
          {"token":"Hello","logprob":-1.5,"bytes":[72,101,108,108,111]}]},
      {"token":")" + fffd + R"(","logprob":-2.0,"bytes":[195],"top_logprobs":[
          {"token":" there","logprob":-0.5,"bytes":[32,116,104,101,114,101]},
          {"token":"!","logprob":-9999.0,"bytes":[33]}]}],
      "refusal":null})");
  EXPECT_EQ(body["choices"][0]["logprobs"], expected);
}

TEST(EncodeLogprobsTest, ChatWithoutAlternativesHasEmptyTopLists) {
  const std::vector<engine::TokenLogprobs> tokens{{{"a", -0.5f}, {}}};
  const ChoiceLogprobs logprobs{tokens, 0};
  const Json body =
      Json::parse(EncodeChatCompletion(kMeta, "a", FinishReason::kStop, Usage{1, 1}, &logprobs));
  EXPECT_EQ(body["choices"][0]["logprobs"],
            Json::parse(R"({"content":[{"token":"a","logprob":-0.5,"bytes":[97],
                            "top_logprobs":[]}],"refusal":null})"));
}

TEST(EncodeLogprobsTest, ChatChunksCarryTheirTokens) {
  const auto tokens = SampleLogprobs();
  const ChoiceLogprobs first{std::span(tokens).first(1), 0};
  const Json chunk = ParseFrame(EncodeChatChunk(kMeta, "Hi", std::nullopt, false, &first));
  EXPECT_EQ(chunk["choices"][0]["delta"]["content"], "Hi");
  ASSERT_EQ(chunk["choices"][0]["logprobs"]["content"].size(), 1u);
  EXPECT_EQ(chunk["choices"][0]["logprobs"]["content"][0]["token"], "Hi");
  EXPECT_EQ(chunk["choices"][0]["logprobs"]["content"][0]["top_logprobs"].size(), 2u);
  EXPECT_TRUE(chunk["choices"][0]["logprobs"]["refusal"].is_null());
  // Text whose tokens are not final yet (an incomplete character) carries an empty list.
  const ChoiceLogprobs none{{}, 0};
  const Json held = ParseFrame(EncodeChatChunk(kMeta, "x", std::nullopt, false, &none));
  EXPECT_EQ(held["choices"][0]["logprobs"], Json::parse(R"({"content":[],"refusal":null})"));
  // Not asked for: null, in every chunk.
  EXPECT_TRUE(ParseFrame(EncodeChatChunk(kMeta, "x", std::nullopt, false))["choices"][0]["logprobs"]
                  .is_null());
  EXPECT_TRUE(ParseFrame(EncodeChatRoleChunk(kMeta, false))["choices"][0]["logprobs"].is_null());
}

TEST(EncodeLogprobsTest, CompletionBodyHasLegacyShape) {
  const auto tokens = SampleLogprobs();
  const ChoiceLogprobs logprobs{tokens, 0};
  const Json body =
      Json::parse(EncodeCompletion(kMeta, "Hi\xC3", FinishReason::kLength, Usage{3, 2}, &logprobs));
  const std::string fffd(kFffd);
  // Each top_logprobs map: the alternatives, plus the sampled token when not among them.
  const Json expected = Json::parse(R"({
      "tokens":["Hi",")" + fffd + R"("],
      "token_logprobs":[-0.25,-2.0],
      "top_logprobs":[{"Hi":-0.25,"Hello":-1.5},
                      {" there":-0.5,"!":-9999.0,")" +
                                    fffd + R"(":-2.0}],
      "text_offset":[0,2]})");
  EXPECT_EQ(body["choices"][0]["logprobs"], expected);
}

TEST(EncodeLogprobsTest, CompletionChunkOffsetsContinueTheText) {
  const std::vector<engine::TokenLogprobs> tokens{{{"ab", -0.1f}, {}}, {{"c", -0.2f}, {}}};
  const ChoiceLogprobs logprobs{tokens, 7};
  const Json chunk =
      ParseFrame(EncodeCompletionChunk(kMeta, "abc", std::nullopt, false, &logprobs));
  EXPECT_EQ(chunk["choices"][0]["text"], "abc");
  EXPECT_EQ(chunk["choices"][0]["logprobs"]["tokens"], Json::parse(R"(["ab","c"])"));
  EXPECT_EQ(chunk["choices"][0]["logprobs"]["text_offset"], Json::parse("[7,9]"));
  EXPECT_EQ(chunk["choices"][0]["logprobs"]["top_logprobs"],
            Json::parse(R"([{"ab":-0.1},{"c":-0.2}])"));
}

TEST(EncodeLogprobsTest, LegacyMapKeepsOneEntryPerText) {
  // Two partial UTF-8 pieces both read U+FFFD: a JSON object cannot hold the key twice.
  const std::vector<engine::TokenLogprobs> tokens{
      {{"\xE2", -1.0f}, {{"\xE2", -1.0f}, {"\xF0", -1.2f}, {"z", -3.0f}}}};
  const ChoiceLogprobs logprobs{tokens, 0};
  const std::string body =
      EncodeCompletion(kMeta, "\xE2", FinishReason::kLength, Usage{1, 1}, &logprobs);
  const Json map = Json::parse(body)["choices"][0]["logprobs"]["top_logprobs"][0];
  EXPECT_EQ(map.size(), 2u);
  EXPECT_EQ(map[std::string(kFffd)], -1.0);
  EXPECT_EQ(map["z"], -3.0);
}

}  // namespace
}  // namespace ember::api
