// RunColdStart: starting the servers and timing them. Parsing and reports: coldstart_report.cc.
#include "bench/coldstart.h"

#include <sched.h>
#include <unistd.h>

#include <filesystem>
#include <thread>

#include "bench/child_process.h"
#include "bench/http_client.h"
#include "bench/prompt.h"
#include "bench/stream_parse.h"
#include "common/log.h"

namespace ember::bench {
namespace {

using std::chrono::milliseconds;

constexpr milliseconds kPollInterval{1};
constexpr milliseconds kStopGrace{10'000};

double SecondsSince(SteadyClock::time_point start) {
  return std::chrono::duration<double>(SteadyClock::now() - start).count();
}

int UsableCpus() {
  cpu_set_t set;
  if (::sched_getaffinity(0, sizeof(set), &set) == 0) return CPU_COUNT(&set);
  return static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
}

std::vector<std::string> ServerArgv(ServerKind kind, const ColdStartOptions& o, int port) {
  const std::string threads = std::to_string(o.threads), ctx = std::to_string(o.ctx_size),
                    parallel = std::to_string(o.parallel);
  if (kind == ServerKind::kLlamaServer) {
    return {o.llama_server_bin,
            "-m",
            o.model_path,
            "-t",
            threads,
            "-c",
            ctx,
            "-np",
            parallel,
            "--host",
            "127.0.0.1",
            "--port",
            std::to_string(port)};
  }
  std::vector<std::string> argv = {o.ember_bin,  "serve",  "--model",    o.model_path, "--host",
                                   "127.0.0.1",  "--port", "0",          "--threads",  threads,
                                   "--ctx-size", ctx,      "--parallel", parallel};
  argv.insert(argv.end(), o.ember_args.begin(), o.ember_args.end());
  return argv;
}

// One streamed completion: when its first and last content chunks arrived, and how many
// content chunks there were.
struct StreamTiming {
  SteadyClock::time_point first, last;
  int content_chunks = 0;
};

Result<StreamTiming> StreamCompletion(HttpClient& client, const ColdStartOptions& o, int max_tokens,
                                      SteadyClock::time_point deadline) {
  RequestBodyOptions body_options;
  body_options.max_tokens = max_tokens;
  const std::string body = BuildRequestBody(body_options, o.prompt);
  StreamTiming timing;
  SseParser parser;
  std::string error_event, raw;
  auto on_event = [&](const std::string& payload) {
    if (payload == "[DONE]") return;
    const ChunkInfo info = InspectChunk(payload);
    if (info.is_error && error_event.empty()) error_event = payload;
    if (!info.has_content) return;
    timing.last = SteadyClock::now();
    if (timing.content_chunks++ == 0) timing.first = timing.last;
  };
  auto status = client.Post("/v1/completions", body, deadline, [&](std::string_view bytes) {
    if (raw.size() < 512) raw.append(bytes.substr(0, 512 - raw.size()));
    for (const std::string& payload : parser.Feed(bytes)) on_event(payload);
  });
  if (!status) return std::unexpected(status.error());
  if (auto last = parser.Finish()) on_event(*last);
  if (*status != 200) return Unavailable(StrCat("/v1/completions answered ", *status, ": ", raw));
  if (!error_event.empty()) return Unavailable("/v1/completions streamed an error: " + error_event);
  if (timing.content_chunks == 0) return Unavailable("/v1/completions streamed no text");
  return timing;
}

// Polls `path` every kPollInterval until it answers 200; fails when the child exits first.
Status WaitUntilReady(HttpClient& client, ChildProcess& child, std::string_view path,
                      SteadyClock::time_point deadline) {
  while (true) {
    if (auto ended = child.ExitIfEnded())
      return Unavailable(StrCat(*ended, " before it was ready"));
    const auto poll_deadline = std::min(deadline, SteadyClock::now() + std::chrono::seconds(5));
    auto status = client.Get(path, poll_deadline, [](std::string_view) {});
    if (status && *status == 200) return {};
    if (SteadyClock::now() >= deadline) {
      return DeadlineExceeded(StrCat(path, " did not answer 200 within the timeout"));
    }
    std::this_thread::sleep_for(kPollInterval);
  }
}

Result<std::string> GetText(HttpClient& client, std::string_view path,
                            SteadyClock::time_point deadline) {
  std::string text;
  auto status = client.Get(path, deadline, [&](std::string_view bytes) { text.append(bytes); });
  if (!status) return std::unexpected(status.error());
  if (*status != 200) return Unavailable(StrCat(path, " answered ", *status));
  return text;
}

// ember's port, from its "listening on" line.
Result<int> WaitForListening(ChildProcess& child, SteadyClock::time_point deadline) {
  if (auto port = child.WaitForMatch(deadline)) return *port;
  // Its output ended (or the deadline passed): give an exiting child a moment to be reaped.
  const auto until = std::min(deadline, SteadyClock::now() + std::chrono::seconds(1));
  while (!child.ExitIfEnded() && SteadyClock::now() < until) {
    std::this_thread::sleep_for(kPollInterval);
  }
  if (auto ended = child.ExitIfEnded()) {
    return Unavailable(StrCat(*ended, " before it was listening"));
  }
  return DeadlineExceeded("no \"listening on\" line within the timeout");
}

// Everything measured while the child runs; `start` is the instant just before exec.
Status MeasureChild(ServerKind kind, const ColdStartOptions& o, ChildProcess& child, int port,
                    SteadyClock::time_point start, ColdStartRun& run) {
  const auto deadline = start + o.timeout;
  if (kind == ServerKind::kEmber) {
    auto listening = WaitForListening(child, deadline);
    if (!listening) return std::unexpected(listening.error());
    port = *listening;
  }
  auto endpoint = Resolve("127.0.0.1", port);
  if (!endpoint) return std::unexpected(endpoint.error());
  HttpClient client(*endpoint);
  const bool ember = kind == ServerKind::kEmber;
  if (auto ready = WaitUntilReady(client, child, ember ? "/ready" : "/health", deadline); !ready) {
    return ready;
  }
  run.exec_to_ready_s = SecondsSince(start);

  auto first = StreamCompletion(client, o, o.max_tokens, deadline);
  if (!first) return std::unexpected(first.error());
  run.exec_to_first_token_s = std::chrono::duration<double>(first->first - start).count();

  if (o.decode_tokens > 0) {
    auto decode = StreamCompletion(client, o, o.decode_tokens, deadline);
    if (!decode) return std::unexpected(decode.error());
    const double span = std::chrono::duration<double>(decode->last - decode->first).count();
    if (decode->content_chunks >= 2 && span > 0) {
      run.decode_tokens_per_s = (decode->content_chunks - 1) / span;
    }
  }
  if (ember) {
    auto metrics = GetText(client, "/metrics", deadline);
    if (!metrics) return std::unexpected(metrics.error());
    run.phases_s = ParseStartupPhases(*metrics);
    if (run.phases_s.empty()) return Unavailable("/metrics has no ember_startup_seconds");
  }
  run.peak_rss_mib = static_cast<double>(child.PeakRssBytes()) / (1024.0 * 1024.0);
  return {};
}

ColdStartRun RunOnce(ServerKind kind, int index, const ColdStartOptions& o) {
  ColdStartRun run;
  run.server = kind;
  run.index = index;
  int port = 0;
  if (kind == ServerKind::kLlamaServer) {
    auto picked = PickFreePort();
    if (!picked) {
      run.error = picked.error().message;
      return run;
    }
    port = *picked;
  }
  auto matcher = [](std::string_view line) { return ParseListeningPort(line); };
  const auto start = SteadyClock::now();
  auto child = ChildProcess::Start(ServerArgv(kind, o, port), matcher);
  if (!child) {
    run.error = child.error().message;
    return run;
  }
  auto measured = MeasureChild(kind, o, **child, port, start, run);
  const auto ended_early = (*child)->ExitIfEnded();
  (*child)->Stop(kStopGrace);
  if (!measured) {
    run.error = measured.error().message;
    if (ended_early && run.error.find(*ended_early) == std::string::npos) {
      run.error += StrCat(" (", ServerName(kind), " ", *ended_early, ")");
    }
    run.error += StrCat("; last output of ", ServerName(kind), ":\n", (*child)->LastLines());
  } else if (ended_early) {
    run.error = StrCat(ServerName(kind), " ", *ended_early, " during the run");
  }
  return run;
}

Status CheckExecutable(const std::string& path, std::string_view flag) {
  if (::access(path.c_str(), X_OK) != 0) {
    return InvalidArgument(StrCat(flag, ": '", path, "' is not an executable file"));
  }
  return {};
}

}  // namespace

Status ValidateColdStartOptions(const ColdStartOptions& o) {
  std::error_code ec;
  if (o.model_path.empty()) return InvalidArgument("coldstart needs --model PATH");
  if (!std::filesystem::is_regular_file(o.model_path, ec)) {
    return InvalidArgument(StrCat("model file not found: ", o.model_path));
  }
  if (o.runs < 1) return InvalidArgument("--runs must be at least 1");
  if (o.threads < 0 || o.ctx_size < 1 || o.parallel < 1 || o.max_tokens < 1 ||
      o.decode_tokens < 0) {
    return InvalidArgument("--threads, --ctx-size, --parallel, --max-tokens must be positive");
  }
  if (o.timeout.count() < 1) return InvalidArgument("--timeout must be at least 1 second");
  if (!o.ember_bin.empty()) {
    if (auto ok = CheckExecutable(o.ember_bin, "--ember"); !ok) return ok;
  }
  if (!o.llama_server_bin.empty()) {
    if (auto ok = CheckExecutable(o.llama_server_bin, "--llama-server"); !ok) return ok;
  }
  return {};
}

Result<ColdStartReport> RunColdStart(ColdStartOptions options) {
  if (auto ok = ValidateColdStartOptions(options); !ok) return std::unexpected(ok.error());
  if (options.ember_bin.empty()) {
    std::error_code ec;
    options.ember_bin = std::filesystem::read_symlink("/proc/self/exe", ec).string();
    if (ec) return Internal("cannot find this executable: " + ec.message());
  }
  if (options.threads == 0) options.threads = UsableCpus();
  ColdStartReport report;
  report.options = options;
  for (int i = 1; i <= options.runs; ++i) {
    for (ServerKind kind : {ServerKind::kEmber, ServerKind::kLlamaServer}) {
      if (kind == ServerKind::kLlamaServer && options.llama_server_bin.empty()) continue;
      report.runs.push_back(RunOnce(kind, i, options));
      const ColdStartRun& run = report.runs.back();
      if (run.ok()) {
        log::Info("coldstart: ", ServerName(kind), " run ", i, ": ready ",
                  run.exec_to_ready_s * 1000, " ms, first token ", run.exec_to_first_token_s * 1000,
                  " ms");
      } else {
        log::Warn("coldstart: ", ServerName(kind), " run ", i, " failed: ", run.error);
      }
    }
  }
  return report;
}

}  // namespace ember::bench
