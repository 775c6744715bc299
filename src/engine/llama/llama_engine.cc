#include "engine/llama/llama_engine.h"

#include <ggml-cpu.h>
#include <llama.h>

#include <algorithm>
#include <cctype>
#include <chrono>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <list>
#include <mutex>
#include <optional>
#include <random>
#include <vector>

#include "common/log.h"
#include "engine/gguf/gguf_header.h"
#include "engine/llama/cpu_backend.h"
#ifdef EMBER_HAVE_LLGUIDANCE
#include "engine/llama/llguidance_sampler.h"
#endif
#include "engine/llama/llama_tokenizer.h"
#include "engine/llama/repack_cache.h"

namespace ember::engine {
namespace {

using SteadyClock = std::chrono::steady_clock;

// Boundaries between start-up phases that libllama has no callback for, taken from its own
// log lines on the loading thread: the loader prints the file's summary once the header is
// read, and announces tensor creation once the tokenizer is built. If a llama.cpp version
// words them differently, the phases merge into "metadata"; nothing else depends on them.
struct LoadMarks {
  const LlamaOptions* options;
  std::optional<SteadyClock::time_point> header_read;
  std::optional<SteadyClock::time_point> tokenizer_built;
};
thread_local LoadMarks* t_load_marks = nullptr;

void MarkLoadPhase(std::string_view line) {
  LoadMarks* marks = t_load_marks;
  if (marks == nullptr) return;
  auto mark = [&](std::optional<SteadyClock::time_point>& at, std::string_view next_phase) {
    at = SteadyClock::now();
    if (marks->options->on_phase) marks->options->on_phase(next_phase);
  };
  if (!marks->header_read && line.starts_with("print_info: file format")) {
    mark(marks->header_read, "tokenizer");
  } else if (marks->header_read && !marks->tokenizer_built &&
             line.starts_with("load_tensors: loading model tensors")) {
    mark(marks->tokenizer_built, "buffers");
  }
}

void LogFromLlama(ggml_log_level level, const char* text, void* /*user*/) {
  std::string_view line(text);
  MarkLoadPhase(line);
  while (!line.empty() && line.back() == '\n') line.remove_suffix(1);
  if (line.empty()) return;
  if (level == GGML_LOG_LEVEL_ERROR) {
    log::Error("llama: ", line);
  } else if (level == GGML_LOG_LEVEL_WARN) {
    log::Warn("llama: ", line);
  } else {
    log::Debug("llama: ", line);
  }
}

// The CPU backend is normally loaded by the server before any model (--cpu-variant); a
// caller that did not choose gets the best variant this CPU runs.
Status InitBackendOnce() {
  static std::once_flag once;
  static Status status;
  std::call_once(once, [] {
    llama_log_set(LogFromLlama, nullptr);
    if (LoadedCpuBackend() == nullptr) {
      if (auto loaded = LoadCpuBackend(""); !loaded) status = std::unexpected(loaded.error());
    }
    llama_backend_init();
  });
  return status;
}

// ember's patches add these to the CPU backend's get_proc_address (0002, 0003); a llama.cpp
// without them has neither, and the features that need them are refused or turned off.
using SetBatchInvariantFn = void (*)(bool);
SetBatchInvariantFn BatchInvariantSetter() {
  return reinterpret_cast<SetBatchInvariantFn>(CpuBackendFunction("ggml_cpu_set_batch_invariant"));
}
void SetBatchInvariant(bool enabled) {
  static const SetBatchInvariantFn set = BatchInvariantSetter();
  if (set != nullptr) set(enabled);
}

#ifdef EMBER_HAVE_REPACK_ALLOCATOR
using SetRepackAllocatorFn = void (*)(const ggml_cpu_repack_allocator*);
SetRepackAllocatorFn RepackAllocatorSetter() {
  static const auto set =
      reinterpret_cast<SetRepackAllocatorFn>(CpuBackendFunction("ggml_cpu_repack_set_allocator"));
  return set;
}
bool HaveRepackAllocator() { return RepackAllocatorSetter() != nullptr; }
// Routes ggml's CPU_REPACK buffer allocations to `cache` while it lives (nullptr: ggml's own).
class RepackAllocatorScope {
 public:
  explicit RepackAllocatorScope(RepackCache* cache) {
    if (cache == nullptr || !HaveRepackAllocator()) return;
    ggml_cpu_repack_allocator allocator{[](void* user, size_t size, bool* prefilled) {
                                          return static_cast<RepackCache*>(user)->Alloc(size,
                                                                                        prefilled);
                                        },
                                        [](void* user, void* base, size_t size) {
                                          static_cast<RepackCache*>(user)->Free(base, size);
                                        },
                                        cache};
    RepackAllocatorSetter()(&allocator);
    installed_ = true;
  }
  ~RepackAllocatorScope() {
    if (installed_) RepackAllocatorSetter()(nullptr);
  }

 private:
  bool installed_ = false;
};
#else
bool HaveRepackAllocator() { return false; }
struct RepackAllocatorScope {
  explicit RepackAllocatorScope(RepackCache* /*cache*/) {}
};
#endif

std::string CpuVariantName() {
  const CpuBackend* cpu = LoadedCpuBackend();
  return cpu != nullptr ? cpu->variant : "none";
}

// The CPU variant's share of the model's numerics id: the model's weight types decide which
// variants compute it identically (cpu_backend.h NumericsClass). A header that cannot be read
// here (libllama just read it) gives an impossible type, so the variant's own name.
std::string CpuNumerics(const std::string& model_path) {
  const CpuBackend* cpu = LoadedCpuBackend();
  if (cpu == nullptr) return "none";
  std::vector<std::uint32_t> types{GGML_TYPE_COUNT};
  if (auto header = ReadGgufHeader(model_path)) {
    types.clear();
    for (const GgufTensorInfo& t : header->tensors) types.push_back(t.type);
  }
  return NumericsClass(*cpu, types);
}

// ggml's allocator hook is process-wide: one model loads at a time.
std::mutex& LoadMutex() {
  static std::mutex mu;
  return mu;
}

// Everything besides the model's bytes that repacked weights depend on: the ggml build (its
// commit, flags and ember's patches) and the CPU features it detects at run time. A user's
// own checkout has no build id, so the binary's own identity stands in for it.
std::string RepackIdentity() {
  std::string build = EMBER_LLAMA_BUILD_ID;
  if (build == "checkout") {
    std::error_code ec;
    const auto exe = std::filesystem::read_symlink("/proc/self/exe", ec);
    const auto size = ec ? 0 : std::filesystem::file_size(exe, ec);
    const auto mtime =
        ec ? 0 : std::filesystem::last_write_time(exe, ec).time_since_epoch().count();
    build = StrCat("checkout:", exe.string(), ":", size, ":", mtime);
  }
  return StrCat("repack-format=1|build=", build, "|cpu_variant=", CpuVariantName(),
                "|cpu=", llama_print_system_info());
}

struct ModelDeleter {
  void operator()(llama_model* m) const { llama_model_free(m); }
};
struct ContextDeleter {
  void operator()(llama_context* c) const { llama_free(c); }
};
struct SamplerDeleter {
  void operator()(llama_sampler* s) const { llama_sampler_free(s); }
};
using SamplerPtr = std::unique_ptr<llama_sampler, SamplerDeleter>;

SamplerPtr BuildSampler(const SamplingParams& p, int n_vocab, int penalty_window) {
  SamplerPtr chain(llama_sampler_chain_init(llama_sampler_chain_default_params()));
  if (p.presence_penalty != 0.0f || p.frequency_penalty != 0.0f) {
    llama_sampler_chain_add(chain.get(),
                            llama_sampler_init_penalties(n_vocab, penalty_window, 1.0f,
                                                         p.frequency_penalty, p.presence_penalty));
  }
  if (p.temperature <= 0.0f) {
    llama_sampler_chain_add(chain.get(), llama_sampler_init_greedy());
    return chain;
  }
  if (p.top_k > 0) llama_sampler_chain_add(chain.get(), llama_sampler_init_top_k(p.top_k));
  if (p.top_p < 1.0f) llama_sampler_chain_add(chain.get(), llama_sampler_init_top_p(p.top_p, 1));
  if (p.min_p > 0.0f) llama_sampler_chain_add(chain.get(), llama_sampler_init_min_p(p.min_p, 1));
  llama_sampler_chain_add(chain.get(), llama_sampler_init_temp(p.temperature));
  const std::uint64_t seed = p.seed ? *p.seed : std::random_device{}();
  // llama's dist sampler takes 32 bits; fold the high half in so every seed bit matters.
  llama_sampler_chain_add(chain.get(),
                          llama_sampler_init_dist(static_cast<uint32_t>(seed ^ (seed >> 32))));
  return chain;
}

struct LlamaSamplerState final : SamplerState {
  SamplerPtr chain;
  SamplerPtr grammar;  // null for an unconstrained sequence
};

// Compiled grammars by their text and triggers, so a schema or tool set that many requests
// share is parsed once; each sequence gets a clone (its own parse state). Engine thread only.
class GrammarCache {
 public:
  explicit GrammarCache(const llama_vocab* vocab) : vocab_(vocab) {}

