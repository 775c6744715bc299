// ParseCompletionRequest, and the body-level checks both parsers share.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cstdint>
#include <string>
#include <variant>
#include <vector>

#include "api/openai.h"

namespace ember::api {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;
using ::testing::StartsWith;

GenerationParams ParseOk(std::string_view body) {
  auto result = ParseCompletionRequest(body);
  EXPECT_TRUE(result.has_value()) << body << " -> " << (result ? "" : result.error().message);
  return result ? *result : GenerationParams{};
}

// The error a rejected body gives; an accepted body fails the test.
Error ParseErr(std::string_view body) {
  auto result = ParseCompletionRequest(body);
  EXPECT_FALSE(result.has_value()) << "accepted: " << body;
  if (result) return Error{};
  EXPECT_EQ(result.error().code, ErrorCode::kInvalidArgument) << body;
  return result.error();
}

const std::string& PromptText(const GenerationParams& params) {
  static const std::string kNotText = "<not text>";
  const auto* text = std::get_if<std::string>(&params.prompt);
  return text != nullptr ? *text : kNotText;
}

std::vector<engine::Token> PromptTokens(const GenerationParams& params) {
  const auto* tokens = std::get_if<std::vector<engine::Token>>(&params.prompt);
  return tokens != nullptr ? *tokens : std::vector<engine::Token>{};
}

TEST(ParseCompletionTest, MinimalRequestGetsDefaults) {
  const GenerationParams p = ParseOk(R"({"prompt":"Once upon"})");
  EXPECT_EQ(p.endpoint, Endpoint::kCompletions);
  EXPECT_EQ(PromptText(p), "Once upon");
  EXPECT_EQ(p.model, "");
  EXPECT_FALSE(p.max_tokens.has_value());
  EXPECT_FLOAT_EQ(p.sampling.temperature, 1.0f);
  EXPECT_FLOAT_EQ(p.sampling.top_p, 1.0f);
  EXPECT_EQ(p.sampling.top_k, 0);
  EXPECT_FALSE(p.sampling.seed.has_value());
  EXPECT_TRUE(p.stop.empty());
  EXPECT_FALSE(p.stream);
  EXPECT_FALSE(p.include_usage);
}

TEST(ParseCompletionTest, ReadsEveryField) {
  const GenerationParams p = ParseOk(R"({
      "model":"stories","prompt":"x","max_tokens":16,"temperature":0.5,"top_p":0.9,
      "top_k":40,"min_p":0.05,"presence_penalty":-1.5,"frequency_penalty":2,"seed":42,
      "stop":["\n","END"],"stream":true,"stream_options":{"include_usage":true},
      "n":1,"best_of":1,"echo":false,"logprobs":3,"suffix":null,"logit_bias":{},
      "user":"u-1","metadata":{"k":"v"}})");
  EXPECT_EQ(p.model, "stories");
  EXPECT_EQ(p.max_tokens, 16);
  EXPECT_FLOAT_EQ(p.sampling.temperature, 0.5f);
  EXPECT_FLOAT_EQ(p.sampling.top_p, 0.9f);
  EXPECT_EQ(p.sampling.top_k, 40);
  EXPECT_FLOAT_EQ(p.sampling.min_p, 0.05f);
  EXPECT_FLOAT_EQ(p.sampling.presence_penalty, -1.5f);
  EXPECT_FLOAT_EQ(p.sampling.frequency_penalty, 2.0f);
  EXPECT_EQ(p.sampling.seed, 42u);
  EXPECT_EQ(p.stop, (std::vector<std::string>{"\n", "END"}));
  EXPECT_TRUE(p.stream);
  EXPECT_TRUE(p.include_usage);
  EXPECT_TRUE(p.sampling.logprobs);
  EXPECT_EQ(p.sampling.top_logprobs, 3);
}

TEST(ParseCompletionTest, NChoicesFromOneToEight) {
  EXPECT_EQ(ParseCompletionRequest(R"({"prompt":"x"})")->n, 1);
  EXPECT_EQ(ParseCompletionRequest(R"({"prompt":"x","n":null})")->n, 1);
  EXPECT_EQ(ParseCompletionRequest(R"({"prompt":"x","n":3})")->n, 3);
  EXPECT_EQ(ParseCompletionRequest(R"({"prompt":"x","n":8})")->n, 8);
  EXPECT_EQ(ParseChatRequest(R"({"messages":[{"role":"user","content":"x"}],"n":4})")->n, 4);
}

