// The CPU variant loader: what it finds, what it refuses and what it loads. ctest runs each
// test in its own process, so each may load (or not) the process-wide backend itself.
#include "engine/llama/cpu_backend.h"

#include <ggml.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <set>

namespace ember::engine {
namespace {

TEST(CpuBackendTest, FindsEveryVariantTheBuildMade) {
  const LlamaBuild& build = LlamaBuildInfo();
  if (build.variants_built.empty()) GTEST_SKIP() << "llama.cpp built without CPU variants";
  std::string dir;
  auto variants = ListCpuVariants(&dir);
  ASSERT_TRUE(variants) << variants.error().message;
  std::set<std::string> found;
  for (const CpuVariant& v : *variants) found.insert(v.name);
  EXPECT_EQ(found, std::set<std::string>(build.variants_built.begin(), build.variants_built.end()))
      << "in " << dir;
  // ordered from the most capable; the x86-64 baseline runs on every x86-64 CPU
  EXPECT_TRUE(
      std::is_sorted(variants->begin(), variants->end(),
                     [](const CpuVariant& a, const CpuVariant& b) { return a.score > b.score; }));
#if defined(__x86_64__)
  auto x64 = std::find_if(variants->begin(), variants->end(),
                          [](const CpuVariant& v) { return v.name == "x64"; });
  ASSERT_NE(x64, variants->end());
  EXPECT_GT(x64->score, 0);
  EXPECT_EQ(build.commit.size(), 40u);
  EXPECT_FALSE(build.patches.empty());
#endif
}

TEST(CpuBackendTest, AnUnknownVariantIsRefusedWithTheNamesBuilt) {
  if (LlamaBuildInfo().variants_built.empty()) GTEST_SKIP() << "no CPU variants";
  auto loaded = LoadCpuBackend("pentium4");
  ASSERT_FALSE(loaded);
  EXPECT_EQ(loaded.error().code, ErrorCode::kInvalidArgument);
  EXPECT_NE(loaded.error().message.find("no such CPU variant"), std::string::npos);
  EXPECT_NE(loaded.error().message.find(LlamaBuildInfo().variants_built.front()), std::string::npos)
      << loaded.error().message;
  EXPECT_EQ(LoadedCpuBackend(), nullptr);
}

TEST(CpuBackendTest, AVariantThisCpuCannotRunIsRefusedNotLoaded) {
  auto variants = ListCpuVariants();
  ASSERT_TRUE(variants);
  auto unrunnable = std::find_if(variants->begin(), variants->end(),
                                 [](const CpuVariant& v) { return v.score == 0; });
  if (unrunnable == variants->end()) GTEST_SKIP() << "this CPU runs every variant built";
  auto loaded = LoadCpuBackend(unrunnable->name);
  ASSERT_FALSE(loaded);
  EXPECT_EQ(loaded.error().code, ErrorCode::kInvalidArgument);
  EXPECT_NE(loaded.error().message.find("lacks instructions"), std::string::npos)
      << loaded.error().message;
  EXPECT_NE(loaded.error().message.find("it can run: " + variants->front().name), std::string::npos)
      << "names what it can run: " << loaded.error().message;
  EXPECT_EQ(LoadedCpuBackend(), nullptr);
}

TEST(CpuBackendTest, AutoLoadsTheMostCapableVariantAndStaysWithIt) {
  auto variants = ListCpuVariants();
  ASSERT_TRUE(variants);
  auto loaded = LoadCpuBackend("");
  ASSERT_TRUE(loaded) << loaded.error().message;
  if (variants->empty()) {
    EXPECT_EQ(loaded->variant, "builtin");
  } else {
    EXPECT_EQ(loaded->variant, variants->front().name);
    EXPECT_FALSE(loaded->forced);
  }
  EXPECT_NE(loaded->features.find(" = "), std::string::npos) << loaded->features;
  ASSERT_NE(LoadedCpuBackend(), nullptr);
  EXPECT_EQ(LoadedCpuBackend()->variant, loaded->variant);
  EXPECT_TRUE(LoadCpuBackend(""));  // the same request again: the same backend
  auto other = LoadCpuBackend("x64");
  if (loaded->variant != "x64") {
    EXPECT_FALSE(other) << "a second variant in one process";
  }
  EXPECT_NE(CpuBackendFunction("ggml_backend_set_n_threads"), nullptr);
  EXPECT_NE(CpuBackendSymbol("ggml_graph_compute_with_ctx"), nullptr);
}

TEST(CpuBackendTest, ForcedBaselineLoadsAndSaysSo) {
  auto variants = ListCpuVariants();
  ASSERT_TRUE(variants);
  if (variants->empty()) GTEST_SKIP() << "no CPU variants";
  std::string baseline;  // the least capable this CPU runs
  for (const CpuVariant& v : *variants) {
    if (v.score > 0) baseline = v.name;
  }
  auto loaded = LoadCpuBackend(baseline);
  ASSERT_TRUE(loaded) << loaded.error().message;
  EXPECT_EQ(loaded->variant, baseline);
  EXPECT_TRUE(loaded->forced);
}

CpuBackend Variant(const std::string& name) {
  CpuBackend backend;
  backend.variant = name;
  backend.features = "AVX2 = 1";
  return backend;
}

// Variants that compute a model bit-identically share a numerics class (and so a
// system_fingerprint); every other pair must differ.
TEST(CpuBackendTest, NumericsClassesGroupOnlyVariantsThatComputeIdentically) {
  const std::vector<std::uint32_t> plain = {GGML_TYPE_F32, GGML_TYPE_Q4_0, GGML_TYPE_Q8_0,
                                            GGML_TYPE_F16};
  for (const char* v : {"skylakex", "cascadelake", "icelake", "zen4"}) {
    EXPECT_EQ(NumericsClass(Variant(v), plain), "avx512") << v;
  }
  // BF16 dot products (zen4, sapphirerapids) and K-quants keep each variant apart
  EXPECT_EQ(NumericsClass(Variant("zen4"), {GGML_TYPE_F32, GGML_TYPE_BF16}), "zen4");
  EXPECT_EQ(NumericsClass(Variant("icelake"), {GGML_TYPE_Q4_0, GGML_TYPE_Q6_K}), "icelake");
  // other kernels altogether: AMX, AVX2, SSE4.2, the baseline
  for (const char* v : {"sapphirerapids", "haswell", "sse42", "x64", "armv8.2_2"}) {
    EXPECT_EQ(NumericsClass(Variant(v), plain), v);
  }
  EXPECT_EQ(NumericsClass(Variant("builtin"), plain), "builtin:AVX2 = 1");
}

}  // namespace
}  // namespace ember::engine