  // Whether `grammar` runs through llguidance here (its prefill is then not fed).
  static bool UsesLlguidance(const Grammar& grammar) {
#ifdef EMBER_HAVE_LLGUIDANCE
    return !grammar.json_schema.empty();
#else
    (void)grammar;
    return false;
#endif
  }

  // A fresh sampler for `grammar`, or why its text does not compile.
  Result<SamplerPtr> Get(const Grammar& grammar) {
    if (UsesLlguidance(grammar)) return GetLlg(grammar.json_schema);
    std::string key = grammar.lazy ? "lazy\n" : "eager\n";
    for (const std::string& p : grammar.trigger_patterns) key += StrCat(p.size(), ":", p);
    key += '\n';
    for (const std::int32_t t : grammar.trigger_tokens) key += StrCat(t, ",");
    key += '\n';
    key += grammar.gbnf;
    if (SamplerPtr hit = Lookup(key)) return hit;
    SamplerPtr compiled = Compile(grammar);
    if (!compiled) {
      return InvalidArgument(
          "the output constraint's grammar does not compile (llama.cpp's log says where)");
    }
    return Insert(std::move(key), std::move(compiled));
  }

 private:
  static constexpr std::size_t kCapacity = 64;
  struct Entry {
    std::string key;
    SamplerPtr pristine;
  };

  SamplerPtr Compile(const Grammar& grammar) const {
    if (!grammar.lazy) {
      return SamplerPtr(llama_sampler_init_grammar(vocab_, grammar.gbnf.c_str(), "root"));
    }
    std::vector<const char*> patterns;
    for (const std::string& p : grammar.trigger_patterns) patterns.push_back(p.c_str());
    return SamplerPtr(llama_sampler_init_grammar_lazy_patterns(
        vocab_, grammar.gbnf.c_str(), "root", patterns.data(), patterns.size(),
        grammar.trigger_tokens.data(), grammar.trigger_tokens.size()));
  }

  // A clone of the cached sampler for `key` (now the most recently used), or null.
  SamplerPtr Lookup(const std::string& key) {
    for (auto it = entries_.begin(); it != entries_.end(); ++it) {
      if (it->key == key) {
        entries_.splice(entries_.begin(), entries_, it);
        return SamplerPtr(llama_sampler_clone(entries_.front().pristine.get()));
      }
    }
    return nullptr;
  }

  // Caches `pristine` under `key` (dropping the least recently used past kCapacity) and returns
  // a clone for the caller.
  SamplerPtr Insert(std::string key, SamplerPtr pristine) {
    SamplerPtr copy(llama_sampler_clone(pristine.get()));
    entries_.push_front({std::move(key), std::move(pristine)});
    if (entries_.size() > kCapacity) entries_.pop_back();
    return copy;
  }

  Result<SamplerPtr> GetLlg(const std::string& schema) {
#ifdef EMBER_HAVE_LLGUIDANCE
    std::string key = "json\n" + schema;
    if (SamplerPtr hit = Lookup(key)) return hit;
    if (llg_vocab_ == nullptr) {  // once per model, on its first schema
      const auto t0 = std::chrono::steady_clock::now();
      llg_vocab_ = NewLlgVocabulary(vocab_);
      if (llg_vocab_ == nullptr) return Internal("llguidance refused the model's vocabulary");
      log::Info("llguidance: the vocabulary (", llama_vocab_n_tokens(vocab_),
                " tokens) prepared for JSON schemas in ",
                std::chrono::duration_cast<std::chrono::milliseconds>(
                    std::chrono::steady_clock::now() - t0)
                    .count(),
                " ms");
    }
    const auto start = std::chrono::steady_clock::now();
    auto compiled = NewLlgSampler(llg_vocab_, schema);
    if (!compiled) return std::unexpected(compiled.error());
    log::Debug("JSON schema (", schema.size(), " bytes) compiled by llguidance in ",
               std::chrono::duration_cast<std::chrono::microseconds>(
                   std::chrono::steady_clock::now() - start)
                   .count(),
               " us");
    return Insert(std::move(key), SamplerPtr(*compiled));
#else
    (void)schema;
    return Internal("llguidance is not built in");
#endif
  }

  const llama_vocab* vocab_;
  std::list<Entry> entries_;
#ifdef EMBER_HAVE_LLGUIDANCE
  std::shared_ptr<LlgVocabulary> llg_vocab_;
#endif
};

// Log-softmax over the candidates that survived the chain (all of them for greedy) and the
// `n_top` most likely, ties to the lower token id as the greedy sampler breaks them. The
// candidates' logits are what the chain sampled from: penalised, filtered, divided by the
// temperature. Reorders `cur`; the chosen token was read before.
void FillLogprobs(llama_token_data_array& cur, Token chosen, float chosen_logit, int n_top,
                  Sampled& out) {
  float max_logit = -INFINITY;
  for (std::size_t i = 0; i < cur.size; ++i) max_logit = std::max(max_logit, cur.data[i].logit);
  double sum = 0.0;
  for (std::size_t i = 0; i < cur.size; ++i) sum += std::exp(double{cur.data[i].logit} - max_logit);
  const double log_norm = max_logit + std::log(sum);
  out.has_logprobs = true;
  out.token = chosen;
  out.logprob = static_cast<float>(chosen_logit - log_norm);
  const std::size_t n = std::min<std::size_t>(std::clamp(n_top, 0, kMaxTopLogprobs), cur.size);
  auto more_likely = [](const llama_token_data& a, const llama_token_data& b) {
    return a.logit != b.logit ? a.logit > b.logit : a.id < b.id;
  };
  std::partial_sort(cur.data, cur.data + n, cur.data + cur.size, more_likely);
  out.n_top = static_cast<int>(n);
  for (std::size_t i = 0; i < n; ++i) {
    out.top[i] = {cur.data[i].id, static_cast<float>(cur.data[i].logit - log_norm)};
  }
}

// A slot's cells as llama_state_seq_get_data_ext wrote them.
struct LlamaCells final : CellsSnapshot {
  std::vector<std::uint8_t> bytes_saved;
  int positions = 0;
  bool all_invariant = true;
  std::size_t bytes() const override { return bytes_saved.size(); }
  int n_pos() const override { return positions; }
  bool invariant() const override { return all_invariant; }
  std::span<const std::uint8_t> data() const override { return bytes_saved; }
};

class LlamaEngine final : public Engine {
 public:
  LlamaEngine(std::unique_ptr<RepackCache> repack_cache,
              std::unique_ptr<llama_model, ModelDeleter> model,
              std::unique_ptr<llama_context, ContextDeleter> ctx, ModelInfo info)
      : repack_cache_(std::move(repack_cache)),
        model_(std::move(model)),
        ctx_(std::move(ctx)),
        tokenizer_(model_.get()),
        info_(std::move(info)),
        samplers_(info_.n_parallel),
        grammars_(info_.n_parallel),
        grammar_cache_(llama_model_get_vocab(model_.get())),
        logprobs_(info_.n_parallel),
        cells_invariant_(info_.n_parallel, true),
        deterministic_(info_.n_parallel, false),
        copy_pending_(info_.n_parallel, false),
        copy_source_pending_(info_.n_parallel, false),
        embeddings_(info_.n_parallel),
        batch_(llama_batch_init(info_.n_batch, 0, 1)) {
    info_.chat_template = tokenizer_.TemplateDescription();
  }
  ~LlamaEngine() override { llama_batch_free(batch_); }

