// ParseEmbeddingRequest and EncodeEmbeddings: every input shape, each bad value, and the
// float and base64 encodings read back bit for bit.
#include "api/embeddings.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <bit>
#include <cmath>
#include <cstdint>
#include <limits>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace ember::api {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using Json = nlohmann::json;

EmbeddingParams ParseOk(std::string_view body) {
  auto result = ParseEmbeddingRequest(body);
  EXPECT_TRUE(result.has_value()) << body << " -> " << (result ? "" : result.error().message);
  return result ? *result : EmbeddingParams{};
}

Error ParseErr(std::string_view body) {
  auto result = ParseEmbeddingRequest(body);
  EXPECT_FALSE(result.has_value()) << "accepted: " << body;
  if (result) return Error{};
  EXPECT_EQ(result.error().code, ErrorCode::kInvalidArgument) << body;
  return result.error();
}

std::string Text(const EmbeddingInput& input) {
  const auto* text = std::get_if<std::string>(&input);
  return text != nullptr ? *text : "<tokens>";
}
std::vector<engine::Token> Tokens(const EmbeddingInput& input) {
  const auto* tokens = std::get_if<std::vector<engine::Token>>(&input);
  return tokens != nullptr ? *tokens : std::vector<engine::Token>{-1};
}

TEST(ParseEmbeddingTest, StringInput) {
  EmbeddingParams p = ParseOk(R"({"model":"m","input":"hello world"})");
  EXPECT_EQ(p.model, "m");
  ASSERT_EQ(p.inputs.size(), 1u);
  EXPECT_EQ(Text(p.inputs[0]), "hello world");
  EXPECT_EQ(p.format, EmbeddingFormat::kFloat);
  EXPECT_FALSE(p.dimensions.has_value());
}

TEST(ParseEmbeddingTest, ArrayOfStrings) {
  EmbeddingParams p = ParseOk(R"({"input":["a","bc","d e"]})");
  ASSERT_EQ(p.inputs.size(), 3u);
  EXPECT_EQ(Text(p.inputs[0]), "a");
  EXPECT_EQ(Text(p.inputs[1]), "bc");
  EXPECT_EQ(Text(p.inputs[2]), "d e");
}

TEST(ParseEmbeddingTest, ArrayOfTokenIdsIsOneInput) {
  EmbeddingParams p = ParseOk(R"({"input":[1,2,2147483647]})");
  ASSERT_EQ(p.inputs.size(), 1u);
  EXPECT_THAT(Tokens(p.inputs[0]), ElementsAre(1, 2, 2147483647));
}

TEST(ParseEmbeddingTest, ArrayOfTokenArrays) {
  EmbeddingParams p = ParseOk(R"({"input":[[5],[6,7]]})");
  ASSERT_EQ(p.inputs.size(), 2u);
  EXPECT_THAT(Tokens(p.inputs[0]), ElementsAre(5));
  EXPECT_THAT(Tokens(p.inputs[1]), ElementsAre(6, 7));
}

TEST(ParseEmbeddingTest, OptionsAreRead) {
  EmbeddingParams p =
      ParseOk(R"({"input":"x","encoding_format":"base64","dimensions":64,"user":"u-1"})");
  EXPECT_EQ(p.format, EmbeddingFormat::kBase64);
  EXPECT_EQ(p.dimensions, 64);
  EXPECT_EQ(ParseOk(R"({"input":"x","encoding_format":"float"})").format, EmbeddingFormat::kFloat);
  // null means the default, as in the other endpoints.
  EXPECT_EQ(ParseOk(R"({"input":"x","encoding_format":null,"dimensions":null})").format,
            EmbeddingFormat::kFloat);
}

TEST(ParseEmbeddingTest, ExactlyTheInputLimitIsAccepted) {
  Json body = {{"input", Json::array()}};
  for (std::size_t i = 0; i < kMaxEmbeddingInputs; ++i) body["input"].push_back("x");
  EXPECT_EQ(ParseOk(body.dump()).inputs.size(), kMaxEmbeddingInputs);
  body["input"].push_back("x");
  const Error e = ParseErr(body.dump());
  EXPECT_EQ(e.param, "input");
  EXPECT_THAT(e.message, HasSubstr("at most 2048"));
}

TEST(ParseEmbeddingTest, EachBadValueNamesItsParam) {
  const struct {
    const char* body;
    const char* param;
    const char* says;
  } cases[] = {
      {R"({})", "input", "input is required"},
      {R"({"input":null})", "input", "input is required"},
      {R"({"input":""})", "input", "empty string"},
      {R"({"input":[]})", "input", "empty array"},
      {R"({"input":["a",""]})", "input", "input[1] must not be an empty string"},
      {R"({"input":[[1],[]]})", "input", "input[1] must not be an empty array"},
      {R"({"input":42})", "input", "got"},
      {R"({"input":{"text":"a"}})", "input", "got"},
      {R"({"input":["a",1]})", "input", "mixes strings"},
      {R"({"input":[1,"a"]})", "input", "input[1]"},
      {R"({"input":[1,-2]})", "input", "integers >= 0"},
      {R"({"input":[1.5]})", "input", "integers >= 0"},
      {R"({"input":[2147483648]})", "input", "integers >= 0"},
      {R"({"input":[[1],[2,"x"]]})", "input", "input[1][1]"},
      {R"({"input":[null]})", "input", "input[0]"},
      {R"({"input":"a","model":7})", "model", "model must be a string"},
      {R"({"input":"a","encoding_format":"binary"})", "encoding_format", "\"binary\""},
      {R"({"input":"a","encoding_format":1})", "encoding_format", "float"},
      {R"({"input":"a","dimensions":0})", "dimensions", ""},
      {R"({"input":"a","dimensions":"8"})", "dimensions", ""},
      {R"({"input":"a","dimensions":1.5})", "dimensions", ""},
      {R"({"input":"a","user":5})", "user", "user must be a string"},
      {R"({"input":"a","temperature":0})", "temperature", "unrecognized request argument"},
      {R"({"input":"a","n":1})", "n", "unrecognized"},
  };
  for (const auto& c : cases) {
    const Error e = ParseErr(c.body);
    EXPECT_EQ(e.param, c.param) << c.body;
    EXPECT_THAT(e.message, HasSubstr(c.says)) << c.body;
  }
}

