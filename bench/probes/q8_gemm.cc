// ggml's Q8_0 matrix product (tinyBLAS_Q0_AVX on x86) on a 110m-sized weight: the median time of
// one mul_mat at 2 threads, quietly and with one busy thread competing for the CPUs (what a
// shared VM, a sidecar or the server's own threads do to it). Patch 0011 in
// third_party/llama.cpp-patches made tinyBLAS's quantized kernels take tiles from a shared
// counter instead of an even split; run this against two builds of libggml to compare.
//
// Build against a libggml (the cached prefix P from scripts/llama_cpp.sh prefix):
//   g++ -std=c++2b -O2 bench/probes/q8_gemm.cc -I$P/include -L$P/lib -lggml -lggml-base
//       $P/bin/libggml-cpu-haswell.so -Wl,-rpath,$P/lib:$P/bin -o /tmp/q8g   (one line)
//   /tmp/q8g [rows=2304] [activation rows=512]
#include <ggml-cpu.h>
#include <ggml.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <thread>
#include <vector>

namespace {

double MedianMs(ggml_context* ctx, ggml_cgraph* gf, int repeats) {
  std::vector<double> ms;
  for (int r = 0; r < repeats; ++r) {
    const auto t0 = std::chrono::steady_clock::now();
    ggml_graph_compute_with_ctx(ctx, gf, 2);
    ms.push_back(
        std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
  }
  std::sort(ms.begin(), ms.end());
  return ms[ms.size() / 2];
}

}  // namespace

int main(int argc, char** argv) {
  const int k = 768;
  const int m = argc > 1 ? std::atoi(argv[1]) : 2304;
  const int n = argc > 2 ? std::atoi(argv[2]) : 512;
  const int repeats = 20;
  ggml_context* ctx = ggml_init({size_t{256} << 20, nullptr, false});
  ggml_tensor* wf = ggml_new_tensor_2d(ctx, GGML_TYPE_F32, k, m);
  ggml_tensor* w = ggml_new_tensor_2d(ctx, GGML_TYPE_Q8_0, k, m);
  ggml_tensor* x = ggml_new_tensor_2d(ctx, GGML_TYPE_F32, k, n);
  std::mt19937 rng(1);
  std::normal_distribution<float> nd;
  for (int64_t i = 0; i < ggml_nelements(wf); ++i) static_cast<float*>(wf->data)[i] = nd(rng);
  for (int64_t i = 0; i < ggml_nelements(x); ++i) static_cast<float*>(x->data)[i] = nd(rng);
  ggml_quantize_chunk(GGML_TYPE_Q8_0, static_cast<float*>(wf->data), w->data, 0, m, k, nullptr);
  ggml_tensor* y = ggml_mul_mat(ctx, w, x);
  ggml_cgraph* gf = ggml_new_graph(ctx);
  ggml_build_forward_expand(gf, y);

  const double quiet = MedianMs(ctx, gf, repeats);
  std::atomic<bool> stop{false};
  std::thread busy([&stop] {
    while (!stop.load(std::memory_order_relaxed)) {
    }
  });
  const double contended = MedianMs(ctx, gf, repeats);
  stop = true;
  busy.join();

  double checksum = 0;  // the same for every build: the kernels' results do not change
  for (int64_t i = 0; i < ggml_nelements(y); i += 97)
    checksum += static_cast<const float*>(y->data)[i];
  const double gmac = double(m) * n * k / 1e6;
  std::printf(
      "Q8_0 %dx%d x %d rows, 2 threads: quiet %.2f ms (%.1f GMAC/s), one busy thread beside %.2f "
      "ms "
      "(%.1f GMAC/s), checksum %.4f\n",
      m, k, n, quiet, gmac / quiet, contended, gmac / contended, checksum);
  ggml_free(ctx);
  return 0;
}