  const ModelInfo& Info() const override { return info_; }
  const Tokenizer& tokenizer() const override { return tokenizer_; }
  const llama_vocab* vocab() const { return llama_model_get_vocab(model_.get()); }

  Result<int> BeginSequence(int slot, const SamplingParams& params, int keep) override {
    if (slot < 0 || slot >= info_.n_parallel) return Internal("sequence slot out of range");
    llama_memory_t mem = llama_get_memory(ctx_.get());
    // A deterministic sequence must not inherit cells computed with batch-dependent numerics.
    if (params.deterministic && !cells_invariant_[slot]) keep = 0;
    deterministic_[slot] = params.deterministic;
    // A pooled embedding pools over the tokens of one step: nothing may come from a prefix.
    if (info_.embedding_only()) keep = 0;
    if (keep <= 0 || !llama_memory_seq_rm(mem, slot, keep, -1)) {
      llama_memory_seq_rm(mem, slot, -1, -1);
      keep = 0;
      cells_invariant_[slot] = true;
    }
    grammars_[slot].reset();
    if (params.grammar) {
      auto grammar = grammar_cache_.Get(*params.grammar);
      if (!grammar) return std::unexpected(grammar.error());
      const std::string& prefill =
          GrammarCache::UsesLlguidance(*params.grammar) ? std::string() : params.grammar->prefill;
      if (auto fed = Prefill(grammar->get(), prefill); !fed) {
        return std::unexpected(fed.error());
      }
      grammars_[slot] = std::move(*grammar);
    }
    samplers_[slot] = BuildSampler(params, info_.n_vocab, info_.n_ctx_per_seq);
    logprobs_[slot] = params.logprobs ? std::optional<int>(params.top_logprobs) : std::nullopt;
    return keep;
  }

  // With one KV stream per sequence, libllama copies between sequences only whole streams (the
  // buffer copy runs at the next decode); the cells past n_pos are then dropped from dst.
  Status CopyPrefix(int src_slot, int dst_slot, int n_pos) override {
    const int n = info_.n_parallel;
    if (src_slot < 0 || src_slot >= n || dst_slot < 0 || dst_slot >= n || src_slot == dst_slot) {
      return Internal("CopyPrefix: slot out of range");
    }
    llama_memory_t mem = llama_get_memory(ctx_.get());
    llama_memory_seq_rm(mem, dst_slot, -1, -1);
    if (n_pos <= 0) return {};
    if (deterministic_[dst_slot] && !cells_invariant_[src_slot]) {
      return Unavailable(
          "CopyPrefix: the source's cells were not all computed with batch-invariant numerics");
    }
    if (llama_memory_seq_pos_max(mem, src_slot) + 1 < n_pos) {
      return Internal("CopyPrefix: the source slot holds fewer positions than asked for");
    }
    llama_memory_seq_cp(mem, src_slot, dst_slot, -1, -1);
    copy_pending_[dst_slot] = true;
    copy_source_pending_[src_slot] = true;
    if (!llama_memory_seq_rm(mem, dst_slot, n_pos, -1)) {
      llama_memory_seq_rm(mem, dst_slot, -1, -1);
      return Internal("CopyPrefix: the memory cannot drop the copied suffix");
    }
    cells_invariant_[dst_slot] = cells_invariant_[src_slot];
    return {};
  }

  // libllama saves a sequence's cells whole (LLAMA_STATE_SEQ_FLAGS_PARTIAL_ONLY is about SWA and
  // recurrent state, not a prefix): the snapshot holds every cell of the slot, and a restore
  // drops what lies past n_pos. Bytes are proportional to the cells the slot holds.
  Result<std::unique_ptr<CellsSnapshot>> SaveCells(int slot) override {
    if (slot < 0 || slot >= info_.n_parallel) return Internal("SaveCells: slot out of range");
    // A stream copy queued by CopyPrefix lands at the next decode: the buffer is not yet there.
    if (copy_pending_[slot]) return Unavailable("SaveCells: the slot's cells are still a copy");
    if (info_.embedding_only()) return Unavailable("SaveCells: an embedding model keeps no cells");
    llama_context* ctx = ctx_.get();
    const int n_pos = llama_memory_seq_pos_max(llama_get_memory(ctx), slot) + 1;
    if (n_pos <= 0) return Unavailable("SaveCells: the slot holds no cells");
    auto cells = std::make_unique<LlamaCells>();
    cells->bytes_saved.resize(llama_state_seq_get_size_ext(ctx, slot, 0));
    if (cells->bytes_saved.empty() ||
        llama_state_seq_get_data_ext(ctx, cells->bytes_saved.data(), cells->bytes_saved.size(),
                                     slot, 0) != cells->bytes_saved.size()) {
      return Internal("SaveCells: libllama could not save the sequence's state");
    }
    cells->positions = n_pos;
    cells->all_invariant = cells_invariant_[slot];
    return cells;
  }

  Status RestoreCells(int dst_slot, const CellsSnapshot& snapshot, int n_pos) override {
    if (dst_slot < 0 || dst_slot >= info_.n_parallel) {
      return Internal("RestoreCells: slot out of range");
    }
    llama_memory_t mem = llama_get_memory(ctx_.get());
    llama_memory_seq_rm(mem, dst_slot, -1, -1);
    if (n_pos <= 0) return {};
    // The copy runs at the next decode: it would overwrite a restore into its destination, or
    // copy the restored cells instead of the source's own.
    if (copy_pending_[dst_slot] || copy_source_pending_[dst_slot]) {
      return Unavailable("RestoreCells: a stream copy from or into the slot is still to land");
    }
    const auto* cells = dynamic_cast<const LlamaCells*>(&snapshot);
    if (cells == nullptr || cells->positions < n_pos) {
      return Internal("RestoreCells: not a snapshot of this engine holding that many positions");
    }
    if (deterministic_[dst_slot] && !cells->all_invariant) {
      return Unavailable(
          "RestoreCells: the cells were not all computed with batch-invariant numerics");
    }
    const std::size_t read = llama_state_seq_set_data_ext(ctx_.get(), cells->bytes_saved.data(),
                                                          cells->bytes_saved.size(), dst_slot, 0);
    if (read != cells->bytes_saved.size() || llama_memory_seq_pos_max(mem, dst_slot) + 1 < n_pos ||
        !llama_memory_seq_rm(mem, dst_slot, n_pos, -1)) {
      llama_memory_seq_rm(mem, dst_slot, -1, -1);
      return Internal("RestoreCells: libllama could not restore the sequence's state");
    }
    cells_invariant_[dst_slot] = cells->all_invariant;
    return {};
  }

