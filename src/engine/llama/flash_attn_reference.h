// A double-precision reference for ggml's flash attention (GGML_OP_FLASH_ATTN_EXT), to check
// the CPU kernels ember carries a patch for (third_party/llama.cpp-patches/0010): used by
// flash_attn_test and bench/probes/flash_attn.cc.
#ifndef EMBER_ENGINE_LLAMA_FLASH_ATTN_REFERENCE_H_
#define EMBER_ENGINE_LLAMA_FLASH_ATTN_REFERENCE_H_

#include <ggml.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <vector>

namespace ember::engine {

// The largest |difference| between `out`, ggml's result of
// ggml_flash_attn_ext(q, k, v, mask, scale, max_bias, 0) (plus `sinks` when not null), and the
// same attention computed in double. Tensors are contiguous: q F32 [DK, rows, heads, streams],
// k and v F16 [D, cells, kv_heads, streams], mask F16 [cells, rows, 1, streams] or null,
// sinks F32 [heads] or null, out F32 [DV, heads, rows, streams].
inline double FlashAttnMaxError(const ggml_tensor* q, const ggml_tensor* k, const ggml_tensor* v,
                                const ggml_tensor* mask, const ggml_tensor* sinks, float scale,
                                float max_bias, const ggml_tensor* out) {
  const int64_t dk = q->ne[0], rows = q->ne[1], heads = q->ne[2], streams = q->ne[3];
  const int64_t dv = v->ne[0], cells = k->ne[1], kv_heads = k->ne[2];
  const auto* qd = static_cast<const float*>(q->data);
  const auto* kd = static_cast<const ggml_fp16_t*>(k->data);
  const auto* vd = static_cast<const ggml_fp16_t*>(v->data);
  const auto* od = static_cast<const float*>(out->data);
  const uint32_t head_log2 = 1u << static_cast<uint32_t>(std::floor(std::log2(heads)));
  const double m0 = std::pow(2.0, -max_bias / head_log2);
  const double m1 = std::pow(2.0, -(max_bias / 2.0) / head_log2);

  double max_err = 0.0;
  std::vector<double> score(cells), acc(dv);
  for (int64_t st = 0; st < streams; ++st) {
    for (int64_t h = 0; h < heads; ++h) {
      const double slope = max_bias > 0.0f ? (h < head_log2 ? std::pow(m0, h + 1)
                                                            : std::pow(m1, 2 * (h - head_log2) + 1))
                                           : 1.0;
      const int64_t hk = h / (heads / kv_heads);
      for (int64_t i = 0; i < rows; ++i) {
        const float* qr = qd + ((st * heads + h) * rows + i) * dk;
        double top = sinks ? static_cast<const float*>(sinks->data)[h] : -INFINITY;
        for (int64_t c = 0; c < cells; ++c) {
          double bias = 0.0;
          if (mask) {
            const auto* mr =
                static_cast<const ggml_fp16_t*>(mask->data) + (st * mask->ne[1] + i) * cells;
            bias = slope * ggml_fp16_to_fp32(mr[c]);
          }
          if (bias == -INFINITY) {
            score[c] = -INFINITY;
            continue;
          }
          const ggml_fp16_t* kr = kd + ((st * kv_heads + hk) * cells + c) * dk;
          double dot = 0.0;
          for (int64_t e = 0; e < dk; ++e)
            dot += static_cast<double>(qr[e]) * ggml_fp16_to_fp32(kr[e]);
          score[c] = dot * scale + bias;
          top = std::max(top, score[c]);
        }
        std::fill(acc.begin(), acc.end(), 0.0);
        double sum = sinks ? std::exp(static_cast<const float*>(sinks->data)[h] - top) : 0.0;
        for (int64_t c = 0; c < cells; ++c) {
          if (score[c] == -INFINITY) continue;
          const double p = std::exp(score[c] - top);
          sum += p;
          const ggml_fp16_t* vr = vd + ((st * kv_heads + hk) * cells + c) * dv;
          for (int64_t e = 0; e < dv; ++e) acc[e] += p * ggml_fp16_to_fp32(vr[e]);
        }
        const float* o = od + ((st * rows + i) * heads + h) * dv;
        for (int64_t e = 0; e < dv; ++e) {
          const double want = sum == 0.0 ? 0.0 : acc[e] / sum;
          max_err = std::max(max_err, std::fabs(want - o[e]));
        }
      }
    }
  }
  return max_err;
}

}  // namespace ember::engine

#endif  // EMBER_ENGINE_LLAMA_FLASH_ATTN_REFERENCE_H_
