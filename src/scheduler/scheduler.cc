#include "scheduler/scheduler.h"

#include <algorithm>
#include <future>

#include "common/log.h"

namespace ember::scheduler {

using engine::FinishReason;
using engine::Token;

struct Scheduler::Sequence {
  GenerateRequest request;
  std::shared_ptr<RequestStream> stream;
  int slot = 0;
  int prefilled = 0;          // prompt tokens already fed
  int generated = 0;          // tokens sampled
  int cached = 0;             // prompt tokens reused from the slot's previous sequence
  Token next = 0;             // last sampled token, fed in the next step
  std::vector<Token> output;  // every sampled token, in order
  TextStream text;
  SteadyTime admitted{};
  SteadyTime first_token{};
  SteadyTime last_token{};

  int kv_cells() const { return prefilled + std::max(0, generated - 1); }
  bool decoding() const { return prefilled == static_cast<int>(request.prompt.size()); }
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
      cached_(engine_->Info().n_parallel) {
  last_progress_ns_ = clock_.Now().time_since_epoch().count();
}

Scheduler::~Scheduler() {
  {
    std::lock_guard lock(mu_);
    stop_ = true;
  }
  wake_.notify_all();
  if (thread_.joinable()) thread_.join();
}

Status Scheduler::Submit(GenerateRequest request, std::shared_ptr<RequestStream> stream) {
  if (draining_.load()) return Unavailable("server is shutting down; retry on another replica");
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
  while (waiting_count_.load() > 0 || running_count_.load() > 0) {
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
  s.waiting = waiting_count_.load();
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
        for (auto& w : queue_) w.stream->Cancel();
        for (auto& s : slots_)
          if (s) s->stream->Cancel();
      }
    }
    TakeInbox();
    ExpireWaiting();
    DropCancelled();
    AdmitWaiting();
    if (!RunStep()) last_progress_ns_ = clock_.Now().time_since_epoch().count();
  }
  TakeInbox();
  const Error shutdown{ErrorCode::kUnavailable, "server stopped before the request finished", ""};
  for (auto& w : queue_) FailWaiting(w, FinishReason::kError, shutdown);
  queue_.clear();
  for (auto& s : slots_) {
    if (s) Finish(*s, FinishReason::kError, shutdown);
  }
  idle_.notify_all();
}

void Scheduler::TakeInbox() {
  std::lock_guard lock(mu_);
  while (!inbox_.empty()) {
    queue_.push_back(std::move(inbox_.front()));
    inbox_.pop_front();
  }
}

void Scheduler::FailWaiting(Waiting& waiting, FinishReason reason, std::optional<Error> error) {
  Finished f;
  f.reason = reason;
  f.usage.prompt_tokens = static_cast<int>(waiting.request.prompt.size());
  f.timings.total = clock_.Now() - waiting.request.arrival;
  f.timings.queue = f.timings.total;
  f.error = std::move(error);
  observer_->OnFinished(f);
  waiting_count_.fetch_sub(1);
  waiting.stream->Push(std::move(f));
}

void Scheduler::ExpireWaiting() {
  const SteadyTime now = clock_.Now();
  for (auto it = queue_.begin(); it != queue_.end();) {
    if (it->stream->cancelled()) {
      FailWaiting(*it, FinishReason::kCancelled, std::nullopt);
      it = queue_.erase(it);
    } else if (now - it->request.arrival > options_.queue_timeout) {
      FailWaiting(*it, FinishReason::kError,
                  Error{ErrorCode::kDeadlineExceeded,
                        StrCat("request waited longer than the queue timeout (",
                               options_.queue_timeout.count(), " ms) for a free slot; retry later"),
                        ""});
      it = queue_.erase(it);
    } else {
      ++it;
    }
  }
}

// The slot for a new sequence and how many of its prompt tokens that slot already holds.
// The lowest free slot, so running sequences stay on consecutive ids (one forward pass per
// run of them, see PlanStep), unless another free slot shares at least kMinPrefixHit tokens
// with the prompt: then the one sharing the most. {-1, 0} when no slot is free.
std::pair<int, int> Scheduler::PickSlot(const std::vector<Token>& prompt) const {
  int lowest = -1, lowest_len = 0, best = -1, best_len = 0;
  for (std::size_t slot = 0; slot < slots_.size(); ++slot) {
    if (slots_[slot]) continue;
    const std::vector<Token>& cached = cached_[slot];
    const auto mismatch = std::mismatch(cached.begin(), cached.end(), prompt.begin(), prompt.end());
    const int len = static_cast<int>(mismatch.first - cached.begin());
    if (lowest < 0) {
      lowest = static_cast<int>(slot);
      lowest_len = len;
    }
    if (len > best_len) {
      best = static_cast<int>(slot);
      best_len = len;
    }
  }
  if (best >= 0 && best_len >= kMinPrefixHit && best_len > lowest_len) return {best, best_len};
  return {lowest, lowest_len};
}

