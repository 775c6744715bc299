#include "engine/synth/weights.h"

#include <ggml.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <system_error>
#include <thread>

#include "common/log.h"

namespace ember::synth {
namespace {

constexpr std::uint64_t kGamma = 0x9E3779B97F4A7C15ull;       // splitmix64's increment
constexpr std::int64_t kChunkValues = std::int64_t{1} << 21;  // 8 MiB of f32 per chunk

// splitmix64's output function: a bijective 64-bit mixer.
inline std::uint64_t Mix64(std::uint64_t z) {
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

// A sum of four 16-bit uniforms (Irwin-Hall, n = 4) has mean 131070 and std 65536/sqrt(3);
// this rescales it to std kWeightStd. Integer sums keep the values bit-exact everywhere.
constexpr float kIrwinHallScale = kWeightStd * 1.7320508f / 65536.0f;
constexpr std::int32_t kIrwinHallMean = 131070;

}  // namespace

void FillRandomRow(std::uint64_t seed, std::size_t tensor_index, std::int64_t row_index, float* row,
                   std::int64_t n) {
  const std::uint64_t tensor_key = Mix64(seed + (tensor_index + 1) * kGamma);
  const std::uint64_t row_key =
      Mix64(tensor_key + static_cast<std::uint64_t>(row_index + 1) * kGamma);
  for (std::int64_t i = 0; i < n; ++i) {
    const std::uint64_t u = Mix64(row_key + static_cast<std::uint64_t>(i + 1) * kGamma);
    const auto sum = static_cast<std::int32_t>((u & 0xFFFF) + ((u >> 16) & 0xFFFF) +
                                               ((u >> 32) & 0xFFFF) + (u >> 48));
    row[i] = static_cast<float>(sum - kIrwinHallMean) * kIrwinHallScale;
  }
}

TensorWriter::TensorWriter(std::FILE* file, std::uint64_t seed, int threads)
    : file_(file), seed_(seed), threads_(std::max(1, threads)) {}

void TensorWriter::EncodeRows(const TensorPlan& plan, std::size_t tensor_index,
                              std::int64_t first_row, std::int64_t begin, std::int64_t end) {
  const std::int64_t n = plan.ne0;
  float* values = values_.data() + begin * n;
  for (std::int64_t r = begin; r < end; ++r) {
    float* row = values + (r - begin) * n;
    if (plan.fill == Fill::kOnes) {
      std::fill(row, row + n, 1.0f);
    } else {
      FillRandomRow(seed_, tensor_index, first_row + r, row, n);
    }
  }
  const std::size_t row_bytes = ggml_row_size(plan.type, n);
  std::uint8_t* out = bytes_.data() + begin * row_bytes;
  const std::int64_t rows = end - begin;
  switch (plan.type) {
    case GGML_TYPE_F32:
      std::memcpy(out, values, rows * row_bytes);
      break;
    case GGML_TYPE_F16:
      ggml_fp32_to_fp16_row(values, reinterpret_cast<ggml_fp16_t*>(out), rows * n);
      break;
    default:
      ggml_quantize_chunk(plan.type, values, out, 0, rows, n, nullptr);
      break;
  }
}

void TensorWriter::EncodeChunk(const TensorPlan& plan, std::size_t tensor_index,
                               std::int64_t first_row, std::int64_t rows) {
  const std::int64_t parts = std::min<std::int64_t>(threads_, rows);
  std::vector<std::jthread> helpers;
  helpers.reserve(parts - 1);
  for (std::int64_t p = 1; p < parts; ++p) {
    auto encode_part = [this, &plan, tensor_index, first_row, rows, parts, p] {
      EncodeRows(plan, tensor_index, first_row, rows * p / parts, rows * (p + 1) / parts);
    };
    try {
      helpers.emplace_back(encode_part);
    } catch (const std::system_error&) {
      encode_part();  // no thread to be had: same rows, same bytes, just slower
    }
  }
  EncodeRows(plan, tensor_index, first_row, 0, rows / parts);
}

Status TensorWriter::Append(const void* data, std::size_t bytes) {
  if (bytes != 0 && std::fwrite(data, 1, bytes, file_) != bytes) {
    return Unavailable(StrCat("writing the model failed: ", std::strerror(errno)));
  }
  return {};
}

Status TensorWriter::Write(const TensorPlan& plan, std::size_t tensor_index,
                           std::size_t alignment) {
  const std::int64_t chunk_rows = std::max<std::int64_t>(1, kChunkValues / plan.ne0);
  const std::size_t row_bytes = ggml_row_size(plan.type, plan.ne0);
  values_.resize(std::min(chunk_rows, plan.ne1) * plan.ne0);
  bytes_.resize(std::min(chunk_rows, plan.ne1) * row_bytes);
  for (std::int64_t first = 0; first < plan.ne1; first += chunk_rows) {
    const std::int64_t rows = std::min(chunk_rows, plan.ne1 - first);
    EncodeChunk(plan, tensor_index, first, rows);
    if (auto written = Append(bytes_.data(), rows * row_bytes); !written) return written;
  }
  const std::size_t total = row_bytes * plan.ne1;
  const std::size_t padding = (alignment - total % alignment) % alignment;
  static constexpr std::uint8_t kZeros[256] = {};
  for (std::size_t left = padding; left > 0;) {
    const std::size_t n = std::min(left, sizeof(kZeros));
    if (auto written = Append(kZeros, n); !written) return written;
    left -= n;
  }
  return {};
}

}  // namespace ember::synth
