#include "engine/llama/llama_memory.h"

#include <ggml.h>

#include <algorithm>
#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>

#include "common/log.h"
#include "engine/gguf/gguf_header.h"

namespace ember::engine {
namespace {

// An integer hyperparameter; a per-layer array (e.g. head_count_kv of some models) gives its
// largest element, an upper bound for every layer. A negative value counts as 0.
std::optional<std::uint64_t> GetUint(const GgufHeader& header, const std::string& name) {
  const GgufValue* v = header.Find(name);
  if (v == nullptr) return std::nullopt;
  auto non_negative = [](std::int64_t x) {
    return static_cast<std::uint64_t>(std::max<std::int64_t>(0, x));
  };
  if (v->type != GgufType::kArray) {
    if (IsGgufUnsignedInt(v->type)) return v->uint_value;
    if (IsGgufSignedInt(v->type)) return non_negative(v->int_value);
    return std::nullopt;
  }
  std::optional<std::uint64_t> best;
  for (std::uint64_t e : v->uint_elements) best = std::max(best.value_or(0), e);
  for (std::int64_t e : v->int_elements) best = std::max(best.value_or(0), non_negative(e));
  return best;
}

// The bytes of a tensor's data as ggml counts them, after the checks ggml's own reader makes.
Result<std::uint64_t> TensorBytes(const GgufTensorInfo& t) {
  if (t.name.size() >= GGML_MAX_NAME) {
    return InvalidArgument(StrCat("tensor name '", t.name, "' is longer than ggml's limit of ",
                                  GGML_MAX_NAME - 1, " bytes"));
  }
  if (t.type >= GGML_TYPE_COUNT) {
    return InvalidArgument(StrCat("tensor '", t.name, "' has unknown ggml type ", t.type));
  }
  const auto type = static_cast<ggml_type>(t.type);
  const std::int64_t block = ggml_blck_size(type);
  const std::size_t type_size = ggml_type_size(type);
  if (block <= 0 || type_size == 0) {
    return InvalidArgument(StrCat("tensor '", t.name, "' has ggml type ", t.type,
                                  ", which this ggml no longer supports"));
  }
  if (t.ne[0] % block != 0) {
    return InvalidArgument(StrCat("tensor '", t.name, "' has ", t.ne[0],
                                  " elements per row, not a multiple of the ", ggml_type_name(type),
                                  " block size ", block));
  }
  std::uint64_t bytes = 0;
  bool overflow = static_cast<std::uint64_t>(t.ne[0]) > SIZE_MAX / type_size;
  if (!overflow) bytes = ggml_row_size(type, t.ne[0]);
  for (int d = 1; d < 4 && !overflow; ++d) {
    overflow = __builtin_mul_overflow(bytes, static_cast<std::uint64_t>(t.ne[d]), &bytes);
  }
  if (overflow) {
    return InvalidArgument(StrCat("tensor '", t.name, "' is larger than 2^64 bytes"));
  }
  return bytes;
}

// The tensors' data bytes in all. ggml's reader also requires each tensor's data to start where
// the previous one's ends (padded to the header's alignment), and the data section to start
// within the file.
Result<std::uint64_t> WeightBytes(const GgufHeader& header, std::uint64_t file_size) {
  const std::uint64_t align = header.alignment;
  std::uint64_t total = 0;
  std::uint64_t next_offset = 0;
  for (const GgufTensorInfo& t : header.tensors) {
    auto bytes = TensorBytes(t);
    if (!bytes) return bytes;
    if (t.offset != next_offset) {
      return InvalidArgument(
          StrCat("tensor '", t.name, "' has data offset ", t.offset, ", expected ", next_offset));
    }
    const std::uint64_t padded = *bytes / align * align + (*bytes % align != 0 ? align : 0);
    if (padded < *bytes || __builtin_add_overflow(next_offset, padded, &next_offset)) {
      return InvalidArgument(StrCat("tensor '", t.name, "' ends past 2^64 bytes"));
    }
    total += *bytes;  // <= next_offset, so it cannot overflow
  }
  const std::uint64_t data_start =
      header.header_bytes / align * align + (header.header_bytes % align != 0 ? align : 0);
  if (!header.tensors.empty() && data_start > file_size) {
    return InvalidArgument(
        StrCat("its tensor data would start at byte ", data_start, ", past the end of the file"));
  }
  return total;
}

}  // namespace

Result<MemoryEstimate> EstimateLlamaMemory(const LlamaOptions& options) {
  std::error_code ec;
  if (!std::filesystem::is_regular_file(options.model_path, ec)) {
    return NotFound(StrCat("model file not found: ", options.model_path), "model");
  }
  const std::uint64_t file_size = std::filesystem::file_size(options.model_path, ec);
  auto header = ReadGgufHeader(options.model_path);
  if (!header && header.error().code == ErrorCode::kNotFound) {
    return NotFound(StrCat("model file not found: ", options.model_path), "model");
  }
  if (!header) {
    return InvalidArgument(StrCat("cannot read ", options.model_path, ": not a GGUF file (",
                                  header.error().message, ")"));
  }
  auto weight_bytes = WeightBytes(*header, ec ? UINT64_MAX : file_size);
  if (!weight_bytes) {
    return InvalidArgument(
        StrCat("cannot read ", options.model_path, ": ", weight_bytes.error().message));
  }
  const GgufValue* arch_value = header->Find("general.architecture");
  if (arch_value == nullptr || arch_value->type != GgufType::kString) {
    return InvalidArgument(
        StrCat("cannot read ", options.model_path, ": no general.architecture in its header"));
  }
  const std::string& arch = arch_value->string_value;
  auto hp = [&](const char* suffix) { return GetUint(*header, StrCat(arch, ".", suffix)); };
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
  if (const GgufValue* tokens = header->Find("tokenizer.ggml.tokens")) {
    n_vocab = tokens->type == GgufType::kArray ? tokens->count : 1;
  }

  MemoryEstimate e;
  e.weight_bytes = *weight_bytes;
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
