// How much memory a model will take once loaded, read from its GGUF header before loading it
// (server/ models' memory budget). The header is read with engine/gguf's scanner (about a
// millisecond for a 128k-token vocabulary, which it skips over rather than allocating); this
// lives in engine/llama because tensor sizes come from ggml's type traits. Callable from any
// thread, touches no loaded model.
#pragma once

#include <cstdint>

#include "common/error.h"
#include "engine/llama/llama_engine.h"

namespace ember::engine {

struct MemoryEstimate {
  std::uint64_t weight_bytes = 0;   // tensor data in the file (a repack keeps it about the same)
  std::uint64_t kv_bytes = 0;       // F16 K and V for every layer and context cell
  std::uint64_t compute_bytes = 0;  // allowance for the compute and output buffers
  int n_ctx_per_seq = 0;            // KV cells per sequence, as libllama will round ctx_size
  std::uint64_t total() const { return weight_bytes + kv_bytes + compute_bytes; }
};

// Reads the GGUF header of `options.model_path` (no tensor data; the file is mapped, only the
// header's pages are read) and estimates what loading it with these options costs:
// weights + n_layer x (KV cells, ctx_size as libllama rounds it:
// each sequence's share padded to 256) x (n_embd_k_gqa + n_embd_v_gqa) x 2
// bytes + a compute allowance of 4 x batch_size x (n_vocab + 4 x n_embd + n_ff) bytes + 32 MiB.
// NotFound when the file is missing; InvalidArgument when it is not a GGUF llama.cpp can read
// (a malformed header, or tensor infos ggml's reader would refuse), naming the problem.
[[nodiscard]] Result<MemoryEstimate> EstimateLlamaMemory(const LlamaOptions& options);

}  // namespace ember::engine
