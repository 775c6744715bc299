#include "scheduler/scheduler.h"

#include <algorithm>
#include <cassert>
#include <cmath>
#include <deque>
#include <future>
#include <map>
#include <tuple>
#include <unordered_map>

#include "common/hash.h"
#include "common/log.h"

namespace ember::scheduler {

using engine::FinishReason;
using engine::Token;

void SplitStepTime(std::int64_t step_ns, std::span<const int> tokens, std::span<std::int64_t> out) {
  const std::size_t n = std::min(tokens.size(), out.size());
  if (n == 0) return;
  std::int64_t total = 0;
  for (std::size_t i = 0; i < n; ++i) total += std::max(0, tokens[i]);
  const bool even = total == 0;
  if (even) total = static_cast<std::int64_t>(n);
  // Floor shares, then the leftover nanoseconds one each to the largest remainders (ties: the
  // lower index), so the shares add up to step_ns exactly.
  std::int64_t given = 0;
  std::vector<std::pair<std::int64_t, std::size_t>> remainders(n);
  for (std::size_t i = 0; i < n; ++i) {
    const std::int64_t weight = even ? 1 : std::max(0, tokens[i]);
    const __int128 product = static_cast<__int128>(step_ns) * weight;
    out[i] = static_cast<std::int64_t>(product / total);
    remainders[i] = {static_cast<std::int64_t>(product % total), i};
    given += out[i];
  }
  std::sort(remainders.begin(), remainders.end(), [](const auto& a, const auto& b) {
    return a.first != b.first ? a.first > b.first : a.second < b.second;
  });
  for (std::size_t k = 0; given < step_ns && k < n; ++k, ++given) ++out[remainders[k].second];
}

// A request from the moment the engine thread takes it from the inbox: waiting, running in
// a slot, or waiting again after a preemption.
struct Scheduler::Sequence {
  GenerateRequest request;
  std::shared_ptr<RequestStream> stream;
  std::uint64_t order = 0;    // arrival order: FIFO within a tenant
  int slot = -1;              // -1 while waiting
  bool started = false;       // admitted at least once (Admitted was sent)
  int prefilled = 0;          // tokens of feed() already fed
  int generated = 0;          // tokens sampled
  int cached = 0;             // prompt tokens reused from the slot's previous sequence
  Token next = 0;             // last sampled token, fed in the next step
  std::vector<Token> output;  // every sampled token, in order
  // After a preemption: the prompt and every sampled token, recomputed as one prefill whose
  // last position yields the next token. `replayed` of the outputs are in it.
  std::vector<Token> replay;
  int replayed = 0;
  std::unique_ptr<engine::SamplerState> sampler;  // while preempted
  TextStream text;
  // With logprobs asked for: those of the tokens appended to `text` and not yet released.
  std::deque<engine::TokenLogprobs> logprobs;
  SteadyTime admitted{};  // first admission
  SteadyTime first_token{};
  SteadyTime last_token{};
  std::int64_t engine_ns = 0;    // its share of the steps it was in (SplitStepTime)
  std::vector<float> embedding;  // an embedding request's result, for its Finished event
  int choice = 0;                // its index among the request's choices
  // A choice after the first, until it has the prompt's cells: the slot of the first choice,
  // whose prefill it waits for (it is not scheduled meanwhile).
  // Also any request whose prompt begins with what another, still prefilling, is computing
  // (PickSlot's wait_from): that one's slot, and `share_n` positions to copy from it.
  int prompt_from = -1;
  int share_n = 0;
  int sharers = 0;  // sequences waiting for its prompt cells
  // Its timeline (SchedulerOptions::trace_steps), and for it each peer's index in
  // trace->peer_ids by peer key (PeerKey).
  std::shared_ptr<Trace> trace;
  std::unordered_map<std::uint64_t, std::uint32_t> peer_index;