TEST(ParseCompletionTest, LogprobsCountsAlternatives) {
  // 0: the sampled tokens' log-probabilities with no alternatives; false and null: none.
  const GenerationParams zero = ParseOk(R"({"prompt":"x","logprobs":0})");
  EXPECT_TRUE(zero.sampling.logprobs);
  EXPECT_EQ(zero.sampling.top_logprobs, 0);
  const GenerationParams five = ParseOk(R"({"prompt":"x","logprobs":5})");
  EXPECT_TRUE(five.sampling.logprobs);
  EXPECT_EQ(five.sampling.top_logprobs, 5);
  EXPECT_FALSE(ParseOk(R"({"prompt":"x","logprobs":false})").sampling.logprobs);
  EXPECT_FALSE(ParseOk(R"({"prompt":"x","logprobs":null})").sampling.logprobs);
  EXPECT_FALSE(ParseOk(R"({"prompt":"x"})").sampling.logprobs);
}

TEST(ParseCompletionTest, NullMeansDefault) {
  const GenerationParams p = ParseOk(R"({"prompt":"x","model":null,"max_tokens":null,
      "temperature":null,"top_p":null,"top_k":null,"seed":null,"stop":null,"stream":null,
      "stream_options":null,"n":null,"logprobs":null,"echo":null,"logit_bias":null})");
  EXPECT_EQ(p.model, "");
  EXPECT_FALSE(p.max_tokens.has_value());
  EXPECT_FLOAT_EQ(p.sampling.temperature, 1.0f);
  EXPECT_FALSE(p.sampling.seed.has_value());
  EXPECT_FALSE(p.stream);
}

TEST(ParseCompletionTest, PromptForms) {
  EXPECT_EQ(PromptText(ParseOk(R"({"prompt":""})")), "");
  EXPECT_EQ(PromptText(ParseOk(R"({"prompt":["only one"]})")), "only one");
  EXPECT_EQ(PromptTokens(ParseOk(R"({"prompt":[1,0,2147483647]})")),
            (std::vector<engine::Token>{1, 0, 2147483647}));
  EXPECT_EQ(PromptTokens(ParseOk(R"({"prompt":[[7,8]]})")), (std::vector<engine::Token>{7, 8}));
}

TEST(ParseCompletionTest, RangeEdgesAreAccepted) {
  EXPECT_EQ(ParseOk(R"({"prompt":"x","max_tokens":1})").max_tokens, 1);
  EXPECT_EQ(ParseOk(R"({"prompt":"x","max_tokens":1000000})").max_tokens, 1000000);
  EXPECT_FLOAT_EQ(ParseOk(R"({"prompt":"x","temperature":0})").sampling.temperature, 0.0f);
  EXPECT_FLOAT_EQ(ParseOk(R"({"prompt":"x","temperature":2})").sampling.temperature, 2.0f);
  EXPECT_FLOAT_EQ(ParseOk(R"({"prompt":"x","top_p":1})").sampling.top_p, 1.0f);
  EXPECT_FLOAT_EQ(ParseOk(R"({"prompt":"x","min_p":1.0})").sampling.min_p, 1.0f);
  EXPECT_EQ(ParseOk(R"({"prompt":"x","top_k":0})").sampling.top_k, 0);
}

// top_p is in (0, 1]; a tiny positive value used to round to 0 as a float (found writing the
// invariants of fuzz/request_fuzz.cc; fuzz/corpus/request/regress_tiny_top_p.json).
TEST(ParseCompletionTest, TinyTopPStaysAboveZero) {
  EXPECT_GT(ParseOk(R"({"prompt":"x","top_p":1e-50})").sampling.top_p, 0.0f);
  EXPECT_GT(ParseOk(R"({"prompt":"x","top_p":5e-324})").sampling.top_p, 0.0f);
  EXPECT_FLOAT_EQ(ParseOk(R"({"prompt":"x","top_p":1e-5})").sampling.top_p, 1e-5f);
}

TEST(ParseCompletionTest, SeedKeepsAllSixtyFourBits) {
  EXPECT_EQ(ParseOk(R"({"prompt":"x","seed":-1})").sampling.seed, UINT64_MAX);
  EXPECT_EQ(ParseOk(R"({"prompt":"x","seed":18446744073709551615})").sampling.seed, UINT64_MAX);
  EXPECT_EQ(ParseOk(R"({"prompt":"x","seed":0})").sampling.seed, 0u);
}

