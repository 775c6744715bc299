// Sandboxed WebAssembly plugins with the proxy-wasm v0.2.1 host ABI (docs/plugins.md).
//
// Runtime: one per process, the Wasmtime engine (Cranelift, fuel metering, no signal handlers).
// Plugin: one compiled module with its configuration and limits; immutable, shared by threads.
// Instance: one instantiation of a Plugin with its proxy-wasm root context, owned by one thread
//   at a time (a worker keeps one per plugin and reuses it for every request, so a request pays
//   a call, not an instantiation). After a trap, a CPU or memory limit, the instance rebuilds
//   itself before its next call; the failure is reported to the caller as a PluginError.
//
// Nothing outside src/plugins/ sees Wasmtime's types (tools/check_layers.py).
#pragma once

#include <chrono>
#include <cstdint>
#include <expected>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "common/error.h"

namespace ember::plugins {

struct Limits {
  // Fuel per callback from the host (about one unit per Wasm instruction): the CPU limit.
  std::uint64_t fuel_per_call = 50'000'000;
  // Linear memory of one instance, all memories together: memory.grow past it fails (-1).
  std::uint64_t memory_bytes = 64ull << 20;
};

// Why a plugin call failed; "traps by kind" in metrics.
enum class FailureKind {
  kLoad,      // malformed module, missing export, unsupported import, rejected configuration
  kCpuLimit,  // ran out of fuel
  kStackOverflow,
  kMemoryLimit,  // an allocation the memory limit refused
  kOutOfBounds,  // a load or store outside its linear memory
  kTrap,         // any other trap (unreachable, division by zero, proc_exit, ...)
  kAbi,          // broke the proxy-wasm contract (unknown action, bad allocator result)
};
std::string_view FailureKindName(FailureKind kind);

struct PluginError {
  FailureKind kind = FailureKind::kTrap;
  std::string message;  // names the plugin and what went wrong
};
template <typename T>
using PluginResult = std::expected<T, PluginError>;

// A plugin's own metrics (proxy_define_metric, proxy_increment_metric, proxy_record_metric,
// proxy_get_metric): one sink per plugin, shared by all its instances (and across rebuilds), so
// an id one instance got is valid in every other. Called on the plugin workers; thread-safe.
class MetricSink {
 public:
  enum class Type : std::uint32_t { kCounter = 0, kGauge = 1, kHistogram = 2 };  // proxy-wasm's
  virtual ~MetricSink() = default;
  // The id of the plugin's metric `name` of `type` (the same id for the same name); nullopt
  // when refused (a bad name, the name taken by another type, too many metrics).
  virtual std::optional<std::uint32_t> Define(Type type, std::string_view name) = 0;
  // A counter goes up by `offset` (never down), a gauge by `offset`; false otherwise.
  virtual bool Increment(std::uint32_t id, std::int64_t offset) = 0;
  // A gauge is set to `value`, a histogram observes it; false for a counter or an unknown id.
  virtual bool Record(std::uint32_t id, std::uint64_t value) = 0;
  // A counter's or gauge's value (a negative gauge reads 0); nullopt for a histogram.
  virtual std::optional<std::uint64_t> Get(std::uint32_t id) = 0;
};

struct PluginSpec {
  std::string name;
  std::string wasm;  // binary module, or WebAssembly text (tests write bad plugins as text)
  std::string configuration;     // proxy_on_configure's buffer (PluginConfiguration)
  std::string vm_configuration;  // proxy_on_vm_start's buffer (VmConfiguration)
  Limits limits;
  // Where its own metrics go; null: the metric hostcalls answer Unimplemented.
  std::shared_ptr<MetricSink> metrics;
};

using Headers = std::vector<std::pair<std::string, std::string>>;

// What the completion-point hook reads through proxy_get_property: how the request ended.
struct CompletionData {
  std::int64_t prompt_tokens = 0;
  std::int64_t completion_tokens = 0;
  std::int64_t cached_tokens = 0;                 // prompt tokens served from the prompt cache
  std::optional<std::int64_t> cost_microdollars;  // the usage record's price, when priced
  std::string finish_reason;  // "stop", "length", ...; "" when it never reached the model
  std::string outcome;        // ember_generation_outcomes_total's outcome
  int http_status = 0;
};

// What a request hook sees and may change, and what proxy_get_property answers.
struct RequestData {
  Headers headers;   // HttpRequestHeaders, lower-case names (":method", ":path" included)
  std::string body;  // HttpRequestBody: the whole OpenAI JSON body
  std::string tenant;
  std::string key_id;
  std::string model;
  std::string request_id;
  std::optional<CompletionData> completion;  // set for the completion-point hook only
};

// A plugin's proxy_send_local_response: the request ends here with this answer.
struct LocalResponse {
  int status = 0;
  std::string details;  // status_code_details
  std::string body;
  Headers headers;
};

// What a response hook sees and may change. Streamed: the headers once, then each SSE event on
// its own (exactly one complete event per proxy_on_response_body, never split or merged).
// Non-streamed: the headers and the whole body once, end_of_stream true.
struct ResponseData {
  Headers headers;   // HttpResponseHeaders, lower-case names, ":status" first
  std::string body;  // HttpResponseBody: one SSE event ("data: {...}\n\n"), or the whole body
  bool end_of_stream = false;
};

struct ResponseOutcome {
  bool headers_changed = false;
  bool body_changed = false;
  // proxy_close_stream: the stream ends cleanly after this event (a final chunk with
  // finish_reason "content_filter", the usage, data: [DONE]); no more of the model's output.
  bool close_stream = false;
};

struct RequestOutcome {
  std::uint32_t context_id = 0;  // the stream context: pass it to OnComplete
  std::optional<LocalResponse> local_response;
  bool body_changed = false;
  bool headers_changed = false;
};

class Runtime {
 public:
  [[nodiscard]] static Result<std::shared_ptr<Runtime>> Create();
  ~Runtime();
  Runtime(const Runtime&) = delete;
  Runtime& operator=(const Runtime&) = delete;

