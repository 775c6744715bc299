// `ember bench coldstart`: starts a server (ember, and optionally llama-server, run by run in
// turn) N times on one model and measures, from just before exec: the time to readiness
// (ember's /ready, llama-server's /health answering 200), the time to the first streamed
// token of a completion sent as soon as it is ready, the server's peak RSS, optionally its
// steady decode speed, and for ember the start-up phases it reports on /metrics. Called from
// the CLI thread; RunColdStart blocks until every run is over and leaves no server running.
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "common/error.h"

namespace ember::bench {

struct ColdStartOptions {
  std::string model_path;
  int runs = 5;                  // per server
  std::string ember_bin;         // empty = this executable
  std::string llama_server_bin;  // empty = ember only
  int threads = 0;               // 0 = the CPUs this process may use
  int ctx_size = 4096;           // KV tokens in all, as both servers count them
  int parallel = 4;              // slots / sequences
  int max_tokens = 8;            // of the first-token request
  int decode_tokens = 0;         // of the decode-speed request; 0 = none
  std::string prompt = "Once upon a time";
  std::chrono::seconds timeout{120};    // per run, exec to stop
  std::vector<std::string> ember_args;  // extra `ember serve` flags
};

enum class ServerKind { kEmber, kLlamaServer };
std::string_view ServerName(ServerKind kind);

// Start-up phases by name, in the order ember lists them, in seconds.
using Phases = std::vector<std::pair<std::string, double>>;

// One start of one server. Durations are seconds from just before exec.
struct ColdStartRun {
  ServerKind server = ServerKind::kEmber;
  int index = 0;      // 1-based, per server
  std::string error;  // empty when the run succeeded; otherwise what failed and the last output
  double exec_to_ready_s = 0;
  double exec_to_first_token_s = 0;
  double peak_rss_mib = 0;
  std::optional<double> decode_tokens_per_s;  // with --decode-tokens
  Phases phases_s;                            // ember's ember_startup_seconds{phase}

  bool ok() const { return error.empty(); }
};

struct ColdStartReport {
  ColdStartOptions options;  // with the defaults resolved (binaries, threads)
  std::vector<ColdStartRun> runs;

  int failed() const;
};

// Rejects options no run could honour: missing model file or binaries, non-positive counts.
[[nodiscard]] Status ValidateColdStartOptions(const ColdStartOptions& options);

// Runs every start. Fails only on invalid options; failed runs are recorded in the report.
[[nodiscard]] Result<ColdStartReport> RunColdStart(ColdStartOptions options);

// Per server, medians over its successful runs: a table and, for ember, its phases.
std::string FormatColdStartTable(const ColdStartReport& report);

// One JSON object (with a trailing newline): the options, then per server its runs (each with
// "ok", and "error" or the measurements) and the medians of its successful runs.
std::string FormatColdStartJson(const ColdStartReport& report);

// The parsing the runs rely on, exposed for tests.

// The port of a "listening on http://HOST:PORT" log line, if `line` is one.
std::optional<int> ParseListeningPort(std::string_view line);

// Every sample of ember_startup_seconds{phase="NAME"} in Prometheus text, in the order given (a
// repeated phase keeps its first place and its last value).
Phases ParseStartupPhases(std::string_view metrics_text);

// The median (mean of the middle two for an even count); nothing when `values` is empty.
std::optional<double> Median(std::vector<double> values);

}  // namespace ember::bench
