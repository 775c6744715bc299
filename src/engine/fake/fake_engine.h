// A scripted engine for scheduler and server tests: a byte-level "tokenizer" (token = byte
// value, vocab 256, token 0 is end-of-generation) and a model that answers each sampled
// position with the next letter after the last token it was fed ('a'..'z', wrapping).
// Records every batch so tests can check chunking and ordering. A sequence that asks for
// logprobs gets, for its n-th sampled token, logprob -n/100 (so tests can tell which token an
// entry belongs to) and alternatives: the token itself, then the following byte values, each
// one lower by 1. Embeddings (n_embd 8) are a fixed function of every token the slot's KV
// cells hold, with unit norm. A sequence with a seed and a temperature above 0 answers each
// position with the letter `seed` places further on (mod 26), so seeded choices differ.
//
// Threads: like every Engine, Step/BeginSequence/EndSequence run on the engine thread;
// Batches()/Active() may be read from any thread.
#pragma once

#include <atomic>
#include <chrono>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "engine/engine.h"

namespace ember::engine {

struct FakeEngineOptions {
  int parallel = 4;
  int ctx_per_seq = 256;
  int batch_size = 64;
  std::chrono::microseconds step_delay{0};
  int eos_after = -1;    // emit token 0 after this many sampled tokens of a sequence; -1 = never
  int cell_bytes = 100;  // host bytes a saved KV cell takes (SaveCells); at least 4
  std::string numerics_id = "fake";  // ModelInfo::numerics_id (the disk tier's key)
};

class FakeEngine final : public Engine {
 public:
  struct RecordedEntry {
    int slot;
    int pos;
    int n_tokens;
    bool sample;
    bool deterministic;
    bool embed;
  };
  static constexpr int kEmbd = 8;

  explicit FakeEngine(FakeEngineOptions options);

  const ModelInfo& Info() const override { return info_; }
  const Tokenizer& tokenizer() const override { return tokenizer_; }
  Result<int> BeginSequence(int slot, const SamplingParams& params, int keep) override;
  void EndSequence(int slot, bool keep_cells) override;
  Status CopyPrefix(int src_slot, int dst_slot, int n_pos) override;
  // A snapshot holds the slot's tokens; its cells are invariant when every step that fed them
  // had a deterministic entry (as the llama engine tracks it). Refused, as by the llama engine,
  // for the slots of a CopyPrefix since the last Step (see Engine::RestoreCells).
  Result<std::unique_ptr<CellsSnapshot>> SaveCells(int slot) override;
  Status RestoreCells(int dst_slot, const CellsSnapshot& cells, int n_pos) override;
  // A snapshot's data() is its tokens' bytes, padded to bytes().
  std::unique_ptr<CellsSnapshot> CellsFromBytes(std::vector<std::uint8_t> data, int n_pos,
                                                bool invariant) const override;
  std::unique_ptr<SamplerState> SuspendSampler(int slot) override;
  void ResumeSampler(int slot, std::unique_ptr<SamplerState> state) override;
  Result<std::vector<Sampled>> Step(std::span<const BatchEntry> batch) override;
  Result<std::vector<float>> TakeEmbedding(int slot) override;
  // The embedding FakeEngine gives an input of exactly these tokens.
  static std::vector<float> EmbeddingOf(std::span<const Token> tokens);

  std::vector<std::vector<RecordedEntry>> Batches() const;
  // Slots with a live sequence (KV cells held).
  int Active() const { return active_.load(); }
  void FailNextStep() { fail_next_ = true; }
  // Every CopyPrefix call, in order: {src_slot, dst_slot, n_pos}.
  struct Copy {
    int src;
    int dst;
    int n_pos;
  };
  std::vector<Copy> Copies() const;
  // Every successful SaveCells and RestoreCells call: {slot, n_pos} (n_pos: the positions saved
  // or restored).
  struct CellsCall {
    int slot;
    int n_pos;
  };
  std::vector<CellsCall> Saves() const;
  std::vector<CellsCall> Restores() const;

 private:
  class ByteTokenizer final : public Tokenizer {
   public:
    Result<std::vector<Token>> Tokenize(std::string_view text, bool add_special) const override;
    std::string TokenPiece(Token token) const override;
    bool IsEndOfGeneration(Token token) const override { return token == 0; }
    int VocabSize() const override { return 256; }
    Result<std::string> ApplyChatTemplate(std::span<const ChatMessage> messages) const override;
  };

  FakeEngineOptions options_;
  ModelInfo info_;
  ByteTokenizer tokenizer_;
  // Per slot: tokens sampled, the fake's sampler state (it decides eos_after); engine thread
  // only.
  std::vector<int> sampled_count_;
  std::vector<SamplingParams> params_;   // per slot; engine thread only
  std::vector<bool> live_;               // per slot; engine thread only
  std::vector<int> kv_len_;              // per slot: positions holding KV; engine thread only
  std::vector<std::vector<Token>> fed_;  // per slot: the tokens of its KV cells; engine thread
  std::vector<bool> invariant_;          // per slot: fed by deterministic steps only; engine thread
  // Per slot: copied from (1) or into (2) by a CopyPrefix since the last Step. libllama's stream
  // copies land at the next decode; the fake refuses what the llama engine refuses meanwhile.
  std::vector<int> copying_;
  std::vector<std::optional<std::vector<float>>> embeddings_;  // per slot, from the last step
  std::atomic<int> active_{0};
  std::atomic<bool> fail_next_{false};
  mutable std::mutex mu_;
  std::vector<std::vector<RecordedEntry>> batches_;  // GUARDED_BY(mu_)
  std::vector<Copy> copies_;                         // GUARDED_BY(mu_)
  std::vector<CellsCall> saves_;                     // GUARDED_BY(mu_)
  std::vector<CellsCall> restores_;                  // GUARDED_BY(mu_)
};

}  // namespace ember::engine
