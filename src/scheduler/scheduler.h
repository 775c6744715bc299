// The scheduler: a bounded wait queue and the one engine thread that owns the Engine.
// Each step it admits waiting requests into free sequence slots, puts one decode token of
// every generating sequence into the batch first, fills the rest of the per-step token
// budget with prompt chunks, runs the engine, and turns sampled tokens into events. An
// embedding request (GenerateRequest::embed) is a sequence that only prefills: the step with
// its last chunk yields its vector (Engine::TakeEmbedding) and ends it. A
// finished or cancelled sequence frees its slot and KV cells in the same step.
//
// Sharing: the wait queue is a FairQueue (fair_queue.h). Admission takes the lowest priority
// class first, then the tenant that has been served the fewest weighted tokens, then FIFO
// within the tenant; prompt chunks go in the same order. A request that finds every slot
// taken and some running sequence of a higher (less urgent) class preempts one: its KV cells
// are freed and it waits again, then resumes by recomputing its prompt and output so far,
// with its text and sampler state carried over, so its client sees one uninterrupted answer.
//
// Choices (GenerateRequest::n > 1): the request is admitted into n free slots at once. Its
// first choice prefills the prompt; the others wait, and when that prefill is done each gets
// a copy of the prompt's KV cells but the last (Engine::CopyPrefix) and recomputes only that
// one token for its own logits. From then on each choice is an ordinary sequence: it samples
// with its own sampler, may be preempted and resumes alone, and ends with its own Finished.
//
// Threads: Submit/BeginDrain/Snapshot are called from HTTP threads; the step loop runs on
// the engine thread started by Create(). The scheduler knows nothing of tenants or money
// beyond the TenantTag each request carries: it reports what each request consumed in its
// Finished event.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <thread>
#include <unordered_set>
#include <vector>

#include "common/clock.h"
#include "common/error.h"
#include "engine/engine.h"
#include "scheduler/fair_queue.h"
#include "scheduler/prefix_disk.h"
#include "scheduler/prefix_store.h"
#include "scheduler/request.h"
#include "scheduler/text_stream.h"

