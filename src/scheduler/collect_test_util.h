// Test helpers shared by the scheduler's tests: a request of a prompt's text, submitting one
// that must be accepted, and draining a RequestStream into what a client saw.
#pragma once

#include <gtest/gtest.h>

#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <variant>
#include <vector>

#include "engine/engine.h"
#include "scheduler/request.h"
#include "scheduler/scheduler.h"

namespace ember::scheduler {

// A request for `max_tokens` after `prompt`, tokenized by the engine's tokenizer (no BOS).
inline GenerateRequest MakeRequest(const engine::Engine& engine, std::string_view prompt,
                                   int max_tokens, SteadyTime arrival) {
  GenerateRequest r;
  r.prompt = engine.tokenizer().Tokenize(prompt, false).value();
  r.max_tokens = max_tokens;
  r.arrival = arrival;
  return r;
}

// Submits `r`, which the test expects to be accepted, and returns its stream.
inline std::shared_ptr<RequestStream> SubmitAccepted(Scheduler& scheduler, GenerateRequest r) {
  auto stream = std::make_shared<RequestStream>();
  EXPECT_TRUE(scheduler.Submit(std::move(r), stream).has_value());
  return stream;
}

struct Collected {
  std::string text;
  std::vector<TextDelta> deltas;  // as taken (coalesced when the engine ran ahead)
  std::optional<Finished> finished;
  int admitted = 0;  // Admitted events
};

// Takes events until the Finished one (or a 20 s safety limit).
inline Collected Wait(RequestStream& stream) {
  Collected out;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
  while (!out.finished && std::chrono::steady_clock::now() < deadline) {
    for (Event& e : stream.Take()) {
      if (auto* d = std::get_if<TextDelta>(&e)) {
        out.text += d->text;
        out.deltas.push_back(*d);
      } else if (auto* f = std::get_if<Finished>(&e)) {
        out.finished = *f;
      } else {
        ++out.admitted;
      }
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  return out;
}

}  // namespace ember::scheduler
