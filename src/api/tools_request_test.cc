// Tests of the agent fields' validation (tools_request.cc): what is read, and each mistake a
// 400 naming the field.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <string>

#include "api/openai.h"
#include "api/request_parse.h"

namespace ember::api {
namespace {

using ::testing::HasSubstr;

// Runs ParseTools then ParseResponseFormat over `body` (a JSON object).
Result<GenerationParams> Parse(std::string_view body) {
  auto request = ParseJsonObject(body);
  if (!request) return std::unexpected(request.error());
  GenerationParams params;
  if (auto tools = ParseTools(*request, params); !tools) return std::unexpected(tools.error());
  if (auto format = ParseResponseFormat(*request, params); !format) {
    return std::unexpected(format.error());
  }
  return params;
}

constexpr std::string_view kWeather = R"({"type":"function","function":{"name":"get_weather",
    "description":"Weather now","parameters":{"type":"object","properties":{"city":{"type":"string"}},
    "required":["city"]},"strict":true}})";

TEST(ParseToolsTest, ReadsFunctionsChoiceAndParallelism) {
  auto p = Parse(std::string(R"({"tools":[)") + std::string(kWeather) +
                 R"(,{"type":"function","function":{"name":"now"}}],
                 "tool_choice":{"type":"function","function":{"name":"now"}},
                 "parallel_tool_calls":false})");
  ASSERT_TRUE(p) << p.error().message;
  ASSERT_EQ(p->tools.size(), 2u);
  EXPECT_EQ(p->tools[0].name, "get_weather");
  EXPECT_EQ(p->tools[0].description, "Weather now");
  EXPECT_EQ(p->tools[0].parameters,
            R"({"properties":{"city":{"type":"string"}},"required":["city"],"type":"object"})");
  EXPECT_TRUE(p->tools[0].strict);
  EXPECT_EQ(p->tools[1].name, "now");
  EXPECT_EQ(p->tools[1].parameters, "{}");
  EXPECT_FALSE(p->tools[1].strict);
  EXPECT_EQ(p->tool_choice.mode, ToolChoice::Mode::kNamed);
  EXPECT_EQ(p->tool_choice.name, "now");
  EXPECT_FALSE(p->parallel_tool_calls);
}

TEST(ParseToolsTest, ChoiceStringsAndDefaults) {
  const std::string tools = std::string(R"("tools":[)") + std::string(kWeather) + "]";
  auto none = Parse("{" + tools + R"(,"tool_choice":"none"})");
  ASSERT_TRUE(none);
  EXPECT_EQ(none->tool_choice.mode, ToolChoice::Mode::kNone);
  auto required = Parse("{" + tools + R"(,"tool_choice":"required"})");
  ASSERT_TRUE(required);
  EXPECT_EQ(required->tool_choice.mode, ToolChoice::Mode::kRequired);
  auto by_default = Parse("{" + tools + "}");
  ASSERT_TRUE(by_default);
  EXPECT_EQ(by_default->tool_choice.mode, ToolChoice::Mode::kAuto);
  EXPECT_TRUE(by_default->parallel_tool_calls);
  auto nothing = Parse("{}");
  ASSERT_TRUE(nothing);
  EXPECT_TRUE(nothing->tools.empty());
  EXPECT_EQ(nothing->response_format.type, ResponseFormat::Type::kText);
}

TEST(ParseResponseFormatTest, ReadsEachType) {
  auto text = Parse(R"({"response_format":{"type":"text"}})");
  ASSERT_TRUE(text);
  EXPECT_EQ(text->response_format.type, ResponseFormat::Type::kText);
  auto object = Parse(R"({"response_format":{"type":"json_object"}})");
  ASSERT_TRUE(object);
  EXPECT_EQ(object->response_format.type, ResponseFormat::Type::kJsonObject);
  auto schema = Parse(R"({"response_format":{"type":"json_schema","json_schema":{
      "name":"person","strict":true,"schema":{"type":"object","properties":{"age":{"type":"integer"}}}}}})");
  ASSERT_TRUE(schema) << schema.error().message;
  EXPECT_EQ(schema->response_format.type, ResponseFormat::Type::kJsonSchema);
  EXPECT_EQ(schema->response_format.name, "person");
  EXPECT_TRUE(schema->response_format.strict);
  EXPECT_EQ(schema->response_format.schema,
            R"({"properties":{"age":{"type":"integer"}},"type":"object"})");
}

// A schema nested `levels` objects deep.
std::string NestedSchema(int levels) {
  std::string schema = R"({"type":"string"})";
  for (int i = 1; i < levels; ++i) schema = R"({"items":)" + schema + "}";
  return schema;
}

