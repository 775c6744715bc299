// What one benchmark request measured, and how a run's samples become a LoadReport.
// Pure; used by load.cc after its worker threads have joined, and by tests.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "bench/load.h"

namespace ember::bench {

struct RequestSample {
  int status = 0;               // HTTP status; 0 when the transport failed
  bool ok = false;              // 2xx with no in-stream error
  std::string error;            // why it failed, when it did
  std::optional<Seconds> ttft;  // unset when no content arrived
  Seconds e2e{0};
  std::vector<double> itl_seconds;  // gaps between successive content chunks
  std::int64_t completion_tokens = 0;
  std::int64_t prompt_tokens = 0;
};

LoadReport Summarize(const LoadOptions& options, const std::vector<RequestSample>& samples,
                     Seconds wall);

}  // namespace ember::bench
