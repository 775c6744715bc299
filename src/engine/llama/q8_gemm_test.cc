// ggml's Q8_0 matrix products as ember builds them.
// - Patch 0011 (tinyBLAS's quantized kernels take tiles from the threadpool's shared counter):
//   every output is computed, once, and equals the Q8_0 vec_dot of its row and column, for
//   shapes that make mnpack run several tile variants (each with its own counter reset and
//   barriers) at 1 to 4 threads.
// - Patch 0012 (Q8_0 weights repacked 4x8 in the CPU_REPACK buffer, with AVX2 gemv/gemm, VNNI
//   where the variant has it, and a 512-bit gemm on AVX-512):
//   the product matches vec_dot to float rounding, and an activation row gives the same bits
//   whether it goes through the gemv (alone) or the gemm (in a group of 4).
#include <ggml-alloc.h>
#include <ggml-backend.h>
#include <ggml-cpu.h>
#include <ggml.h>
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <random>
#include <vector>

#include "engine/llama/cpu_symbols.h"

namespace ember::engine {
namespace {

// y = w x for Q8_0 w [k, m] and F32 x [k, n] through ggml's graph (tinyBLAS for n >= 2), and
// the same through one vec_dot per output on x quantized the way ggml quantizes it.
void ExpectProductMatchesVecDot(int m, int n, int threads) {
  const int k = 256;
  ggml_context* ctx = ggml_init({size_t{64} << 20, nullptr, false});
  ggml_tensor* wf = ggml_new_tensor_2d(ctx, GGML_TYPE_F32, k, m);
  ggml_tensor* w = ggml_new_tensor_2d(ctx, GGML_TYPE_Q8_0, k, m);
  ggml_tensor* x = ggml_new_tensor_2d(ctx, GGML_TYPE_F32, k, n);
  std::mt19937 rng(m * 131 + n);
  std::normal_distribution<float> nd;
  for (int64_t i = 0; i < ggml_nelements(wf); ++i) static_cast<float*>(wf->data)[i] = nd(rng);
  for (int64_t i = 0; i < ggml_nelements(x); ++i) static_cast<float*>(x->data)[i] = nd(rng);
  ggml_quantize_chunk(GGML_TYPE_Q8_0, static_cast<const float*>(wf->data), w->data, 0, m, k,
                      nullptr);
  ggml_tensor* y = ggml_mul_mat(ctx, w, x);
  ggml_cgraph* gf = ggml_new_graph(ctx);
  ggml_build_forward_expand(gf, y);
  // NaN first, so an output no thread wrote cannot pass
  for (int64_t i = 0; i < ggml_nelements(y); ++i) static_cast<float*>(y->data)[i] = NAN;
  ASSERT_EQ(EMBER_CPU_FN(ggml_graph_compute_with_ctx)(ctx, gf, threads), GGML_STATUS_SUCCESS);

  const auto* traits = EMBER_CPU_FN(ggml_get_type_traits_cpu)(GGML_TYPE_Q8_0);
  const size_t row = ggml_row_size(GGML_TYPE_Q8_0, k);
  std::vector<char> xq(row * n);
  for (int j = 0; j < n; ++j)
    traits->from_float(static_cast<const float*>(x->data) + int64_t{j} * k, xq.data() + j * row, k);
  int mismatches = 0;
  for (int j = 0; j < n; ++j) {
    for (int i = 0; i < m; ++i) {
      float want = 0.0f;
      traits->vec_dot(k, &want, 0, static_cast<const char*>(w->data) + i * row, 0,
                      xq.data() + j * row, 0, 1);
      const float got = static_cast<const float*>(y->data)[int64_t{j} * m + i];
      // on AVX2 tinyBLAS and vec_dot agree bit for bit (both sum each block's integer dot, then
      // scale in the same order); elsewhere allow float reassociation
      const bool same = EMBER_CPU_FN(ggml_cpu_has_avx2)()
                            ? got == want
                            : std::fabs(got - want) <= 1e-3f * (1.0f + std::fabs(want));
      if (!same && ++mismatches <= 3)
        ADD_FAILURE() << "y[" << j << "][" << i << "] = " << got << ", vec_dot " << want;
    }
  }
  EXPECT_EQ(mismatches, 0) << m << "x" << n << " at " << threads << " threads";
  ggml_free(ctx);
}

TEST(Q8GemmTest, EveryOutputEqualsItsVecDot) {
  for (int threads : {1, 2, 3, 4}) {
    ExpectProductMatchesVecDot(768, 64, threads);  // whole 4x2 tiles, many chunks per thread
    ExpectProductMatchesVecDot(37, 13, threads);   // remainders: several tile variants in turn
    ExpectProductMatchesVecDot(6, 3, threads);     // fewer tiles than threads
    ExpectProductMatchesVecDot(5, 2, threads);
  }
}

// y = w x with w uploaded into ggml's CPU_REPACK buffer type (repacked on upload), computed by
// the CPU backend; returns y row by row (n rows of m).
std::vector<float> RepackedProduct(ggml_type type, const std::vector<char>& wq, int m, int k,
                                   const std::vector<float>& x, int n, int threads) {
  ggml_backend_t backend = EMBER_CPU_FN(ggml_backend_cpu_init)();
  EMBER_CPU_FN(ggml_backend_cpu_set_n_threads)(backend, threads);
  ggml_backend_dev_t dev = ggml_backend_get_device(backend);
  auto get_extra =
      reinterpret_cast<ggml_backend_dev_get_extra_bufts_t>(ggml_backend_reg_get_proc_address(
          ggml_backend_dev_backend_reg(dev), "ggml_backend_dev_get_extra_bufts"));
  ggml_backend_buffer_type_t repack = nullptr;
  for (ggml_backend_buffer_type_t* b = get_extra ? get_extra(dev) : nullptr; b && *b; ++b)
    if (std::strcmp(ggml_backend_buft_name(*b), "CPU_REPACK") == 0) repack = *b;
  EXPECT_NE(repack, nullptr);
  std::vector<float> out(size_t(n) * m, NAN);
  if (repack == nullptr) return out;

  ggml_context* wctx = ggml_init({ggml_tensor_overhead(), nullptr, true});
  ggml_tensor* w = ggml_new_tensor_2d(wctx, type, k, m);
  ggml_backend_buffer_t wbuf = ggml_backend_alloc_ctx_tensors_from_buft(wctx, repack);
  ggml_backend_tensor_set(w, wq.data(), 0, ggml_nbytes(w));

  ggml_context* ctx =
      ggml_init({ggml_tensor_overhead() * 4 + ggml_graph_overhead(), nullptr, true});
  ggml_tensor* xt = ggml_new_tensor_2d(ctx, GGML_TYPE_F32, k, n);
  ggml_tensor* y = ggml_mul_mat(ctx, w, xt);
  ggml_cgraph* gf = ggml_new_graph(ctx);
  ggml_build_forward_expand(gf, y);
  ggml_backend_buffer_t buf = ggml_backend_alloc_ctx_tensors(ctx, backend);
  ggml_backend_tensor_set(xt, x.data(), 0, ggml_nbytes(xt));
  EXPECT_EQ(ggml_backend_graph_compute(backend, gf), GGML_STATUS_SUCCESS);
  ggml_backend_tensor_get(y, out.data(), 0, ggml_nbytes(y));

  ggml_backend_buffer_free(buf);
  ggml_free(ctx);
  ggml_backend_buffer_free(wbuf);
  ggml_free(wctx);
  ggml_backend_free(backend);
  return out;
}

// The product of `type` weights [k, m] repacked in the CPU_REPACK buffer with 15 activation rows
// (12 through the gemm: groups of 4 rows taken two at a time and one alone; 3 through the gemv):
// each output matches the type's vec_dot to float rounding, and a row gives the same bits alone
// (gemv) and among the others (gemm).
void ExpectRepackedMatchesVecDot(ggml_type type, int m) {
  const int k = 256, n = 15;
  std::mt19937 rng(5 + m);
  std::normal_distribution<float> nd;
  std::vector<float> wf(size_t(m) * k), x(size_t(n) * k);
  for (float& v : wf) v = nd(rng);
  for (float& v : x) v = nd(rng);
  const size_t row = ggml_row_size(type, k);
  std::vector<char> wq(row * m);
  ggml_quantize_chunk(type, wf.data(), wq.data(), 0, m, k, nullptr);

  const auto* traits = EMBER_CPU_FN(ggml_get_type_traits_cpu)(type);
  const auto* act = EMBER_CPU_FN(ggml_get_type_traits_cpu)(traits->vec_dot_type);
  std::vector<char> xq(ggml_row_size(traits->vec_dot_type, k));
  for (int threads : {1, 2, 3}) {
    const std::vector<float> all = RepackedProduct(type, wq, m, k, x, n, threads);
    for (int j = 0; j < n; ++j) {
      act->from_float(x.data() + size_t(j) * k, xq.data(), k);
      const std::vector<float> xj(x.begin() + size_t(j) * k, x.begin() + size_t(j + 1) * k);
      const std::vector<float> alone = RepackedProduct(type, wq, m, k, xj, 1, threads);
      for (int i = 0; i < m; ++i) {
        float want = 0.0f;
        traits->vec_dot(k, &want, 0, wq.data() + i * row, 0, xq.data(), 0, 1);
        const float got = all[size_t(j) * m + i];
        ASSERT_NEAR(got, want, 1e-5f * (1.0f + std::fabs(want)))
            << ggml_type_name(type) << " m " << m << " row " << j << " col " << i;
        ASSERT_EQ(alone[i], got) << ggml_type_name(type) << " m " << m << " row " << j << " col "
                                 << i << " alone vs among " << n << " rows";
      }
    }
  }
}

// Q8_0, 4x8 (patch 0012): m = 96 is 24 weight groups of 4 rows, 100 is 25, so on AVX-512 (two
// groups per 512-bit tile) the last group takes the 256-bit tile.
TEST(Q8GemmTest, RepackedWeightsMatchVecDotAndAgreeAloneAndInGroups) {
  if (!EMBER_CPU_FN(ggml_cpu_has_avx2)())
    GTEST_SKIP() << "tests ember's x86 Q8_0 repack kernels (AVX2 and up)";
  ExpectRepackedMatchesVecDot(GGML_TYPE_Q8_0, 96);
  ExpectRepackedMatchesVecDot(GGML_TYPE_Q8_0, 100);
}

// Q4_0, 8x8: ggml's LUT kernels, or on VNNI variants ember's unsigned-nibble kernel (patch 0015).
TEST(Q8GemmTest, RepackedQ4_0MatchesVecDotAndAgreesAloneAndInGroups) {
  if (!EMBER_CPU_FN(ggml_cpu_has_avx2)())
    GTEST_SKIP() << "tests the x86 Q4_0 repack kernels (AVX2 and up)";
  ExpectRepackedMatchesVecDot(GGML_TYPE_Q4_0, 96);
  ExpectRepackedMatchesVecDot(GGML_TYPE_Q4_0, 256);
}

}  // namespace
}  // namespace ember::engine
