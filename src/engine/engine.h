// The engine interface: what the scheduler drives each step. One implementation wraps
// libllama (engine/llama, the only code that includes llama.h); engine/fake is a scripted
// engine for scheduler tests.
//
// Threads: Tokenizer methods and Info() are safe from any thread (the vocabulary is immutable
// after load). Everything else is called only from the scheduler's engine thread.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "common/error.h"
#include "engine/types.h"

namespace ember::engine {

// One phase of loading a model and how long it took (ember_startup_seconds{phase}).
struct StartupPhase {
  std::string name;
  double seconds = 0;
};

struct ModelInfo {
  std::string id;  // the name clients use in "model"
  std::string path;
  int n_ctx_total = 0;    // KV cells in all
  int n_ctx_per_seq = 0;  // KV cells one sequence may use (prompt + output)
  int n_parallel = 0;     // sequences that can run at once (slots)
  int n_batch = 0;        // most tokens one step may carry
  int n_vocab = 0;
  int n_ctx_train = 0;
  std::string chat_template;  // "gguf:<name>" or "fallback"
  // The model's own Jinja chat template (GGUF tokenizer.chat_template), empty when it has none,
  // and the texts of its BOS and EOS tokens, which templates print: for the chat component
  // (server/chat_templates), which renders tools and parses tool calls.
  std::string jinja_template;
  std::string bos_text;
  std::string eos_text;
  std::int64_t created = 0;  // unix seconds the model was loaded
  // Identifies what the output's numerics depend on: the model file, the llama.cpp build
  // and patches, the CPU features its kernels use, the attention setting. Opaque.
  std::string numerics_id;
  // The CPU backend build that computes it (ggml's name: haswell, icelake, ...). Variants of one
  // numerics class compute the same numbers; the prefix cache's disk tier still keys on the
  // variant, so a cell computed by one is never restored into another.
  std::string cpu_variant;
  // How loading went, in order: "metadata" (GGUF header, hyperparameters, tokenizer, mapping
  // the file and allocating weight buffers: everything before the first tensor's data is
  // loaded), "weights" (tensor data: reading, repacking) and "context" (KV cache, buffers).
  std::vector<StartupPhase> startup;
  // Bytes of weight buffers as loaded (after any repack); 0 when the engine cannot tell.
  std::uint64_t weight_bytes = 0;
  int n_embd = 0;  // length of the vectors TakeEmbedding returns
  // How an input's hidden states become one vector. kLastToken: a generative model (llama.cpp
  // pooling NONE), whose last input token's final hidden state is the embedding; the others
  // are embedding models whose GGUF metadata declares the pooling (docs/api.md).
  Pooling pooling = Pooling::kLastToken;
  // An embedding model: its metadata declares a pooling. It answers /v1/embeddings only, with
  // each input in one step (at most n_batch tokens).
  bool embedding_only() const { return pooling != Pooling::kLastToken; }
};

class Tokenizer {
 public:
  virtual ~Tokenizer() = default;
  // add_special: prepend BOS (and whatever the model's vocab adds) as llama.cpp does.
  [[nodiscard]] virtual Result<std::vector<Token>> Tokenize(std::string_view text,
                                                            bool add_special) const = 0;
  // The raw bytes of one token; may be a partial UTF-8 sequence.
  virtual std::string TokenPiece(Token token) const = 0;
  virtual bool IsEndOfGeneration(Token token) const = 0;
  virtual int VocabSize() const = 0;
  // Renders messages with the model's chat template, or the documented fallback
  // (docs/api.md) when the model has none; ends with the assistant turn opened.
  [[nodiscard]] virtual Result<std::string> ApplyChatTemplate(
      std::span<const ChatMessage> messages) const = 0;
};

// One sequence's share of a step: feed `tokens` at positions [pos, pos + tokens.size()).
// When `sample` is set the engine samples the sequence's next token from the last position.
// When `embed` is set (never with `sample`) these are the last tokens of an embedding input:
// the engine keeps the input's embedding for TakeEmbedding right after the step.
struct BatchEntry {
  int slot = 0;
  std::span<const Token> tokens;
  int pos = 0;
  bool sample = false;
  bool deterministic = false;  // the sequence asked for batch-invariant numerics
  bool embed = false;
};

// A sequence's sampler state (random number generator position, penalty history) outside
// its slot: taken when the scheduler preempts the sequence and given back when it resumes, so
// it samples exactly as if it had never stopped. Opaque outside the engine that made it.
class SamplerState {
 public:
  virtual ~SamplerState() = default;
};

// What an engine's sampling has cost since it was created: cumulative, read on the engine
// thread between steps (bench_grammar reads them around each step; nothing else does yet).
// Counting costs two clock reads per step and a few increments per sampled token.
struct SamplingCounters {
  std::uint64_t tokens = 0;       // tokens sampled
  std::uint64_t constrained = 0;  // of them, under a grammar
  // Of those, sampled check-first and rejected by the grammar's check: the whole vocabulary
  // was masked and the chain sampled again (the slow path).
  std::uint64_t check_rejected = 0;
  // Of those, masked before sampling: the sequence asked for logprobs, or its constraint is
  // llguidance's (whose mask is cheaper than check-first).
  std::uint64_t mask_first = 0;
  // Time spent sampling after the forward pass (all entries of every step), wall clock.
  std::uint64_t nanoseconds = 0;
};

// A copy of one slot's KV cells in host memory (Engine::SaveCells), for the prefix cache's RAM
// tier. Opaque outside the engine that made it; restored only into that engine's slots.
class CellsSnapshot {
 public:
  virtual ~CellsSnapshot() = default;
  virtual std::size_t bytes() const = 0;  // host memory it holds
  virtual int n_pos() const = 0;          // positions [0, n_pos) it holds
  // Every cell was computed in a batch-invariant step (a deterministic sequence may reuse it).
  virtual bool invariant() const = 0;
  // The bytes that CellsFromBytes turns back into this snapshot, for the prefix cache's disk
  // tier; empty when this engine's cells cannot leave the process. Immutable once saved, so
  // any thread may read them while the snapshot lives.
  virtual std::span<const std::uint8_t> data() const { return {}; }
};

class Engine {
 public:
  virtual ~Engine() = default;
  virtual const ModelInfo& Info() const = 0;
  virtual const Tokenizer& tokenizer() const = 0;

