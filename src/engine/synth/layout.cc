#include "engine/synth/layout.h"

#include <ggml.h>

#include <filesystem>
#include <string_view>
#include <system_error>

#include "common/log.h"

namespace ember::synth {
namespace {

constexpr float kRmsEps = 1e-5f;

// general.file_type values (llama.h's llama_ftype; synth stays on ggml's API only).
constexpr std::uint32_t kFtypeAllF32 = 0;
constexpr std::uint32_t kFtypeMostlyF16 = 1;
constexpr std::uint32_t kFtypeMostlyQ4_0 = 2;
constexpr std::uint32_t kFtypeMostlyQ8_0 = 7;

constexpr ShapeSpec kTinySpec{.name = "tiny",
                              .n_embd = 256,
                              .n_layer = 4,
                              .n_head = 8,
                              .n_head_kv = 4,
                              .n_ff = 768,
                              .n_ctx_train = 2048,
                              .rope_freq_base = 10000.0f,
                              .tied_embeddings = false,
                              .vocab_file = "ggml-vocab-llama-spm.gguf"};
// stories110M / llama2-110M (Karpathy's llama2.c), as converted to GGUF.
constexpr ShapeSpec k110mSpec{.name = "110m",
                              .n_embd = 768,
                              .n_layer = 12,
                              .n_head = 12,
                              .n_head_kv = 12,
                              .n_ff = 2048,
                              .n_ctx_train = 2048,
                              .rope_freq_base = 10000.0f,
                              .tied_embeddings = false,
                              .vocab_file = "ggml-vocab-llama-spm.gguf"};
// Llama-3.2-1B, with an 8k training context instead of 128k (no rope scaling tensor).
constexpr ShapeSpec k1bSpec{.name = "1b",
                            .n_embd = 2048,
                            .n_layer = 16,
                            .n_head = 32,
                            .n_head_kv = 8,
                            .n_ff = 8192,
                            .n_ctx_train = 8192,
                            .rope_freq_base = 500000.0f,
                            .tied_embeddings = true,
                            .vocab_file = "ggml-vocab-llama-bpe.gguf"};

ggml_type MatrixType(WeightType type) {
  switch (type) {
    case WeightType::kF32:
      return GGML_TYPE_F32;
    case WeightType::kF16:
      return GGML_TYPE_F16;
    case WeightType::kQ8_0:
      return GGML_TYPE_Q8_0;
    case WeightType::kQ4_0:
      return GGML_TYPE_Q4_0;
  }
  return GGML_TYPE_F32;
}

std::uint32_t FileType(WeightType type) {
  switch (type) {
    case WeightType::kF32:
      return kFtypeAllF32;
    case WeightType::kF16:
      return kFtypeMostlyF16;
    case WeightType::kQ8_0:
      return kFtypeMostlyQ8_0;
    case WeightType::kQ4_0:
      return kFtypeMostlyQ4_0;
  }
  return kFtypeAllF32;
}

// Size of the vocabulary: the length of tokenizer.ggml.tokens, or 0 if absent/malformed.
std::uint32_t VocabSize(const gguf_context& vocab) {
  const std::int64_t id = gguf_find_key(&vocab, "tokenizer.ggml.tokens");
  if (id < 0 || gguf_get_kv_type(&vocab, id) != GGUF_TYPE_ARRAY ||
      gguf_get_arr_type(&vocab, id) != GGUF_TYPE_STRING) {
    return 0;
  }
  return static_cast<std::uint32_t>(gguf_get_arr_n(&vocab, id));
}

// Copies every tokenizer.* key of `vocab` into `out`; other keys (general.*, another
// architecture's hyperparameters) are dropped.
void CopyTokenizerKeys(const gguf_context& vocab, gguf_context* out) {
  GgufPtr scratch(gguf_init_empty());
  gguf_set_kv(scratch.get(), &vocab);
  constexpr std::string_view kPrefix = "tokenizer.";
  for (std::int64_t i = 0; i < gguf_get_n_kv(scratch.get());) {
    const std::string_view key = gguf_get_key(scratch.get(), i);
    if (key.starts_with(kPrefix)) {
      ++i;
    } else {
      gguf_remove_key(scratch.get(), std::string(key).c_str());
    }
  }
  gguf_set_kv(out, scratch.get());
}

void SetHyperparameters(const ShapeSpec& spec, WeightType type, std::uint64_t seed,
                        std::uint32_t n_vocab, gguf_context* out) {
  const std::string name = StrCat("ember-synth-", spec.name, "-", WeightTypeName(type));
  gguf_set_val_str(out, "general.architecture", "llama");
  gguf_set_val_str(out, "general.name", name.c_str());
  gguf_set_val_u32(out, "general.file_type", FileType(type));
  gguf_set_val_u64(out, "ember.synth.seed", seed);
  gguf_set_val_u32(out, "llama.vocab_size", n_vocab);
  gguf_set_val_u32(out, "llama.context_length", spec.n_ctx_train);
  gguf_set_val_u32(out, "llama.embedding_length", spec.n_embd);
  gguf_set_val_u32(out, "llama.block_count", spec.n_layer);
  gguf_set_val_u32(out, "llama.feed_forward_length", spec.n_ff);
  gguf_set_val_u32(out, "llama.attention.head_count", spec.n_head);
  gguf_set_val_u32(out, "llama.attention.head_count_kv", spec.n_head_kv);
  gguf_set_val_f32(out, "llama.attention.layer_norm_rms_epsilon", kRmsEps);
  gguf_set_val_u32(out, "llama.rope.dimension_count", spec.n_embd / spec.n_head);
  gguf_set_val_f32(out, "llama.rope.freq_base", spec.rope_freq_base);
}

// The tensors of LLM_ARCH_LLAMA (llama.cpp src/models/llama.cpp), in file order.
std::vector<TensorPlan> PlanTensors(const ShapeSpec& spec, ggml_type type, std::int64_t n_vocab) {
  const std::int64_t n_embd = spec.n_embd;
  const std::int64_t n_embd_gqa = n_embd / spec.n_head * spec.n_head_kv;
  const std::int64_t n_ff = spec.n_ff;
  std::vector<TensorPlan> plans;
  plans.push_back({"token_embd.weight", type, n_embd, n_vocab, Fill::kRandom});
  for (std::uint32_t i = 0; i < spec.n_layer; ++i) {
    const std::string blk = StrCat("blk.", i, ".");
    plans.push_back({blk + "attn_norm.weight", GGML_TYPE_F32, n_embd, 1, Fill::kOnes});
    plans.push_back({blk + "attn_q.weight", type, n_embd, n_embd, Fill::kRandom});
    plans.push_back({blk + "attn_k.weight", type, n_embd, n_embd_gqa, Fill::kRandom});
    plans.push_back({blk + "attn_v.weight", type, n_embd, n_embd_gqa, Fill::kRandom});
    plans.push_back({blk + "attn_output.weight", type, n_embd, n_embd, Fill::kRandom});
    plans.push_back({blk + "ffn_norm.weight", GGML_TYPE_F32, n_embd, 1, Fill::kOnes});
    plans.push_back({blk + "ffn_gate.weight", type, n_embd, n_ff, Fill::kRandom});
    plans.push_back({blk + "ffn_up.weight", type, n_embd, n_ff, Fill::kRandom});
    plans.push_back({blk + "ffn_down.weight", type, n_ff, n_embd, Fill::kRandom});
  }
  plans.push_back({"output_norm.weight", GGML_TYPE_F32, n_embd, 1, Fill::kOnes});
  if (!spec.tied_embeddings) {
    plans.push_back({"output.weight", type, n_embd, n_vocab, Fill::kRandom});
  }
  return plans;
}

// Registers each planned tensor's info (name, type, shape) with the GGUF. The tensors live
// in a no_alloc ggml context only long enough for gguf_add_tensor to copy them.
Status AddTensorInfos(const std::vector<TensorPlan>& plans, gguf_context* out) {
  ggml_init_params params{ggml_tensor_overhead() * (plans.size() + 1), nullptr, true};
  std::unique_ptr<ggml_context, decltype(&ggml_free)> ctx(ggml_init(params), &ggml_free);
  if (!ctx) return Internal("ggml_init failed for the tensor infos");
  for (const TensorPlan& plan : plans) {
    if (plan.ne0 % ggml_blck_size(plan.type) != 0) {
      return Internal(StrCat(plan.name, ": row length ", plan.ne0, " is not a multiple of ",
                             ggml_type_name(plan.type), "'s block size"));
    }
    ggml_tensor* t = plan.ne1 == 1 ? ggml_new_tensor_1d(ctx.get(), plan.type, plan.ne0)
                                   : ggml_new_tensor_2d(ctx.get(), plan.type, plan.ne0, plan.ne1);
    ggml_set_name(t, plan.name.c_str());
    gguf_add_tensor(out, t);
  }
  return {};
}

}  // namespace

const ShapeSpec& SpecFor(Shape shape) {
  switch (shape) {
    case Shape::kTiny:
      return kTinySpec;
    case Shape::k110m:
      return k110mSpec;
    case Shape::k1b:
      return k1bSpec;
  }
  return kTinySpec;
}

Result<GgufPtr> ReadVocab(const std::string& path) {
  std::error_code ec;
  if (!std::filesystem::is_regular_file(path, ec)) {
    return NotFound(StrCat("vocabulary file not found: ", path), "vocab");
  }
  gguf_init_params params{true, nullptr};
  GgufPtr vocab(gguf_init_from_file(path.c_str(), params));
  if (!vocab) {
    return InvalidArgument(StrCat("not a readable GGUF file: ", path), "vocab");
  }
  if (VocabSize(*vocab) == 0) {
    return InvalidArgument(StrCat(path, " has no tokenizer.ggml.tokens string array"), "vocab");
  }
  if (gguf_find_key(vocab.get(), "tokenizer.ggml.model") < 0) {
    return InvalidArgument(StrCat(path, " has no tokenizer.ggml.model"), "vocab");
  }
  return vocab;
}

Result<Layout> BuildLayout(const ShapeSpec& spec, WeightType type, std::uint64_t seed,
                           const gguf_context& vocab) {
  const std::uint32_t n_vocab = VocabSize(vocab);
  if (n_vocab == 0) return InvalidArgument("vocabulary has no tokens", "vocab");
  Layout layout{GgufPtr(gguf_init_empty()), {}};
  if (!layout.gguf) return Internal("gguf_init_empty failed");
  SetHyperparameters(spec, type, seed, n_vocab, layout.gguf.get());
  CopyTokenizerKeys(vocab, layout.gguf.get());
  layout.tensors = PlanTensors(spec, MatrixType(type), n_vocab);
  if (auto added = AddTensorInfos(layout.tensors, layout.gguf.get()); !added) {
    return std::unexpected(std::move(added.error()));
  }
  return layout;
}

}  // namespace ember::synth
