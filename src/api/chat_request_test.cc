#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <string>

#include "api/openai.h"

namespace ember::api {
namespace {

using ::testing::HasSubstr;

GenerationParams ParseOk(std::string_view body) {
  auto result = ParseChatRequest(body);
  EXPECT_TRUE(result.has_value()) << body << " -> " << (result ? "" : result.error().message);
  return result ? *result : GenerationParams{};
}

// Wraps `extra` fields around one valid user message.
std::string WithMessage(std::string_view extra) {
  return std::string(R"({"messages":[{"role":"user","content":"hi"}])") +
         (extra.empty() ? "" : ",") + std::string(extra) + "}";
}

TEST(ParseChatTest, ReadsMessagesInOrder) {
  const GenerationParams p = ParseOk(R"({"model":"stories","messages":[
      {"role":"system","content":"Be brief."},{"role":"user","content":"Hi","name":"ann"},
      {"role":"assistant","content":"Hello!"},{"role":"user","content":""}]})");
  EXPECT_EQ(p.endpoint, Endpoint::kChatCompletions);
  EXPECT_EQ(p.model, "stories");
  ASSERT_EQ(p.messages.size(), 4u);
  EXPECT_EQ(p.messages[0].role, "system");
  EXPECT_EQ(p.messages[0].content, "Be brief.");
  EXPECT_EQ(p.messages[1].role, "user");
  EXPECT_EQ(p.messages[1].content, "Hi");
  EXPECT_EQ(p.messages[2].role, "assistant");
  EXPECT_EQ(p.messages[3].content, "");
  EXPECT_FALSE(p.max_tokens.has_value());
}

TEST(ParseChatTest, DeveloperRoleBecomesSystem) {
  const GenerationParams p = ParseOk(R"({"messages":[{"role":"developer","content":"Rules"}]})");
  ASSERT_EQ(p.messages.size(), 1u);
  EXPECT_EQ(p.messages[0].role, "system");
  EXPECT_EQ(p.messages[0].content, "Rules");
}

TEST(ParseChatTest, TextPartsAreConcatenated) {
  const GenerationParams p = ParseOk(R"({"messages":[{"role":"user","content":[
      {"type":"text","text":"Hello, "},{"type":"text","text":"world"}]}]})");
  ASSERT_EQ(p.messages.size(), 1u);
  EXPECT_EQ(p.messages[0].content, "Hello, world");
}

TEST(ParseChatTest, MaxCompletionTokensWinsOverMaxTokens) {
  EXPECT_EQ(ParseOk(WithMessage(R"("max_tokens":10,"max_completion_tokens":20)")).max_tokens, 20);
  EXPECT_EQ(ParseOk(WithMessage(R"("max_tokens":10)")).max_tokens, 10);
  EXPECT_EQ(ParseOk(WithMessage(R"("max_tokens":10,"max_completion_tokens":null)")).max_tokens, 10);
}

TEST(ParseChatTest, SharedFieldsAreRead) {
  const GenerationParams p = ParseOk(WithMessage(
      R"("temperature":0,"seed":7,"stop":"\n","stream":true,"stream_options":{"include_usage":true})"));
  EXPECT_FLOAT_EQ(p.sampling.temperature, 0.0f);
  EXPECT_EQ(p.sampling.seed, 7u);
  EXPECT_EQ(p.stop, std::vector<std::string>{"\n"});
  EXPECT_TRUE(p.stream);
  EXPECT_TRUE(p.include_usage);
}