namespace ember::scheduler {

// Whose KV cells a new request may reuse (docs/prefix_cache.md). A hit makes a request's first
// token come sooner, so reusing another tenant's prefix tells a tenant that someone sent it: a
// timing side channel. kTenant (the default) reuses only cells computed for the same tenant.
enum class PrefixShare { kOff, kTenant, kAll };

struct SchedulerOptions {
  int queue_size = 64;  // requests that may wait for a slot; beyond it Submit fails (429)
  std::chrono::milliseconds queue_timeout{30'000};  // waiting longer fails the request (503)
  // Testing aid: sleep this long after every step, so tests can hold requests in flight.
  std::chrono::milliseconds step_delay{0};
  // Run Engine::VerifyBatchInvariance after warm-up; Create fails when it does (deterministic
  // requests are allowed, so the server must be able to keep the promise).
  bool verify_batch_invariance = false;
  // Fair-share preemption within a class: a tenant with nothing running whose request heads
  // the wait queue may take a slot from a tenant of the same class that holds two or more
  // slots and more than its weighted share of them (see PickFairShareVictim).
  bool fair_share_preemption = false;
  // Timelines: each request's Finished carries a Trace of its marks and of its first
  // `trace_steps` steps, each with the other sequences of its batch (0: no traces). Recording
  // costs a few stores per sequence and step, plus one per pair of sequences sharing a step
  // while both are within their first `trace_steps` steps.
  int trace_steps = 0;
  // Prefix reuse across requests: a new request starts from the longest prefix of its prompt
  // that some slot's KV cells hold (an idle slot's finished request, or a running sequence's
  // computed prompt), landing on that slot or copying the cells (Engine::CopyPrefix).
  PrefixShare prefix_share = PrefixShare::kTenant;
  // The RAM tier (PrefixStore): bytes of host memory for KV cells saved from slots about to be
  // overwritten, restored when a prompt starts with them. 0: no RAM tier. Unused with kOff.
  std::uint64_t prefix_cache_bytes = 0;
  // The disk tier (PrefixDisk), with a RAM tier only: RAM-tier entries that are reused are
  // written under this directory (DATA_DIR/prefix), and this model's files are read back
  // into the RAM tier at start, in the background. Empty or a cap of 0: no disk tier.
  std::string prefix_disk_root{};
  std::uint64_t prefix_disk_bytes = 0;  // cap on every model's files under the root
  std::uint64_t prefix_disk_min_free_bytes = std::uint64_t{1} << 30;
};

// Observations for metrics, called on the engine thread. Default: ignore.
// Splits one engine step's wall time over the sequences in it in proportion to `tokens` (the
// tokens each computed; all zero: evenly), by largest remainder, so out[i] add up to step_ns.
void SplitStepTime(std::int64_t step_ns, std::span<const int> tokens, std::span<std::int64_t> out);

class SchedulerObserver {
 public:
  virtual ~SchedulerObserver() = default;
  // First admission into a slot (not a resume after preemption).
  virtual void OnAdmitted(const GenerateRequest& /*request*/,
                          std::chrono::nanoseconds /*queue_time*/) {}
  // At a request's first admission: of its `prompt_tokens`, `reused` start from KV cells some
  // slot already held (0: a miss), `copied` when they came from another slot.
  // `restored` when they came from the RAM tier (PrefixStore).
  virtual void OnPrefixLookup(int /*prompt_tokens*/, int /*reused*/, bool /*copied*/,
                              bool /*restored*/) {}
  // The RAM tier after a save: the bytes and entries it holds, and how many entries that save
  // evicted for room.
  virtual void OnPrefixStore(std::uint64_t /*bytes*/, int /*entries*/, int /*evicted*/) {}
  // The disk tier changed: writes, reads, errors and hits (restores of entries read from
  // disk) since the last call, and the bytes and entries of this model's files now.
  virtual void OnPrefixDisk(const PrefixDiskStats& /*change*/) {}
  // A running sequence was preempted for a request of a more urgent class.
  virtual void OnPreempted(const TenantTag& /*tenant*/) {}
  virtual void OnFirstToken(std::chrono::nanoseconds /*ttft*/) {}
  virtual void OnTokenInterval(std::chrono::nanoseconds /*itl*/) {}
  virtual void OnFinished(const Finished& /*finished*/) {}
  virtual void OnStep(int /*tokens*/, int /*sequences*/, std::chrono::nanoseconds /*took*/) {}
};

struct SchedulerSnapshot {
  int running = 0;  // sequences holding a slot
  int waiting = 0;  // requests waiting for a slot, preempted ones included (as vLLM counts)
  int kv_cells_used = 0;
  int kv_cells_total = 0;
  bool draining = false;
  // True when there is work but the engine thread has not finished a step for too long.
  std::chrono::nanoseconds since_progress{0};
  bool has_work = false;
};

class Scheduler {
 public:
  static Result<std::unique_ptr<Scheduler>> Create(SchedulerOptions options,
                                                   std::unique_ptr<engine::Engine> engine,
                                                   SchedulerObserver* observer, Clock& clock);
  // Stops the engine thread; unfinished requests get an Unavailable error. The observer hears
  // that the RAM tier is empty (OnPrefixStore), so it must outlive the scheduler.
  ~Scheduler();

  const engine::ModelInfo& model() const { return engine_->Info(); }
  const engine::Tokenizer& tokenizer() const { return engine_->tokenizer(); }

  // Queues a request. ResourceExhausted when the wait queue is full, Unavailable while
  // draining, InvalidArgument for a tenant weight that is not a positive number. The stream
  // gets events until its Finished event.
  [[nodiscard]] Status Submit(GenerateRequest request, std::shared_ptr<RequestStream> stream);
  // Wakes the engine thread so a cancelled stream is dropped at once.
  void Cancel(const std::shared_ptr<RequestStream>& stream);

  // Stops accepting requests; everything already queued or running continues.
  void BeginDrain();
  // Waits until nothing is queued or running; false if `deadline` passed first.
  bool WaitIdle(SteadyTime deadline);
  // Cancels every queued and running request (after a drain deadline).
  void AbortAll();

  SchedulerSnapshot Snapshot() const;
  // Engine busy time since start: the sum of every step's wall time (the ledger samples it).
  std::int64_t busy_ns() const { return busy_ns_.load(std::memory_order_relaxed); }