void Scheduler::AdmitWaiting() {
  while (!queue_.empty()) {
    auto [slot, shared] = PickSlot(queue_.front().request.prompt);
    if (slot < 0) return;
    Waiting w = std::move(queue_.front());
    queue_.pop_front();
    waiting_count_.fetch_sub(1);
    // At least the last prompt token is recomputed: its logits give the first token.
    const int reuse = std::min(shared, static_cast<int>(w.request.prompt.size()) - 1);
    auto kept = engine_->BeginSequence(slot, w.request.sampling, reuse);
    cached_[slot].clear();
    if (!kept) {
      waiting_count_.fetch_add(1);  // FailWaiting decrements it again
      FailWaiting(w, FinishReason::kError, kept.error());
      continue;
    }
    auto seq = std::make_unique<Sequence>();
    seq->slot = slot;
    seq->prefilled = *kept;
    seq->cached = *kept;
    seq->text = TextStream(w.request.stop);
    seq->admitted = clock_.Now();
    seq->request = std::move(w.request);
    seq->stream = std::move(w.stream);
    observer_->OnAdmitted(seq->admitted - seq->request.arrival);
    slots_[slot] = std::move(seq);
    running_count_.fetch_add(1);
  }
}

void Scheduler::DropCancelled() {
  for (auto& s : slots_) {
    if (s && s->stream->cancelled()) Finish(*s, FinishReason::kCancelled, std::nullopt);
  }
}

// The next step's entries. Every decoding sequence gets its token first (a running sequence
// never waits behind a prompt); the rest of the token budget goes to prompt chunks, oldest
// request first. Entries are ordered by slot: with one KV stream per sequence, libllama
// splits a batch into one forward pass per run of consecutive sequence ids.
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
  std::vector<Sequence*> prefilling;
  for (const auto& s : slots_) {
    if (s && !s->decoding()) prefilling.push_back(s.get());
  }
  std::sort(prefilling.begin(), prefilling.end(),
            [](Sequence* a, Sequence* b) { return a->admitted < b->admitted; });
  for (Sequence* s : prefilling) {
    if (budget == 0) break;
    const int remaining = static_cast<int>(s->request.prompt.size()) - s->prefilled;
    const int chunk = std::min(remaining, budget);
    plan.push_back(
        {s,
         {s->slot, std::span<const Token>(s->request.prompt).subspan(s->prefilled, chunk),
          s->prefilled, chunk == remaining, s->request.sampling.deterministic}});
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
  if (!sampled) {
    log::Error("engine step failed: ", sampled.error().message);
    for (const Planned& p : plan) Finish(*p.seq, FinishReason::kError, sampled.error());
    return true;
  }
  std::size_t k = 0;
  for (std::size_t i = 0; i < batch.size(); ++i) {
    Sequence* s = plan[i].seq;
    if (!s->decoding()) s->prefilled += static_cast<int>(batch[i].tokens.size());
    if (batch[i].sample && k < sampled->size()) HandleSampled(*s, (*sampled)[k++], now);
  }
  PublishGauges();
  return true;
}

void Scheduler::HandleSampled(Sequence& seq, Token token, SteadyTime now) {
  ++seq.generated;
  seq.next = token;
  seq.output.push_back(token);
  if (seq.generated == 1) {
    seq.first_token = now;
    observer_->OnFirstToken(now - seq.request.arrival);
  } else {
    observer_->OnTokenInterval(now - seq.last_token);
  }
  seq.last_token = now;
  const engine::Tokenizer& tok = engine_->tokenizer();
  if (tok.IsEndOfGeneration(token)) return Finish(seq, FinishReason::kStop, std::nullopt);
  std::string text = seq.text.Append(tok.TokenPiece(token));
  if (!text.empty() || seq.text.stopped()) seq.stream->Push(TextDelta{std::move(text), 1});
  if (seq.text.stopped()) return Finish(seq, FinishReason::kStop, std::nullopt);
  const bool context_full = seq.kv_cells() >= engine_->Info().n_ctx_per_seq;
  if (seq.generated >= seq.request.max_tokens || context_full) {
    Finish(seq, FinishReason::kLength, std::nullopt);
  }
}

void Scheduler::Finish(Sequence& seq, FinishReason reason, std::optional<Error> error) {
  const int slot = seq.slot;
  // Keep the cells as a prompt cache unless the engine failed (their contents are unknown).
  const bool keep = reason != FinishReason::kError;
  engine_->EndSequence(slot, keep);
  if (keep) {
    std::vector<Token>& cached = cached_[slot];
    cached.assign(seq.request.prompt.begin(), seq.request.prompt.begin() + seq.prefilled);
    if (seq.decoding() && seq.generated > 1) {  // the last sampled token was never fed
      cached.insert(cached.end(), seq.output.begin(), seq.output.end() - 1);
    }
  }
  if (reason == FinishReason::kStop || reason == FinishReason::kLength) {
    std::string tail = seq.text.Flush();
    if (!tail.empty()) seq.stream->Push(TextDelta{std::move(tail), 0});
  }
  Finished f;
  f.reason = reason;
  f.error = std::move(error);
  f.usage.prompt_tokens = static_cast<int>(seq.request.prompt.size());
  f.usage.completion_tokens = seq.generated;
  f.usage.cached_tokens = seq.cached;
  const SteadyTime now = clock_.Now();
  f.timings.queue = seq.admitted - seq.request.arrival;
  if (seq.generated > 0) f.timings.first_token = seq.first_token - seq.request.arrival;
  f.timings.total = now - seq.request.arrival;
  observer_->OnFinished(f);
  seq.stream->Push(std::move(f));
  slots_[slot].reset();  // `seq` is gone after this line
  running_count_.fetch_sub(1);
  PublishGauges();
}

void Scheduler::PublishGauges() {
  int used = 0;
  for (auto& s : slots_)
    if (s) used += s->kv_cells();
  kv_used_.store(used);
}

}  // namespace ember::scheduler