TEST(ParseChatTest, DefaultValuedUnsupportedFieldsAreAccepted) {
  const GenerationParams p = ParseOk(WithMessage(
      R"("n":1,"tools":[],"tool_choice":"none","functions":null,"function_call":"none",
         "response_format":{"type":"text"},"logprobs":false,"top_logprobs":null,
         "logit_bias":{},"user":"u","store":false,"parallel_tool_calls":true)"));
  EXPECT_EQ(p.messages.size(), 1u);
  EXPECT_FALSE(p.sampling.logprobs);
}

TEST(ParseChatTest, LogprobsAndTopLogprobs) {
  const GenerationParams plain = ParseOk(WithMessage(R"("logprobs":true)"));
  EXPECT_TRUE(plain.sampling.logprobs);
  EXPECT_EQ(plain.sampling.top_logprobs, 0);
  const GenerationParams top = ParseOk(WithMessage(R"("logprobs":true,"top_logprobs":20)"));
  EXPECT_TRUE(top.sampling.logprobs);
  EXPECT_EQ(top.sampling.top_logprobs, 20);
  const GenerationParams none = ParseOk(WithMessage(R"("logprobs":null,"top_logprobs":null)"));
  EXPECT_FALSE(none.sampling.logprobs);
}

TEST(ParseChatTest, ToolHistoryAndToolsAreRead) {
  const GenerationParams p = ParseOk(R"({"messages":[
      {"role":"user","content":"Weather in Paris?"},
      {"role":"assistant","content":null,"tool_calls":[{"id":"call_1","type":"function",
        "function":{"name":"get_weather","arguments":"{\"city\":\"Paris\"}"}}]},
      {"role":"tool","tool_call_id":"call_1","content":"18C"}],
      "tools":[{"type":"function","function":{"name":"get_weather","parameters":{"type":"object"}}}],
      "tool_choice":"required","response_format":{"type":"json_object"}})");
  ASSERT_EQ(p.messages.size(), 3u);
  EXPECT_EQ(p.messages[1].role, "assistant");
  EXPECT_EQ(p.messages[1].content, "");
  ASSERT_EQ(p.messages[1].tool_calls.size(), 1u);
  EXPECT_EQ(p.messages[1].tool_calls[0].id, "call_1");
  EXPECT_EQ(p.messages[1].tool_calls[0].name, "get_weather");
  EXPECT_EQ(p.messages[1].tool_calls[0].arguments, R"({"city":"Paris"})");
  EXPECT_EQ(p.messages[2].role, "tool");
  EXPECT_EQ(p.messages[2].tool_call_id, "call_1");
  EXPECT_EQ(p.messages[2].content, "18C");
  ASSERT_EQ(p.tools.size(), 1u);
  EXPECT_EQ(p.tool_choice.mode, ToolChoice::Mode::kRequired);
  EXPECT_EQ(p.response_format.type, ResponseFormat::Type::kJsonObject);
}

struct RejectCase {
  std::string body;
  std::string param;
  std::string message_part;
};

void PrintTo(const RejectCase& c, std::ostream* os) { *os << c.body; }

class ChatRejectTest : public ::testing::TestWithParam<RejectCase> {};

TEST_P(ChatRejectTest, NamesTheFieldAndSaysWhy) {
  auto result = ParseChatRequest(GetParam().body);
  ASSERT_FALSE(result.has_value()) << "accepted: " << GetParam().body;
  EXPECT_EQ(result.error().code, ErrorCode::kInvalidArgument);
  EXPECT_EQ(result.error().param, GetParam().param);
  EXPECT_THAT(result.error().message, HasSubstr(GetParam().message_part));
}

