// What a caller submits to the scheduler and what it gets back: a GenerateRequest in, a
// RequestStream of events out. Events are format-free (no OpenAI shapes): text deltas and
// one Finished event, always last.
//
// Threads: the engine thread pushes events; the consumer (an HTTP handler) takes them from
// any thread. All locking lives in RequestStream.
#pragma once

#include <atomic>
#include <chrono>
#include <functional>
#include <mutex>
#include <optional>
#include <string>
#include <variant>
#include <vector>

#include "common/clock.h"
#include "common/error.h"
#include "engine/types.h"

namespace ember::scheduler {

struct GenerateRequest {
  std::string id;
  std::vector<engine::Token> prompt;  // non-empty; prompt + max_tokens fit the sequence
  int max_tokens = 16;
  engine::SamplingParams sampling;
  std::vector<std::string> stop;
  SteadyTime arrival{};  // when the HTTP request arrived; queue deadline counts from here
};

// Text that became final since the last event. Several tokens may be coalesced into one
// delta when the consumer has not taken the previous one yet.
struct TextDelta {
  std::string text;
  int tokens = 0;
};

struct Timings {
  std::chrono::nanoseconds queue{0};        // arrival -> admitted into a slot
  std::chrono::nanoseconds first_token{0};  // arrival -> first sampled token (0 if none)
  std::chrono::nanoseconds total{0};        // arrival -> finished
};

struct Finished {
  engine::FinishReason reason = engine::FinishReason::kStop;
  engine::Usage usage;
  Timings timings;
  std::optional<Error> error;  // set for kError and for requests that never ran
};

using Event = std::variant<TextDelta, Finished>;

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
