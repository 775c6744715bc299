// The load generator behind `ember bench`: drives an OpenAI-compatible server (ember or
// llama-server) with `concurrency` workers, each on its own thread with one keep-alive
// HTTP/1.1 connection, until `requests` requests have completed, and summarizes throughput
// and latency. Called from the CLI thread; RunLoad blocks until the run is over.
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <string>

#include "common/error.h"

namespace ember::bench {

using Seconds = std::chrono::duration<double>;

struct LoadOptions {
  std::string host = "127.0.0.1";
  int port = 8080;
  std::string endpoint = "/v1/completions";  // or /v1/chat/completions
  std::string model;                         // sent as "model" if non-empty
  int concurrency = 1;
  int requests = 32;
  int prompt_min_words = 16;  // prompt length in words, uniform in [min, max]
  int prompt_max_words = 64;
  int max_tokens = 64;
  bool stream = true;
  float temperature = 0.0f;
  std::uint64_t seed = 42;            // prompt generation
  std::chrono::seconds timeout{120};  // per request
  std::string label;                  // free text copied into the report
};

struct LoadReport {
  // Echoed from the options so a saved report describes its run.
  std::string label;
  std::string endpoint;
  int concurrency = 0;
  int requests = 0;
  int max_tokens = 0;
  bool stream = true;

  int requests_ok = 0;
  int requests_failed = 0;
  // HTTP status -> failed requests; 0 counts transport failures and in-stream error events.
  std::map<int, int> errors_by_status;
  std::string first_error;  // one failure's message, for diagnosis; empty when none failed

  Seconds wall{0};
  double requests_per_second = 0;       // successful requests / wall
  std::int64_t output_tokens = 0;       // sum of usage.completion_tokens
  double output_tokens_per_second = 0;  // output_tokens / wall
  std::int64_t prompt_tokens = 0;       // sum of usage.prompt_tokens

  // Over successful requests. TTFT runs from sending the request to the first content chunk
  // (for non-streamed responses, to the end of the body). ITL spans every gap between
  // successive content chunks of streamed responses.
  Seconds ttft_p50{0}, ttft_p99{0};
  Seconds itl_p50{0}, itl_p99{0};
  Seconds e2e_p50{0}, e2e_p99{0};
};

// Rejects options no run could honour (non-positive counts, min > max words, bad port...).
[[nodiscard]] Status ValidateLoadOptions(const LoadOptions& options);

// Runs the load. Fails only on invalid options or an unresolvable host; failed requests
// (refused connections, non-2xx answers, timeouts) are counted in the report instead.
[[nodiscard]] Result<LoadReport> RunLoad(const LoadOptions& options);

// A human-readable multi-line table.
std::string FormatTable(const LoadReport& report);

// One JSON object on one line (with a trailing newline). Durations are in seconds, in fields
// named *_s: wall_s, ttft_p50_s, ttft_p99_s, itl_p50_s, itl_p99_s, e2e_p50_s, e2e_p99_s.
std::string FormatJson(const LoadReport& report);

}  // namespace ember::bench