INSTANTIATE_TEST_SUITE_P(
    Messages, ChatRejectTest,
    ::testing::Values(
        RejectCase{R"({})", "messages", "non-empty array"},
        RejectCase{R"({"messages":[]})", "messages", "non-empty array"},
        RejectCase{R"({"messages":"hi"})", "messages", "got a string"},
        RejectCase{R"({"messages":[5]})", "messages[0]", "must be an object"},
        RejectCase{R"({"messages":[{"content":"x"}]})", "messages[0].role", "must be one of"},
        RejectCase{
            R"({"messages":[{"role":"user","content":"a"},{"role":"wizard","content":"b"}]})",
            "messages[1].role", "got 'wizard'"},
        RejectCase{R"({"messages":[{"role":"tool","content":"42"}]})", "messages[0].tool_call_id",
                   "required on tool messages"},
        RejectCase{R"({"messages":[{"role":"function","content":"42"}]})", "messages[0].role",
                   "deprecated"},
        RejectCase{R"({"messages":[{"role":"user","content":"a","tool_calls":[{"id":"c"}]}]})",
                   "messages[0].tool_calls", "only allowed on assistant messages"},
        RejectCase{R"({"messages":[{"role":"user"}]})", "messages[0].content",
                   "string or an array of text parts"},
        RejectCase{R"({"messages":[{"role":"user","content":5}]})", "messages[0].content", "got 5"},
        RejectCase{R"({"messages":[{"role":"user","content":[{"type":"image_url",
                   "image_url":{"url":"http://x"}}]}]})",
                   "messages[0].content[0].type", "got 'image_url'"},
        RejectCase{R"({"messages":[{"role":"user","content":[{"type":"text"}]}]})",
                   "messages[0].content[0].text", "must be a string"},
        RejectCase{R"({"messages":[{"role":"user","content":["hi"]}]})", "messages[0].content[0]",
                   "must be an object"},
        RejectCase{
            R"({"messages":[{"role":"assistant","content":null,"tool_calls":[{"id":"c"}]}]})",
            "messages[0].tool_calls[0]", "must be {\"id\""},
        RejectCase{R"({"messages":[{"role":"assistant","tool_calls":[{"id":"c","type":"function",
                   "function":{"name":"f","arguments":"[1,2]"}}]}]})",
                   "messages[0].tool_calls[0].function.arguments", "JSON text of an object"},
        RejectCase{R"({"messages":[{"role":"assistant","tool_calls":[{"id":"c","type":"function",
                   "function":{"name":"f","arguments":"{\"a\":"}}]}]})",
                   "messages[0].tool_calls[0].function.arguments", "JSON text of an object"},
        RejectCase{R"({"messages":[{"role":"assistant","content":null}]})", "messages[0].content",
                   "string or an array of text parts"}));

INSTANTIATE_TEST_SUITE_P(
    Fields, ChatRejectTest,
    ::testing::Values(
        RejectCase{WithMessage(R"("tools":[{"type":"function"}])"), "tools[0].function",
                   "must be an object"},
        RejectCase{WithMessage(R"("tool_choice":"required")"), "tool_choice", "requires tools"},
        RejectCase{WithMessage(R"("functions":[{"name":"f"}])"), "functions", "send tools"},
        RejectCase{WithMessage(R"("function_call":"auto")"), "function_call", "send tool_choice"},
        RejectCase{WithMessage(R"("logprobs":1)"), "logprobs", "true or false"},
        RejectCase{WithMessage(R"("logprobs":"yes")"), "logprobs", "true or false"},
        RejectCase{WithMessage(R"("top_logprobs":5)"), "top_logprobs", "needs logprobs: true"},
        RejectCase{WithMessage(R"("logprobs":false,"top_logprobs":0)"), "top_logprobs",
                   "needs logprobs: true"},
        RejectCase{WithMessage(R"("logprobs":true,"top_logprobs":21)"), "top_logprobs",
                   "between 0 and 20, got 21"},
        RejectCase{WithMessage(R"("logprobs":true,"top_logprobs":-1)"), "top_logprobs",
                   "between 0 and 20"},
        RejectCase{WithMessage(R"("logprobs":true,"top_logprobs":2.5)"), "top_logprobs",
                   "integer between 0 and 20"},
        RejectCase{WithMessage(R"("logprobs":true,"top_logprobs":"3")"), "top_logprobs",
                   "integer between 0 and 20"},
        RejectCase{WithMessage(R"("max_completion_tokens":0)"), "max_completion_tokens",
                   "between 1 and 1000000"},
        RejectCase{WithMessage(R"("max_completion_tokens":5,"max_tokens":-1)"), "max_tokens",
                   "between 1 and 1000000"},
        RejectCase{WithMessage(R"("n":9)"), "n", "between 1 and 8, got 9"},
        RejectCase{WithMessage(R"("n":true)"), "n", "between 1 and 8"},
        RejectCase{WithMessage(R"("temperature":9)"), "temperature", "between 0 and 2"},
        RejectCase{WithMessage(R"("stop":[1])"), "stop", "non-empty string"}));

}  // namespace
}  // namespace ember::api
