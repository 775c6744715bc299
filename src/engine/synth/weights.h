// Internal to synth: generates seeded pseudo-random weights chunk by chunk, encodes them in
// the tensor's ggml type and appends them to the output file, so memory stays bounded by one
// chunk however large the model is.
//
// Every row's values depend only on (seed, tensor index, row index), never on chunking or
// the number of threads, so the same seed always gives the same bytes.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <vector>

#include "common/error.h"
#include "engine/synth/layout.h"

namespace ember::synth {

// Standard deviation of the random matrices (GPT-2/Llama init scale): with RMS norms in
// front of every matmul this keeps activations and logits O(1).
inline constexpr float kWeightStd = 0.02f;

// Fills `row` with approximately normal values (mean 0, std kWeightStd, bounded by about
// 3.5 std) for row `row_index` of tensor `tensor_index`.
void FillRandomRow(std::uint64_t seed, std::size_t tensor_index, std::int64_t row_index, float* row,
                   std::int64_t n);

class TensorWriter {
 public:
  // `file` must stay open for the writer's lifetime; `threads` >= 1 encode each chunk.
  TensorWriter(std::FILE* file, std::uint64_t seed, int threads);

  // Appends the data of tensor `tensor_index` (described by `plan`), then zero padding up
  // to `alignment` as GGUF requires between tensors.
  [[nodiscard]] Status Write(const TensorPlan& plan, std::size_t tensor_index,
                             std::size_t alignment);

 private:
  void EncodeRows(const TensorPlan& plan, std::size_t tensor_index, std::int64_t first_row,
                  std::int64_t begin, std::int64_t end);
  void EncodeChunk(const TensorPlan& plan, std::size_t tensor_index, std::int64_t first_row,
                   std::int64_t rows);
  [[nodiscard]] Status Append(const void* data, std::size_t bytes);

  std::FILE* file_;
  std::uint64_t seed_;
  int threads_;
  std::vector<float> values_;        // one chunk of rows as f32
  std::vector<std::uint8_t> bytes_;  // the same rows encoded in the tensor's type
};

}  // namespace ember::synth