TEST(ParseCompletionTest, DeterministicWithGreedyOrASeed) {
  EXPECT_FALSE(ParseOk(R"({"prompt":"x"})").sampling.deterministic);
  EXPECT_FALSE(ParseOk(R"({"prompt":"x","deterministic":null})").sampling.deterministic);
  EXPECT_TRUE(
      ParseOk(R"({"prompt":"x","deterministic":true,"temperature":0})").sampling.deterministic);
  const GenerationParams seeded =
      ParseOk(R"({"prompt":"x","deterministic":true,"temperature":0.8,"seed":7})");
  EXPECT_TRUE(seeded.sampling.deterministic);
  EXPECT_EQ(seeded.sampling.seed, 7u);
}

TEST(ParseCompletionTest, StopAsStringOrUpToFourStrings) {
  EXPECT_EQ(ParseOk(R"({"prompt":"x","stop":"\n\n"})").stop, std::vector<std::string>{"\n\n"});
  EXPECT_EQ(ParseOk(R"({"prompt":"x","stop":["a","b","c","d"]})").stop.size(), 4u);
  EXPECT_TRUE(ParseOk(R"({"prompt":"x","stop":[]})").stop.empty());
}

TEST(ParseCompletionTest, IncludeUsageOnlyWhenStreaming) {
  const auto p =
      ParseOk(R"({"prompt":"x","stream":false,"stream_options":{"include_usage":true}})");
  EXPECT_FALSE(p.include_usage);
  EXPECT_FALSE(ParseOk(R"({"prompt":"x","stream":true,"stream_options":{}})").include_usage);
}

TEST(ParseCompletionTest, Utf8TextSurvives) {
  EXPECT_EQ(PromptText(ParseOk("{\"prompt\":\"caf\xC3\xA9 \xF0\x9F\x99\x82\"}")),
            "caf\xC3\xA9 \xF0\x9F\x99\x82");
  EXPECT_EQ(PromptText(ParseOk(R"({"prompt":"caf\u00e9"})")), "caf\xC3\xA9");
}

struct RejectCase {
  std::string body;
  std::string param;
  std::string message_part;
};

void PrintTo(const RejectCase& c, std::ostream* os) { *os << c.body; }

class CompletionRejectTest : public ::testing::TestWithParam<RejectCase> {};

TEST_P(CompletionRejectTest, NamesTheFieldAndSaysWhy) {
  const Error error = ParseErr(GetParam().body);
  EXPECT_EQ(error.param, GetParam().param);
  EXPECT_THAT(error.message, HasSubstr(GetParam().message_part));
}