  std::unique_ptr<CellsSnapshot> CellsFromBytes(std::vector<std::uint8_t> data, int n_pos,
                                                bool invariant) const override {
    if (data.empty() || n_pos <= 0 || n_pos > info_.n_ctx_per_seq) return nullptr;
    auto cells = std::make_unique<LlamaCells>();
    cells->bytes_saved = std::move(data);
    cells->positions = n_pos;
    cells->all_invariant = invariant;
    return cells;
  }

  void EndSequence(int slot, bool keep_cells) override {
    if (slot < 0 || slot >= info_.n_parallel) return;
    if (!keep_cells) {
      llama_memory_seq_rm(llama_get_memory(ctx_.get()), slot, -1, -1);
      cells_invariant_[slot] = true;
    }
    deterministic_[slot] = false;
    samplers_[slot].reset();
    grammars_[slot].reset();
  }

  // The sampler chain and grammar themselves move out and back (no clone): the dist RNG,
  // penalty ring and grammar's parse state continue from the last token sampled.
  std::unique_ptr<SamplerState> SuspendSampler(int slot) override {
    auto state = std::make_unique<LlamaSamplerState>();
    if (slot >= 0 && slot < info_.n_parallel) {
      state->chain = std::move(samplers_[slot]);
      state->grammar = std::move(grammars_[slot]);
    }
    return state;
  }

  void ResumeSampler(int slot, std::unique_ptr<SamplerState> state) override {
    if (slot < 0 || slot >= info_.n_parallel || state == nullptr) return;
    auto& saved = static_cast<LlamaSamplerState&>(*state);
    if (saved.chain) samplers_[slot] = std::move(saved.chain);
    grammars_[slot] = std::move(saved.grammar);
  }

  Result<std::vector<Sampled>> Step(std::span<const BatchEntry> entries) override;

  Result<std::vector<float>> TakeEmbedding(int slot) override {
    if (slot < 0 || slot >= info_.n_parallel || !embeddings_[slot]) {
      return Internal("no embedding for this slot from the last step");
    }
    std::vector<float> out = std::move(*embeddings_[slot]);
    embeddings_[slot].reset();
    return out;
  }

  // Runs one token through slot 0 so the first request does not pay for lazy allocations.
  Status WarmUp() override {
    const Token bos = llama_vocab_bos(llama_model_get_vocab(model_.get()));
    const Token token = bos >= 0 ? bos : 0;
    BatchEntry entry{0, std::span<const Token>(&token, 1), 0, false};
    auto result = Step(std::span<const BatchEntry>(&entry, 1));
    ClearMemory();
    if (!result) return std::unexpected(result.error());
    return {};
  }

  Status VerifyBatchInvariance() override;

  SamplingCounters sampling_counters() const override { return counters_; }

 private:
  // One row of a probe batch for VerifyBatchInvariance.
  struct ProbeRow {
    int slot;
    Token token;
    int pos;
    bool logits;
  };
  // Decodes `rows` in invariant mode; appends the logits of each row that asks for them to
  // `out[slot]`.
  Status DecodeProbe(const std::vector<ProbeRow>& rows, std::vector<std::vector<float>>& out);
  // The second decode of a step with embedding entries (generative models): the last token of
  // each, with llama.cpp's embeddings output on.
  Status DecodeEmbeddingRows(std::span<const BatchEntry> entries);
  // A step of an embedding model: each entry is one whole input; reads llama.cpp's pooled
  // output per sequence.
  Result<std::vector<Sampled>> StepPooled(std::span<const BatchEntry> entries);
  // Copies `n_embd` floats, scaled to unit L2 norm, into the slot's embedding.
  Status KeepEmbedding(int slot, const float* v);

  // llama_sampler_sample's steps, with the candidates kept to read their log-probabilities:
  // the chain sees the same candidates in the same order, so it samples the same token.
  Sampled SampleWithLogprobs(llama_sampler* chain, int row, int n_top);
  // Sampling under a grammar: the chain samples from the unconstrained candidates and the
  // grammar checks that one token; only when it rejects it are all candidates masked by the
  // grammar and the chain samples again (llama.cpp's GBNF mask over a 128k vocabulary costs
  // milliseconds, the check microseconds). With logprobs the mask always comes first, so they
  // are of the distribution actually sampled from.
  Sampled SampleConstrained(llama_sampler* chain, llama_sampler* grammar, int row,
                            std::optional<int> n_top);
  // Advances `grammar` over `text` (tokenized as the prompt was), as if it had sampled it.
  Status Prefill(llama_sampler* grammar, const std::string& text) const;
  // Appends one token of one sequence to batch_ (the caller checked there is room).
  void AddRow(Token token, int pos, int slot, bool logits) {
    const int row = batch_.n_tokens++;
    batch_.token[row] = token;
    batch_.pos[row] = pos;
    batch_.n_seq_id[row] = 1;
    batch_.seq_id[row][0] = slot;
    batch_.logits[row] = logits;
  }
  // Fills candidates_ with the row's logits.
  llama_token_data_array Candidates(int row);

  void ClearMemory() {
    llama_memory_clear(llama_get_memory(ctx_.get()), true);
    std::fill(cells_invariant_.begin(), cells_invariant_.end(), true);
  }