 private:
  struct Waiting {
    GenerateRequest request;
    std::shared_ptr<RequestStream> stream;
  };
  struct Sequence;

  Scheduler(SchedulerOptions options, std::unique_ptr<engine::Engine> engine,
            SchedulerObserver* observer, Clock& clock);
  void Run();
  void TakeInbox();
  void ExpireWaiting();
  struct Planned {
    Sequence* seq;
    engine::BatchEntry entry;
  };
  // A prompt-cache hit shorter than this does not justify breaking slot contiguity, evicting a
  // longer cache, or copying a whole KV stream from another slot.
  static constexpr int kMinPrefixHit = 32;
  // A slot's cache about to be overwritten is moved aside or saved to the RAM tier only when
  // at least this fraction (1/k) of it is not shared with the prompt replacing it.
  static constexpr int kMinUniqueShare = 8;
  // Whether a cache of `held` tokens, `shared` of which the new prompt keeps, is worth a move
  // or a save: kMinPrefixHit tokens or more of it, and 1/kMinUniqueShare of it, would be lost.
  static bool WorthKeeping(int held, int shared);
  // How long after start admissions may wait for the disk tier's read (docs/prefix_cache.md).
  static constexpr std::chrono::milliseconds kDiskReadWait{2000};
  // Where a new sequence goes: `slot` (free), of whose cells it keeps its first `own` positions,
  // or, when `src` >= 0, a copy of `src`'s first `copy` positions instead. When `evict_to` >= 0,
  // the cells `slot` holds as a prompt cache first move to that free slot, replacing an older
  // cache there. When `restore` is set (a PrefixStore entry id), its first `restore_n`
  // positions are restored into `slot` instead of keeping or copying anything.
  struct Placement {
    int slot = -1;
    int own = 0;
    int src = -1;
    int copy = 0;
    int evict_to = -1;
    std::uint64_t restore = 0;
    int restore_n = 0;
    // A running sequence, still prefilling, whose prompt begins with kMinPrefixHit or more of
    // this prompt's tokens than any cells offer now: the new sequence waits in `slot` (not
    // scheduled) until that many of them are computed there, then copies them (SharePrompt).
    int wait_from = -1;
    int wait_n = 0;
  };
  // The tokens slot `slot`'s KV cells hold in order, when a request of `tenant` may reuse them.
  std::span<const engine::Token> Reusable(int slot, const TenantTag& tenant) const;
  Placement PickSlot(const std::vector<engine::Token>& prompt, const TenantTag& tenant,
                     bool deterministic = false) const;
  // The PrefixStore scope of cells computed for `tenant`'s requests.
  std::string StoreScope(const std::string& tenant) const;
  // Saves an idle slot's prompt cache to the RAM tier before its cells are overwritten (when it
  // holds kMinPrefixHit tokens or more that the tier does not hold yet).
  void SaveToStore(int slot);
  // The disk tier's scope of a RAM-tier scope: the share mode is part of it, so entries saved
  // under one --prefix-cache-share never restore under another.
  std::string DiskScope(const std::string& store_scope) const;
  // Moves what the disk tier's loader has read into the RAM tier, and reports the disk tier's
  // counts when they changed. Never waits for the disk.
  void SyncDisk();
  // A prompt that kept only the first `n` (kMinPrefixHit or more) of the cached tokens of the
  // slot it landed on, kMinPrefixHit or more short of the cache's end: two prompts branch
  // there, so that beginning is shared (a system prompt, tool definitions). Writes the slot,
  // which now holds exactly those n cells, to the disk tier once per process.
  void WriteBranch(int slot, std::span<const engine::Token> prefix, const std::string& tenant);
  std::vector<Planned> PlanStep() const;
  void AdmitWaiting();
  void Start(std::unique_ptr<Sequence> seq, Placement place);
  // Stores seq.prefilled where its request asked for it (GenerateRequest::prefill_progress).
  static void ReportPrefill(const Sequence& seq);
  // Starts choices 1..n-1 of the request whose first choice just started in `slot`.
  void StartChoices(int slot);
  int FreeSlots() const;
  // The sequences waiting for `first`'s prompt cells (its other choices, other requests that
  // share its prompt's beginning) get copies of them when `first` has computed what they need
  // and `copy` is set; otherwise they prefill it themselves. With `ready_only`, only those
  // whose cells are ready now are let go (after each step); the rest keep waiting.
  void SharePrompt(Sequence& first, bool copy, bool ready_only = false);
  // A waiting sequence that leaves (finished, cancelled, preempted) stops waiting.
  void StopWaiting(Sequence& seq);
  // Another request's waiter got `got` of the share_n cells it waited for (0: none): its
  // cached_tokens and prefix lookup, counted now rather than at admission, and the fair-share
  // charge for what it computes itself instead.
  void SettleShare(Sequence& seq, int got);
  Sequence* PickVictim(int priority) const;
  Sequence* PickFairShareVictim(const TenantTag& tenant) const;
  void Preempt(Sequence& seq);
  void DropCancelled();
  bool RunStep();
  void HandleSampled(Sequence& seq, const engine::Sampled& sampled, SteadyTime now);
  // The text that became final and, when the request asked for them, the logprobs of the
  // tokens it completed, as one event (nothing when both are empty).
  void PushText(Sequence& seq, std::string text, int tokens);
  void FinishEmbedding(Sequence& seq);
  void Finish(Sequence& seq, engine::FinishReason reason, std::optional<Error> error);
  void ReleaseSlot(Sequence& seq, bool keep_cells);
  void Complete(Sequence& seq, engine::FinishReason reason, std::optional<Error> error);
  // Ends a request in the wait queue: never admitted, or preempted.
  void FailWaiting(Sequence& seq, engine::FinishReason reason, std::optional<Error> error);
  void PublishGauges();
  // Appends this step to the trace of every sequence in it that still keeps steps.
  void RecordTrace(const std::vector<Planned>& plan, SteadyTime start, SteadyTime end);
  void Mark(Sequence& seq, TraceMark::Kind kind, SteadyTime at);