TEST(ParseResponseFormatTest, SchemaDepthAndSizeAreBounded) {
  // Each level is one object; the body's own nesting limit (64) is above these.
  const auto at_limit = Parse(R"({"response_format":{"type":"json_schema","json_schema":{"name":"d",
      "schema":)" + NestedSchema(kMaxSchemaDepth) +
                              "}}}");
  EXPECT_TRUE(at_limit) << at_limit.error().message;
  const auto too_deep = Parse(R"({"response_format":{"type":"json_schema","json_schema":{"name":"d",
      "schema":)" + NestedSchema(kMaxSchemaDepth + 1) +
                              "}}}");
  ASSERT_FALSE(too_deep);
  EXPECT_EQ(too_deep.error().param, "response_format.json_schema.schema");
  EXPECT_THAT(too_deep.error().message, HasSubstr("at most 32"));

  const std::string big(kMaxSchemaBytes, 'x');
  const auto too_big = Parse(R"({"tools":[{"type":"function","function":{"name":"f",
      "parameters":{"description":")" +
                             big + R"("}}}]})");
  ASSERT_FALSE(too_big);
  EXPECT_EQ(too_big.error().param, "tools[0].function.parameters");
  EXPECT_THAT(too_big.error().message, HasSubstr("at most 65536"));
}

struct RejectCase {
  std::string body;
  std::string param;
  std::string message_part;
};

void PrintTo(const RejectCase& c, std::ostream* os) { *os << c.body; }

class ToolsRejectTest : public ::testing::TestWithParam<RejectCase> {};

TEST_P(ToolsRejectTest, NamesTheFieldAndSaysWhy) {
  auto result = Parse(GetParam().body);
  ASSERT_FALSE(result.has_value()) << "accepted: " << GetParam().body;
  EXPECT_EQ(result.error().code, ErrorCode::kInvalidArgument);
  EXPECT_EQ(result.error().param, GetParam().param);
  EXPECT_THAT(result.error().message, HasSubstr(GetParam().message_part));
}

INSTANTIATE_TEST_SUITE_P(
    Tools, ToolsRejectTest,
    ::testing::Values(
        RejectCase{R"({"tools":{}})", "tools", "must be an array"},
        RejectCase{R"({"tools":[1]})", "tools[0]", "must be an object"},
        RejectCase{R"({"tools":[{"type":"retrieval"}]})", "tools[0].type", "\"function\""},
        RejectCase{R"({"tools":[{"type":"function","function":{}}]})", "tools[0].function.name",
                   "is required"},
        RejectCase{R"({"tools":[{"type":"function","function":{"name":"get weather"}}]})",
                   "tools[0].function.name", "letters, digits"},
        RejectCase{R"({"tools":[{"type":"function","function":{"name":")" + std::string(65, 'a') +
                       R"("}}]})",
                   "tools[0].function.name", "1 to 64"},
        RejectCase{R"({"tools":[{"type":"function","function":{"name":"f","description":5}}]})",
                   "tools[0].function.description", "must be a string"},
        RejectCase{R"({"tools":[{"type":"function","function":{"name":"f","parameters":[]}}]})",
                   "tools[0].function.parameters", "JSON Schema object"},
        RejectCase{R"({"tools":[{"type":"function","function":{"name":"f","strict":"yes"}}]})",
                   "tools[0].function.strict", "true or false"},
        RejectCase{R"({"tools":[{"type":"function","function":{"name":"f"}},
                   {"type":"function","function":{"name":"f"}}]})",
                   "tools[1].function.name", "two functions named 'f'"}));

INSTANTIATE_TEST_SUITE_P(
    Choice, ToolsRejectTest,
    ::testing::Values(RejectCase{R"({"tool_choice":"always"})", "tool_choice", "got 'always'"},
                      RejectCase{R"({"tool_choice":3})", "tool_choice", "string or an object"},
                      RejectCase{R"({"tool_choice":{"type":"function"}})", "tool_choice",
                                 "as an object"},
                      RejectCase{R"({"tool_choice":{"type":"function","function":{"name":"f"}}})",
                                 "tool_choice", "requires tools"},
                      RejectCase{R"({"tools":[{"type":"function","function":{"name":"f"}}],
                   "tool_choice":{"type":"function","function":{"name":"g"}}})",
                                 "tool_choice.function.name", "'g', which is not in tools"},
                      RejectCase{R"({"tool_choice":"required"})", "tool_choice", "requires tools"},
                      RejectCase{R"({"tools":[{"type":"function","function":{"name":"f"}}],
                   "parallel_tool_calls":"no"})",
                                 "parallel_tool_calls", "true or false"}));

INSTANTIATE_TEST_SUITE_P(
    Format, ToolsRejectTest,
    ::testing::Values(
        RejectCase{R"({"response_format":"json"})", "response_format", "must be {"},
        RejectCase{R"({"response_format":{"type":"yaml"}})", "response_format.type", "got 'yaml'"},
        RejectCase{R"({"response_format":{"type":"json_schema"}})", "response_format.json_schema",
                   "name and schema"},
        RejectCase{R"({"response_format":{"type":"json_schema","json_schema":{"schema":{}}}})",
                   "response_format.json_schema.name", "is required"},
        RejectCase{R"({"response_format":{"type":"json_schema","json_schema":{"name":"x",
                   "schema":true}}})",
                   "response_format.json_schema.schema", "JSON Schema object"},
        RejectCase{R"({"response_format":{"type":"json_schema","json_schema":{"name":"x",
                   "strict":1}}})",
                   "response_format.json_schema.strict", "true or false"}));

}  // namespace
}  // namespace ember::api
