// A quantized matrix product through ggml's CPU_REPACK buffer (Q4_0 repacked 8x8, Q8_0 4x8):
// the median time of one mul_mat of a 1B-sized weight with N activation rows at 2 threads.
// N = 1 is a decode step's gemv; 8 and 32 are decode steps of 8 and 32 sequences; 256 a
// prefill chunk. Run it against two builds of a CPU variant to compare kernels.
//
// Build against the cached prefix P (scripts/llama_cpp.sh prefix) and one variant's module:
//   g++ -std=c++2b -O2 bench/probes/repack_gemm.cc -I$P/include -L$P/lib -lggml -lggml-base
//       $P/bin/libggml-cpu-zen4.so -Wl,-rpath,$P/lib:$P/bin -o /tmp/rg   (one line)
//   /tmp/rg [q4_0|q8_0] [rows=2048] [k=2048] [repeats=20]
#include <ggml-alloc.h>
#include <ggml-backend.h>
#include <ggml-cpu.h>
#include <ggml.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <vector>

namespace {

double MedianMs(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

}  // namespace

int main(int argc, char** argv) {
  const ggml_type type =
      argc > 1 && std::string(argv[1]) == "q8_0" ? GGML_TYPE_Q8_0 : GGML_TYPE_Q4_0;
  const int m = argc > 2 ? std::atoi(argv[2]) : 2048;
  const int k = argc > 3 ? std::atoi(argv[3]) : 2048;
  const int repeats = argc > 4 ? std::atoi(argv[4]) : 20;

  ggml_backend_t backend = ggml_backend_cpu_init();
  ggml_backend_cpu_set_n_threads(backend, 2);
  ggml_backend_dev_t dev = ggml_backend_get_device(backend);
  auto get_extra =
      reinterpret_cast<ggml_backend_dev_get_extra_bufts_t>(ggml_backend_reg_get_proc_address(
          ggml_backend_dev_backend_reg(dev), "ggml_backend_dev_get_extra_bufts"));
  ggml_backend_buffer_type_t repack = nullptr;
  for (ggml_backend_buffer_type_t* b = get_extra ? get_extra(dev) : nullptr; b && *b; ++b) {
    if (std::strcmp(ggml_backend_buft_name(*b), "CPU_REPACK") == 0) repack = *b;
  }
  if (repack == nullptr) {
    std::fprintf(stderr, "no CPU_REPACK buffer type in this build\n");
    return 1;
  }
  std::mt19937 rng(1);
  std::normal_distribution<float> nd;
  std::vector<float> wf(size_t(m) * k);
  for (float& v : wf) v = nd(rng);
  std::vector<char> wq(ggml_row_size(type, k) * m);
  ggml_quantize_chunk(type, wf.data(), wq.data(), 0, m, k, nullptr);
  ggml_context* wctx = ggml_init({ggml_tensor_overhead(), nullptr, true});
  ggml_tensor* w = ggml_new_tensor_2d(wctx, type, k, m);
  ggml_backend_buffer_t wbuf = ggml_backend_alloc_ctx_tensors_from_buft(wctx, repack);
  ggml_backend_tensor_set(w, wq.data(), 0, ggml_nbytes(w));

  std::printf("%s %dx%d weights, 2 threads, median of %d\n", ggml_type_name(type), m, k, repeats);
  for (int n : {1, 8, 32, 256}) {
    ggml_context* ctx =
        ggml_init({ggml_tensor_overhead() * 4 + ggml_graph_overhead(), nullptr, true});
    ggml_tensor* x = ggml_new_tensor_2d(ctx, GGML_TYPE_F32, k, n);
    ggml_tensor* y = ggml_mul_mat(ctx, w, x);
    ggml_cgraph* gf = ggml_new_graph(ctx);
    ggml_build_forward_expand(gf, y);
    ggml_backend_buffer_t buf = ggml_backend_alloc_ctx_tensors(ctx, backend);
    std::vector<float> xv(size_t(n) * k);
    for (float& v : xv) v = nd(rng);
    ggml_backend_tensor_set(x, xv.data(), 0, ggml_nbytes(x));
    std::vector<double> ms;
    for (int r = 0; r < repeats + 2; ++r) {
      const auto t0 = std::chrono::steady_clock::now();
      ggml_backend_graph_compute(backend, gf);
      const auto t1 = std::chrono::steady_clock::now();
      if (r >= 2) ms.push_back(std::chrono::duration<double, std::milli>(t1 - t0).count());
    }
    std::printf("  n=%-4d %8.3f ms  %7.1f GOP/s\n", n, MedianMs(ms),
                2.0 * m * k * n / (MedianMs(ms) * 1e6));
    ggml_backend_buffer_free(buf);
    ggml_free(ctx);
  }
  ggml_backend_buffer_free(wbuf);
  ggml_free(wctx);
  ggml_backend_free(backend);
  return 0;
}