  const std::vector<Token>& feed() const { return replay.empty() ? request.prompt : replay; }
  bool decoding() const { return prefilled == static_cast<int>(feed().size()); }
  int kv_cells() const {
    return decoding() ? prefilled + std::max(0, generated - replayed - 1) : prefilled;
  }
  const TenantTag& tenant() const { return request.tenant; }
};

Result<std::unique_ptr<Scheduler>> Scheduler::Create(SchedulerOptions options,
                                                     std::unique_ptr<engine::Engine> engine,
                                                     SchedulerObserver* observer, Clock& clock) {
  if (!engine) return InvalidArgument("scheduler needs an engine");
  if (options.queue_size < 0) return InvalidArgument("queue size must not be negative");
  std::unique_ptr<Scheduler> s(new Scheduler(options, std::move(engine), observer, clock));
  std::promise<Status> warmed;
  auto warm_result = warmed.get_future();
  s->thread_ = std::thread([raw = s.get(), &warmed] {
    Status warm = raw->engine_->WarmUp();
    if (warm && raw->options_.verify_batch_invariance) {
      warm = raw->engine_->VerifyBatchInvariance();
    }
    const bool ok = warm.has_value();
    warmed.set_value(std::move(warm));
    if (ok) raw->Run();
  });
  if (Status warm = warm_result.get(); !warm) {
    s->thread_.join();
    return std::unexpected(warm.error());
  }
  return s;
}

Scheduler::Scheduler(SchedulerOptions options, std::unique_ptr<engine::Engine> engine,
                     SchedulerObserver* observer, Clock& clock)
    : options_(options),
      engine_(std::move(engine)),
      observer_(observer != nullptr ? observer : &null_observer_),
      clock_(clock),
      slots_(engine_->Info().n_parallel),
      cached_(engine_->Info().n_parallel),
      store_(options.prefix_share == PrefixShare::kOff || engine_->Info().embedding_only()
                 ? 0
                 : options.prefix_cache_bytes) {
  last_progress_ns_ = clock_.Now().time_since_epoch().count();
  if (store_.enabled() && !options_.prefix_disk_root.empty() && options_.prefix_disk_bytes > 0) {
    const engine::ModelInfo& info = engine_->Info();
    // libllama restores a sequence's state only into a context with the same streams.
    auto disk = PrefixDisk::Open(
        {.root = options_.prefix_disk_root,
         .key = StrCat(info.numerics_id, "|cpu_variant=", info.cpu_variant,
                       "|parallel=", info.n_parallel, "|ctx_per_seq=", info.n_ctx_per_seq),
         .max_bytes = options_.prefix_disk_bytes,
         .min_free_bytes = options_.prefix_disk_min_free_bytes,
         .load_bytes = store_.capacity()});
    if (disk) {
      disk_ = std::move(*disk);
      disk_hold_until_ = std::chrono::steady_clock::now() + kDiskReadWait;
    } else {
      log::Warn("prefix cache: no disk tier: ", disk.error().message);
    }
  }
}

Scheduler::~Scheduler() {
  {
    std::lock_guard lock(mu_);
    stop_ = true;
  }
  wake_.notify_all();
  if (thread_.joinable()) thread_.join();
  // The RAM tier goes with the scheduler (an unloaded model): its gauges say so at once.
  if (store_.entries() > 0) observer_->OnPrefixStore(0, 0, 0);
}

Status Scheduler::Submit(GenerateRequest request, std::shared_ptr<RequestStream> stream) {
  if (draining_.load()) return Unavailable("server is shutting down; retry on another replica");
  if (!std::isfinite(request.tenant.weight) || request.tenant.weight <= 0) {
    return InvalidArgument(
        StrCat("tenant weight must be a positive number, not ", request.tenant.weight));
  }
  const engine::ModelInfo& info = engine_->Info();
  if (info.embedding_only() && !request.embed) {
    return InvalidArgument(
        StrCat("model '", info.id, "' is an embedding model: it answers /v1/embeddings only"),
        "model");
  }
  // A pooled input must fit one step, or it would wait for a step that never comes.
  if (info.embedding_only() && static_cast<int>(request.prompt.size()) > info.n_batch) {
    return InvalidArgument(StrCat("input of ", request.prompt.size(),
                                  " tokens is longer than the batch size of ", info.n_batch),
                           "input");
  }
  if (request.n < 1 || request.n > info.n_parallel || (request.embed && request.n != 1)) {
    return InvalidArgument(StrCat("n (", request.n, ") must be between 1 and the model's ",
                                  info.n_parallel, " parallel sequence slots"),
                           "n");
  }
  int waiting = waiting_count_.load();
  do {
    if (waiting >= options_.queue_size) {
      return ResourceExhausted("server is at capacity: the wait queue is full; retry later");
    }
  } while (!waiting_count_.compare_exchange_weak(waiting, waiting + 1));
  {
    std::lock_guard lock(mu_);
    inbox_.push_back({std::move(request), std::move(stream)});
  }
  wake_.notify_one();
  return {};
}

void Scheduler::Cancel(const std::shared_ptr<RequestStream>& stream) {
  stream->Cancel();
  wake_.notify_one();
}

void Scheduler::BeginDrain() { draining_.store(true); }

bool Scheduler::WaitIdle(SteadyTime deadline) {
  std::unique_lock lock(mu_);
  while (waiting_count_.load() > 0 || running_count_.load() > 0 || preempted_count_.load() > 0) {
    const auto now = clock_.Now();
    if (now >= deadline) return false;
    idle_.wait_for(
        lock, std::min<std::chrono::nanoseconds>(deadline - now, std::chrono::milliseconds(50)));
  }
  return true;
}

void Scheduler::AbortAll() {
  {
    std::lock_guard lock(mu_);
    abort_ = true;
  }
  wake_.notify_all();
}

SchedulerSnapshot Scheduler::Snapshot() const {
  SchedulerSnapshot s;
  s.running = running_count_.load();
  s.waiting = waiting_count_.load() + preempted_count_.load();
  s.kv_cells_used = kv_used_.load();
  s.kv_cells_total = engine_->Info().n_ctx_per_seq * engine_->Info().n_parallel;
  s.draining = draining_.load();
  s.has_work = s.running > 0 || s.waiting > 0;
  s.since_progress =
      clock_.Now().time_since_epoch() - std::chrono::nanoseconds(last_progress_ns_.load());
  return s;
}

void Scheduler::Run() {
  for (;;) {
    {
      std::unique_lock lock(mu_);
      const bool idle = running_count_.load() == 0 && queue_.empty() && inbox_.empty();
      if (idle && !stop_ && !abort_) {
        idle_.notify_all();
        wake_.wait_for(lock, std::chrono::milliseconds(100));
      }
      if (stop_) break;
      if (abort_) {
        abort_ = false;
        lock.unlock();
        TakeInbox();
        queue_.ForEach([](std::unique_ptr<Sequence>& w) { w->stream->Cancel(); });
        for (auto& s : slots_)
          if (s) s->stream->Cancel();
      }
    }
    TakeInbox();
    ExpireWaiting();
    DropCancelled();
    // The disk tier is read in the background from the start, and a restarted replica's first
    // requests are the ones it is for: admitting one before the read is done would compute a
    // prompt the tier holds. So admissions wait for the read, at most kDiskReadWait after the
    // scheduler started (the model is ready meanwhile; /ready does not wait).
    const bool disk_pending = disk_ && !disk_->loaded();
    if (disk_) SyncDisk();
    if (disk_pending && std::chrono::steady_clock::now() < disk_hold_until_) {
      std::unique_lock lock(mu_);
      if (!stop_ && !abort_ && running_count_.load() == 0) {
        wake_.wait_for(lock, std::chrono::milliseconds(5));
      }
    } else {
      AdmitWaiting();
    }
    if (!RunStep()) last_progress_ns_ = clock_.Now().time_since_epoch().count();
  }
  TakeInbox();
  const Error shutdown{ErrorCode::kUnavailable, "server stopped before the request finished", ""};
  queue_.RemoveIf([&](std::unique_ptr<Sequence>& w) {
    FailWaiting(*w, FinishReason::kError, shutdown);
    return true;
  });
  for (auto& s : slots_) {
    if (s) Finish(*s, FinishReason::kError, shutdown);
  }
  idle_.notify_all();
}

void Scheduler::TakeInbox() {
  std::lock_guard lock(mu_);
  while (!inbox_.empty()) {
    auto seq = std::make_unique<Sequence>();
    seq->request = std::move(inbox_.front().request);
    seq->stream = std::move(inbox_.front().stream);
    seq->order = next_order_++;
    if (options_.trace_steps > 0) seq->trace = std::make_shared<Trace>();
    inbox_.pop_front();
    const TenantTag tenant = seq->tenant();
    const std::uint64_t order = seq->order;
    queue_.Push(tenant, order, std::move(seq));
  }
}

void Scheduler::FailWaiting(Sequence& seq, FinishReason reason, std::optional<Error> error) {
  if (seq.started) {  // preempted: its client has had an answer so far, end it like a run
    preempted_count_.fetch_sub(1);
    return Complete(seq, reason, std::move(error));
  }
  waiting_count_.fetch_sub(1);
  for (int choice = 0; choice < seq.request.n; ++choice) {
    Finished f;
    f.choice = choice;
    f.reason = reason;
    if (choice == 0) f.usage.prompt_tokens = static_cast<int>(seq.request.prompt.size());
    f.timings.total = clock_.Now() - seq.request.arrival;
    f.timings.queue = f.timings.total;
    f.error = error;
    if (choice == 0) f.trace = seq.trace;
    observer_->OnFinished(f);
    seq.stream->Push(std::move(f));
  }
}

// The queue timeout applies to requests never admitted. A preempted request waits without
// one: it was admitted in time, and failing it now would cut off an answer its client is
// reading (cancellation still ends it at once).
void Scheduler::ExpireWaiting() {
  const SteadyTime now = clock_.Now();
  queue_.RemoveIf([&](std::unique_ptr<Sequence>& seq) {
    if (seq->stream->cancelled()) {
      FailWaiting(*seq, FinishReason::kCancelled, std::nullopt);
      return true;
    }
    if (!seq->started && now - seq->request.arrival > options_.queue_timeout) {
      FailWaiting(*seq, FinishReason::kError,
                  Error{ErrorCode::kDeadlineExceeded,
                        StrCat("request waited longer than the queue timeout (",
                               options_.queue_timeout.count(), " ms) for a free slot; retry later"),
                        ""});
      return true;
    }
    return false;
  });
}

std::span<const Token> Scheduler::Reusable(int slot, const TenantTag& tenant) const {
  // An embedding model's inputs never start from a prefix (Engine::BeginSequence).
  if (options_.prefix_share == PrefixShare::kOff || engine_->Info().embedding_only()) return {};
  const Sequence* running = slots_[slot].get();
  const std::string& owner = running ? running->tenant().id : cached_[slot].tenant;
  if (options_.prefix_share == PrefixShare::kTenant && owner != tenant.id) return {};
  if (running == nullptr) return cached_[slot].tokens;
  // A running sequence's computed positions never change: only the feed's, not its outputs'.
  return std::span<const Token>(running->feed()).first(running->prefilled);
}

// Where a new sequence goes. The lowest free slot, so running sequences stay on consecutive
// ids (one forward pass per run of them, see PlanStep), unless another free slot shares at
// least kMinPrefixHit tokens with the prompt: then the one sharing the most. When some other
// slot, free or running, holds at least kMinPrefixHit more of the prompt than that one, its
// cells are copied in. And when landing there would discard kMinPrefixHit or more cached
// tokens, they first move to the free slot used least recently (the cache's eviction).
// {-1, ...} when no slot is free.
Scheduler::Placement Scheduler::PickSlot(const std::vector<Token>& prompt, const TenantTag& tenant,
                                         bool deterministic) const {
  const int n = static_cast<int>(slots_.size());
  std::vector<int> match(n, 0);
  for (int slot = 0; slot < n; ++slot) {
    const std::span<const Token> held = Reusable(slot, tenant);
    match[slot] = static_cast<int>(
        std::mismatch(held.begin(), held.end(), prompt.begin(), prompt.end()).first - held.begin());
  }
  int lowest = -1, best = -1;
  for (int slot = 0; slot < n; ++slot) {
    if (slots_[slot]) continue;
    if (lowest < 0) lowest = slot;
    if (best < 0 || match[slot] > match[best]) best = slot;
  }
  if (lowest < 0) return {};
  const bool hit = match[best] >= kMinPrefixHit && match[best] > match[lowest];
  Placement place{.slot = hit ? best : lowest, .own = hit ? match[best] : match[lowest]};
  for (int slot = 0; slot < n; ++slot) {
    if (slot != place.slot && (place.src < 0 || match[slot] > match[place.src])) place.src = slot;
  }
  if (place.src >= 0 && match[place.src] - place.own >= kMinPrefixHit) {
    place.copy = match[place.src];
  } else {
    place.src = -1;
  }
  // The RAM tier, when it holds kMinPrefixHit more than any slot offers.
  if (store_.enabled() && !prompt.empty()) {
    const PrefixStore::Match m = store_.Find(StoreScope(tenant.id), prompt, deterministic);
    const int slots_best = place.src >= 0 ? place.copy : place.own;
    if (m.id != 0 && m.tokens - slots_best >= kMinPrefixHit) {
      place.restore = m.id;
      place.restore_n = m.tokens;
      place.src = -1;
      place.copy = 0;
    }
  }
  // A prompt being computed in another slot: waiting for it costs no more than computing the
  // same tokens beside it in the same steps, and leaves the steps' budget to others. Only from
  // a sequence that waits for no one (no chains), that PlanStep feeds no later than this one,
  // and for a deterministic request only from a deterministic one (batch-invariant cells).
  // Prompts in flight are scoped as Reusable scopes cells.
  if (!prompt.empty() && options_.prefix_share != PrefixShare::kOff &&
      !engine_->Info().embedding_only()) {
    int best_now = place.src >= 0 ? place.copy : place.own;
    if (place.restore != 0) best_now = place.restore_n;
    for (int slot = 0; slot < n; ++slot) {
      const Sequence* s = slots_[slot].get();
      if (s == nullptr || s->decoding() || s->prompt_from >= 0 || s->request.embed) continue;
      if (deterministic && !s->request.sampling.deterministic) continue;
      if (options_.prefix_share == PrefixShare::kTenant && s->tenant().id != tenant.id) continue;
      // Never behind a source PlanStep feeds later than the waiter would be fed itself: a
      // less urgent class, or (sharing across tenants) a tenant the fair order puts behind.
      if (s->tenant().priority > tenant.priority) continue;
      if (s->tenant().id != tenant.id && queue_.Counter(s->tenant()) > queue_.Counter(tenant)) {
        continue;
      }
      const std::vector<Token>& feed = s->feed();
      const int pending =
          std::min(static_cast<int>(
                       std::mismatch(feed.begin(), feed.end(), prompt.begin(), prompt.end()).first -
                       feed.begin()),
                   static_cast<int>(prompt.size()) - 1);
      if (pending > s->prefilled && pending - best_now >= kMinPrefixHit && pending > place.wait_n) {
        place.wait_from = slot;
        place.wait_n = pending;
      }
    }
    if (place.wait_from >= 0) {
      place.src = -1;
      place.copy = 0;
      place.restore = 0;
      place.restore_n = 0;
    }
  }
  // Before a restore the slot's cache goes to the RAM tier (Start), not to another slot: a
  // stream copy from the slot would land after the restore and copy the restored cells.
  const int keep = place.src >= 0 || place.wait_from >= 0 ? 0 : place.own;
  const int held = static_cast<int>(cached_[place.slot].tokens.size());
  if (place.restore == 0 && held - keep >= kMinPrefixHit && WorthKeeping(held, place.own)) {
    for (int slot = 0; slot < n; ++slot) {
      if (slots_[slot] || slot == place.slot || slot == place.src) continue;
      if (place.evict_to < 0 || cached_[slot].used < cached_[place.evict_to].used) {
        place.evict_to = slot;
      }
    }
    // Only over an older cache: the newer one stays where it is and is overwritten.
    if (place.evict_to >= 0 && cached_[place.evict_to].used > cached_[place.slot].used) {
      place.evict_to = -1;
    }
  }
  return place;
}

// Admits in FairQueue order. When the next request finds no free slot, it may preempt a
// running sequence of a less urgent class and take its slot.
void Scheduler::AdmitWaiting() {
  while (std::unique_ptr<Sequence>* head = queue_.Peek()) {
    Sequence* next = head->get();  // stays put while a preempted sequence is requeued
    // A request's choices are admitted together: it needs a free slot for each.
    const int need = next->started ? 1 : next->request.n;
    while (need > 1 && FreeSlots() < need) {
      Sequence* victim = PickVictim(next->tenant().priority);
      if (victim == nullptr && options_.fair_share_preemption) {
        victim = PickFairShareVictim(next->tenant());
      }
      if (victim == nullptr) return;
      Preempt(*victim);
    }
    const bool det = next->request.sampling.deterministic;
    Placement place = PickSlot(next->feed(), next->tenant(), det);
    if (place.slot < 0) {
      Sequence* victim = PickVictim(next->tenant().priority);
      if (victim == nullptr && options_.fair_share_preemption) {
        victim = PickFairShareVictim(next->tenant());
      }
      if (victim == nullptr) return;
      Preempt(*victim);
      place = PickSlot(next->feed(), next->tenant(), det);
      if (place.slot < 0) return;
    }
    // The victim's class is less urgent, or its tenant is ahead of `next`'s by the fair-share
    // rule (and it is requeued behind its own tenant's head), so `next` is still first.
    std::unique_ptr<Sequence> seq = queue_.Pop();
    assert(seq.get() == next);
    Start(std::move(seq), place);
    if (need > 1 && slots_[place.slot].get() == next) StartChoices(place.slot);
  }
}

int Scheduler::FreeSlots() const {
  return static_cast<int>(std::count(slots_.begin(), slots_.end(), nullptr));
}

// Choices 1..n-1 take the lowest free slots (AdmitWaiting made room for them). Each begins
// with no cells and its own sampler (seed + i) and waits for the first choice's prefill; it is
// admitted with the request (one Admitted event) and its prompt is charged once, with it.
void Scheduler::StartChoices(int slot) {
  Sequence& first = *slots_[slot];
  for (int choice = 1; choice < first.request.n; ++choice) {
    auto seq = std::make_unique<Sequence>();
    seq->request = first.request;
    seq->request.n = 1;
    if (seq->request.sampling.seed) *seq->request.sampling.seed += choice;
    seq->stream = first.stream;
    seq->order = first.order;
    seq->choice = choice;
    seq->started = true;
    seq->text = TextStream(seq->request.stop);
    seq->admitted = first.admitted;
    if (first.trace) {
      seq->trace = std::make_shared<Trace>();
      Mark(*seq, TraceMark::Kind::kAdmitted, seq->admitted);
    }
    queue_.AddRunning(seq->tenant());
    const int at = PickSlot({}, seq->tenant()).slot;
    if (at >= 0) SaveToStore(at);
    auto begun = at < 0 ? Result<int>(Internal("no free slot for a choice"))
                        : engine_->BeginSequence(at, seq->request.sampling, 0);
    if (!begun) {
      queue_.Done(seq->tenant());
      Complete(*seq, FinishReason::kError, begun.error());
      continue;
    }
    cached_[at] = {.tokens = {}, .tenant = {}, .used = ++cache_clock_};
    seq->slot = at;
    seq->prompt_from = slot;
    ++first.sharers;
    slots_[at] = std::move(seq);
    running_count_.fetch_add(1);
  }
}

void Scheduler::SharePrompt(Sequence& first, bool copy, bool ready_only) {
  if (first.sharers == 0) return;
  const int n_prompt = static_cast<int>(first.request.prompt.size());
  for (auto& s : slots_) {
    if (!s || s.get() == &first || s->prompt_from != first.slot) continue;
    // Another choice of the same request copies the prompt but its last token, whose logits
    // are the choice's own; another request copies what it shares.
    const bool choice = s->stream == first.stream;
    const int n = choice ? n_prompt - 1 : s->share_n;
    const bool ready =
        choice ? first.replay.empty() && first.prefilled >= n_prompt : first.prefilled >= n;
    if (ready_only && !ready) continue;
    s->prompt_from = -1;
    --first.sharers;
    // Another request let go early (its source finishes or is preempted) still takes what was
    // computed, when that is worth a copy.
    const int n_copy = ready ? n : choice ? 0 : std::min(first.prefilled, n);
    int got = 0;
    if (copy && (ready || n_copy >= kMinPrefixHit)) {
      if (Status copied = engine_->CopyPrefix(first.slot, s->slot, n_copy); copied) {
        got = n_copy;
      } else if (choice) {
        log::Error("sharing a prompt's cells failed (the choice prefills it): ",
                   copied.error().message);
      }
    }
    s->prefilled = got;
    ReportPrefill(*s);
    if (!choice) SettleShare(*s, got);
  }
  if (!ready_only) first.sharers = 0;
}

void Scheduler::SettleShare(Sequence& seq, int got) {
  seq.cached = got;
  if (!seq.request.embed) {
    observer_->OnPrefixLookup(static_cast<int>(seq.request.prompt.size()), got, got > 0, false);
  }
  queue_.Charge(seq.tenant(), seq.share_n - got, 0);
  seq.share_n = 0;
}

void Scheduler::StopWaiting(Sequence& seq) {
  if (seq.prompt_from < 0) return;
  if (Sequence* first = slots_[seq.prompt_from].get()) --first->sharers;
  seq.prompt_from = -1;
  if (seq.share_n > 0) SettleShare(seq, 0);  // another request's prompt, never copied
}

void Scheduler::ReportPrefill(const Sequence& seq) {
  if (seq.request.prefill_progress) {
    seq.request.prefill_progress->store(seq.prefilled, std::memory_order_relaxed);
  }
}

std::string Scheduler::StoreScope(const std::string& tenant) const {
  return options_.prefix_share == PrefixShare::kAll ? std::string() : tenant;
}

std::string Scheduler::DiskScope(const std::string& store_scope) const {
  return StrCat(options_.prefix_share == PrefixShare::kAll ? "all:" : "tenant:", store_scope);
}

void Scheduler::SyncDisk() {
  std::vector<PrefixRecord> loaded = disk_->TakeLoaded();
  if (!loaded.empty()) {
    const std::string mode = DiskScope("");
    const std::uint64_t evictions = store_.evictions();
    for (PrefixRecord& rec : loaded) {
      if (!rec.scope.starts_with(mode)) continue;  // saved under another share mode
      auto cells = engine_->CellsFromBytes(std::move(rec.blob), rec.n_pos, rec.invariant);
      if (cells == nullptr) continue;
      store_.Put(rec.scope.substr(mode.size()), std::move(rec.tokens), std::move(cells),
                 /*from_disk=*/true);
    }
    observer_->OnPrefixStore(store_.bytes(), store_.entries(),
                             static_cast<int>(store_.evictions() - evictions));
  }
  PrefixDiskStats now = disk_->stats();
  now.hits = disk_hits_;
  const PrefixDiskStats& was = disk_reported_;
  if (now.writes == was.writes && now.reads == was.reads && now.errors == was.errors &&
      now.hits == was.hits && now.bytes == was.bytes && now.entries == was.entries) {
    return;
  }
  observer_->OnPrefixDisk({.writes = now.writes - was.writes,
                           .reads = now.reads - was.reads,
                           .errors = now.errors - was.errors,
                           .hits = now.hits - was.hits,
                           .bytes = now.bytes,
                           .entries = now.entries});
  disk_reported_ = now;
}

// A save or a move copies every cell of the slot on the engine thread, so a 1,700-token cache
// that differs from the new prompt only in its last 40 tokens (a shared system prompt and the
// previous user message) is not worth its 62 MB on the 110m. Measured: with such moves and
// saves, the requests admitted in one pass on the shared system-prompt workload waited up to
// 1.5 s more for their first token (BENCHMARKS.md).
bool Scheduler::WorthKeeping(int held, int shared) {
  const int unique = held - shared;
  return unique >= kMinPrefixHit && unique * kMinUniqueShare >= held;
}

void Scheduler::SaveToStore(int slot) {
  const SlotCache& cache = cached_[slot];
  if (!store_.enabled() || static_cast<int>(cache.tokens.size()) < kMinPrefixHit) return;
  std::string scope = StoreScope(cache.tenant);
  if (store_.Covers(scope, cache.tokens)) return;
  auto cells = engine_->SaveCells(slot);
  if (!cells) return;  // e.g. a stream copy not landed yet: the cache is lost, as without a tier
  // The entry is keyed by the tokens the slot's cache records; a restore never uses more.
  const std::uint64_t evictions = store_.evictions();
  store_.Put(std::move(scope), cache.tokens, std::move(*cells));
  observer_->OnPrefixStore(store_.bytes(), store_.entries(),
                           static_cast<int>(store_.evictions() - evictions));
}

void Scheduler::WriteBranch(int slot, std::span<const engine::Token> prefix,
                            const std::string& tenant) {
  std::string scope = DiskScope(StoreScope(tenant));
  const std::uint64_t hash = Hash64(prefix.data(), prefix.size_bytes(), Hash64(scope));
  if (disk_branches_.contains(hash)) return;
  // One copy of the prefix's cells on the engine thread, once per shared beginning; the file
  // is written by the disk tier's writer.
  auto cells = engine_->SaveCells(slot);
  if (!cells) return;
  if (!disk_->Write(std::move(scope), {prefix.begin(), prefix.end()}, std::move(*cells))) return;
  if (disk_branches_.size() >= kMaxBranches) disk_branches_.clear();
  disk_branches_.insert(hash);
}

void Scheduler::Start(std::unique_ptr<Sequence> seq, Placement place) {
  const int slot = place.slot;
  // Only a first admission waits (a resumed sequence's lookup was counted and its prompt
  // charged); without the wait the slot keeps its own prefix, as PickSlot found it.
  const bool wait = place.wait_from >= 0 && !seq->started && !seq->request.embed;
  const int keep_own = place.src >= 0 || place.restore != 0 || wait ? 0 : place.own;
  // Cells this admission overwrites go to the RAM tier first: the older cache a move replaces,
  // or the slot's own when it is not moved and is worth keeping.
  const int held = static_cast<int>(cached_[slot].tokens.size());
  if (place.evict_to >= 0) {
    SaveToStore(place.evict_to);
  } else if (held - keep_own >= kMinPrefixHit && WorthKeeping(held, place.own)) {
    SaveToStore(slot);
  }
  if (place.evict_to >= 0) {
    const int n_cached = static_cast<int>(cached_[slot].tokens.size());
    if (engine_->CopyPrefix(slot, place.evict_to, n_cached)) {
      cached_[place.evict_to] = cached_[slot];
    } else {
      cached_[place.evict_to] = {};
    }
  }
  // At least the last token is recomputed: its logits give the next token.
  const int last = static_cast<int>(seq->feed().size()) - 1;
  const bool copy = place.src >= 0 && std::min(place.copy, last) > 0;
  const bool restore = place.restore != 0 && std::min(place.restore_n, last) > 0;
  auto kept = engine_->BeginSequence(slot, seq->request.sampling,
                                     copy || restore || wait ? 0 : std::min(place.own, last));
  const int was_cached = static_cast<int>(cached_[slot].tokens.size());
  const std::string was_tenant = std::move(cached_[slot].tenant);
  cached_[slot] = {.tokens = {}, .tenant = {}, .used = ++cache_clock_};
  if (!kept) {
    queue_.Done(seq->tenant());
    if (!seq->started) return FailWaiting(*seq, FinishReason::kError, kept.error());
    preempted_count_.fetch_sub(1);
    return Complete(*seq, FinishReason::kError, kept.error());
  }
  if (disk_ && !copy && !restore && !wait && *kept >= kMinPrefixHit &&
      was_cached - *kept >= kMinPrefixHit) {
    WriteBranch(slot, std::span(seq->feed()).first(static_cast<std::size_t>(*kept)), was_tenant);
  }
  if (copy) {
    // The engine refuses (and the sequence prefills) when a deterministic sequence would get
    // cells computed with batch-dependent numerics.
    const int n_pos = std::min(place.copy, last);
    *kept = engine_->CopyPrefix(place.src, slot, n_pos) ? n_pos : 0;
    if (!slots_[place.src]) cached_[place.src].used = cache_clock_;
  }
  bool restored = false;
  if (restore) {
    // Refused (the sequence prefills) when the entry went meanwhile (evicted by a save just
    // above), or for a deterministic sequence and cells not all computed batch-invariantly.
    const int n_pos = std::min(place.restore_n, last);
    const PrefixStore::Entry* entry = store_.Get(place.restore);
    restored = entry != nullptr && engine_->RestoreCells(slot, *entry->cells, n_pos).has_value();
    *kept = restored ? n_pos : 0;
    if (restored) {
      store_.Touch(place.restore);
      // Reused: worth keeping across restarts. The writer writes the file, or refreshes its
      // mtime when it exists (entries read from disk, entries reused before).
      if (disk_) {
        disk_->Write(DiskScope(entry->scope), entry->tokens, entry->cells);
        if (entry->from_disk) ++disk_hits_;
      }
    }
  }
  if (wait) {
    seq->prompt_from = place.wait_from;
    seq->share_n = place.wait_n;
    ++slots_[place.wait_from]->sharers;
  }
  if (seq->sampler) engine_->ResumeSampler(slot, std::move(seq->sampler));
  seq->slot = slot;
  seq->prefilled = *kept;
  ReportPrefill(*seq);
  if (seq->started) {
    preempted_count_.fetch_sub(1);
    Mark(*seq, TraceMark::Kind::kResumed, clock_.Now());
  } else {
    waiting_count_.fetch_sub(1);
    seq->started = true;
    seq->cached = *kept;
    seq->text = TextStream(seq->request.stop);
    seq->admitted = clock_.Now();
    Mark(*seq, TraceMark::Kind::kAdmitted, seq->admitted);
    const auto queued = seq->admitted - seq->request.arrival;
    seq->stream->Push(Admitted{queued});
    observer_->OnAdmitted(seq->request, queued);
    // A waiting sequence's lookup is counted when it gets the cells, or gives up on them.
    if (!seq->request.embed && !wait) {
      observer_->OnPrefixLookup(static_cast<int>(seq->request.prompt.size()), *kept, copy,
                                restored);
    }
    // The prompt is charged whole at admission, as in the paper, so that admitting several
    // requests in one pass sees each one's cost; a resume is not charged again. A waiting
    // sequence is charged without the tokens it expects to copy, and for them if it does not.
    queue_.Charge(seq->tenant(),
                  static_cast<int>(seq->request.prompt.size()) - *kept - seq->share_n, 0);
  }
  slots_[slot] = std::move(seq);
  running_count_.fetch_add(1);
}

// The sequence a request of class `priority` may preempt: only one of a less urgent class,
// and of those the least urgent class, then the tenant furthest ahead by its counter (the one
// fair share would serve last, so preemption does not undo the fair order), then the one with
// the fewest KV cells (the least work to recompute), then the latest admitted. nullptr: none.
Scheduler::Sequence* Scheduler::PickVictim(int priority) const {
  Sequence* victim = nullptr;
  auto rank = [this](const Sequence& s) {
    return std::make_tuple(s.tenant().priority, queue_.Counter(s.tenant()), -s.kv_cells(),
                           s.admitted);
  };
  for (const auto& s : slots_) {
    if (!s || s->tenant().priority <= priority) continue;
    if (victim == nullptr || rank(*s) > rank(*victim)) victim = s.get();
  }
  return victim;
}

// Within one class, the fair order decides who is admitted next but not who keeps a slot, so a
// tenant whose long requests fill every slot would make every other tenant wait for one of
// them to end (measured: a short request's TTFT p99 10x under such a flood, BENCHMARKS.md).
// So a tenant with nothing running, whose request heads the queue, takes a slot from the
// tenant of its class that holds the most slots above its weighted share, counting the tenants
// running in that class and itself; only from one holding two or more slots, so the victim
// keeps running and a tenant never preempts one that could preempt it back (no ping-pong with
// few slots). Among that tenant's sequences: the fewest KV cells to recompute, then the latest
// admitted. Only a tenant whose counter is above the waiting tenant's qualifies, so the
// requeued victim cannot head the queue in its place. nullptr: none qualifies.
Scheduler::Sequence* Scheduler::PickFairShareVictim(const TenantTag& tenant) const {
  std::map<std::string, std::pair<int, double>> held;  // tenant -> (slots, weight)
  for (const auto& s : slots_) {
    if (!s || s->tenant().priority != tenant.priority) continue;
    auto& [slots, weight] = held[s->tenant().id];
    ++slots;
    weight = s->tenant().weight;
  }
  if (held.contains(tenant.id)) return nullptr;  // it has a slot: it waits its turn
  double total = tenant.weight;
  for (const auto& [id, h] : held) total += h.second;
  const std::string* over = nullptr;
  double most = 0;
  const double counter = queue_.Counter(tenant);
  for (const auto& [id, h] : held) {
    const double excess = h.first - static_cast<double>(slots_.size()) * h.second / total;
    // Only a tenant the fair order puts strictly behind `tenant`: the requeued victim then
    // cannot head the queue in its place.
    const TenantTag tag{id, h.second, tenant.priority};
    if (h.first >= 2 && excess > most && queue_.Counter(tag) > counter) {
      most = excess;
      over = &id;
    }
  }
  if (over == nullptr) return nullptr;
  Sequence* victim = nullptr;
  for (const auto& s : slots_) {
    if (!s || s->tenant().priority != tenant.priority || s->tenant().id != *over) continue;
    if (victim == nullptr || std::make_pair(s->kv_cells(), victim->admitted) <
                                 std::make_pair(victim->kv_cells(), s->admitted)) {
      victim = s.get();
    }
  }
  return victim;
}

// Frees the sequence's slot and KV cells and puts it back in the wait queue, with everything
// it needs to continue the same answer: its output and text state stay in the Sequence, its
// sampler state comes out of the engine, and its prompt and output are recomputed on resume.
void Scheduler::Preempt(Sequence& seq) {
  SharePrompt(seq, /*copy=*/true);
  StopWaiting(seq);
  std::unique_ptr<Sequence> owned = std::move(slots_[seq.slot]);
  owned->sampler = engine_->SuspendSampler(owned->slot);
  ReleaseSlot(*owned, /*keep_cells=*/true);
  if (owned->generated > owned->replayed) {
    owned->replay = owned->request.prompt;
    owned->replay.insert(owned->replay.end(), owned->output.begin(), owned->output.end());
    owned->replayed = owned->generated;
  }
  owned->prefilled = 0;
  owned->slot = -1;
  running_count_.fetch_sub(1);
  preempted_count_.fetch_add(1);
  Mark(*owned, TraceMark::Kind::kPreempted, clock_.Now());
  observer_->OnPreempted(owned->tenant());
  const TenantTag tenant = owned->tenant();
  const std::uint64_t order = owned->order;
  queue_.Requeue(tenant, order, std::move(owned));
  PublishGauges();
}

void Scheduler::DropCancelled() {
  for (auto& s : slots_) {
    if (s && s->stream->cancelled()) Finish(*s, FinishReason::kCancelled, std::nullopt);
  }
}

// The next step's entries. Every decoding sequence gets its token first (a running sequence
// never waits behind a prompt); the rest of the token budget goes to prompt chunks in fair
// order: class, then tenant counter, then the oldest admitted. Entries are ordered by slot: with
// one KV stream per sequence, libllama splits a batch into one forward pass per run of consecutive
// sequence ids.
std::vector<Scheduler::Planned> Scheduler::PlanStep() const {
  std::vector<Planned> plan;
  int budget = engine_->Info().n_batch;
  for (const auto& s : slots_) {
    if (!s || !s->decoding() || budget == 0) continue;
    plan.push_back({s.get(),
                    {s->slot, std::span<const Token>(&s->next, 1), s->kv_cells(), true,
                     s->request.sampling.deterministic}});
    --budget;
  }
  std::vector<std::tuple<int, double, SteadyTime, int>> prefilling;  // ..., slot
  for (const auto& s : slots_) {
    if (s && !s->decoding() && s->prompt_from < 0) {
      prefilling.emplace_back(s->tenant().priority, queue_.Counter(s->tenant()), s->admitted,
                              s->slot);
    }
  }
  std::sort(prefilling.begin(), prefilling.end());
  // An embedding model pools over one step, so its inputs are never chunked: one that does
  // not fit the rest of this step waits for the next (Submit refused any longer than a step).
  const bool whole = engine_->Info().embedding_only();
  for (const auto& entry : prefilling) {
    if (budget == 0) break;
    Sequence* s = slots_[std::get<3>(entry)].get();
    const int remaining = static_cast<int>(s->feed().size()) - s->prefilled;
    if (whole && remaining > budget) continue;
    const int chunk = std::min(remaining, budget);
    const bool last = chunk == remaining;
    const bool embed = s->request.embed;
    plan.push_back(
        {s,
         {s->slot, std::span<const Token>(s->feed()).subspan(s->prefilled, chunk), s->prefilled,
          last && !embed, s->request.sampling.deterministic, last && embed}});
    budget -= chunk;
  }
  std::sort(plan.begin(), plan.end(),
            [](const Planned& a, const Planned& b) { return a.entry.slot < b.entry.slot; });
  return plan;
}

// Runs one step. Returns false when there was nothing to run.
bool Scheduler::RunStep() {
  const std::vector<Planned> plan = PlanStep();
  if (plan.empty()) return false;
  std::vector<engine::BatchEntry> batch;
  int tokens = 0;
  for (const Planned& p : plan) {
    batch.push_back(p.entry);
    tokens += static_cast<int>(p.entry.tokens.size());
  }
  if (options_.step_delay.count() > 0) std::this_thread::sleep_for(options_.step_delay);
  const SteadyTime start = clock_.Now();
  auto sampled = engine_->Step(batch);
  const SteadyTime now = clock_.Now();
  last_progress_ns_ = now.time_since_epoch().count();
  observer_->OnStep(tokens, static_cast<int>(batch.size()), now - start);
  if (options_.trace_steps > 0) RecordTrace(plan, start, now);
  // Engine time, for the usage ledger: the step's wall time split over its sequences in
  // proportion to the tokens each computed.
  const std::int64_t step_ns = (now - start).count();
  busy_ns_.fetch_add(step_ns, std::memory_order_relaxed);
  {
    std::vector<int> counts(plan.size());
    std::vector<std::int64_t> shares(plan.size());
    for (std::size_t i = 0; i < plan.size(); ++i) {
      counts[i] = static_cast<int>(plan[i].entry.tokens.size());
    }
    SplitStepTime(step_ns, counts, shares);
    for (std::size_t i = 0; i < plan.size(); ++i) plan[i].seq->engine_ns += shares[i];
  }
  if (!sampled) {
    log::Error("engine step failed: ", sampled.error().message);
    for (const Planned& p : plan) Finish(*p.seq, FinishReason::kError, sampled.error());
    return true;
  }
  std::size_t k = 0;
  for (std::size_t i = 0; i < batch.size(); ++i) {
    Sequence* s = plan[i].seq;
    if (!s->decoding()) {
      s->prefilled += static_cast<int>(batch[i].tokens.size());
      ReportPrefill(*s);
    }
    if (batch[i].sample && k < sampled->size()) HandleSampled(*s, (*sampled)[k++], now);
    if (batch[i].embed) FinishEmbedding(*s);
  }
  for (auto& s : slots_) {
    if (s && s->sharers > 0) SharePrompt(*s, /*copy=*/true, /*ready_only=*/true);
  }
  PublishGauges();
  return true;
}

namespace {

engine::TokenLogprobs ToPieces(const engine::Tokenizer& tok, const engine::Sampled& sampled,
                               std::string piece) {
  engine::TokenLogprobs out{{std::move(piece), sampled.logprob}, {}};
  out.top.reserve(sampled.n_top);
  for (const engine::TokenLogprob& t : sampled.top_logprobs()) {
    out.top.push_back({tok.TokenPiece(t.token), t.logprob});
  }
  return out;
}

}  // namespace

void Scheduler::PushText(Sequence& seq, std::string text, int tokens) {
  const int released = seq.text.TakeReleased();
  TextDelta delta{seq.choice, std::move(text), tokens, {}};
  if (seq.request.sampling.logprobs) {
    for (int i = 0; i < released && !seq.logprobs.empty(); ++i) {
      delta.logprobs.push_back(std::move(seq.logprobs.front()));
      seq.logprobs.pop_front();
    }
  }
  if (delta.text.empty() && delta.logprobs.empty() && delta.tokens == 0) return;
  seq.stream->Push(std::move(delta));
}

void Scheduler::HandleSampled(Sequence& seq, const engine::Sampled& sampled, SteadyTime now) {
  const Token token = sampled.token;
  ++seq.generated;
  queue_.Charge(seq.tenant(), 0, 1);
  seq.next = token;
  seq.output.push_back(token);
  if (seq.generated == 1) {
    seq.first_token = now;
    Mark(seq, TraceMark::Kind::kFirstToken, now);
    observer_->OnFirstToken(now - seq.request.arrival);
  } else {
    observer_->OnTokenInterval(now - seq.last_token);
  }
  seq.last_token = now;
  const engine::Tokenizer& tok = engine_->tokenizer();
  if (tok.IsEndOfGeneration(token)) return Finish(seq, FinishReason::kStop, std::nullopt);
  std::string piece = tok.TokenPiece(token);
  std::string text = seq.text.Append(piece);
  if (seq.request.sampling.logprobs) {
    seq.logprobs.push_back(ToPieces(tok, sampled, std::move(piece)));
  }
  if (!text.empty() || seq.text.stopped()) {
    PushText(seq, std::move(text), 1);
  } else if (seq.request.sampling.logprobs) {
    PushText(seq, {}, 0);  // a token with no bytes of its own is final at once
  }
  if (seq.text.stopped()) return Finish(seq, FinishReason::kStop, std::nullopt);
  const bool context_full = seq.kv_cells() >= engine_->Info().n_ctx_per_seq;
  if (seq.generated >= seq.request.max_tokens || context_full) {
    Finish(seq, FinishReason::kLength, std::nullopt);
  }
}

// The step just fed an embedding input's last tokens: it ends with its vector. Its KV cells
// stay as a prompt cache, as a finished generation's do (an embedding model's engine keeps
// none: its pooled inputs cannot start from a prefix).
void Scheduler::FinishEmbedding(Sequence& seq) {
  auto embedding = engine_->TakeEmbedding(seq.slot);
  if (!embedding) {
    log::Error("embedding failed: ", embedding.error().message);
    return Finish(seq, FinishReason::kError, embedding.error());
  }
  seq.embedding = std::move(*embedding);
  Finish(seq, FinishReason::kStop, std::nullopt);
}

void Scheduler::Finish(Sequence& seq, FinishReason reason, std::optional<Error> error) {
  const int slot = seq.slot;
  SharePrompt(seq, /*copy=*/reason != FinishReason::kError);
  StopWaiting(seq);
  // Keep the cells as a prompt cache unless the engine failed (their contents are unknown).
  ReleaseSlot(seq, reason != FinishReason::kError);
  Complete(seq, reason, std::move(error));
  queue_.Done(seq.tenant());
  slots_[slot].reset();  // `seq` is gone after this line
  running_count_.fetch_sub(1);
  PublishGauges();
}

void Scheduler::ReleaseSlot(Sequence& seq, bool keep_cells) {
  engine_->EndSequence(seq.slot, keep_cells);
  if (!keep_cells) return;
  cached_[seq.slot].tenant = seq.tenant().id;
  cached_[seq.slot].used = ++cache_clock_;
  std::vector<Token>& cached = cached_[seq.slot].tokens;
  const std::vector<Token>& feed = seq.feed();
  cached.assign(feed.begin(), feed.begin() + seq.prefilled);
  // Tokens sampled since the feed; the last one was never fed.
  if (seq.decoding() && seq.generated - seq.replayed > 1) {
    cached.insert(cached.end(), seq.output.begin() + seq.replayed, seq.output.end() - 1);
  }
}

// The request's last events. Engine thread; `seq` holds no slot any more.
void Scheduler::Complete(Sequence& seq, FinishReason reason, std::optional<Error> error) {
  if (reason == FinishReason::kStop || reason == FinishReason::kLength) {
    PushText(seq, seq.text.Flush(), 0);
  }
  Finished f;
  f.choice = seq.choice;
  f.reason = reason;
  f.error = std::move(error);
  // The prompt was computed once, for the first choice: it is counted there.
  if (seq.choice == 0) f.usage.prompt_tokens = static_cast<int>(seq.request.prompt.size());
  f.usage.completion_tokens = seq.generated;
  f.usage.cached_tokens = seq.cached;
  const SteadyTime now = clock_.Now();
  f.timings.queue = seq.admitted - seq.request.arrival;
  if (seq.generated > 0) f.timings.first_token = seq.first_token - seq.request.arrival;
  f.timings.total = now - seq.request.arrival;
  f.timings.engine = std::chrono::nanoseconds(seq.engine_ns);
  f.embedding = std::move(seq.embedding);
  f.trace = std::move(seq.trace);
  observer_->OnFinished(f);
  seq.stream->Push(std::move(f));
}

void Scheduler::Mark(Sequence& seq, TraceMark::Kind kind, SteadyTime at) {
  if (seq.trace) seq.trace->marks.push_back({kind, at - seq.request.arrival});
}

namespace {
// A sequence's identity in traces: its request's arrival order and its choice.
std::uint64_t PeerKey(std::uint64_t order, int choice) {
  return (order << 8) | static_cast<std::uint64_t>(choice & 0xff);
}
}  // namespace

void Scheduler::RecordTrace(const std::vector<Planned>& plan, SteadyTime start, SteadyTime end) {
  const std::uint64_t step = steps_++;
  int batch_tokens = 0;
  for (const Planned& p : plan) batch_tokens += static_cast<int>(p.entry.tokens.size());
  for (const Planned& p : plan) {
    Sequence& seq = *p.seq;
    if (!seq.trace) continue;
    Trace& trace = *seq.trace;
    ++trace.steps_total;
    if (static_cast<int>(trace.steps.size()) >= options_.trace_steps) continue;
    const engine::BatchEntry& e = p.entry;
    TraceStep& out = trace.steps.emplace_back();
    out.step = step;
    out.start = start - seq.request.arrival;
    out.took = end - start;
    out.tokens = static_cast<int>(e.tokens.size());
    out.prefill = !seq.decoding();
    out.batch_tokens = batch_tokens;
    out.peers_begin = static_cast<std::uint32_t>(trace.peers.size());
    for (const Planned& other : plan) {
      if (other.seq == &seq) continue;
      const std::uint64_t key = PeerKey(other.seq->order, other.seq->choice);
      auto [it, fresh] =
          seq.peer_index.try_emplace(key, static_cast<std::uint32_t>(trace.peer_ids.size()));
      if (fresh) {
        trace.peer_ids.push_back(other.seq->choice == 0
                                     ? other.seq->request.id
                                     : StrCat(other.seq->request.id, "#", other.seq->choice));
      }
      trace.peers.push_back({it->second, static_cast<int>(other.entry.tokens.size())});
    }
    out.peers_end = static_cast<std::uint32_t>(trace.peers.size());
  }
}

void Scheduler::PublishGauges() {
  int used = 0;
  for (auto& s : slots_)
    if (s) used += s->kv_cells();
  kv_used_.store(used);
}

}  // namespace ember::scheduler
