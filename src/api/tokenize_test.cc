#include "api/tokenize.h"

#include <gtest/gtest.h>

#include <vector>

namespace ember::api {
namespace {

TEST(ParseTokenizeRequest, ContentWithDefaults) {
  auto p = ParseTokenizeRequest(R"({"content": "Once upon a time"})");
  ASSERT_TRUE(p.has_value()) << p.error().message;
  EXPECT_EQ(p->content, "Once upon a time");
  EXPECT_TRUE(p->add_special);
  EXPECT_EQ(p->model, "");  // the server's default model
}

TEST(ParseTokenizeRequest, ModelAndAddSpecial) {
  auto p = ParseTokenizeRequest(R"({"content": "x", "add_special": false, "model": "b"})");
  ASSERT_TRUE(p.has_value()) << p.error().message;
  EXPECT_FALSE(p->add_special);
  EXPECT_EQ(p->model, "b");
  EXPECT_EQ(ParseTokenizeRequest(R"({"content": "x", "model": null})")->model, "");
}

TEST(ParseTokenizeRequest, RejectsWrongTypesNamingTheField) {
  const std::vector<std::pair<const char*, const char*>> bad = {
      {R"({})", "content"},
      {R"({"content": 3})", "content"},
      {R"({"content": "x", "add_special": "yes"})", "add_special"},
      {R"({"content": "x", "model": 7})", "model"},
      {R"({"content": "x", "model": ""})", "model"},
  };
  for (const auto& [body, param] : bad) {
    auto p = ParseTokenizeRequest(body);
    ASSERT_FALSE(p.has_value()) << body;
    EXPECT_EQ(p.error().code, ErrorCode::kInvalidArgument) << body;
    EXPECT_EQ(p.error().param, param) << body;
  }
  EXPECT_FALSE(ParseTokenizeRequest("{not json").has_value());
}

}  // namespace
}  // namespace ember::api