  SchedulerOptions options_;
  std::unique_ptr<engine::Engine> engine_;
  SchedulerObserver* observer_;
  Clock& clock_;
  SchedulerObserver null_observer_;

  // Shared with HTTP threads.
  mutable std::mutex mu_;
  std::condition_variable wake_;
  std::condition_variable idle_;
  std::deque<Waiting> inbox_;          // GUARDED_BY(mu_)
  bool stop_ = false;                  // GUARDED_BY(mu_)
  bool abort_ = false;                 // GUARDED_BY(mu_)
  std::atomic<int> waiting_count_{0};  // inbox + local queue, never admitted
  std::atomic<int> running_count_{0};
  std::atomic<int> preempted_count_{0};  // in the local queue again
  std::atomic<int> kv_used_{0};
  std::atomic<std::int64_t> busy_ns_{0};  // sum of engine step wall times
  std::atomic<bool> draining_{false};
  std::atomic<std::int64_t> last_progress_ns_{0};

  // Engine thread only.
  FairQueue<std::unique_ptr<Sequence>> queue_;
  std::uint64_t next_order_ = 0;  // arrival order of the next request taken from the inbox
  std::uint64_t steps_ = 0;       // steps run, for traces
  std::vector<std::unique_ptr<Sequence>> slots_;
  // What each idle slot's KV cells still hold: the prompt cache.
  struct SlotCache {
    std::vector<engine::Token> tokens;
    std::string tenant;      // whose request computed them
    std::uint64_t used = 0;  // cache_clock_ when last written or reused (0: never)
  };
  std::vector<SlotCache> cached_;
  std::uint64_t cache_clock_ = 0;
  PrefixStore store_;                 // the RAM tier
  std::unique_ptr<PrefixDisk> disk_;  // the disk tier, or null
  // Admissions wait for the disk tier's start-up read until this (real time), at most.
  std::chrono::steady_clock::time_point disk_hold_until_{};
  PrefixDiskStats disk_reported_;  // the totals OnPrefixDisk has reported
  std::uint64_t disk_hits_ = 0;
  // Hashes of the (scope, tokens) WriteBranch has written; cleared when it reaches
  // kMaxBranches (a rewrite only refreshes the file's mtime).
  std::unordered_set<std::uint64_t> disk_branches_;
  static constexpr std::size_t kMaxBranches = 4096;
  std::thread thread_;
};

}  // namespace ember::scheduler
