#include "engine/gguf/gguf_header.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cstdint>
#include <filesystem>
#include <string>
#include <string_view>

#ifndef EMBER_TEST_MODEL
#define EMBER_TEST_MODEL ""
#endif

namespace ember::engine {
namespace {

using ::testing::HasSubstr;

// Builds GGUF bytes field by field, little-endian.
class Bytes {
 public:
  Bytes& U8(std::uint8_t v) { return Le(v, 1); }
  Bytes& U16(std::uint16_t v) { return Le(v, 2); }
  Bytes& U32(std::uint32_t v) { return Le(v, 4); }
  Bytes& U64(std::uint64_t v) { return Le(v, 8); }
  Bytes& I64(std::int64_t v) { return Le(static_cast<std::uint64_t>(v), 8); }
  Bytes& Str(std::string_view s) {
    U64(s.size());
    out_.append(s);
    return *this;
  }
  Bytes& Raw(std::string_view s) {
    out_.append(s);
    return *this;
  }
  Bytes& Header(std::uint64_t n_tensors, std::uint64_t n_kv, std::uint32_t version = 3) {
    return Raw("GGUF").U32(version).U64(n_tensors).U64(n_kv);
  }
  // A key and its scalar type.
  Bytes& Key(std::string_view key, GgufType type) {
    return Str(key).U32(static_cast<std::uint32_t>(type));
  }
  Bytes& ArrayKey(std::string_view key, GgufType element, std::uint64_t count) {
    return Key(key, GgufType::kArray).U32(static_cast<std::uint32_t>(element)).U64(count);
  }
  Bytes& Tensor(std::string_view name, std::initializer_list<std::int64_t> ne, std::uint32_t type,
                std::uint64_t offset) {
    Str(name).U32(static_cast<std::uint32_t>(ne.size()));
    for (std::int64_t n : ne) I64(n);
    return U32(type).U64(offset);
  }
  const std::string& str() const { return out_; }

