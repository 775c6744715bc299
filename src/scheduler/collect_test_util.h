// Test helper shared by the scheduler's tests: drains a RequestStream into what a client saw.
#pragma once

#include <chrono>
#include <optional>
#include <string>
#include <thread>
#include <variant>
#include <vector>

#include "scheduler/request.h"

namespace ember::scheduler {

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