  // Declared first, destroyed last: the model's repack buffers live in its memory.
  std::unique_ptr<RepackCache> repack_cache_;
  std::unique_ptr<llama_model, ModelDeleter> model_;
  std::unique_ptr<llama_context, ContextDeleter> ctx_;
  LlamaTokenizer tokenizer_;
  ModelInfo info_;
  std::vector<SamplerPtr> samplers_;
  std::vector<SamplerPtr> grammars_;  // per slot; null when unconstrained
  GrammarCache grammar_cache_;
  // Per slot: the alternatives its sequence asked for, unset when it wants no logprobs.
  std::vector<std::optional<int>> logprobs_;
  std::vector<llama_token_data> candidates_;  // SampleWithLogprobs' buffer, reused
  // Per slot: every KV cell it holds was computed in a batch-invariant step.
  std::vector<bool> cells_invariant_;
  std::vector<bool> deterministic_;  // per slot: its current sequence asked for determinism
  // Per slot: the destination of a CopyPrefix whose stream copy lands at the next decode.
  std::vector<bool> copy_pending_;
  std::vector<bool> copy_source_pending_;  // per slot: the source of such a copy
  // Per slot: the embedding its entry in the last step produced, until TakeEmbedding.
  std::vector<std::optional<std::vector<float>>> embeddings_;
  llama_batch batch_;
  SamplingCounters counters_;
};

Status LlamaEngine::Prefill(llama_sampler* grammar, const std::string& text) const {
  if (text.empty()) return {};
  auto tokens = tokenizer_.Tokenize(text, /*add_special=*/false);
  if (!tokens) return std::unexpected(tokens.error());
  const llama_vocab* vocab = llama_model_get_vocab(model_.get());
  try {  // libllama's grammar throws when a token does not fit it
    for (std::size_t i = 0; i < tokens->size(); ++i) {
      char piece[64];
      const int n = llama_token_to_piece(vocab, (*tokens)[i], piece, sizeof(piece), 0, true);
      // Some tokenizers put a space before a leading special token; the text has none.
      if (i == 0 && n > 0 && std::isspace(static_cast<unsigned char>(piece[0])) &&
          !std::isspace(static_cast<unsigned char>(text[0]))) {
        continue;
      }
      llama_sampler_accept(grammar, (*tokens)[i]);
    }
  } catch (const std::exception& e) {
    return Internal(
        StrCat("the output constraint does not begin with the template's generation "
               "prompt: ",
               e.what()));
  }
  return {};
}

llama_token_data_array LlamaEngine::Candidates(int row) {
  const float* logits = llama_get_logits_ith(ctx_.get(), row);
  candidates_.resize(info_.n_vocab);
  for (Token id = 0; id < info_.n_vocab; ++id) candidates_[id] = {id, logits[id], 0.0f};
  return llama_token_data_array{candidates_.data(), candidates_.size(), -1, false};
}

// Removes the candidates a constraint or filter set to -inf, keeping the others' order.
void DropForbidden(llama_token_data_array& cur) {
  std::size_t kept = 0;
  for (std::size_t i = 0; i < cur.size; ++i) {
    if (!std::isinf(cur.data[i].logit) || cur.data[i].logit > 0) cur.data[kept++] = cur.data[i];
  }
  cur.size = kept;
}

bool IsLlguidance(const llama_sampler* grammar) {
  const char* name = llama_sampler_name(grammar);
  return name != nullptr && std::strcmp(name, "llguidance") == 0;
}

Sampled LlamaEngine::SampleConstrained(llama_sampler* chain, llama_sampler* grammar, int row,
                                       std::optional<int> n_top) {
  Sampled out;
  out.token = -1;  // none selected
  llama_token_data_array cur = Candidates(row);
  bool masked = false;
  ++counters_.constrained;
  // llguidance's mask (~0.1 ms p50 on a 128k vocabulary) and then a chain over the few allowed
  // tokens cost less than the chain over the whole vocabulary (~1.2 ms) that check-first pays
  // even when its pick is accepted: its sequences mask first. A GBNF mask costs ~13 ms: those
  // check first, unless the request needs the masked distribution for its logprobs.
  const bool mask_first = n_top.has_value() || IsLlguidance(grammar);
  if (mask_first) ++counters_.mask_first;
  if (!mask_first) {
    llama_sampler_apply(chain, &cur);
    if (cur.selected < 0 || cur.selected >= static_cast<int64_t>(cur.size)) return out;
    llama_token_data one{cur.data[cur.selected].id, 1.0f, 0.0f};
    llama_token_data_array single{&one, 1, -1, false};
    llama_sampler_apply(grammar, &single);
    if (std::isinf(one.logit) && one.logit < 0) {
      cur = Candidates(row);
      masked = true;
      ++counters_.check_rejected;
    }
  }
  if (mask_first || masked) {
    llama_sampler_apply(grammar, &cur);
    // The chain then samples from the tokens the constraint allows only: the same distribution
    // and the same pick for the same random draw (a forbidden token has probability 0 and
    // order is kept), but its filters and its softmax run over a few allowed tokens instead of
    // the whole vocabulary (~1.2 ms at 128k).
    DropForbidden(cur);
    llama_sampler_apply(chain, &cur);
    if (cur.selected < 0 || cur.selected >= static_cast<int64_t>(cur.size)) return out;
  }
  const llama_token_data chosen = cur.data[cur.selected];
  try {  // libllama's grammar throws when it has no way on (it allows nothing)
    llama_sampler_accept(grammar, chosen.id);
  } catch (const std::exception& e) {
    // End this sequence, not the step: the others in it are fine.
    log::Warn("the output constraint allows no further token (", e.what(),
              "); ending the sequence");
    out = Sampled{};
    out.token = llama_vocab_eos(llama_model_get_vocab(model_.get()));
    return out;
  }
  llama_sampler_accept(chain, chosen.id);
  if (n_top) {
    // Tokens the grammar forbids are out of the distribution (dropped above), as the chain's
    // filters' are (any it marked -inf rather than dropped go too).
    DropForbidden(cur);
    FillLogprobs(cur, chosen.id, chosen.logit, *n_top, out);
  } else {
    out.token = chosen.id;
  }
  return out;
}

Sampled LlamaEngine::SampleWithLogprobs(llama_sampler* chain, int row, int n_top) {
  llama_token_data_array cur = Candidates(row);
  llama_sampler_apply(chain, &cur);
  Sampled out;
  if (cur.selected < 0 || cur.selected >= static_cast<int64_t>(cur.size)) return out;
  const llama_token_data chosen = cur.data[cur.selected];
  llama_sampler_accept(chain, chosen.id);
  FillLogprobs(cur, chosen.id, chosen.logit, n_top, out);
  return out;
}

// An embedding entry's last token is held back from the main decode and computed in a second,
// small decode with llama.cpp's embeddings output on. Why not one decode with that switch on:
// libllama then outputs every token of the step (logits and hidden state for each row of
// every sequence in it, n_tokens x n_vocab floats), which costs far more than one extra pass
// over a handful of rows, and changes how the other sequences' rows are computed.
Result<std::vector<Sampled>> LlamaEngine::Step(std::span<const BatchEntry> entries) {
  for (auto& e : embeddings_) e.reset();
  if (info_.embedding_only()) return StepPooled(entries);
  batch_.n_tokens = 0;
  std::vector<int> sample_rows;
  bool any_embed = false;
  for (const BatchEntry& e : entries) {
    if (e.embed && (e.sample || e.tokens.empty())) return Internal("malformed embedding entry");
    any_embed = any_embed || e.embed;
    const std::size_t n = e.embed ? e.tokens.size() - 1 : e.tokens.size();
    for (std::size_t i = 0; i < n; ++i) {
      if (batch_.n_tokens >= info_.n_batch) return Internal("step exceeds the batch size");
      AddRow(e.tokens[i], e.pos + static_cast<int>(i), e.slot,
             e.sample && i + 1 == e.tokens.size());
    }
    if (e.sample) sample_rows.push_back(batch_.n_tokens - 1);
  }
  if (batch_.n_tokens == 0 && !any_embed) return std::vector<Sampled>{};
  // One deterministic sequence makes the whole step batch-invariant (the switch is read when
  // the graph computes); the others in the step pay the same small cost.
  const bool invariant = std::any_of(entries.begin(), entries.end(),
                                     [](const BatchEntry& e) { return e.deterministic; });
  SetBatchInvariant(invariant);
  if (!invariant) {
    for (const BatchEntry& e : entries) cells_invariant_[e.slot] = false;
  }
  if (batch_.n_tokens > 0) {
    const int rc = llama_decode(ctx_.get(), batch_);
    if (rc != 0) return Internal(StrCat("llama_decode failed (code ", rc, ")"));
    std::fill(copy_pending_.begin(), copy_pending_.end(), false);
    std::fill(copy_source_pending_.begin(), copy_source_pending_.end(), false);
  }
  std::vector<Sampled> sampled(sample_rows.size());
  const auto sampling_began = std::chrono::steady_clock::now();
  std::size_t k = 0;
  for (const BatchEntry& e : entries) {
    if (!e.sample) continue;
    llama_sampler* sampler = samplers_[e.slot].get();
    if (sampler == nullptr) return Internal("sampling a slot with no sequence");
    const int row = sample_rows[k];
    if (llama_sampler* grammar = grammars_[e.slot].get()) {
      sampled[k] = SampleConstrained(sampler, grammar, row, logprobs_[e.slot]);
      if (sampled[k].token < 0 || (logprobs_[e.slot] && !sampled[k].has_logprobs)) {
        return Internal("the constrained sampler selected no token");
      }
    } else if (const std::optional<int>& top = logprobs_[e.slot]) {
      sampled[k] = SampleWithLogprobs(sampler, row, *top);
      if (!sampled[k].has_logprobs) return Internal("the sampler chain selected no token");
    } else {
      sampled[k].token = llama_sampler_sample(sampler, ctx_.get(), row);
    }
    ++k;
  }
  counters_.tokens += k;
  counters_.nanoseconds +=
      static_cast<std::uint64_t>(std::chrono::duration_cast<std::chrono::nanoseconds>(
                                     std::chrono::steady_clock::now() - sampling_began)
                                     .count());
  // After sampling: the second decode replaces the outputs the samplers read.
  if (any_embed) {
    if (Status st = DecodeEmbeddingRows(entries); !st) return std::unexpected(st.error());
  }
  return sampled;
}

Status LlamaEngine::DecodeEmbeddingRows(std::span<const BatchEntry> entries) {
  batch_.n_tokens = 0;
  for (const BatchEntry& e : entries) {
    if (!e.embed) continue;
    AddRow(e.tokens.back(), e.pos + static_cast<int>(e.tokens.size()) - 1, e.slot, true);
  }
  llama_set_embeddings(ctx_.get(), true);
  const int rc = llama_decode(ctx_.get(), batch_);
  llama_set_embeddings(ctx_.get(), false);
  if (rc != 0) return Internal(StrCat("llama_decode of embedding rows failed (code ", rc, ")"));
  int row = 0;
  for (const BatchEntry& e : entries) {
    if (!e.embed) continue;
    if (Status st = KeepEmbedding(e.slot, llama_get_embeddings_ith(ctx_.get(), row++)); !st) {
      return st;
    }
  }
  return {};
}

Result<std::vector<Sampled>> LlamaEngine::StepPooled(std::span<const BatchEntry> entries) {
  batch_.n_tokens = 0;
  for (const BatchEntry& e : entries) {
    if (e.sample) return Internal("an embedding model cannot sample");
    if (e.embed && e.pos != 0) return Internal("a pooled embedding input must come in one step");
    for (std::size_t i = 0; i < e.tokens.size(); ++i) {
      if (batch_.n_tokens >= info_.n_batch) return Internal("step exceeds the batch size");
      // llama.cpp pools over every output row of the sequence
      AddRow(e.tokens[i], e.pos + static_cast<int>(i), e.slot, /*logits=*/true);
    }
  }
  if (batch_.n_tokens == 0) return std::vector<Sampled>{};
  const bool invariant = std::any_of(entries.begin(), entries.end(),
                                     [](const BatchEntry& e) { return e.deterministic; });
  SetBatchInvariant(invariant);
  const int rc = llama_decode(ctx_.get(), batch_);
  if (rc != 0) return Internal(StrCat("llama_decode failed (code ", rc, ")"));
  for (const BatchEntry& e : entries) {
    if (!e.embed) continue;
    if (Status st = KeepEmbedding(e.slot, llama_get_embeddings_seq(ctx_.get(), e.slot)); !st) {
      return std::unexpected(st.error());
    }
  }
  // Nothing of an input is reused by the next (BeginSequence keeps no prefix); free the cells.
  for (const BatchEntry& e : entries) {
    llama_memory_seq_rm(llama_get_memory(ctx_.get()), e.slot, -1, -1);
  }
  return std::vector<Sampled>{};
}

Status LlamaEngine::KeepEmbedding(int slot, const float* v) {
  if (v == nullptr) return Internal("llama.cpp returned no embedding for the sequence");
  double norm = 0;
  for (int i = 0; i < info_.n_embd; ++i) norm += static_cast<double>(v[i]) * v[i];
  norm = std::sqrt(norm);
  if (!std::isfinite(norm)) return Internal("the model produced a non-finite embedding");
  std::vector<float> out(v, v + info_.n_embd);
  if (norm > 0) {
    for (float& x : out) x = static_cast<float>(x / norm);
  }
  embeddings_[slot] = std::move(out);
  return {};
}

Status LlamaEngine::DecodeProbe(const std::vector<ProbeRow>& rows,
                                std::vector<std::vector<float>>& out) {
  batch_.n_tokens = 0;
  for (const ProbeRow& r : rows) {
    AddRow(r.token, r.pos, r.slot, r.logits);
  }
  SetBatchInvariant(true);
  if (const int rc = llama_decode(ctx_.get(), batch_); rc != 0) {
    return Internal(
        StrCat("llama_decode failed during the batch-invariance check (code ", rc, ")"));
  }
  for (int i = 0; i < static_cast<int>(rows.size()); ++i) {
    if (!rows[i].logits) continue;
    const float* logits = llama_get_logits_ith(ctx_.get(), i);
    if (logits == nullptr) return Internal("no logits during the batch-invariance check");
    out[rows[i].slot].insert(out[rows[i].slot].end(), logits, logits + info_.n_vocab);
  }
  return {};
}

// Runs a probe sequence (70 prompt tokens: more than the 64 rows at which CPU flash attention
// would switch to its tiled kernel, then greedy decodes) twice: alone in slot 0 with its
// prompt in one chunk, and then in chunks of 13 beside up to four companion sequences whose
// decodes share its steps (5 rows also covers the repacked Q4_0 kernels' 4-row tiles and
// their tail). Every logit must be bit-identical.
Status LlamaEngine::VerifyBatchInvariance() {
  if (info_.embedding_only()) {
    return Unavailable(
        "deterministic mode is not available for embedding models: its check compares logits, "
        "which an embedding model does not compute");
  }
  if (BatchInvariantSetter() == nullptr) {
    return Unavailable(
        "deterministic mode is not available: this llama.cpp build lacks ember's "
        "batch-invariance patch (third_party/llama.cpp-patches/0002-*; scripts/llama_cpp.sh "
        "applies it)");
  }
  constexpr int kPromptLen = 70;
  constexpr int kChunk = 13;
  constexpr int kDecodes = 4;
  const int companions = std::min(info_.n_parallel - 1, 4);
  if (kPromptLen + kDecodes + 1 > info_.n_ctx_per_seq || kPromptLen > info_.n_batch) {
    return {};  // too small a context to probe; nothing long enough could run either
  }
  std::mt19937 rng(20261127);
  auto prompt = [&](int n) {
    std::vector<Token> p(n);
    for (Token& t : p) t = static_cast<Token>(rng() % static_cast<unsigned>(info_.n_vocab));
    return p;
  };
  const std::vector<Token> probe = prompt(kPromptLen);
  std::vector<std::vector<Token>> others;
  for (int c = 0; c < companions; ++c) others.push_back(prompt(9 + 7 * c));
  auto argmax = [](const float* l, int n) {
    return static_cast<Token>(std::max_element(l, l + n) - l);
  };
  const int n_vocab = info_.n_vocab;

  // Alone: the whole prompt in one step, then one row per step.
  std::vector<std::vector<float>> alone(info_.n_parallel);
  ClearMemory();
  std::vector<ProbeRow> rows;
  for (int i = 0; i < kPromptLen; ++i) rows.push_back({0, probe[i], i, i + 1 == kPromptLen});
  if (Status st = DecodeProbe(rows, alone); !st) return st;
  for (int d = 0; d < kDecodes; ++d) {
    const Token next = argmax(alone[0].data() + static_cast<std::size_t>(d) * n_vocab, n_vocab);
    if (Status st = DecodeProbe({{0, next, kPromptLen + d, true}}, alone); !st) return st;
  }

  // Shared: companions' prompts first (they then decode in every step), the probe's prompt
  // in chunks of kChunk, then the probe decodes beside them.
  std::vector<std::vector<float>> shared(info_.n_parallel);
  ClearMemory();
  rows.clear();
  for (int c = 0; c < companions; ++c) {
    const auto& p = others[c];
    for (int i = 0; i < static_cast<int>(p.size()); ++i) {
      rows.push_back({c + 1, p[i], i, i + 1 == static_cast<int>(p.size())});
    }
  }
  if (!rows.empty()) {
    if (Status st = DecodeProbe(rows, shared); !st) return st;
  }
  std::vector<int> pos(info_.n_parallel, 0);
  for (int c = 0; c < companions; ++c) pos[c + 1] = static_cast<int>(others[c].size());
  auto companion_rows = [&](std::vector<ProbeRow>& into) {
    for (int c = 0; c < companions; ++c) {
      const int slot = c + 1;
      const std::vector<float>& l = shared[slot];
      into.push_back({slot, argmax(l.data() + l.size() - n_vocab, n_vocab), pos[slot]++, true});
    }
  };
  for (int start = 0; start < kPromptLen; start += kChunk) {
    rows.clear();
    const int end = std::min(kPromptLen, start + kChunk);
    for (int i = start; i < end; ++i) rows.push_back({0, probe[i], i, i + 1 == kPromptLen});
    companion_rows(rows);
    if (Status st = DecodeProbe(rows, shared); !st) return st;
  }
  for (int d = 0; d < kDecodes; ++d) {
    rows.clear();
    const Token next = argmax(shared[0].data() + static_cast<std::size_t>(d) * n_vocab, n_vocab);
    rows.push_back({0, next, kPromptLen + d, true});
    companion_rows(rows);
    if (Status st = DecodeProbe(rows, shared); !st) return st;
  }
  ClearMemory();
  SetBatchInvariant(false);

  for (int d = 0; d <= kDecodes; ++d) {
    const std::size_t off = static_cast<std::size_t>(d) * n_vocab;
    if (std::memcmp(alone[0].data() + off, shared[0].data() + off, n_vocab * sizeof(float)) != 0) {
      return Unavailable(StrCat(
          "deterministic mode is not available for this model on this CPU: a sequence's logits "
          "(output ",
          d, ") differ between running alone and sharing its steps with ", companions,
          " others; its weight types or attention kernels are not batch-invariant here"));
    }
  }
  log::Info(
      "batch invariance verified: a sequence's logits are bit-identical alone and "
      "beside ",
      companions, " others, with its prompt chunked or whole");
  return {};
}

class LlamaConstraintProbe final : public ConstraintProbe {
 public:
  LlamaConstraintProbe(const llama_vocab* vocab, SamplerPtr sampler, GrammarCache cache)
      : vocab_(vocab), sampler_(std::move(sampler)), cache_(std::move(cache)) {}