  struct Impl;
  Impl& impl() const { return *impl_; }

 private:
  explicit Runtime(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

class Plugin {
 public:
  // Compiles the module once (Cranelift) and checks its exports and imports: a module that
  // cannot work (no memory, no allocator, no proxy_abi_version_0_2_x export, an import ember
  // does not provide) is refused here, with a message that names what is missing.
  [[nodiscard]] static PluginResult<std::shared_ptr<const Plugin>> Compile(
      std::shared_ptr<Runtime> runtime, PluginSpec spec);
  ~Plugin();
  Plugin(const Plugin&) = delete;
  Plugin& operator=(const Plugin&) = delete;

  const std::string& name() const;
  const Limits& limits() const;

  struct Impl;
  Impl& impl() const { return *impl_; }

 private:
  explicit Plugin(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

class Instance {
 public:
  // Instantiates, runs the reactor's _initialize, proxy_on_context_create for the root context,
  // proxy_on_vm_start and proxy_on_configure (each must return true).
  [[nodiscard]] static PluginResult<std::unique_ptr<Instance>> Create(
      std::shared_ptr<const Plugin> plugin);
  ~Instance();
  Instance(const Instance&) = delete;
  Instance& operator=(const Instance&) = delete;

  // The request hook, after parse and authentication: a new stream context,
  // proxy_on_request_headers (end_of_stream false), then proxy_on_request_body with the whole
  // body and end_of_stream true, unless the plugin answered with a local response first.
  // `request` is changed in place by proxy_set_buffer_bytes / header map hostcalls.
  [[nodiscard]] PluginResult<RequestOutcome> OnRequest(RequestData& request);

  // The completion point: proxy_on_done, proxy_on_log, proxy_on_delete for the context that
  // OnRequest created (also after a local response); `request.completion` is what the usage
  // properties answer. A context that died with the instance (a failure rebuilt it since) is
  // skipped: its plugin state is gone.
  [[nodiscard]] PluginResult<void> OnComplete(std::uint32_t context_id, RequestData& request);

  // The response hooks for the context OnRequest created: proxy_on_response_headers with
  // `response.headers` (end_of_stream false), proxy_on_response_body with `response.body` and
  // `response.end_of_stream`. `response` is changed in place. A context that is no longer live
  // passes the response through unchanged.
  [[nodiscard]] PluginResult<ResponseOutcome> OnResponseHeaders(std::uint32_t context_id,
                                                                RequestData& request,
                                                                ResponseData& response);
  [[nodiscard]] PluginResult<ResponseOutcome> OnResponseBody(std::uint32_t context_id,
                                                             RequestData& request,
                                                             ResponseData& response);
  // The root context's timer: proxy_on_tick every TickPeriod() (what the plugin asked for with
  // proxy_set_tick_period_milliseconds, at least kMinTickPeriod), 0 when it asked for none or
  // exports no proxy_on_tick. The owner's thread calls OnTick when it is due.
  static constexpr std::chrono::milliseconds kMinTickPeriod{10};
  std::chrono::milliseconds TickPeriod() const;
  [[nodiscard]] PluginResult<void> OnTick();
  // Whether the plugin exports a response callback (else the server skips the hop).
  bool HasResponseHooks() const;

  // How many times this instance was rebuilt after a failure.
  std::uint64_t rebuilds() const;

  struct Impl;

 private:
  explicit Instance(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace ember::plugins
