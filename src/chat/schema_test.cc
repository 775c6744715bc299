// JSON schema -> GBNF: a corpus that compiles to grammars with the expected rules, and the
// keywords the converter would skip, each refused by name.
#include <gtest/gtest.h>

#include <string>

#include "chat/chat.h"

namespace ember::chat {
namespace {

std::string Grammar(const std::string& schema) {
  auto g = JsonSchemaToGrammar(schema);
  EXPECT_TRUE(g.has_value()) << schema << ": " << (g ? "" : g.error().message);
  return g ? *g : "";
}

std::string Refusal(const std::string& schema) {
  auto g = JsonSchemaToGrammar(schema);
  EXPECT_FALSE(g.has_value()) << schema << " compiled to\n" << (g ? *g : "");
  if (g) return "";
  EXPECT_EQ(g.error().code, ErrorCode::kInvalidArgument);
  return g.error().message;
}

TEST(JsonSchemaToGrammar, ObjectWithRequiredAndOptionalProperties) {
  std::string g = Grammar(R"({"type":"object","properties":{"city":{"type":"string"},
      "days":{"type":"integer","minimum":1,"maximum":14}},"required":["city"]})");
  EXPECT_NE(g.find("root ::="), std::string::npos);
  EXPECT_NE(g.find(R"("\"city\"")"), std::string::npos) << g;
  EXPECT_NE(g.find(R"("\"days\"")"), std::string::npos) << g;
  // integer bounds 1..14 become digit rules, not the unbounded integer
  EXPECT_NE(g.find("days-kv"), std::string::npos) << g;
  EXPECT_EQ(g.find("integer ::="), std::string::npos) << g;
}

TEST(JsonSchemaToGrammar, ArraysEnumsRefsAnyOfStringsNumbers) {
  std::string g = Grammar(R"({"type":"object","properties":{
      "tags":{"type":"array","items":{"type":"string","minLength":1,"maxLength":8},
              "minItems":1,"maxItems":3},
      "unit":{"enum":["celsius","fahrenheit"]},
      "point":{"$ref":"#/$defs/point"},
      "id":{"anyOf":[{"type":"integer"},{"type":"string","format":"uuid"}]},
      "score":{"type":"number"},
      "when":{"type":"string","format":"date-time"},
      "code":{"type":"string","pattern":"^[A-Z]{3}$"},
      "pair":{"type":"array","prefixItems":[{"type":"boolean"},{"type":"null"}]}},
    "required":["tags","unit","point","id","score","when","code","pair"],
    "additionalProperties":false,
    "$defs":{"point":{"type":"object","properties":{"x":{"type":"number"},
                                                     "y":{"type":"number"}},
                      "required":["x","y"]}}})");
  EXPECT_NE(g.find(R"("\"celsius\"")"), std::string::npos) << g;
  EXPECT_NE(g.find(R"("\"fahrenheit\"")"), std::string::npos) << g;
  EXPECT_NE(g.find("point"), std::string::npos) << g;
  EXPECT_NE(g.find("uuid"), std::string::npos) << g;
  EXPECT_NE(g.find("number ::="), std::string::npos) << g;
  EXPECT_NE(g.find("date-time"), std::string::npos) << g;
  EXPECT_NE(g.find("code-1 ::= [A-Z]"), std::string::npos) << g;
  EXPECT_NE(g.find("code-1{3,3}"), std::string::npos) << g;
  EXPECT_NE(g.find(R"(tags ::= "[" space tags-item ("," space tags-item){0,2} space "]")"),
            std::string::npos)
      << g;
  EXPECT_NE(g.find(R"(tags-item ::= "\"" char{1,8} "\"")"), std::string::npos) << g;
  EXPECT_NE(g.find(R"(pair ::= "[" space boolean "," space null space "]")"), std::string::npos)
      << g;
}

TEST(JsonSchemaToGrammar, RecursiveRefCompiles) {
  std::string g = Grammar(R"({"$ref":"#/$defs/node","$defs":{"node":{"type":"object",
      "properties":{"value":{"type":"integer"},"children":{"type":"array",
      "items":{"$ref":"#/$defs/node"}}},"required":["value"]}}})");
  EXPECT_NE(g.find("root ::="), std::string::npos) << g;
}