  Result<Timing> MaskCheckAccept(Token next) override {
    const int n_vocab = llama_vocab_n_tokens(vocab_);
    if (next < 0 || next >= n_vocab) return InvalidArgument("token out of the vocabulary");
    all_.resize(static_cast<std::size_t>(n_vocab));
    for (Token id = 0; id < n_vocab; ++id) all_[static_cast<std::size_t>(id)] = {id, 0.0f, 0.0f};
    llama_token_data_array cur{all_.data(), all_.size(), -1, false};
    llama_token_data one{next, 0.0f, 0.0f};
    llama_token_data_array single{&one, 1, -1, false};
    Timing t;
    try {
      const auto t0 = std::chrono::steady_clock::now();
      llama_sampler_apply(sampler_.get(), &cur);
      const auto t1 = std::chrono::steady_clock::now();
      llama_sampler_apply(sampler_.get(), &single);
      const auto t2 = std::chrono::steady_clock::now();
      t.mask_seconds = std::chrono::duration<double>(t1 - t0).count();
      t.check_seconds = std::chrono::duration<double>(t2 - t1).count();
      t.allowed = !std::isinf(one.logit);
      llama_sampler_accept(sampler_.get(), next);
    } catch (const std::exception& e) {
      return InvalidArgument(StrCat("the constraint refuses token ", next, ": ", e.what()));
    }
    return t;
  }