TEST(ParseEmbeddingTest, MalformedBodiesAreInvalidArgument) {
  ParseErr("");
  ParseErr("[\"input\"]");
  ParseErr(R"({"input":"a")");
}

// The encoder's output parsed as JSON, each float read back as float32.
std::vector<float> FloatsOf(const Json& embedding) {
  std::vector<float> out;
  for (const Json& x : embedding) out.push_back(static_cast<float>(x.get<double>()));
  return out;
}

std::vector<float> DecodeBase64Floats(const std::string& text) {
  auto value = [](char c) -> int {
    if (c >= 'A' && c <= 'Z') return c - 'A';
    if (c >= 'a' && c <= 'z') return c - 'a' + 26;
    if (c >= '0' && c <= '9') return c - '0' + 52;
    if (c == '+') return 62;
    if (c == '/') return 63;
    return -1;
  };
  std::vector<unsigned char> bytes;
  std::uint32_t acc = 0;
  int bits = 0;
  for (char c : text) {
    if (c == '=') break;
    const int v = value(c);
    EXPECT_GE(v, 0) << "not base64: " << c;
    acc = acc << 6 | static_cast<std::uint32_t>(v);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      bytes.push_back(static_cast<unsigned char>((acc >> bits) & 0xff));
    }
  }
  EXPECT_EQ(bytes.size() % 4, 0u);
  std::vector<float> out;
  for (std::size_t i = 0; i + 4 <= bytes.size(); i += 4) {
    const std::uint32_t u = bytes[i] | bytes[i + 1] << 8 | bytes[i + 2] << 16 |
                            static_cast<std::uint32_t>(bytes[i + 3]) << 24;  // little-endian
    out.push_back(std::bit_cast<float>(u));
  }
  return out;
}

std::vector<std::uint32_t> Bits(const std::vector<float>& v) {
  std::vector<std::uint32_t> out;
  for (float x : v) out.push_back(std::bit_cast<std::uint32_t>(x));
  return out;
}

const std::vector<std::vector<float>> kVectors = {
    {0.1f, -0.2f, 1.0f / 3.0f, 0.0f, -0.0f, 1e-38f, std::numeric_limits<float>::denorm_min(),
     std::numeric_limits<float>::max(), -std::numeric_limits<float>::lowest(), 0.70710677f},
    {1.0f},
    {-0.5f, 0.25f, 123456.789f},
};

TEST(EncodeEmbeddingsTest, FloatBodyHasOpenAiShapeAndRoundTripsFloat32) {
  const std::string body = EncodeEmbeddings("m\"1", kVectors, EmbeddingFormat::kFloat, 17);
  const Json j = Json::parse(body);
  EXPECT_EQ(j["object"], "list");
  EXPECT_EQ(j["model"], "m\"1");
  EXPECT_EQ(j["usage"], Json({{"prompt_tokens", 17}, {"total_tokens", 17}}));
  ASSERT_EQ(j["data"].size(), kVectors.size());
  for (std::size_t i = 0; i < kVectors.size(); ++i) {
    EXPECT_EQ(j["data"][i]["object"], "embedding");
    EXPECT_EQ(j["data"][i]["index"], i);
    EXPECT_EQ(Bits(FloatsOf(j["data"][i]["embedding"])), Bits(kVectors[i])) << i;
  }
  // Shortest form: 0.1f is written as 0.1, not 0.100000001490116.
  EXPECT_THAT(body, HasSubstr("[0.1,-0.2,"));
}

TEST(EncodeEmbeddingsTest, Base64IsLittleEndianFloat32BitForBit) {
  const std::string body = EncodeEmbeddings("m", kVectors, EmbeddingFormat::kBase64, 3);
  const Json j = Json::parse(body);
  ASSERT_EQ(j["data"].size(), kVectors.size());
  for (std::size_t i = 0; i < kVectors.size(); ++i) {
    ASSERT_TRUE(j["data"][i]["embedding"].is_string());
    EXPECT_EQ(Bits(DecodeBase64Floats(j["data"][i]["embedding"].get<std::string>())),
              Bits(kVectors[i]))
        << i;
  }
  // 1.0f is 00 00 80 3F in memory order: base64 "AACAPw==".
  EXPECT_EQ(Base64Floats(std::vector<float>{1.0f}), "AACAPw==");
  // Two floats (8 bytes) leave one padding character; three (12 bytes) none.
  EXPECT_EQ(Base64Floats(std::vector<float>{1.0f, 1.0f}), "AACAPwAAgD8=");
  EXPECT_EQ(Base64Floats(std::vector<float>{1.0f, 1.0f, 1.0f}), "AACAPwAAgD8AAIA/");
}

}  // namespace
}  // namespace ember::api