INSTANTIATE_TEST_SUITE_P(
    Fields, CompletionRejectTest,
    ::testing::Values(
        RejectCase{R"({"prompt":"x","model":5})", "model", "model must be a string"},
        RejectCase{R"({})", "prompt", "prompt is required"},
        RejectCase{R"({"prompt":null})", "prompt", "prompt is required"},
        RejectCase{R"({"prompt":5})", "prompt", "string or an array of token ids"},
        RejectCase{R"({"prompt":[]})", "prompt", "empty array"},
        RejectCase{R"({"prompt":[[]]})", "prompt", "empty array"},
        RejectCase{R"({"prompt":["a","b"]})", "prompt", "only one prompt per request"},
        RejectCase{R"({"prompt":[[1],[2]]})", "prompt", "only one prompt per request"},
        RejectCase{R"({"prompt":[1,-2]})", "prompt", "prompt[1] is -2"},
        RejectCase{R"({"prompt":[1,2.5]})", "prompt", "prompt[1] is 2.5"},
        RejectCase{R"({"prompt":[1,"a"]})", "prompt", "prompt[1] is a string"},
        RejectCase{R"({"prompt":[2147483648]})", "prompt", "token ids must be integers"},
        RejectCase{R"({"prompt":"x","max_tokens":0})", "max_tokens", "between 1 and 1000000"},
        RejectCase{R"({"prompt":"x","max_tokens":-5})", "max_tokens", "got -5"},
        RejectCase{R"({"prompt":"x","max_tokens":1.5})", "max_tokens", "got 1.5"},
        RejectCase{R"({"prompt":"x","max_tokens":10.0})", "max_tokens", "must be an integer"},
        RejectCase{R"({"prompt":"x","max_tokens":"10"})", "max_tokens", "got a string"},
        RejectCase{R"({"prompt":"x","max_tokens":true})", "max_tokens", "got a boolean"},
        RejectCase{R"({"prompt":"x","max_tokens":1000001})", "max_tokens", "1000000"},
        RejectCase{R"({"prompt":"x","max_tokens":18446744073709551615})", "max_tokens", "1000000"},
        RejectCase{R"({"prompt":"x","max_tokens":1e30})", "max_tokens", "must be an integer"},
        RejectCase{R"({"prompt":"x","temperature":-0.1})", "temperature", "between 0 and 2"},
        RejectCase{R"({"prompt":"x","temperature":2.5})", "temperature", "got 2.5"},
        RejectCase{R"({"prompt":"x","temperature":"1"})", "temperature", "got a string"},
        RejectCase{R"({"prompt":"x","top_p":0})", "top_p", "greater than 0 and at most 1"},
        RejectCase{R"({"prompt":"x","top_p":1.01})", "top_p", "greater than 0"},
        RejectCase{R"({"prompt":"x","top_k":-1})", "top_k", "integer between 0 and"},
        RejectCase{R"({"prompt":"x","top_k":2.5})", "top_k", "integer"},
        RejectCase{R"({"prompt":"x","top_k":3000000000})", "top_k", "2147483647"},
        RejectCase{R"({"prompt":"x","min_p":1.5})", "min_p", "between 0 and 1"},
        RejectCase{R"({"prompt":"x","min_p":-0.01})", "min_p", "between 0 and 1"},
        RejectCase{R"({"prompt":"x","presence_penalty":2.1})", "presence_penalty", "-2 and 2"},
        RejectCase{R"({"prompt":"x","frequency_penalty":-3})", "frequency_penalty", "-2 and 2"},
        RejectCase{R"({"prompt":"x","frequency_penalty":false})", "frequency_penalty", "number"},
        RejectCase{R"({"prompt":"x","seed":1.5})", "seed", "seed must be an integer"},
        RejectCase{R"({"prompt":"x","seed":"7"})", "seed", "seed must be an integer"},
        RejectCase{R"({"prompt":"x","deterministic":1})", "deterministic", "true or false"},
        RejectCase{R"({"prompt":"x","deterministic":true})", "seed", "needs a seed"},
        RejectCase{R"({"prompt":"x","deterministic":true,"temperature":0.7})", "seed",
                   "temperature 0 for greedy"},
        RejectCase{R"({"prompt":"x","stop":5})", "stop", "string or an array of strings"},
        RejectCase{R"({"prompt":"x","stop":["a","b","c","d","e"]})", "stop", "at most 4"},
        RejectCase{R"({"prompt":"x","stop":""})", "stop", "non-empty string"},
        RejectCase{R"({"prompt":"x","stop":["a",""]})", "stop", "non-empty string"},
        RejectCase{R"({"prompt":"x","stop":["a",1]})", "stop", "got 1"},
        RejectCase{R"({"prompt":"x","stream":"true"})", "stream", "true or false"},
        RejectCase{R"({"prompt":"x","stream":1})", "stream", "true or false"},
        RejectCase{R"({"prompt":"x","stream_options":true})", "stream_options", "an object"},
        RejectCase{R"({"prompt":"x","stream":true,"stream_options":{"include_usage":1}})",
                   "stream_options.include_usage", "true or false"},
        RejectCase{R"({"prompt":"x","n":9})", "n", "between 1 and 8, got 9"},
        RejectCase{R"({"prompt":"x","n":0})", "n", "between 1 and 8, got 0"},
        RejectCase{R"({"prompt":"x","n":-1})", "n", "between 1 and 8"},
        RejectCase{R"({"prompt":"x","n":2.5})", "n", "between 1 and 8"},
        RejectCase{R"({"prompt":"x","n":"1"})", "n", "between 1 and 8"},
        RejectCase{R"({"prompt":"x","n":18446744073709551615})", "n", "between 1 and 8"},
        RejectCase{R"({"prompt":"x","best_of":3})", "best_of", "best_of must be 1"},
        RejectCase{R"({"prompt":"x","echo":true})", "echo", "echo is not supported"},
        RejectCase{R"({"prompt":"x","logprobs":6})", "logprobs", "between 0 and 5, got 6"},
        RejectCase{R"({"prompt":"x","logprobs":-1})", "logprobs", "between 0 and 5"},
        RejectCase{R"({"prompt":"x","logprobs":true})", "logprobs", "integer between 0 and 5"},
        RejectCase{R"({"prompt":"x","logprobs":1.5})", "logprobs", "integer between 0 and 5"},
        RejectCase{R"({"prompt":"x","logprobs":"2"})", "logprobs", "integer between 0 and 5"},
        RejectCase{R"({"prompt":"x","suffix":"end"})", "suffix", "suffix is not supported"},
        RejectCase{R"({"prompt":"x","logit_bias":{"50256":-100}})", "logit_bias",
                   "logit_bias is not supported"}));