 private:
  const llama_vocab* vocab_;
  SamplerPtr sampler_;
  GrammarCache cache_;  // holds llguidance's view of the vocabulary the sampler shares
  std::vector<llama_token_data> all_;
};

}  // namespace

std::string JsonSchemaEngine() {
#ifdef EMBER_HAVE_LLGUIDANCE
  return LlguidanceVersion();
#else
  return "gbnf";
#endif
}

Result<std::unique_ptr<ConstraintProbe>> ProbeConstraint(const Engine& engine,
                                                         const Grammar& grammar) {
  const auto* llama = dynamic_cast<const LlamaEngine*>(&engine);
  if (llama == nullptr) return InvalidArgument("not a libllama engine");
  GrammarCache cache(llama->vocab());
  auto sampler = cache.Get(grammar);
  if (!sampler) return std::unexpected(sampler.error());
  return std::make_unique<LlamaConstraintProbe>(llama->vocab(), std::move(*sampler),
                                                std::move(cache));
}

std::string DefaultModelId(const std::string& path) {
  std::string name = std::filesystem::path(path).filename().string();
  if (name.size() > 5 && name.ends_with(".gguf")) name.resize(name.size() - 5);
  return name;
}

Result<std::unique_ptr<Engine>> CreateLlamaEngine(const LlamaOptions& options) {
  if (options.threads <= 0) return InvalidArgument("threads must be positive", "threads");
  if (options.parallel <= 0 || options.ctx_size < options.parallel) {
    return InvalidArgument("ctx-size must be at least parallel, and parallel positive");
  }
  std::error_code ec;
  if (!std::filesystem::is_regular_file(options.model_path, ec)) {
    return NotFound(StrCat("model file not found: ", options.model_path), "model");
  }
  if (Status backend = InitBackendOnce(); !backend) return std::unexpected(backend.error());
  const auto t0 = SteadyClock::now();
  auto enter = [&options](std::string_view phase) {
    if (options.on_phase) options.on_phase(phase);
  };
  // libllama reads the header and builds the tokenizer before it calls the progress callback
  // for the first time; from then on it loads tensor data.
  struct LoadProgress {
    const LlamaOptions* options;
    std::optional<SteadyClock::time_point> weights_start;
  } progress{&options, std::nullopt};
  enter("metadata");
  llama_model_params mparams = llama_model_default_params();
  mparams.progress_callback_user_data = &progress;
  mparams.use_extra_bufts = options.repack;
  mparams.progress_callback = [](float /*fraction*/, void* user) {
    auto* p = static_cast<LoadProgress*>(user);
    if (!p->weights_start) {
      p->weights_start = SteadyClock::now();
      if (p->options->on_phase) p->options->on_phase("weights");
    }
    return true;
  };
  std::unique_ptr<RepackCache> repack_cache;
  if (!options.repack_cache_dir.empty()) {
    if (!HaveRepackAllocator()) {
      log::Warn(
          "repack cache off: this llama.cpp build lacks ember's repack-allocator patch "
          "(third_party/llama.cpp-patches/0003-*)");
    } else if (auto opened = RepackCache::Open(
                   options.repack_cache_dir, options.model_path, RepackIdentity(), options.threads,
                   RepackCacheSettings{
                       .max_bytes = options.repack_cache_max_bytes,
                       .min_free_bytes = options.repack_cache_min_free_bytes,
                       .verify_every_start = options.repack_cache_verify_every_start})) {
      repack_cache = std::move(*opened);
      repack_cache->Prefetch();
    } else {
      log::Warn("repack cache off: ", opened.error().message);
    }
  }
  if (!repack_cache && HaveRepackAllocator() && options.repack) {
    repack_cache = RepackCache::MemoryOnly();
  }
#ifdef EMBER_HAVE_NO_PREFETCH
  // With the repacked weights coming from the cache, their source bytes in the model file are
  // never read: mapping the file without pre-faulting keeps them out of resident memory (the
  // tensors that are read fault in from the page cache on first use). Patch 0005.
  mparams.no_prefetch = repack_cache != nullptr && repack_cache->ExpectsHit();
#endif
  std::unique_ptr<llama_model, ModelDeleter> model;
  LoadMarks marks{&options, std::nullopt, std::nullopt};
  {
    std::lock_guard lock(LoadMutex());
    RepackAllocatorScope scope(repack_cache.get());
    t_load_marks = &marks;
    model.reset(llama_model_load_from_file(options.model_path.c_str(), mparams));
    t_load_marks = nullptr;
  }
  if (model && repack_cache) {
    repack_cache->Persist();  // first: it also ends the prefetch that wrote the stats
    const RepackCacheStats& st = repack_cache->stats();
    if (repack_cache->persistent() && st.hits + st.misses + st.rejected > 0) {
      log::Info("repack cache: ", st.hits, " buffer(s) mapped (", st.mapped_bytes >> 20, " MiB, ",
                st.trusted == st.hits && st.hits > 0
                    ? std::string("verified earlier this boot")
                    : StrCat("verified in ", static_cast<int>(st.verify_seconds * 1000), " ms"),
                "), ", st.misses, " repacked now",
                st.rejected ? StrCat(", ", st.rejected, " rejected") : "");
    }
  }
  if (!model)
    return InvalidArgument(
        StrCat("cannot load model ", options.model_path, ": not a GGUF model llama.cpp can read"));
  const auto t_model = SteadyClock::now();
  const auto t_weights = progress.weights_start.value_or(t_model);
  enter("context");
  llama_context_params cparams = llama_context_default_params();
  cparams.n_ctx = static_cast<uint32_t>(options.ctx_size);
  cparams.n_seq_max = static_cast<uint32_t>(options.parallel);
  cparams.n_batch = static_cast<uint32_t>(options.batch_size);
  cparams.n_ubatch = static_cast<uint32_t>(options.batch_size);
  cparams.n_threads = options.threads;
  cparams.n_threads_batch = options.threads;
  cparams.kv_unified = false;  // one KV stream per sequence: no cross-request placement effects
  cparams.no_perf = true;
  cparams.flash_attn_type =
      options.flash_attn == FlashAttention::kOn    ? LLAMA_FLASH_ATTN_TYPE_ENABLED
      : options.flash_attn == FlashAttention::kOff ? LLAMA_FLASH_ATTN_TYPE_DISABLED
                                                   : LLAMA_FLASH_ATTN_TYPE_AUTO;
  std::unique_ptr<llama_context, ContextDeleter> ctx(llama_init_from_model(model.get(), cparams));
  if (!ctx) return ResourceExhausted("cannot create the llama context (KV cache too large?)");
  const auto t_context = SteadyClock::now();
  auto seconds = [](SteadyClock::duration d) { return std::chrono::duration<double>(d).count(); };

  ModelInfo info;
  info.id = options.model_id.empty() ? DefaultModelId(options.model_path) : options.model_id;
  info.path = options.model_path;
  info.n_ctx_total = static_cast<int>(llama_n_ctx(ctx.get()));
  info.n_ctx_per_seq = static_cast<int>(llama_n_ctx_seq(ctx.get()));
  info.n_parallel = static_cast<int>(llama_n_seq_max(ctx.get()));
  info.n_batch = static_cast<int>(llama_n_batch(ctx.get()));
  info.n_vocab = llama_vocab_n_tokens(llama_model_get_vocab(model.get()));
  info.n_ctx_train = llama_model_n_ctx_train(model.get());
  {
    const llama_vocab* vocab = llama_model_get_vocab(model.get());
    if (const char* tmpl = llama_model_chat_template(model.get(), nullptr)) {
      info.jinja_template = tmpl;
    }
    auto special_text = [vocab](llama_token token) {
      if (token < 0) return std::string();
      char buf[256];
      const int n = llama_token_to_piece(vocab, token, buf, sizeof(buf), 0, /*special=*/true);
      return n > 0 ? std::string(buf, n) : std::string();
    };
    info.bos_text = special_text(llama_vocab_bos(vocab));
    info.eos_text = special_text(llama_vocab_eos(vocab));
  }
  info.weight_bytes = llama_model_size(model.get());
  info.n_embd = llama_model_n_embd_out(model.get());
  switch (llama_pooling_type(ctx.get())) {
    case LLAMA_POOLING_TYPE_MEAN:
      info.pooling = Pooling::kMean;
      break;
    case LLAMA_POOLING_TYPE_CLS:
      info.pooling = Pooling::kCls;
      break;
    case LLAMA_POOLING_TYPE_LAST:
      info.pooling = Pooling::kLast;
      break;
    case LLAMA_POOLING_TYPE_RANK:
      return InvalidArgument(
          StrCat("cannot serve ", options.model_path,
                 ": it is a reranking model (pooling type rank), which ember does not serve"));
    default:  // NONE: a generative model
      info.pooling = Pooling::kLastToken;
      break;
  }
  // An embedding model only ever computes pooled embeddings: its context keeps them on.
  if (info.pooling != Pooling::kLastToken) llama_set_embeddings(ctx.get(), true);
  {
    std::error_code size_ec, time_ec;
    const auto size = std::filesystem::file_size(options.model_path, size_ec);
    const auto mtime = std::filesystem::last_write_time(options.model_path, time_ec);
    // The variant's numerics class, not its name or feature list: variants that compute
    // this model identically answer with the same fingerprint (docs/cpu.md, "Numerics").
    info.numerics_id =
        StrCat(EMBER_LLAMA_BUILD_ID, "|cpu=", CpuNumerics(options.model_path), "|",
               size_ec ? 0 : size, "|", time_ec ? 0 : mtime.time_since_epoch().count(),
               "|flash_attn=", static_cast<int>(cparams.flash_attn_type),
               // repacked Q8_0 sums in another order than vec_dot (patch 0012)
               "|repack=", options.repack ? 1 : 0);
    info.cpu_variant = CpuVariantName();
  }
  // metadata: header; tokenizer: hyper-parameters and tokenizer; buffers: tensors, the file
  // mapping and buffer allocation (mapping the repack cache included); weights: tensor data.
  const auto t_header = marks.header_read.value_or(t_weights);
  const auto t_tokenizer = marks.tokenizer_built.value_or(t_header);
  info.startup = {{"metadata", seconds(t_header - t0)},
                  {"tokenizer", seconds(t_tokenizer - t_header)},
                  {"buffers", seconds(t_weights - t_tokenizer)},
                  {"weights", seconds(t_model - t_weights)},
                  {"context", seconds(t_context - t_model)}};
  info.created = std::chrono::duration_cast<std::chrono::seconds>(
                     std::chrono::system_clock::now().time_since_epoch())
                     .count();
  auto engine = std::make_unique<LlamaEngine>(std::move(repack_cache), std::move(model),
                                              std::move(ctx), std::move(info));
  const auto ms =
      std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - t0)
          .count();
  const ModelInfo& i = engine->Info();
  log::Info("loaded ", i.id, " in ", ms, " ms: ", i.n_parallel, " sequences x ", i.n_ctx_per_seq,
            " tokens, batch ", i.n_batch, ", ", options.threads, " threads, chat template ",
            i.chat_template);
  return engine;
}

}  // namespace ember::engine