  // Runs once on the engine thread before the first step (first-touch allocations, thread
  // pools). Compute threads belong to the thread that first runs the model: libgomp sizes its
  // spin-waiting by the threads of every team, so a second team (say, a warm-up on another
  // thread) makes every barrier sleep in the kernel.
  [[nodiscard]] virtual Status WarmUp() { return {}; }
  // Checks on the engine thread, before serving, that a sequence's logits are bit-identical
  // whether it runs alone or shares its steps with others and however its prompt is chunked,
  // with the numerics deterministic sequences get. An error says why deterministic requests
  // cannot be promised on this model and CPU.
  [[nodiscard]] virtual Status VerifyBatchInvariance() { return {}; }
  // Prepares slot [0, n_parallel) for a new sequence with its own sampler state. The slot's
  // KV cells at positions [0, keep) hold a prefix the new sequence shares with the previous
  // one (a prompt-cache hit) and are kept; all later cells are dropped. Returns how many
  // positions were kept (0 when the memory cannot drop a suffix, or when a deterministic
  // sequence would inherit cells that were not computed with batch-invariant numerics).
  [[nodiscard]] virtual Result<int> BeginSequence(int slot, const SamplingParams& params,
                                                  int keep) = 0;
  // Gives dst_slot's sequence (just begun, holding no cells) the KV cells of src_slot's
  // positions [0, n_pos), so it continues from position n_pos without recomputing them: the
  // prompt of a request with several choices is prefilled once and shared. The cells are
  // copies, not references: either sequence may then be ended, preempted or extended alone.
  // src_slot may hold a finished sequence's cells (a prompt cache) or a running sequence, whose
  // positions [0, n_pos) are already computed. Refused when dst_slot's sequence is
  // deterministic and src_slot's cells were not all computed with batch-invariant numerics.
  // An error leaves dst_slot with no cells (the caller then prefills it).
  [[nodiscard]] virtual Status CopyPrefix(int src_slot, int dst_slot, int n_pos) = 0;
  // Copies every KV cell the slot holds (a finished sequence's prompt cache) to host memory.
  // Costs one pass over those cells' K and V (bytes() of them), on the engine thread. Refused
  // (Unavailable) by an engine without it, and for a slot whose cells a CopyPrefix since the
  // last Step has not written yet.
  [[nodiscard]] virtual Result<std::unique_ptr<CellsSnapshot>> SaveCells(int /*slot*/) {
    return Unavailable("this engine cannot save KV cells");
  }
  // Like CopyPrefix, from host memory: gives dst_slot's sequence (just begun, holding no cells)
  // positions [0, n_pos) of `cells`, which this engine's SaveCells made. Written at once, so
  // refused for a slot that a CopyPrefix since the last Step copies from or into (that copy
  // lands at the next Step, reading or overwriting the buffer), and when dst_slot's sequence is
  // deterministic and the cells are not invariant(). An error leaves dst_slot with no cells.
  [[nodiscard]] virtual Status RestoreCells(int /*dst_slot*/, const CellsSnapshot& /*cells*/,
                                            int /*n_pos*/) {
    return Unavailable("this engine cannot restore KV cells");
  }
  // A snapshot holding `data`, which data() of a snapshot that this engine's SaveCells made
  // returned: read back from the prefix cache's disk tier, whose key (numerics, slots, cells
  // per slot) and hash say it came from an engine like this one. Only builds the object, so
  // any thread may call it; a RestoreCells of bytes libllama refuses fails there. nullptr when
  // this engine cannot rebuild snapshots.
  [[nodiscard]] virtual std::unique_ptr<CellsSnapshot> CellsFromBytes(
      std::vector<std::uint8_t> /*data*/, int /*n_pos*/, bool /*invariant*/) const {
    return nullptr;
  }
  // Ends the slot's sequence. With keep_cells its KV cells stay as a reusable prefix for the
  // next sequence in this slot (they no longer count as used); otherwise they are cleared.
  virtual void EndSequence(int slot, bool keep_cells) = 0;
  // Takes the slot's sampler state out, before EndSequence of a sequence that will resume in
  // some slot later (preemption). Not null for a slot with a live sequence.
  [[nodiscard]] virtual std::unique_ptr<SamplerState> SuspendSampler(int slot) = 0;
  // After BeginSequence of the resumed sequence: replaces its fresh sampler with `state`, which
  // this engine's SuspendSampler returned.
  virtual void ResumeSampler(int slot, std::unique_ptr<SamplerState> state) = 0;
  // Runs one forward pass over all entries and returns one sampled token per entry with
  // `sample` set, in entry order; with log-probabilities where the sequence's SamplingParams
  // ask for them. The tokens are the same whether or not logprobs are asked for.
  [[nodiscard]] virtual Result<std::vector<Sampled>> Step(std::span<const BatchEntry> batch) = 0;
  // After a Step whose entry for `slot` had `embed` set: that input's embedding, Info().n_embd
  // floats with unit L2 norm (Info().pooling says how it was pooled). Takes it out: a second
  // call, or one for a slot without such an entry in the last step, is an error.
  [[nodiscard]] virtual Result<std::vector<float>> TakeEmbedding(int slot) = 0;
  // Engine thread only. All zero for an engine that does not count.
  virtual SamplingCounters sampling_counters() const { return {}; }
};

}  // namespace ember::engine