TEST(ParseBodyTest, MalformedJsonSaysSo) {
  const Error error = ParseErr(R"({"prompt":"x",)");
  EXPECT_THAT(error.message, StartsWith("request body is not valid JSON: "));
  EXPECT_THAT(error.message, Not(HasSubstr("[json.exception")));
  EXPECT_EQ(error.param, "");
  EXPECT_THAT(ParseErr("").message, StartsWith("request body is not valid JSON"));
}

// nlohmann quotes the token it stopped at, each control character spelled <U+000A>, so a body
// of newlines came back eight times its size (found by fuzz/request_fuzz.cc;
// fuzz/corpus/request/regress_long_parse_error.json).
TEST(ParseBodyTest, MalformedJsonMessageDoesNotEchoTheBody) {
  for (const std::string& body :
       {"{" + std::string(100000, '\n') + "\x10", "{\"prompt\":\"" + std::string(100000, 'x')}) {
    const Error error = ParseErr(body);
    EXPECT_THAT(error.message, StartsWith("request body is not valid JSON: "));
    EXPECT_LE(error.message.size(), 300u);
  }
}

TEST(ParseBodyTest, InvalidUtf8IsRejectedWithAClearMessage) {
  for (const std::string body :
       {"{\"prompt\":\"\xFF\"}", "{\"prompt\":\"\xC0\xAF\"}", "{\"prompt\":\"\xED\xA0\x80\"}",
        "{\"prompt\":\"ab\xE6\x97\"}", "{\"prompt\":\"x\"}\xE6"}) {
    EXPECT_THAT(ParseErr(body).message, HasSubstr("not valid UTF-8")) << body;
  }
  EXPECT_THAT(ParseErr("{\"prompt\":\"\xFF\"}").message, HasSubstr("0xFF at offset 11"));
}

TEST(ParseBodyTest, LoneSurrogateEscapeIsRejected) {
  EXPECT_THAT(ParseErr(R"({"prompt":"\ud800"})").message, HasSubstr("not valid JSON"));
}

TEST(ParseBodyTest, BodyMustBeAnObject) {
  EXPECT_THAT(ParseErr("[1,2]").message, HasSubstr("must be a JSON object, got an array"));
  EXPECT_THAT(ParseErr("\"hi\"").message, HasSubstr("must be a JSON object, got a string"));
  EXPECT_THAT(ParseErr("null").message, HasSubstr("must be a JSON object, got null"));
  EXPECT_THAT(ParseErr("42").message, HasSubstr("must be a JSON object, got 42"));
}

TEST(ParseBodyTest, HugeNumberIsAnErrorNotACrash) {
  EXPECT_THAT(ParseErr(R"({"prompt":"x","temperature":1e999})").message,
              HasSubstr("not valid JSON"));
}

TEST(ParseBodyTest, DeepNestingIsRejectedBeforeParsing) {
  EXPECT_THAT(ParseErr(std::string(100000, '[')).message, HasSubstr("deeper than 64"));
  const std::string nested =
      "{\"prompt\":\"x\",\"user\":" + std::string(100000, '[') + std::string(100000, ']') + "}";
  EXPECT_THAT(ParseErr(nested).message, HasSubstr("deeper than 64"));
  // 64 levels in all (the body object plus 63 arrays) is still accepted.
  ParseOk("{\"prompt\":\"x\",\"user\":" + std::string(63, '[') + std::string(63, ']') + "}");
  ParseErr("{\"prompt\":\"x\",\"user\":" + std::string(64, '[') + std::string(64, ']') + "}");
}

TEST(ParseBodyTest, BracketsInsideStringsDoNotCountAsNesting) {
  const std::string text = std::string(200, '[') + "\\\"{{{";
  EXPECT_EQ(PromptText(ParseOk("{\"prompt\":\"" + text + "\"}")), std::string(200, '[') + "\"{{{");
}

}  // namespace
}  // namespace ember::api

namespace ember::api {
namespace {

TEST(ParseCompletionTest, ResponseFormatIsReadAsOnChat) {
  auto p = ParseCompletionRequest(
      R"({"prompt":"x","response_format":{"type":"json_schema","json_schema":{"name":"n",
          "schema":{"type":"object"}}}})");
  ASSERT_TRUE(p) << p.error().message;
  EXPECT_EQ(p->response_format.type, ResponseFormat::Type::kJsonSchema);
  EXPECT_EQ(p->response_format.schema, R"({"type":"object"})");
  auto bad = ParseCompletionRequest(R"({"prompt":"x","response_format":{"type":"xml"}})");
  ASSERT_FALSE(bad);
  EXPECT_EQ(bad.error().param, "response_format.type");
}

}  // namespace
}  // namespace ember::api