TEST(JsonSchemaToGrammar, AnnotationsAreAccepted) {
  Grammar(R"({"type":"object","title":"T","description":"d","$schema":"x",
      "properties":{"a":{"type":"string","default":"x","examples":["y"]}}})");
}

struct RefusedCase {
  const char* keyword;
  const char* schema;
};

class RefusedKeyword : public testing::TestWithParam<RefusedCase> {};

TEST_P(RefusedKeyword, NamesTheKeyword) {
  std::string message = Refusal(GetParam().schema);
  EXPECT_NE(message.find(std::string("'") + GetParam().keyword + "'"), std::string::npos)
      << message;
}

INSTANTIATE_TEST_SUITE_P(
    Converter, RefusedKeyword,
    testing::Values(
        RefusedCase{"not", R"({"type":"object","properties":{"a":{"not":{"type":"null"}}}})"},
        RefusedCase{"if", R"({"type":"object","if":{"required":["a"]},"then":{}})"},
        RefusedCase{"dependentSchemas", R"({"type":"object","dependentSchemas":{"a":{}}})"},
        RefusedCase{"uniqueItems", R"({"type":"array","items":{"type":"integer"},
                                      "uniqueItems":true})"},
        RefusedCase{"contains", R"({"type":"array","contains":{"type":"integer"}})"},
        RefusedCase{"patternProperties", R"({"type":"object","patternProperties":{"^a":{}}})"},
        RefusedCase{"multipleOf", R"({"type":"integer","multipleOf":5})"},
        RefusedCase{"allOf", R"({"allOf":[{"type":"object"},{"required":["a"]}]})"},
        RefusedCase{"format", R"({"type":"string","format":"email"})"},
        RefusedCase{"minimum", R"({"type":"number","minimum":0})"},
        RefusedCase{"pattern", R"({"type":"string","pattern":"abc"})"},
        RefusedCase{"required", R"({"type":"object","properties":{"a":{}},"required":["b"]})"},
        RefusedCase{"type", R"({"$ref":"#/$defs/a","type":"object","$defs":{"a":{}}})"},
        RefusedCase{"maxLength", R"({"type":"string","pattern":"^a+$","maxLength":3})"},
        RefusedCase{"minItems", R"({"type":"array","prefixItems":[{}],"minItems":2})"},
        RefusedCase{"propertyNames", R"({"type":"object","properties":{"a":{"type":"object",
                                        "propertyNames":{"maxLength":2}}}})"}));

TEST(JsonSchemaToGrammar, RefusalSaysWhere) {
  std::string message =
      Refusal(R"({"type":"object","properties":{"email":{"type":"string","format":"email"}}})");
  EXPECT_NE(message.find("#/properties/email"), std::string::npos) << message;
}

TEST(JsonSchemaToGrammar, LimitsAndMalformedInput) {
  std::string deep = R"({"type":"array","items":)";
  std::string nested;
  for (int i = 0; i < kMaxSchemaDepth + 1; ++i) nested += deep;
  nested += R"({"type":"integer"})";
  for (int i = 0; i < kMaxSchemaDepth + 1; ++i) nested += "}";
  EXPECT_NE(Refusal(nested).find("nests deeper"), std::string::npos);

  std::string big =
      R"({"type":"object","description":")" + std::string(kMaxSchemaBytes, 'x') + R"("})";
  EXPECT_NE(Refusal(big).find("larger than"), std::string::npos);

  EXPECT_NE(Refusal("{not json").find("not valid JSON"), std::string::npos);
  EXPECT_NE(Refusal("[1,2]").find("must be an object"), std::string::npos);
  // the converter's own errors come back as values too
  EXPECT_FALSE(Refusal(R"({"$ref":"https://example.com/x.json"})").empty());
}

}  // namespace
}  // namespace ember::chat