 private:
  Bytes& Le(std::uint64_t v, int n) {
    for (int i = 0; i < n; ++i) out_ += static_cast<char>((v >> (8 * i)) & 0xFF);
    return *this;
  }
  std::string out_;
};

// A small header with every scalar type, an integer array, a string array and two tensors.
std::string SmallHeader() {
  Bytes b;
  b.Header(2, 12)
      .Key("general.architecture", GgufType::kString)
      .Str("llama")
      .Key("llama.block_count", GgufType::kUint32)
      .U32(2)
      .ArrayKey("llama.attention.head_count_kv", GgufType::kInt32, 2)
      .U32(4)
      .U32(8)
      .ArrayKey("tokenizer.ggml.tokens", GgufType::kString, 3)
      .Str("a")
      .Str("")
      .Str("bcd")
      .ArrayKey("tokenizer.ggml.scores", GgufType::kFloat32, 2)
      .U32(0)
      .U32(0x3f800000)
      .Key("f32", GgufType::kFloat32)
      .U32(0x3fc00000)
      .Key("f64", GgufType::kFloat64)
      .U64(0xc004000000000000ULL)
      .Key("flag", GgufType::kBool)
      .U8(1)
      .Key("i8", GgufType::kInt8)
      .U8(0xfe)
      .Key("u16", GgufType::kUint16)
      .U16(65535)
      .Key("u64", GgufType::kUint64)
      .U64(~std::uint64_t{0})
      .ArrayKey("i16s", GgufType::kInt16, 2)
      .U16(0xfffd)
      .U16(300)
      .Tensor("token_embd.weight", {64, 3}, 0, 0)
      .Tensor("output_norm.weight", {64}, 1, 768);
  return b.str();
}

Error ParseError(const std::string& bytes) {
  auto h = ParseGgufHeader(bytes);
  EXPECT_FALSE(h.has_value());
  return h ? Error{} : h.error();
}

TEST(GgufHeader, ParsesEveryTypeOfASmallHeader) {
  const std::string bytes = SmallHeader();
  auto h = ParseGgufHeader(bytes);
  ASSERT_TRUE(h.has_value()) << h.error().message;
  EXPECT_EQ(h->version, 3u);
  ASSERT_EQ(h->kvs.size(), 12u);
  EXPECT_EQ(h->kvs[0].first, "general.architecture");
  EXPECT_EQ(h->Find("general.architecture")->string_value, "llama");
  EXPECT_EQ(h->Find("llama.block_count")->uint_value, 2u);
  const GgufValue* kv = h->Find("llama.attention.head_count_kv");
  EXPECT_EQ(kv->type, GgufType::kArray);
  EXPECT_EQ(kv->element_type, GgufType::kInt32);
  EXPECT_THAT(kv->int_elements, ::testing::ElementsAre(4, 8));
  const GgufValue* tokens = h->Find("tokenizer.ggml.tokens");
  EXPECT_EQ(tokens->element_type, GgufType::kString);
  EXPECT_EQ(tokens->count, 3u);
  EXPECT_EQ(h->Find("tokenizer.ggml.scores")->count, 2u);
  EXPECT_EQ(h->Find("f32")->float_value, 1.5);
  EXPECT_EQ(h->Find("f64")->float_value, -2.5);
  EXPECT_EQ(h->Find("flag")->uint_value, 1u);
  EXPECT_EQ(h->Find("i8")->int_value, -2);
  EXPECT_EQ(h->Find("u16")->uint_value, 65535u);
  EXPECT_EQ(h->Find("u64")->uint_value, ~std::uint64_t{0});
  EXPECT_THAT(h->Find("i16s")->int_elements, ::testing::ElementsAre(-3, 300));
  EXPECT_TRUE(h->Find("i16s")->uint_elements.empty());
  EXPECT_EQ(h->Find("missing"), nullptr);
  EXPECT_EQ(h->alignment, 32u);
  EXPECT_EQ(h->header_bytes, bytes.size());
  ASSERT_EQ(h->tensors.size(), 2u);
  EXPECT_EQ(h->tensors[0].name, "token_embd.weight");
  EXPECT_EQ(h->tensors[0].n_dims, 2u);
  EXPECT_EQ(h->tensors[0].ne[0], 64);
  EXPECT_EQ(h->tensors[0].ne[1], 3);
  EXPECT_EQ(h->tensors[0].ne[2], 1);
  EXPECT_EQ(h->tensors[1].type, 1u);
  EXPECT_EQ(h->tensors[1].offset, 768u);
}

TEST(GgufHeader, EveryTruncationIsAnErrorNamingItsOffset) {
  const std::string bytes = SmallHeader();
  for (std::size_t n = 0; n < bytes.size(); ++n) {
    auto h = ParseGgufHeader(std::string_view(bytes).substr(0, n));
    ASSERT_FALSE(h.has_value()) << "a header cut to " << n << " bytes parsed";
    EXPECT_EQ(h.error().code, ErrorCode::kInvalidArgument);
    EXPECT_THAT(h.error().message, ::testing::StartsWith("at byte ")) << n;
  }
  EXPECT_TRUE(ParseGgufHeader(bytes + "tensor data follows").has_value());
}

TEST(GgufHeader, ReadsTheRealModel) {
  const std::string path = EMBER_TEST_MODEL;
  if (!std::filesystem::exists(path)) GTEST_SKIP() << "no test model at " << path;
  auto h = ReadGgufHeader(path);
  ASSERT_TRUE(h.has_value()) << h.error().message;
  EXPECT_EQ(h->version, 3u);
  EXPECT_EQ(h->kvs.size(), 19u);
  EXPECT_EQ(h->Find("general.architecture")->string_value, "llama");
  EXPECT_EQ(h->Find("llama.block_count")->uint_value, 5u);
  EXPECT_EQ(h->Find("llama.attention.head_count_kv")->uint_value, 4u);
  EXPECT_FLOAT_EQ(h->Find("llama.attention.layer_norm_rms_epsilon")->float_value, 1e-5f);
  const GgufValue* tokens = h->Find("tokenizer.ggml.tokens");
  ASSERT_NE(tokens, nullptr);
  EXPECT_EQ(tokens->count, 512u);
  EXPECT_EQ(h->Find("tokenizer.ggml.token_type")->int_elements.size(), 512u);
  ASSERT_EQ(h->tensors.size(), 48u);
  EXPECT_EQ(h->tensors[2].name, "output.weight");
  EXPECT_EQ(h->tensors[2].ne[1], 512);
  EXPECT_EQ(h->tensors[2].offset, 131328u);
  EXPECT_EQ(h->header_bytes, 14152u);
}

TEST(GgufHeader, MissingFileIsNotFoundAndAnEmptyOneIsNoGguf) {
  auto missing = ReadGgufHeader("/nonexistent/model.gguf");
  ASSERT_FALSE(missing.has_value());
  EXPECT_EQ(missing.error().code, ErrorCode::kNotFound);
  auto dir = ReadGgufHeader("/");
  ASSERT_FALSE(dir.has_value());
  EXPECT_EQ(dir.error().code, ErrorCode::kInvalidArgument);
  auto empty = ReadGgufHeader("/dev/null");
  ASSERT_FALSE(empty.has_value());
  EXPECT_EQ(empty.error().code, ErrorCode::kInvalidArgument);
}

TEST(GgufHeader, RejectsBadMagicAndVersions) {
  EXPECT_THAT(ParseError(Bytes().Raw("GGML").U32(3).U64(0).U64(0).str()).message,
              HasSubstr("bad magic 'GGML'"));
  EXPECT_THAT(ParseError(Bytes().Header(0, 0, 0).str()).message, HasSubstr("version 0"));
  EXPECT_THAT(ParseError(Bytes().Header(0, 0, 1).str()).message,
              HasSubstr("GGUFv1 is no longer supported"));
  EXPECT_THAT(ParseError(Bytes().Header(0, 0, 0x03000000).str()).message, HasSubstr("big-endian"));
  EXPECT_THAT(ParseError(Bytes().Header(0, 0, 4).str()).message, HasSubstr("version 4"));
  EXPECT_TRUE(ParseGgufHeader(Bytes().Header(0, 0, 2).str()).has_value());
}

TEST(GgufHeader, RejectsCountsTheBytesCannotHold) {
  EXPECT_THAT(ParseError(Bytes().Header(0, ~std::uint64_t{0}).str()).message,
              HasSubstr("n_kv 18446744073709551615"));
  EXPECT_THAT(ParseError(Bytes().Header(1ull << 40, 0).str()).message,
              HasSubstr("n_tensors 1099511627776"));
  // 2^29 strings need at least 4 GiB; these few bytes cannot hold them.
  Error huge = ParseError(
      Bytes().Header(0, 1).ArrayKey("tokens", GgufType::kString, 1ull << 29).Str("a").str());
  EXPECT_THAT(huge.message, HasSubstr("claims 536870912 STRING elements"));
  EXPECT_THAT(huge.message, HasSubstr("at byte 46: truncated"));
  EXPECT_THAT(
      ParseError(Bytes().Header(0, 1).ArrayKey("x", GgufType::kUint8, 1ull << 31).str()).message,
      HasSubstr("more than the limit"));
  EXPECT_THAT(ParseError(Bytes().Header(0, 1).Key("s", GgufType::kString).U64(~0ull).str()).message,
              HasSubstr("more than the limit"));
  EXPECT_THAT(ParseError(Bytes().Header(0, 1).Key("s", GgufType::kString).U64(1000).str()).message,
              HasSubstr("1000 bytes long, only 0 remain"));
  EXPECT_THAT(ParseError(Bytes().Header(0, 1).U64(1ull << 20).Raw("k").U32(0).U8(0).str()).message,
              HasSubstr("key 0 is 1048576 bytes long"));
  EXPECT_THAT(ParseError(Bytes()
                             .Header(0, 1)
                             .ArrayKey("tokens", GgufType::kString, 2)
                             .Str("a")
                             .U64(1ull << 40)
                             .U64(0)
                             .str())
                  .message,
              HasSubstr("string 1 of key 'tokens' is 1099511627776 bytes long"));
}

TEST(GgufHeader, RejectsNestedArraysUnknownTypesAndDuplicateKeys) {
  EXPECT_THAT(
      ParseError(Bytes().Header(0, 1).ArrayKey("n", GgufType::kArray, 1).U64(0).str()).message,
      HasSubstr("array of arrays"));
  EXPECT_THAT(ParseError(Bytes().Header(0, 1).Str("k").U32(13).U64(0).str()).message,
              HasSubstr("key 'k' has unknown GGUF type 13"));
  EXPECT_THAT(ParseError(Bytes().Header(0, 1).Str("k").U32(9).U32(99).U64(0).U64(0).str()).message,
              HasSubstr("array of unknown GGUF type 99"));
  EXPECT_THAT(ParseError(Bytes()
                             .Header(0, 2)
                             .Key("k", GgufType::kUint8)
                             .U8(1)
                             .Key("k", GgufType::kUint8)
                             .U8(2)
                             .str())
                  .message,
              HasSubstr("at byte 38: duplicate key 'k'"));
  EXPECT_THAT(ParseError(Bytes().Header(0, 1).Key("", GgufType::kUint8).U8(1).U64(0).str()).message,
              HasSubstr("key 0 is empty"));
  EXPECT_THAT(
      ParseError(
          Bytes().Header(0, 1).Key("general.alignment", GgufType::kUint32).U32(48).U64(0).str())
          .message,
      HasSubstr("48 is not a power of two"));
}

TEST(GgufHeader, RejectsBadTensorInfos) {
  auto tensor = [](std::uint32_t n_dims, std::int64_t ne) {
    Bytes b;
    b.Header(1, 0).Str("t").U32(n_dims);
    for (std::uint32_t d = 0; d < std::min<std::uint32_t>(n_dims, 5); ++d) b.I64(ne);
    return b.U32(0).U64(0).Raw(std::string(32, '\0')).str();  // data follows
  };
  EXPECT_TRUE(ParseGgufHeader(tensor(4, 2)).has_value());
  EXPECT_THAT(ParseError(tensor(0, 1)).message, HasSubstr("'t' has 0 dimensions"));
  EXPECT_THAT(ParseError(tensor(5, 1)).message, HasSubstr("'t' has 5 dimensions"));
  EXPECT_THAT(ParseError(tensor(2, -1)).message,
              HasSubstr("at byte 37: tensor 't' has -1 elements in dimension 0"));
  EXPECT_THAT(ParseError(tensor(4, 1ll << 20)).message, HasSubstr("more elements than"));
  EXPECT_THAT(
      ParseError(Bytes().Header(2, 0).Tensor("t", {1}, 0, 0).Tensor("t", {1}, 0, 32).str()).message,
      HasSubstr("duplicate tensor name 't'"));
}

}  // namespace
}  // namespace ember::engine
