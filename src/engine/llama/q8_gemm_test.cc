// ggml's Q8_0 matrix product as ember builds it (patch 0011: tinyBLAS's quantized kernels take
// tiles from the threadpool's shared counter): every output is computed, once, and equals the
// Q8_0 vec_dot of its row and column, for shapes that make mnpack run several tile variants
// (each with its own counter reset and barriers) at 1 to 4 threads.
#include <ggml-cpu.h>
#include <ggml.h>
#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <vector>

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
  ASSERT_EQ(ggml_graph_compute_with_ctx(ctx, gf, threads), GGML_STATUS_SUCCESS);

  const auto* traits = ggml_get_type_traits_cpu(GGML_TYPE_Q8_0);
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
      const bool same = ggml_cpu_has_avx2()
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

}  // namespace
}  // namespace ember::engine
