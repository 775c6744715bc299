// What a caller submits to the scheduler and what it gets back: a GenerateRequest in, a
// RequestStream of events out. Events are format-free (no OpenAI shapes): one Admitted event
// when the request first takes a sequence slot, text deltas, and one Finished event per choice,
// the last of each choice's events (a request that never gets a slot receives only those).
// A request with n > 1 choices is n sequences sharing one stream: every TextDelta and Finished
// carries its choice's index, and the request is over once all n Finished events arrived.
//
// Threads: the engine thread pushes events; the consumer (an HTTP handler) takes them from
// any thread. All locking lives in RequestStream.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "common/clock.h"
#include "common/error.h"
#include "engine/types.h"

namespace ember::scheduler {

// Who a request is for, as the scheduler sees it: plain data from the tenancy layer, which
// the scheduler uses for fair share and priority and for nothing else.
struct TenantTag {
  std::string id;       // empty: the anonymous tenant (open mode)
  double weight = 1.0;  // > 0; share of service relative to other tenants
  int priority = 0;     // class: lower is served strictly first (0 = interactive, 1 = batch)
};

struct GenerateRequest {
  std::string id;
  std::vector<engine::Token> prompt;  // non-empty; prompt + max_tokens fit the sequence
  int max_tokens = 16;
  engine::SamplingParams sampling;
  std::vector<std::string> stop;
  SteadyTime arrival{};  // when the HTTP request arrived; queue deadline counts from here
  TenantTag tenant;
  // An embedding input: `prompt` is prefilled like any prompt (max_tokens, sampling and stop
  // are ignored, nothing is sampled) and its Finished event carries the embedding.
  bool embed = false;
  // Choices: n sequences that sample independently after one shared prefill of `prompt` (the
  // first choice's; the others get copies of its KV cells). All n are admitted together, so n
  // must not exceed the model's slots. Choice i samples with seed + i when a seed is given.
  int n = 1;
  // When set, the engine thread stores in it the prompt tokens in the KV cache so far (reused
  // and computed) after each step that prefills them: the console's "prefill n of m".
  std::shared_ptr<std::atomic<int>> prefill_progress;
};

// The request left the wait queue for a sequence slot (once, even if it is later preempted
// and resumes: its client sees one uninterrupted answer).
struct Admitted {
  std::chrono::nanoseconds queue{0};  // arrival -> admitted
};

// Text that became final since the last event. Several tokens may be coalesced into one
// delta when the consumer has not taken the previous one yet.
struct TextDelta {
  int choice = 0;  // index of the choice it belongs to, in [0, GenerateRequest::n)
  std::string text;
  int tokens = 0;
  // When the request asked for logprobs: the tokens whose bytes all became final with this
  // text, in order (TextStream::TakeReleased). Their pieces concatenated are `text`, except
  // where a token's bytes straddle an event boundary (a held-back stop-string prefix or
  // incomplete UTF-8 sequence): such a token travels with the text of its last byte.
  std::vector<engine::TokenLogprobs> logprobs;
};

struct Timings {
  std::chrono::nanoseconds queue{0};        // arrival -> admitted into a slot
  std::chrono::nanoseconds first_token{0};  // arrival -> first sampled token (0 if none)
  std::chrono::nanoseconds total{0};        // arrival -> finished
  // Its share of engine step time: each step's wall time split over the sequences in it in
  // proportion to the tokens each computed (SplitStepTime); the shares of a step add up to it.
  std::chrono::nanoseconds engine{0};
};

// What one request went through inside the scheduler, for the console's timeline
// (SchedulerOptions::trace_steps). Times count from the request's arrival. Bounded: the first
// `trace_steps` steps are kept in full, later ones only counted (steps_total).
struct TraceStep {
  std::uint64_t step = 0;             // the model's step number: equal numbers, same batch
  std::chrono::nanoseconds start{0};  // since arrival
  std::chrono::nanoseconds took{0};   // the whole step's wall time
  int tokens = 0;                     // this request's tokens in it
  bool prefill = false;               // a prompt (or, after a preemption, replay) chunk
  int batch_tokens = 0;               // every sequence's tokens in it, this one's included
  // The other sequences in the batch: Trace::peers[peers_begin, peers_end).
  std::uint32_t peers_begin = 0;
  std::uint32_t peers_end = 0;
};
struct TracePeer {
  std::uint32_t id = 0;  // index into Trace::peer_ids
  int tokens = 0;
};
struct TraceMark {
  enum class Kind { kAdmitted, kFirstToken, kPreempted, kResumed };
  Kind kind = Kind::kAdmitted;
  std::chrono::nanoseconds at{0};  // since arrival
};
std::string_view TraceMarkName(TraceMark::Kind kind);
struct Trace {
  std::vector<TraceStep> steps;
  std::vector<TracePeer> peers;
  // GenerateRequest::id of each request met in a step ("id#2" for its choice 2), each once.
  std::vector<std::string> peer_ids;
  std::vector<TraceMark> marks;
  int steps_total = 0;  // steps it took part in, kept or not
};

// One per choice. The prompt is counted in choice 0's usage only (it was computed once);
// every choice reports its own completion tokens and its own share of engine time.
struct Finished {
  int choice = 0;
  engine::FinishReason reason = engine::FinishReason::kStop;
  engine::Usage usage;
  Timings timings;
  std::optional<Error> error;    // set for kError and for requests that never ran
  std::vector<float> embedding;  // an embedding request that finished (kStop)
  // Its timeline; null unless the scheduler traces (SchedulerOptions::trace_steps > 0).
  std::shared_ptr<const Trace> trace;
};

using Event = std::variant<TextDelta, Admitted, Finished>;

class RequestStream {
 public:
  // Called on the engine thread when events become available after the consumer's last
  // Take() (edge-triggered: at most one call per Take()). Set it before submitting.
  void SetNotify(std::function<void()> notify);
  [[nodiscard]] std::vector<Event> Take();
  // Asks the scheduler to stop this request at its next step; safe from any thread.
  void Cancel() { cancelled_.store(true, std::memory_order_relaxed); }
  bool cancelled() const { return cancelled_.load(std::memory_order_relaxed); }

  // Engine thread only.
  void Push(Event event);

 private:
  std::mutex mu_;
  std::vector<Event> events_;     // GUARDED_BY(mu_)
  std::function<void()> notify_;  // GUARDED_BY(mu_)
  bool notified_ = false;         // GUARDED_BY(mu_)
  std::atomic<bool> cancelled_{false};
};

}  // namespace ember::scheduler
