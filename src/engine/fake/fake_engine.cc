#include "engine/fake/fake_engine.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <thread>

namespace ember::engine {

Result<std::vector<Token>> FakeEngine::ByteTokenizer::Tokenize(std::string_view text,
                                                               bool add_special) const {
  std::vector<Token> out;
  if (add_special) out.push_back(1);  // BOS
  for (unsigned char c : text) out.push_back(c == 0 ? 2 : c);
  return out;
}

std::string FakeEngine::ByteTokenizer::TokenPiece(Token token) const {
  if (token <= 2 || token > 255) return {};
  return std::string(1, static_cast<char>(token));
}

Result<std::string> FakeEngine::ByteTokenizer::ApplyChatTemplate(
    std::span<const ChatMessage> messages) const {
  std::string out;
  for (const ChatMessage& m : messages) out += m.role + ": " + m.content + "\n";
  return out + "assistant:";
}

FakeEngine::FakeEngine(FakeEngineOptions options)
    : options_(options),
      sampled_count_(options.parallel, 0),
      params_(options.parallel),
      live_(options.parallel, false),
      kv_len_(options.parallel, 0),
      fed_(options.parallel),
      invariant_(options.parallel, true),
      copying_(options.parallel, 0),
      embeddings_(options.parallel) {
  info_.id = "fake";
  info_.path = "fake";
  info_.n_parallel = options.parallel;
  info_.n_ctx_per_seq = options.ctx_per_seq;
  info_.n_ctx_total = options.ctx_per_seq * options.parallel;
  info_.n_batch = options.batch_size;
  info_.n_vocab = 256;
  info_.n_ctx_train = options.ctx_per_seq;
  info_.chat_template = "fake";
  info_.n_embd = kEmbd;
  info_.numerics_id = options.numerics_id;
}

std::vector<float> FakeEngine::EmbeddingOf(std::span<const Token> tokens) {
  std::vector<float> v(kEmbd, 0.0f);
  for (std::size_t i = 0; i < tokens.size(); ++i) {
    for (int j = 0; j < kEmbd; ++j) {
      v[j] += static_cast<float>(
          std::sin(static_cast<double>((tokens[i] + 1) * (j + 1)) + static_cast<double>(i)));
    }
  }
  double norm = 0;
  for (float x : v) norm += static_cast<double>(x) * x;
  norm = std::sqrt(norm);
  for (float& x : v) x = norm > 0 ? static_cast<float>(x / norm) : 0.0f;
  return v;
}

Result<std::vector<float>> FakeEngine::TakeEmbedding(int slot) {
  if (slot < 0 || slot >= options_.parallel || !embeddings_[slot]) {
    return Internal("no embedding for this slot from the last step");
  }
  std::vector<float> out = std::move(*embeddings_[slot]);
  embeddings_[slot].reset();
  return out;
}

Result<int> FakeEngine::BeginSequence(int slot, const SamplingParams& params, int keep) {
  if (slot < 0 || slot >= options_.parallel) return Internal("slot out of range");
  if (live_[slot]) return Internal("slot already in use");
  live_[slot] = true;
  params_[slot] = params;
  sampled_count_[slot] = 0;
  kv_len_[slot] = std::clamp(keep, 0, kv_len_[slot]);
  fed_[slot].resize(kv_len_[slot]);
  if (kv_len_[slot] == 0) invariant_[slot] = true;
  ++active_;
  return kv_len_[slot];
}

void FakeEngine::EndSequence(int slot, bool keep_cells) {
  if (slot < 0 || slot >= options_.parallel || !live_[slot]) return;
  live_[slot] = false;
  if (!keep_cells) {
    kv_len_[slot] = 0;
    fed_[slot].clear();
    invariant_[slot] = true;
  }
  --active_;
}

Status FakeEngine::CopyPrefix(int src_slot, int dst_slot, int n_pos) {
  if (src_slot < 0 || src_slot >= options_.parallel || dst_slot < 0 ||
      dst_slot >= options_.parallel || src_slot == dst_slot) {
    return Internal("slot out of range");
  }
  if (n_pos < 0 || n_pos > kv_len_[src_slot]) return Internal("copy past the source's cells");
  kv_len_[dst_slot] = n_pos;
  fed_[dst_slot].assign(fed_[src_slot].begin(), fed_[src_slot].begin() + n_pos);
  invariant_[dst_slot] = invariant_[src_slot];
  copying_[src_slot] |= 1;
  copying_[dst_slot] |= 2;
  std::lock_guard lock(mu_);
  copies_.push_back({src_slot, dst_slot, n_pos});
  return {};
}

namespace {
struct FakeCells final : CellsSnapshot {
  std::vector<Token> tokens;
  std::vector<std::uint8_t> blob;  // the tokens' bytes, padded to the snapshot's size
  bool all_invariant = true;
  std::size_t bytes() const override { return blob.size(); }
  int n_pos() const override { return static_cast<int>(tokens.size()); }
  bool invariant() const override { return all_invariant; }
  std::span<const std::uint8_t> data() const override { return blob; }
};
}  // namespace

Result<std::unique_ptr<CellsSnapshot>> FakeEngine::SaveCells(int slot) {
  if (slot < 0 || slot >= options_.parallel) return Internal("slot out of range");
  if (fed_[slot].empty()) return Unavailable("the slot holds no cells");
  if (copying_[slot] & 2) return Unavailable("a copy into the slot lands at the next step");
  auto cells = std::make_unique<FakeCells>();
  cells->tokens = fed_[slot];
  cells->blob.resize(cells->tokens.size() * static_cast<std::size_t>(options_.cell_bytes));
  std::memcpy(cells->blob.data(), cells->tokens.data(), cells->tokens.size() * sizeof(Token));
  cells->all_invariant = invariant_[slot];
  std::lock_guard lock(mu_);
  saves_.push_back({slot, cells->n_pos()});
  return cells;
}

Status FakeEngine::RestoreCells(int dst_slot, const CellsSnapshot& snapshot, int n_pos) {
  if (dst_slot < 0 || dst_slot >= options_.parallel) return Internal("slot out of range");
  kv_len_[dst_slot] = 0;
  fed_[dst_slot].clear();
  if (copying_[dst_slot] != 0) return Unavailable("a copy from or into the slot is in flight");
  const auto& cells = dynamic_cast<const FakeCells&>(snapshot);
  if (n_pos > cells.n_pos()) return Internal("restore past the snapshot's cells");
  if (params_[dst_slot].deterministic && !cells.all_invariant) {
    return Unavailable("the cells were not all computed with batch-invariant numerics");
  }
  fed_[dst_slot].assign(cells.tokens.begin(), cells.tokens.begin() + n_pos);
  kv_len_[dst_slot] = n_pos;
  invariant_[dst_slot] = cells.all_invariant;
  std::lock_guard lock(mu_);
  restores_.push_back({dst_slot, n_pos});
  return {};
}

std::unique_ptr<CellsSnapshot> FakeEngine::CellsFromBytes(std::vector<std::uint8_t> data, int n_pos,
                                                          bool invariant) const {
  if (n_pos <= 0 || data.size() < static_cast<std::size_t>(n_pos) * sizeof(Token)) return nullptr;
  auto cells = std::make_unique<FakeCells>();
  cells->tokens.resize(static_cast<std::size_t>(n_pos));
  std::memcpy(cells->tokens.data(), data.data(), cells->tokens.size() * sizeof(Token));
  cells->blob = std::move(data);
  cells->all_invariant = invariant;
  return cells;
}

std::vector<FakeEngine::CellsCall> FakeEngine::Saves() const {
  std::lock_guard lock(mu_);
  return saves_;
}

std::vector<FakeEngine::CellsCall> FakeEngine::Restores() const {
  std::lock_guard lock(mu_);
  return restores_;
}

std::vector<FakeEngine::Copy> FakeEngine::Copies() const {
  std::lock_guard lock(mu_);
  return copies_;
}

namespace {
struct FakeSamplerState final : SamplerState {
  int sampled = 0;
};
}  // namespace

std::unique_ptr<SamplerState> FakeEngine::SuspendSampler(int slot) {
  auto state = std::make_unique<FakeSamplerState>();
  if (slot >= 0 && slot < options_.parallel) state->sampled = sampled_count_[slot];
  return state;
}

void FakeEngine::ResumeSampler(int slot, std::unique_ptr<SamplerState> state) {
  if (slot < 0 || slot >= options_.parallel || state == nullptr) return;
  sampled_count_[slot] = static_cast<FakeSamplerState&>(*state).sampled;
}

namespace {

Sampled WithFakeLogprobs(Token token, int n, int top_logprobs) {
  Sampled out;
  out.token = token;
  out.has_logprobs = true;
  out.logprob = -0.01f * static_cast<float>(n);
  out.n_top = std::clamp(top_logprobs, 0, kMaxTopLogprobs);
  for (int i = 0; i < out.n_top; ++i) {
    out.top[i] = {static_cast<Token>((token + i) % 256), out.logprob - static_cast<float>(i)};
  }
  return out;
}

}  // namespace

Result<std::vector<Sampled>> FakeEngine::Step(std::span<const BatchEntry> batch) {
  if (options_.step_delay.count() > 0) std::this_thread::sleep_for(options_.step_delay);
  if (fail_next_.exchange(false)) return Internal("injected engine failure");
  std::vector<RecordedEntry> record;
  std::vector<Token> sampled;
  int total = 0;
  for (auto& e : embeddings_) e.reset();
  const bool invariant =
      std::any_of(batch.begin(), batch.end(), [](const BatchEntry& e) { return e.deterministic; });
  std::fill(copying_.begin(), copying_.end(), 0);
  for (const BatchEntry& e : batch) {
    if (e.slot < 0 || e.slot >= options_.parallel || !live_[e.slot]) {
      return Internal("step on a slot with no sequence");
    }
    if (e.pos != kv_len_[e.slot]) return Internal("step does not continue the slot's KV cells");
    if (e.sample && e.embed) return Internal("an entry both samples and embeds");
    kv_len_[e.slot] += static_cast<int>(e.tokens.size());
    if (!invariant) invariant_[e.slot] = false;
    fed_[e.slot].insert(fed_[e.slot].end(), e.tokens.begin(), e.tokens.end());
    total += static_cast<int>(e.tokens.size());
    record.push_back(
        {e.slot, e.pos, static_cast<int>(e.tokens.size()), e.sample, e.deterministic, e.embed});
    if (e.embed) embeddings_[e.slot] = EmbeddingOf(fed_[e.slot]);
    if (!e.sample) continue;
    const int n = ++sampled_count_[e.slot];
    if (options_.eos_after >= 0 && n > options_.eos_after) {
      sampled.push_back(0);
      continue;
    }
    const Token last = e.tokens.empty() ? 'a' : e.tokens.back();
    Token next = last >= 'a' && last < 'z' ? last + 1 : 'a';
    const SamplingParams& p = params_[e.slot];
    if (p.seed && p.temperature > 0) next = 'a' + (next - 'a' + *p.seed % 26) % 26;
    sampled.push_back(next);
  }
  if (total > options_.batch_size) return Internal("step exceeds the batch size");
  std::vector<Sampled> out(sampled.size());
  std::size_t k = 0;
  for (const BatchEntry& e : batch) {
    if (!e.sample) continue;
    const SamplingParams& p = params_[e.slot];
    out[k] = p.logprobs ? WithFakeLogprobs(sampled[k], sampled_count_[e.slot], p.top_logprobs)
                        : Sampled{.token = sampled[k]};
    ++k;
  }
  std::lock_guard lock(mu_);
  batches_.push_back(std::move(record));
  return out;
}

std::vector<std::vector<FakeEngine::RecordedEntry>> FakeEngine::Batches() const {
  std::lock_guard lock(mu_);
  return batches_;
}

}  // namespace ember::engine
