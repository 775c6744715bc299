// ggml's CPU flash attention (GGML_OP_FLASH_ATTN_EXT) on the shapes ember's models give it:
// the time of one op at 2 threads (median of R computes) and its largest difference from a
// double-precision reference, for a prefill of one sequence, a prefill step of several, and a
// decode step over many streams. Run it against two builds of libggml to compare kernels
// (patch 0010 in third_party/llama.cpp-patches replaced the per-row and tiled kernels).
//
// Build against a libggml (the cached prefix P from scripts/llama_cpp.sh prefix, or a scratch
// build tree's ggml/src):
//   g++ -std=c++2b -O2 bench/probes/flash_attn.cc -Isrc -I$P/include -L$P/lib -lggml -lggml-base
//       $P/bin/libggml-cpu-haswell.so -Wl,-rpath,$P/lib:$P/bin -o /tmp/fa   (one line)
//   /tmp/fa [repeats]
#include <ggml-cpu.h>
#include <ggml.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <random>
#include <vector>

#include "engine/llama/flash_attn_reference.h"

namespace {

struct Shape {
  const char* name;
  int head_dim;
  int heads;
  int kv_heads;
  int streams;
  int queries;  // query rows per stream
  int kv;       // cells per stream (the padded view)
  int past;     // cells already filled before this step's queries
};

double Median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

// Query row i of a stream sees cells [0, past + i], causal, and nothing beyond.
bool Visible(const Shape& s, int q, int cell) { return cell <= s.past + q; }

void Run(const Shape& s, int repeats) {
  const size_t mem = 256u << 20;
  ggml_init_params ip = {mem, nullptr, false};
  ggml_context* ctx = ggml_init(ip);
  ggml_tensor* q =
      ggml_new_tensor_4d(ctx, GGML_TYPE_F32, s.head_dim, s.queries, s.heads, s.streams);
  ggml_tensor* k = ggml_new_tensor_4d(ctx, GGML_TYPE_F16, s.head_dim, s.kv, s.kv_heads, s.streams);
  ggml_tensor* v = ggml_new_tensor_4d(ctx, GGML_TYPE_F16, s.head_dim, s.kv, s.kv_heads, s.streams);
  ggml_tensor* mask = ggml_new_tensor_4d(ctx, GGML_TYPE_F16, s.kv, s.queries, 1, s.streams);

  std::mt19937 rng(42);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  auto* qd = static_cast<float*>(q->data);
  for (int64_t i = 0; i < ggml_nelements(q); ++i) qd[i] = nd(rng);
  auto* kd = static_cast<ggml_fp16_t*>(k->data);
  auto* vd = static_cast<ggml_fp16_t*>(v->data);
  for (int64_t i = 0; i < ggml_nelements(k); ++i) kd[i] = ggml_fp32_to_fp16(nd(rng));
  for (int64_t i = 0; i < ggml_nelements(v); ++i) vd[i] = ggml_fp32_to_fp16(nd(rng));
  auto* md = static_cast<ggml_fp16_t*>(mask->data);
  for (int st = 0; st < s.streams; ++st)
    for (int i = 0; i < s.queries; ++i)
      for (int c = 0; c < s.kv; ++c)
        md[(static_cast<int64_t>(st) * s.queries + i) * s.kv + c] =
            ggml_fp32_to_fp16(Visible(s, i, c) ? 0.0f : -INFINITY);

  const float scale = 1.0f / std::sqrt(static_cast<float>(s.head_dim));
  ggml_tensor* out = ggml_flash_attn_ext(ctx, q, k, v, mask, scale, 0.0f, 0.0f);
  ggml_cgraph* gf = ggml_new_graph(ctx);
  ggml_build_forward_expand(gf, out);

  std::vector<double> us;
  for (int r = 0; r < repeats; ++r) {
    auto t0 = std::chrono::steady_clock::now();
    ggml_graph_compute_with_ctx(ctx, gf, 2);
    auto t1 = std::chrono::steady_clock::now();
    us.push_back(std::chrono::duration<double, std::micro>(t1 - t0).count());
  }

  const double max_err = ember::engine::FlashAttnMaxError(q, k, v, mask, nullptr, scale, 0.0f, out);

  const double med = Median(us);
  const double cells =
      static_cast<double>(s.streams) * s.heads * s.queries * (s.past + (s.queries + 1) / 2.0);
  std::printf("%-28s %9.1f us  %6.2f ns/visible cell-head  max|err| %.2e\n", s.name, med,
              med * 1e3 / cells, max_err);
  ggml_free(ctx);
}

}  // namespace

int main(int argc, char** argv) {
  const int repeats = argc > 1 ? std::atoi(argv[1]) : 50;
  const Shape shapes[] = {
      // stories260K: head size 8, 8 heads over 4 KV heads
      {"stories prefill 1x100", 8, 8, 4, 1, 100, 128, 0},
      {"stories prefill 5x40", 8, 8, 4, 5, 40, 64, 0},
      {"stories prefill 1x512", 8, 8, 4, 1, 512, 512, 0},
      {"stories decode 32x1 @130", 8, 8, 4, 32, 1, 160, 130},
      {"stories 2x37 over 101 cells", 8, 8, 4, 2, 37, 101, 60},  // a block that is not whole
      // synth 110m: head size 64, 12 heads
      {"110m prefill 1x100", 64, 12, 12, 1, 100, 128, 0},
      {"110m prefill 5x40", 64, 12, 12, 5, 40, 64, 0},
      {"110m prefill 1x512", 64, 12, 12, 1, 512, 512, 0},
      {"110m decode 32x1 @90", 64, 12, 12, 32, 1, 128, 90},
      {"110m decode 1x1 @1000", 64, 12, 12, 1, 1, 1024, 1000},
  };
  for (const Shape& s : shapes) Run(s, repeats);
  return 0;
}
