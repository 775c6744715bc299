// ggml's AMX path as ember builds it (patch 0014: the tile configuration as a constant, the
// XTILEDATA permission asked by every thread that runs tile instructions): quantized weights
// in the AMX buffer type give the same products as the same variant's AVX-512 kernels, at
// several thread counts, each computed from a thread that never ran a tile instruction
// before (the first matmul of a fresh thread is where upstream faulted). Runs under the
// sapphirerapids variant on a CPU with AMX; ctest reports it skipped everywhere else.
#include <ggml-alloc.h>
#include <ggml-backend.h>
#include <ggml-cpu.h>
#include <ggml.h>
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <random>
#include <thread>
#include <vector>

#include "engine/llama/cpu_symbols.h"

namespace ember::engine {
namespace {

ggml_backend_buffer_type_t AmxBufferType(ggml_backend_t backend) {
  ggml_backend_dev_t dev = ggml_backend_get_device(backend);
  auto get_extra =
      reinterpret_cast<ggml_backend_dev_get_extra_bufts_t>(ggml_backend_reg_get_proc_address(
          ggml_backend_dev_backend_reg(dev), "ggml_backend_dev_get_extra_bufts"));
  for (ggml_backend_buffer_type_t* b = get_extra ? get_extra(dev) : nullptr; b && *b; ++b) {
    if (std::strcmp(ggml_backend_buft_name(*b), "AMX") == 0) return *b;
  }
  return nullptr;
}

// y = w x for quantized w [k, m] uploaded into `buft` (nullptr: a plain CPU buffer) and F32
// x [k, n], computed by a fresh CPU backend with `threads` threads from a new std::thread.
std::vector<float> Product(ggml_type type, const std::vector<char>& wq, int m, int k,
                           const std::vector<float>& x, int n, int threads, bool amx) {
  std::vector<float> out(size_t(n) * m, NAN);
  std::thread worker([&] {
    ggml_backend_t backend = EMBER_CPU_FN(ggml_backend_cpu_init)();
    EMBER_CPU_FN(ggml_backend_cpu_set_n_threads)(backend, threads);
    ggml_backend_buffer_type_t buft =
        amx ? AmxBufferType(backend) : ggml_backend_get_default_buffer_type(backend);
    ggml_context* wctx = ggml_init({ggml_tensor_overhead(), nullptr, true});
    ggml_tensor* w = ggml_new_tensor_2d(wctx, type, k, m);
    ggml_backend_buffer_t wbuf = ggml_backend_alloc_ctx_tensors_from_buft(wctx, buft);
    ggml_backend_tensor_set(w, wq.data(), 0, ggml_nbytes(w));
    ggml_context* ctx =
        ggml_init({ggml_tensor_overhead() * 4 + ggml_graph_overhead(), nullptr, true});
    ggml_tensor* xt = ggml_new_tensor_2d(ctx, GGML_TYPE_F32, k, n);
    ggml_tensor* y = ggml_mul_mat(ctx, w, xt);
    ggml_cgraph* gf = ggml_new_graph(ctx);
    ggml_build_forward_expand(gf, y);
    ggml_backend_buffer_t buf = ggml_backend_alloc_ctx_tensors(ctx, backend);
    ggml_backend_tensor_set(xt, x.data(), 0, ggml_nbytes(xt));
    if (ggml_backend_graph_compute(backend, gf) == GGML_STATUS_SUCCESS) {
      ggml_backend_tensor_get(y, out.data(), 0, ggml_nbytes(y));
    }
    ggml_backend_buffer_free(buf);
    ggml_free(ctx);
    ggml_backend_buffer_free(wbuf);
    ggml_free(wctx);
    ggml_backend_free(backend);
  });
  worker.join();
  return out;
}

TEST(AmxTest, QuantizedProductsEqualTheAvx512PathFromFreshThreads) {
  ggml_backend_t probe = EMBER_CPU_FN(ggml_backend_cpu_init)();
  const bool have_amx = AmxBufferType(probe) != nullptr;
  ggml_backend_free(probe);
  if (!have_amx) {
    GTEST_SKIP() << "no AMX buffer type: this variant has no AMX kernels, or the CPU or OS "
                    "does not enable AMX";
  }
  const int m = 64, k = 512;
  std::mt19937 rng(7);
  std::normal_distribution<float> nd;
  std::vector<float> wf(size_t(m) * k);
  for (float& v : wf) v = nd(rng);
  for (ggml_type type : {GGML_TYPE_Q4_0, GGML_TYPE_Q8_0}) {
    std::vector<char> wq(ggml_row_size(type, k) * m);
    ggml_quantize_chunk(type, wf.data(), wq.data(), 0, m, k, nullptr);
    // 1 row: AMX's avx512-vnni decode kernel; 7 and 40: tile kernels with remainders
    for (int n : {1, 7, 40}) {
      std::vector<float> x(size_t(n) * k);
      for (float& v : x) v = nd(rng);
      for (int threads : {1, 2, 3, 4}) {
        const std::vector<float> want = Product(type, wq, m, k, x, n, threads, false);
        const std::vector<float> got = Product(type, wq, m, k, x, n, threads, true);
        int mismatches = 0;
        for (size_t i = 0; i < want.size(); ++i) {
          // both quantize x to Q8_0 and sum exact int8 products per block; they differ in
          // the order the blocks' float partial sums are added
          const bool close = std::fabs(got[i] - want[i]) <= 2e-3f * (1.0f + std::fabs(want[i]));
          if (!close && ++mismatches <= 3) {
            ADD_FAILURE() << ggml_type_name(type) << " n=" << n << " threads=" << threads << " y["
                          << i << "] AMX " << got[i] << " vs AVX-512 " << want[i];
          }
        }
        EXPECT_EQ(mismatches, 0) << ggml_type_name(type) << " n=" << n << " at " << threads
                                 << " threads";
      }
    }
  }
}

}  // namespace
}  // namespace ember::engine
