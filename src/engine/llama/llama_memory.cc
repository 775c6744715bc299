#include "engine/llama/llama_memory.h"

#include <gguf.h>

#include <algorithm>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>

#include "common/log.h"

namespace ember::engine {
namespace {

struct GgufDeleter {
  void operator()(gguf_context* c) const { gguf_free(c); }
};

std::optional<std::uint64_t> ScalarAsUint(const gguf_context* ctx, std::int64_t key, gguf_type type,
                                          std::size_t index) {
  const void* data = gguf_get_kv_type(ctx, key) == GGUF_TYPE_ARRAY ? gguf_get_arr_data(ctx, key)
                                                                   : gguf_get_val_data(ctx, key);
  if (data == nullptr) return std::nullopt;
  switch (type) {
    case GGUF_TYPE_UINT8:
      return static_cast<const std::uint8_t*>(data)[index];
    case GGUF_TYPE_INT8:
      return std::max<std::int64_t>(0, static_cast<const std::int8_t*>(data)[index]);
    case GGUF_TYPE_UINT16:
      return static_cast<const std::uint16_t*>(data)[index];
    case GGUF_TYPE_INT16:
      return std::max<std::int64_t>(0, static_cast<const std::int16_t*>(data)[index]);
    case GGUF_TYPE_UINT32:
      return static_cast<const std::uint32_t*>(data)[index];
    case GGUF_TYPE_INT32:
      return std::max<std::int64_t>(0, static_cast<const std::int32_t*>(data)[index]);
    case GGUF_TYPE_UINT64:
      return static_cast<const std::uint64_t*>(data)[index];
    case GGUF_TYPE_INT64:
      return std::max<std::int64_t>(0, static_cast<const std::int64_t*>(data)[index]);
    default:
      return std::nullopt;
  }
}

// An integer hyperparameter; a per-layer array (e.g. head_count_kv of some models) gives its
// largest element, an upper bound for every layer.
std::optional<std::uint64_t> GetUint(const gguf_context* ctx, const std::string& name) {
  const std::int64_t key = gguf_find_key(ctx, name.c_str());
  if (key < 0) return std::nullopt;
  if (gguf_get_kv_type(ctx, key) != GGUF_TYPE_ARRAY) {
    return ScalarAsUint(ctx, key, gguf_get_kv_type(ctx, key), 0);
  }
  std::optional<std::uint64_t> best;
  for (std::size_t i = 0; i < gguf_get_arr_n(ctx, key); ++i) {
    auto v = ScalarAsUint(ctx, key, gguf_get_arr_type(ctx, key), i);
    if (!v) return std::nullopt;
    best = std::max(best.value_or(0), *v);
  }
  return best;
}

}  // namespace

Result<MemoryEstimate> EstimateLlamaMemory(const LlamaOptions& options) {
  std::error_code ec;
  if (!std::filesystem::is_regular_file(options.model_path, ec)) {
    return NotFound(StrCat("model file not found: ", options.model_path), "model");
  }
  const std::uint64_t file_size = std::filesystem::file_size(options.model_path, ec);
  std::unique_ptr<gguf_context, GgufDeleter> ctx(
      gguf_init_from_file(options.model_path.c_str(), {.no_alloc = true, .ctx = nullptr}));
  if (!ctx) {
    return InvalidArgument(StrCat("cannot read ", options.model_path, ": not a GGUF file"));
  }
  const std::int64_t arch_key = gguf_find_key(ctx.get(), "general.architecture");
  if (arch_key < 0 || gguf_get_kv_type(ctx.get(), arch_key) != GGUF_TYPE_STRING) {
    return InvalidArgument(
        StrCat("cannot read ", options.model_path, ": no general.architecture in its header"));
  }
  const std::string arch = gguf_get_val_str(ctx.get(), arch_key);
  auto hp = [&](const char* suffix) { return GetUint(ctx.get(), StrCat(arch, ".", suffix)); };
  const auto n_layer = hp("block_count");
  const auto n_embd = hp("embedding_length");
  const auto n_head = hp("attention.head_count");
  if (!n_layer || !n_embd || !n_head || *n_head == 0) {
    return InvalidArgument(StrCat("cannot estimate the memory of ", options.model_path, ": its ",
                                  arch,
                                  " header lacks block_count, embedding_length or "
                                  "attention.head_count"));
  }
  const std::uint64_t n_head_kv = hp("attention.head_count_kv").value_or(*n_head);
  const std::uint64_t head_k = hp("attention.key_length").value_or(*n_embd / *n_head);
  const std::uint64_t head_v = hp("attention.value_length").value_or(*n_embd / *n_head);
  const std::uint64_t n_ff = hp("feed_forward_length").value_or(4 * *n_embd);
  std::uint64_t n_vocab = 32000;
  if (const std::int64_t k = gguf_find_key(ctx.get(), "tokenizer.ggml.tokens"); k >= 0) {
    n_vocab = gguf_get_arr_n(ctx.get(), k);
  }

  MemoryEstimate e;
  for (std::int64_t t = 0; t < gguf_get_n_tensors(ctx.get()); ++t) {
    e.weight_bytes += gguf_get_tensor_size(ctx.get(), t);
  }
  if (e.weight_bytes == 0 || (!ec && e.weight_bytes > file_size)) e.weight_bytes = file_size;
  // libllama pads the context to 256 cells, then each sequence's share to 256 again.
  auto pad256 = [](std::uint64_t n) { return (n + 255) / 256 * 256; };
  const std::uint64_t parallel = static_cast<std::uint64_t>(std::max(options.parallel, 1));
  const std::uint64_t per_seq =
      pad256(pad256(static_cast<std::uint64_t>(std::max(options.ctx_size, 1))) / parallel);
  e.n_ctx_per_seq = static_cast<int>(per_seq);
  const std::uint64_t ctx_cells = per_seq * parallel;
  e.kv_bytes = *n_layer * ctx_cells * n_head_kv * (head_k + head_v) * 2;
  const std::uint64_t batch = static_cast<std::uint64_t>(std::max(options.batch_size, 1));
  e.compute_bytes = 4 * batch * (n_vocab + 4 * *n_embd + n_ff) + (32ull << 20);
  return e;
}

}  // namespace ember::engine
