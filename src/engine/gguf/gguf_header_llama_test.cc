// ember's GGUF header reader against ggml's own (gguf_init_from_file with no_alloc): for the test
// model and every vocabulary llama.cpp ships, both must see the same version, keys, types,
// values and tensor infos; and the memory estimate built on it (engine/llama) must size the
// weights as ggml does and refuse the tensor infos ggml refuses.
#include <ggml.h>
#include <gguf.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <bit>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "engine/gguf/gguf_header.h"
#include "engine/llama/llama_memory.h"

#ifndef EMBER_LLAMA_SOURCE
#define EMBER_LLAMA_SOURCE ""
#endif
#ifndef EMBER_TEST_MODEL
#define EMBER_TEST_MODEL ""
#endif

namespace ember::engine {
namespace {

template <typename T>
T At(const void* data, std::size_t i) {
  T v;
  std::memcpy(&v, static_cast<const char*>(data) + i * sizeof(T), sizeof(T));
  return v;
}

// ggml's integer element or scalar `i` of type `t` at `data`, as (unsigned, signed) in the way
// GgufValue holds it.
void ExpectInteger(GgufType t, const void* data, std::size_t i, std::uint64_t u, std::int64_t s,
                   const std::string& where) {
  switch (t) {
    case GgufType::kUint8:
      EXPECT_EQ(u, At<std::uint8_t>(data, i)) << where;
      break;
    case GgufType::kUint16:
      EXPECT_EQ(u, At<std::uint16_t>(data, i)) << where;
      break;
    case GgufType::kUint32:
      EXPECT_EQ(u, At<std::uint32_t>(data, i)) << where;
      break;
    case GgufType::kUint64:
      EXPECT_EQ(u, At<std::uint64_t>(data, i)) << where;
      break;
    case GgufType::kInt8:
      EXPECT_EQ(s, At<std::int8_t>(data, i)) << where;
      break;
    case GgufType::kInt16:
      EXPECT_EQ(s, At<std::int16_t>(data, i)) << where;
      break;
    case GgufType::kInt32:
      EXPECT_EQ(s, At<std::int32_t>(data, i)) << where;
      break;
    case GgufType::kInt64:
      EXPECT_EQ(s, At<std::int64_t>(data, i)) << where;
      break;
    default:
      ADD_FAILURE() << where << ": not an integer type";
      break;
  }
}

// The weight bytes the estimate had when it read the file with ggml.
std::uint64_t GgmlWeightBytes(const gguf_context* g, const std::string& path) {
  std::uint64_t total = 0;
  for (std::int64_t t = 0; t < gguf_get_n_tensors(g); ++t) total += gguf_get_tensor_size(g, t);
  const std::uint64_t file_size = std::filesystem::file_size(path);
  return total == 0 || total > file_size ? file_size : total;
}

void ExpectSameAsGgml(const std::string& path) {
  SCOPED_TRACE(path);
  ggml_context* meta = nullptr;
  gguf_context* g = gguf_init_from_file(path.c_str(), {.no_alloc = true, .ctx = &meta});
  ASSERT_NE(g, nullptr);
  auto ours = ReadGgufHeader(path);
  ASSERT_TRUE(ours.has_value()) << ours.error().message;
  const GgufHeader& h = *ours;

  EXPECT_EQ(h.version, gguf_get_version(g));
  EXPECT_EQ(h.alignment, gguf_get_alignment(g));
  ASSERT_EQ(static_cast<std::int64_t>(h.kvs.size()), gguf_get_n_kv(g));
  for (std::size_t k = 0; k < h.kvs.size(); ++k) {
    const auto& [key, v] = h.kvs[k];
    const auto id = static_cast<std::int64_t>(k);
    ASSERT_EQ(key, gguf_get_key(g, id));
    ASSERT_EQ(static_cast<int>(v.type), static_cast<int>(gguf_get_kv_type(g, id))) << key;
    if (v.type == GgufType::kArray) {
      ASSERT_EQ(static_cast<int>(v.element_type), static_cast<int>(gguf_get_arr_type(g, id)))
          << key;
      ASSERT_EQ(v.count, gguf_get_arr_n(g, id)) << key;
      const bool integer = IsGgufSignedInt(v.element_type) || IsGgufUnsignedInt(v.element_type);
      const std::size_t kept = v.uint_elements.size() + v.int_elements.size();
      if (!integer || kept == 0) {
        EXPECT_EQ(kept, 0u) << key;
        EXPECT_TRUE(!integer || v.count > 65536) << key << ": integer elements not kept";
        continue;
      }
      ASSERT_EQ(kept, v.count) << key;
      const void* data = gguf_get_arr_data(g, id);
      for (std::size_t i = 0; i < v.count; ++i) {
        ExpectInteger(v.element_type, data, i, v.uint_elements.empty() ? 0 : v.uint_elements[i],
                      v.int_elements.empty() ? 0 : v.int_elements[i],
                      key + "[" + std::to_string(i) + "]");
      }
      continue;
    }
    switch (v.type) {
      case GgufType::kString:
        EXPECT_EQ(v.string_value, gguf_get_val_str(g, id)) << key;
        break;
      case GgufType::kBool:
        EXPECT_EQ(v.uint_value != 0, gguf_get_val_bool(g, id)) << key;
        break;
      case GgufType::kFloat32:
        EXPECT_EQ(std::bit_cast<std::uint32_t>(static_cast<float>(v.float_value)),
                  std::bit_cast<std::uint32_t>(gguf_get_val_f32(g, id)))
            << key;
        break;
      case GgufType::kFloat64:
        EXPECT_EQ(std::bit_cast<std::uint64_t>(v.float_value),
                  std::bit_cast<std::uint64_t>(gguf_get_val_f64(g, id)))
            << key;
        break;
      default:
        ExpectInteger(v.type, gguf_get_val_data(g, id), 0, v.uint_value, v.int_value, key);
        break;
    }
  }

  ASSERT_EQ(static_cast<std::int64_t>(h.tensors.size()), gguf_get_n_tensors(g));
  for (std::size_t t = 0; t < h.tensors.size(); ++t) {
    const GgufTensorInfo& ti = h.tensors[t];
    const auto id = static_cast<std::int64_t>(t);
    ASSERT_EQ(ti.name, gguf_get_tensor_name(g, id));
    EXPECT_EQ(ti.type, static_cast<std::uint32_t>(gguf_get_tensor_type(g, id))) << ti.name;
    EXPECT_EQ(ti.offset, gguf_get_tensor_offset(g, id)) << ti.name;
    const ggml_tensor* tensor = ggml_get_tensor(meta, ti.name.c_str());
    ASSERT_NE(tensor, nullptr) << ti.name;
    EXPECT_GE(static_cast<int>(ti.n_dims), ggml_n_dims(tensor)) << ti.name;
    for (int d = 0; d < 4; ++d) EXPECT_EQ(ti.ne[d], tensor->ne[d]) << ti.name << " ne" << d;
  }
  if (!h.tensors.empty()) {
    const std::uint64_t a = h.alignment;
    EXPECT_EQ((h.header_bytes + a - 1) / a * a, gguf_get_data_offset(g));
  }
  LlamaOptions options;
  options.model_path = path;
  auto estimate = EstimateLlamaMemory(options);
  ASSERT_TRUE(estimate.has_value()) << estimate.error().message;
  EXPECT_EQ(estimate->weight_bytes, GgmlWeightBytes(g, path));
  gguf_free(g);
  ggml_free(meta);
}

// A GGUF file with a llama header (1 layer) and one tensor of the given ggml type and row.
std::string WriteModel(const std::string& name, std::uint32_t type, std::int64_t ne0) {
  std::string b = "GGUF";
  auto le = [&b](std::uint64_t v, int n) {
    for (int i = 0; i < n; ++i) b += static_cast<char>((v >> (8 * i)) & 0xFF);
  };
  auto str = [&](std::string_view s) {
    le(s.size(), 8);
    b += s;
  };
  le(3, 4);
  le(1, 8);
  le(4, 8);
  str("general.architecture");
  le(8, 4);
  str("llama");
  for (const char* key :
       {"llama.block_count", "llama.embedding_length", "llama.attention.head_count"}) {
    str(key);
    le(4, 4);
    le(key[6] == 'b' ? 1 : 64, 4);
  }
  str("t");
  le(1, 4);
  le(static_cast<std::uint64_t>(ne0), 8);
  le(type, 4);
  le(0, 8);
  b.append(4096, '\0');
  const std::string path = ::testing::TempDir() + name;
  std::ofstream(path, std::ios::binary) << b;
  return path;
}

TEST(GgufHeaderLlama, TheEstimateRefusesTheTensorsGgmlRefuses) {
  const std::string good = WriteModel("gguf_good.gguf", GGML_TYPE_Q4_0, 64);
  gguf_context* g = gguf_init_from_file(good.c_str(), {.no_alloc = true, .ctx = nullptr});
  ASSERT_NE(g, nullptr);
  LlamaOptions options;
  options.model_path = good;
  auto estimate = EstimateLlamaMemory(options);
  ASSERT_TRUE(estimate.has_value()) << estimate.error().message;
  EXPECT_EQ(estimate->weight_bytes, 36u);  // two Q4_0 blocks of 18 bytes
  EXPECT_EQ(estimate->weight_bytes, gguf_get_tensor_size(g, 0));
  gguf_free(g);

  struct Bad {
    std::uint32_t type;
    std::int64_t ne0;
    const char* why;
  };
  for (const Bad& bad : {Bad{GGML_TYPE_COUNT, 64, "unknown ggml type"},
                         Bad{4, 64, "no longer supports"},  // Q4_2, removed
                         Bad{GGML_TYPE_Q4_0, 48, "not a multiple of the q4_0 block size 32"},
                         Bad{GGML_TYPE_F32, std::int64_t{1} << 62, "larger than 2^64 bytes"}}) {
    const std::string path = WriteModel("gguf_bad.gguf", bad.type, bad.ne0);
    EXPECT_EQ(gguf_init_from_file(path.c_str(), {.no_alloc = true, .ctx = nullptr}), nullptr)
        << bad.why;
    options.model_path = path;
    estimate = EstimateLlamaMemory(options);
    ASSERT_FALSE(estimate.has_value()) << bad.why;
    EXPECT_EQ(estimate.error().code, ErrorCode::kInvalidArgument);
    EXPECT_THAT(estimate.error().message, ::testing::StartsWith("cannot read " + path + ": "));
    EXPECT_THAT(estimate.error().message, ::testing::HasSubstr(bad.why));
  }
  options.model_path = "/nonexistent.gguf";
  EXPECT_EQ(EstimateLlamaMemory(options).error().code, ErrorCode::kNotFound);
  std::ofstream(::testing::TempDir() + "gguf_text.gguf") << "not a model";
  options.model_path = ::testing::TempDir() + "gguf_text.gguf";
  EXPECT_THAT(EstimateLlamaMemory(options).error().message,
              ::testing::HasSubstr("not a GGUF file (at byte 0: bad magic 'not '"));
}

TEST(GgufHeaderLlama, TheTestModelReadsAsGgmlReadsIt) {
  const std::string path = EMBER_TEST_MODEL;
  if (!std::filesystem::exists(path)) GTEST_SKIP() << "no test model at " << path;
  ExpectSameAsGgml(path);
}

TEST(GgufHeaderLlama, EveryShippedVocabularyReadsAsGgmlReadsIt) {
  const std::filesystem::path models = std::filesystem::path(EMBER_LLAMA_SOURCE) / "models";
  std::vector<std::string> files;
  std::error_code ec;
  for (const auto& entry : std::filesystem::directory_iterator(models, ec)) {
    const std::string name = entry.path().filename().string();
    if (name.starts_with("ggml-vocab-") && name.ends_with(".gguf")) {
      files.push_back(entry.path().string());
    }
  }
  if (files.empty()) GTEST_SKIP() << "no llama.cpp source tree (EMBER_LLAMA_SOURCE) with vocabs";
  EXPECT_GE(files.size(), 10u);
  for (const std::string& file : files) ExpectSameAsGgml(file);
}

}  // namespace
}  // namespace ember::engine
