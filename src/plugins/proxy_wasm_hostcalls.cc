// The proxy-wasm v0.2.1 hostcalls ember implements (docs/plugins.md lists them), the few WASI
// preview1 functions that wasi-libc and Go's wasip1 runtime call at start-up, and a stub that
// answers Unimplemented (12) / ENOSYS for every other function import. Every pointer and length
// a plugin passes is checked against its linear memory: a bad one answers InvalidMemoryAccess,
// it never reaches host memory.
#include <wasmtime.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <random>
#include <string>

#include "common/log.h"
#include "plugins/wasm_internal.h"

namespace ember::plugins {

struct Call {
  HostState& host;
  wasmtime_caller_t* caller;
  const wasmtime_val_t* args;
  std::uint32_t U(std::size_t i) const { return static_cast<std::uint32_t>(args[i].of.i32); }
  wasmtime_context_t* context() const { return wasmtime_caller_context(caller); }
};
// Returns the i32 result, or a trap (then `trap` is set).
using Handler = std::int32_t (*)(Call&, wasm_trap_t** trap);

struct HostcallSpec {
  std::string_view module;
  std::string_view name;
  std::string_view params;  // 'i' i32, 'I' i64
  std::string_view results;
  Handler handler;
};

namespace {

constexpr auto R(WasmResult r) { return static_cast<std::int32_t>(r); }
constexpr std::int32_t kWasiEnosys = 52;
constexpr std::int32_t kWasiBadf = 8;

enum BufferType : std::uint32_t {
  kRequestBody = 0,
  kResponseBody = 1,
  kVmConfiguration = 6,
  kPluginConfiguration = 7
};
enum MapType : std::uint32_t { kRequestHeaders = 0, kResponseHeaders = 2 };

std::optional<std::string> Read(Call& c, std::uint32_t ptr, std::uint32_t len) {
  auto bytes = c.host.Memory(ptr, len);
  if (!bytes) return std::nullopt;
  return std::string(reinterpret_cast<const char*>(bytes->data()), bytes->size());
}

// Copies bytes into plugin memory and stores their address and size at ret_ptr / ret_size.
std::int32_t Return(Call& c, std::string_view bytes, std::uint32_t ret_ptr, std::uint32_t ret_size,
                    wasm_trap_t** trap) {
  if (!c.host.Memory(ret_ptr, 4) || !c.host.Memory(ret_size, 4)) {
    return R(WasmResult::kInvalidMemoryAccess);
  }
  auto address = c.host.CopyIn(c.context(), bytes);
  if (!address) {
    *trap = wasmtime_trap_new(c.host.hostcall_failure->message.data(),
                              c.host.hostcall_failure->message.size());
    return 0;
  }
  c.host.WriteU32(ret_ptr, *address);
  c.host.WriteU32(ret_size, static_cast<std::uint32_t>(bytes.size()));
  return R(WasmResult::kOk);
}

const std::string* Buffer(const HostState& host, std::uint32_t type) {
  const PluginSpec& spec = host.plugin->spec;
  switch (type) {
    case kRequestBody:
      return host.request ? &host.request->body : nullptr;
    case kResponseBody:
      return host.response ? &host.response->body : nullptr;
    case kVmConfiguration:
      return &spec.vm_configuration;
    case kPluginConfiguration:
      return &spec.configuration;
    default:
      return nullptr;
  }
}

Headers* Map(HostState& host, std::uint32_t type) {
  if (type == kResponseHeaders) return host.response ? &host.response->headers : nullptr;
  return type == kRequestHeaders && host.request ? &host.request->headers : nullptr;
}

bool SameKey(std::string_view a, std::string_view b) {
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
           return std::tolower(static_cast<unsigned char>(x)) ==
                  std::tolower(static_cast<unsigned char>(y));
         });
}

void PutU32(std::string& out, std::uint32_t v) {
  for (int i = 0; i < 4; ++i) out.push_back(static_cast<char>((v >> (8 * i)) & 0xff));
}
std::uint32_t GetU32(std::string_view in, std::size_t at) {
  std::uint32_t v = 0;
  for (int i = 0; i < 4; ++i)
    v |= static_cast<std::uint32_t>(static_cast<unsigned char>(in[at + i])) << (8 * i);
  return v;
}

// proxy-wasm's map encoding: u32 count, count × (u32 key size, u32 value size), then each key
// and value followed by a NUL.
std::string SerializeMap(const Headers& headers) {
  std::string out;
  PutU32(out, static_cast<std::uint32_t>(headers.size()));
  for (const auto& [k, v] : headers) {
    PutU32(out, static_cast<std::uint32_t>(k.size()));
    PutU32(out, static_cast<std::uint32_t>(v.size()));
  }
  for (const auto& [k, v] : headers) {
    out += k;
    out.push_back('\0');
    out += v;
    out.push_back('\0');
  }
  return out;
}
std::optional<Headers> ParseMap(std::string_view in) {
  if (in.empty()) return Headers{};
  if (in.size() < 4) return std::nullopt;
  const std::uint64_t n = GetU32(in, 0);
  if (4 + n * 8 > in.size()) return std::nullopt;
  std::size_t at = 4 + n * 8;
  Headers out;
  for (std::uint64_t i = 0; i < n; ++i) {
    const std::uint64_t k = GetU32(in, 4 + i * 8), v = GetU32(in, 8 + i * 8);
    if (at + k + v + 2 > in.size()) return std::nullopt;
    out.emplace_back(std::string(in.substr(at, k)), std::string(in.substr(at + k + 1, v)));
    at += k + v + 2;
  }
  return out;
}

// ---- proxy-wasm hostcalls ------------------------------------------------------------------

std::int32_t ProxyLog(Call& c, wasm_trap_t**) {
  auto message = Read(c, c.U(1), c.U(2));
  if (!message) return R(WasmResult::kInvalidMemoryAccess);
  const std::string line = "plugin '" + c.host.plugin->spec.name + "': " + *message;
  switch (c.U(0)) {
    case 0:
    case 1:
      log::Debug(line);
      break;
    case 2:
      log::Info(line);
      break;
    case 3:
      log::Warn(line);
      break;
    default:
      log::Error(line);
      break;
  }
  return R(WasmResult::kOk);
}

std::int32_t GetLogLevel(Call& c, wasm_trap_t**) {
  return c.host.WriteU32(c.U(0), 2) ? R(WasmResult::kOk) : R(WasmResult::kInvalidMemoryAccess);
}

// --- A plugin's own metrics (MetricSink, plugin.h) ---

MetricSink* Sink(const Call& c) { return c.host.plugin->spec.metrics.get(); }

std::int32_t DefineMetric(Call& c, wasm_trap_t**) {
  MetricSink* sink = Sink(c);
  if (sink == nullptr) return R(WasmResult::kUnimplemented);
  if (c.U(0) > 2) return R(WasmResult::kBadArgument);
  auto name = c.host.Memory(c.U(1), c.U(2));
  if (!name) return R(WasmResult::kInvalidMemoryAccess);
  const std::optional<std::uint32_t> id =
      sink->Define(static_cast<MetricSink::Type>(c.U(0)),
                   std::string_view(reinterpret_cast<const char*>(name->data()), name->size()));
  if (!id) return R(WasmResult::kBadArgument);
  return c.host.WriteU32(c.U(3), *id) ? R(WasmResult::kOk) : R(WasmResult::kInvalidMemoryAccess);
}

std::int32_t IncrementMetric(Call& c, wasm_trap_t**) {
  MetricSink* sink = Sink(c);
  if (sink == nullptr) return R(WasmResult::kUnimplemented);
  return sink->Increment(c.U(0), c.args[1].of.i64) ? R(WasmResult::kOk)
                                                   : R(WasmResult::kBadArgument);
}

std::int32_t RecordMetric(Call& c, wasm_trap_t**) {
  MetricSink* sink = Sink(c);
  if (sink == nullptr) return R(WasmResult::kUnimplemented);
  return sink->Record(c.U(0), static_cast<std::uint64_t>(c.args[1].of.i64))
             ? R(WasmResult::kOk)
             : R(WasmResult::kBadArgument);
}

std::int32_t GetMetric(Call& c, wasm_trap_t**) {
  MetricSink* sink = Sink(c);
  if (sink == nullptr) return R(WasmResult::kUnimplemented);
  const std::optional<std::uint64_t> value = sink->Get(c.U(0));
  if (!value) return R(WasmResult::kBadArgument);
  auto out = c.host.Memory(c.U(1), 8);
  if (!out) return R(WasmResult::kInvalidMemoryAccess);
  std::memcpy(out->data(), &*value, 8);  // little-endian host, as Wasm
  return R(WasmResult::kOk);
}

std::int32_t SetTickPeriod(Call& c, wasm_trap_t**) {
  c.host.tick_period_ms = c.U(0);
  return R(WasmResult::kOk);
}

std::int32_t GetCurrentTime(Call& c, wasm_trap_t**) {
  auto out = c.host.Memory(c.U(0), 8);
  if (!out) return R(WasmResult::kInvalidMemoryAccess);
  const auto now =
      static_cast<std::uint64_t>(std::chrono::duration_cast<std::chrono::nanoseconds>(
                                     std::chrono::system_clock::now().time_since_epoch())
                                     .count());
  std::memcpy(out->data(), &now, 8);  // little-endian host, as Wasm
  return R(WasmResult::kOk);
}

std::int32_t GetBufferBytes(Call& c, wasm_trap_t** trap) {
  const std::string* buffer = Buffer(c.host, c.U(0));
  if (!buffer) return R(WasmResult::kNotFound);
  const std::uint64_t start = c.U(1), max = c.U(2);
  if (start > buffer->size()) return R(WasmResult::kBadArgument);
  const std::string_view slice = std::string_view(*buffer).substr(start, max);
  return Return(c, slice, c.U(3), c.U(4), trap);
}

std::int32_t GetBufferStatus(Call& c, wasm_trap_t**) {
  const std::string* buffer = Buffer(c.host, c.U(0));
  if (!buffer) return R(WasmResult::kNotFound);
  if (!c.host.Memory(c.U(1), 4) || !c.host.Memory(c.U(2), 4)) {
    return R(WasmResult::kInvalidMemoryAccess);
  }
  c.host.WriteU32(c.U(1), static_cast<std::uint32_t>(buffer->size()));
  c.host.WriteU32(c.U(2), 0);
  return R(WasmResult::kOk);
}

// Replaces [start, start+size) of the buffer with the value: (0, 0) prepends, (0, >= length)
// replaces the whole body, (length, 0) appends.
std::int32_t SetBufferBytes(Call& c, wasm_trap_t**) {
  std::string* target = nullptr;
  if (c.U(0) == kRequestBody && c.host.request && !c.host.response) target = &c.host.request->body;
  if (c.U(0) == kResponseBody && c.host.response) target = &c.host.response->body;
  if (!target) return R(WasmResult::kNotFound);
  std::string& body = *target;
  const std::uint64_t start = c.U(1), size = c.U(2);
  if (start > body.size()) return R(WasmResult::kBadArgument);
  auto value = Read(c, c.U(3), c.U(4));
  if (!value) return R(WasmResult::kInvalidMemoryAccess);
  body.replace(start, std::min<std::uint64_t>(size, body.size() - start), *value);
  c.host.body_changed = true;
  return R(WasmResult::kOk);
}

std::int32_t GetHeaderMapPairs(Call& c, wasm_trap_t** trap) {
  const Headers* map = Map(c.host, c.U(0));
  if (!map) return R(WasmResult::kNotFound);
  return Return(c, SerializeMap(*map), c.U(1), c.U(2), trap);
}

std::int32_t SetHeaderMapPairs(Call& c, wasm_trap_t**) {
  Headers* map = Map(c.host, c.U(0));
  if (!map) return R(WasmResult::kNotFound);
  auto bytes = Read(c, c.U(1), c.U(2));
  if (!bytes) return R(WasmResult::kInvalidMemoryAccess);
  auto parsed = ParseMap(*bytes);
  if (!parsed) return R(WasmResult::kParseFailure);
  *map = std::move(*parsed);
  c.host.headers_changed = true;
  return R(WasmResult::kOk);
}

std::int32_t GetHeaderMapValue(Call& c, wasm_trap_t** trap) {
  const Headers* map = Map(c.host, c.U(0));
  if (!map) return R(WasmResult::kNotFound);
  auto key = Read(c, c.U(1), c.U(2));
  if (!key) return R(WasmResult::kInvalidMemoryAccess);
  for (const auto& [k, v] : *map) {
    if (SameKey(k, *key)) return Return(c, v, c.U(3), c.U(4), trap);
  }
  return R(WasmResult::kNotFound);
}

// mode: 0 replace (or add), 1 add, 2 remove.
std::int32_t ChangeHeader(Call& c, int mode) {
  Headers* map = Map(c.host, c.U(0));
  if (!map) return R(WasmResult::kNotFound);
  auto key = Read(c, c.U(1), c.U(2));
  std::optional<std::string> value = mode == 2 ? std::string() : Read(c, c.U(3), c.U(4));
  if (!key || !value) return R(WasmResult::kInvalidMemoryAccess);
  std::string lower = *key;
  std::transform(lower.begin(), lower.end(), lower.begin(),
                 [](unsigned char ch) { return static_cast<char>(std::tolower(ch)); });
  if (mode != 1) {
    std::erase_if(*map, [&](const auto& kv) { return SameKey(kv.first, lower); });
  }
  if (mode != 2) map->emplace_back(lower, *value);
  c.host.headers_changed = true;
  return R(WasmResult::kOk);
}
std::int32_t ReplaceHeader(Call& c, wasm_trap_t**) { return ChangeHeader(c, 0); }
std::int32_t AddHeader(Call& c, wasm_trap_t**) { return ChangeHeader(c, 1); }
std::int32_t RemoveHeader(Call& c, wasm_trap_t**) { return ChangeHeader(c, 2); }

// The completion-point properties (docs/plugins.md): decimal text, but "response.code", which
// is an 8-byte little-endian integer as Envoy answers it (so SDK code written for Envoy reads it).
std::optional<std::string> CompletionProperty(const CompletionData& done, std::string_view path) {
  if (path == "usage.prompt_tokens") return std::to_string(done.prompt_tokens);
  if (path == "usage.completion_tokens") return std::to_string(done.completion_tokens);
  if (path == "usage.cached_tokens") return std::to_string(done.cached_tokens);
  if (path == "usage.total_tokens") {
    return std::to_string(done.prompt_tokens + done.completion_tokens);
  }
  if (path == "cost_microdollars") {
    if (!done.cost_microdollars) return std::nullopt;
    return std::to_string(*done.cost_microdollars);
  }
  if (path == "finish_reason") {
    if (done.finish_reason.empty()) return std::nullopt;
    return done.finish_reason;
  }
  if (path == "outcome") return done.outcome;
  if (path == "http_status") return std::to_string(done.http_status);
  if (path == "response.code") {
    std::string out(8, '\0');
    const auto code = static_cast<std::int64_t>(done.http_status);
    std::memcpy(out.data(), &code, 8);  // little-endian host, as Wasm
    return out;
  }
  return std::nullopt;
}

// Paths are NUL-separated segments, read here joined with '.' ("usage\0prompt_tokens" is
// "usage.prompt_tokens").
std::int32_t GetProperty(Call& c, wasm_trap_t** trap) {
  auto path = Read(c, c.U(0), c.U(1));
  if (!path) return R(WasmResult::kInvalidMemoryAccess);
  while (!path->empty() && path->back() == '\0') path->pop_back();
  std::replace(path->begin(), path->end(), '\0', '.');
  const RequestData* r = c.host.request;
  const std::string* value = nullptr;
  // plugin_root_id: the AssemblyScript SDK finds its root context by it (Envoy's root_id).
  if (*path == "plugin_name" || *path == "plugin_root_id") value = &c.host.plugin->spec.name;
  if (r) {
    if (*path == "tenant") value = &r->tenant;
    if (*path == "key_id") value = &r->key_id;
    if (*path == "model") value = &r->model;
    if (*path == "request_id" || *path == "request.id") value = &r->request_id;
  }
  if (!value && r && r->completion) {
    auto computed = CompletionProperty(*r->completion, *path);
    if (!computed) return R(WasmResult::kNotFound);
    return Return(c, *computed, c.U(2), c.U(3), trap);
  }
  if (!value) return R(WasmResult::kNotFound);
  return Return(c, *value, c.U(2), c.U(3), trap);
}

std::int32_t SendLocalResponse(Call& c, wasm_trap_t**) {
  // The answer has started by the response hooks: a plugin ends a stream with
  // proxy_close_stream, or rewrites the body.
  if (!c.host.request || c.host.response) return R(WasmResult::kBadArgument);
  auto details = Read(c, c.U(1), c.U(2));
  auto body = Read(c, c.U(3), c.U(4));
  auto headers = Read(c, c.U(5), c.U(6));
  if (!details || !body || !headers) return R(WasmResult::kInvalidMemoryAccess);
  auto parsed = ParseMap(*headers);
  if (!parsed) return R(WasmResult::kParseFailure);
  const std::uint32_t status = c.U(0);
  if (status < 200 || status > 599) return R(WasmResult::kBadArgument);
  c.host.local_response =
      LocalResponse{static_cast<int>(status), std::move(*details), std::move(*body), *parsed};
  return R(WasmResult::kOk);
}

// Any stream type: during a response hook, the stream ends cleanly after this event.
std::int32_t CloseStream(Call& c, wasm_trap_t**) {
  if (!c.host.response) return R(WasmResult::kBadArgument);
  c.host.close_stream = true;
  return R(WasmResult::kOk);
}

std::int32_t SetEffectiveContext(Call& c, wasm_trap_t**) {
  c.host.effective_context = c.U(0);
  return R(WasmResult::kOk);
}

// ---- WASI preview1, the start-up subset ----------------------------------------------------

std::int32_t FdWrite(Call& c, wasm_trap_t**) {
  const std::uint32_t fd = c.U(0), iovs = c.U(1), count = c.U(2);
  if (fd != 1 && fd != 2) return kWasiBadf;
  std::string text;
  for (std::uint32_t i = 0; i < count; ++i) {
    auto iov = c.host.Memory(iovs + i * 8, 8);
    if (!iov) return 21;  // EFAULT
    std::uint32_t ptr, len;
    std::memcpy(&ptr, iov->data(), 4);
    std::memcpy(&len, iov->data() + 4, 4);
    auto bytes = Read(c, ptr, len);
    if (!bytes) return 21;
    text += *bytes;
  }
  if (!c.host.WriteU32(c.U(3), static_cast<std::uint32_t>(text.size()))) return 21;
  while (!text.empty() && text.back() == '\n') text.pop_back();
  log::Info("plugin '", c.host.plugin->spec.name, "' (fd ", fd, "): ", text);
  return 0;
}

std::int32_t ProcExit(Call& c, wasm_trap_t** trap) {
  const std::string message = "called proc_exit(" + std::to_string(c.U(0)) + ")";
  *trap = wasmtime_trap_new(message.data(), message.size());
  return 0;
}

std::int32_t ClockTimeGet(Call& c, wasm_trap_t**) {
  auto out = c.host.Memory(c.U(2), 8);
  if (!out) return 21;
  const auto now = c.U(0) == 0 ? std::chrono::system_clock::now().time_since_epoch()
                               : std::chrono::steady_clock::now().time_since_epoch();
  const auto ns =
      static_cast<std::uint64_t>(std::chrono::duration_cast<std::chrono::nanoseconds>(now).count());
  std::memcpy(out->data(), &ns, 8);
  return 0;
}

std::int32_t RandomGet(Call& c, wasm_trap_t**) {
  auto out = c.host.Memory(c.U(0), c.U(1));
  if (!out) return 21;
  thread_local std::mt19937_64 rng{std::random_device{}()};
  for (auto& b : *out) b = static_cast<std::uint8_t>(rng());
  return 0;
}

std::int32_t ZeroSizes(Call& c, wasm_trap_t**) {
  return c.host.WriteU32(c.U(0), 0) && c.host.WriteU32(c.U(1), 0) ? 0 : 21;
}
std::int32_t Nothing(Call&, wasm_trap_t**) { return 0; }

constexpr std::string_view kEnv = "env";
constexpr std::string_view kWasi = "wasi_snapshot_preview1";

constexpr HostcallSpec kHostcalls[] = {
    {kEnv, "proxy_log", "iii", "i", ProxyLog},
    {kEnv, "proxy_get_log_level", "i", "i", GetLogLevel},
    {kEnv, "proxy_get_current_time_nanoseconds", "i", "i", GetCurrentTime},
    {kEnv, "proxy_get_buffer_bytes", "iiiii", "i", GetBufferBytes},
    {kEnv, "proxy_get_buffer_status", "iii", "i", GetBufferStatus},
    {kEnv, "proxy_set_buffer_bytes", "iiiii", "i", SetBufferBytes},
    {kEnv, "proxy_get_header_map_pairs", "iii", "i", GetHeaderMapPairs},
    {kEnv, "proxy_set_header_map_pairs", "iii", "i", SetHeaderMapPairs},
    {kEnv, "proxy_get_header_map_value", "iiiii", "i", GetHeaderMapValue},
    {kEnv, "proxy_replace_header_map_value", "iiiii", "i", ReplaceHeader},
    {kEnv, "proxy_add_header_map_value", "iiiii", "i", AddHeader},
    {kEnv, "proxy_remove_header_map_value", "iii", "i", RemoveHeader},
    {kEnv, "proxy_get_property", "iiii", "i", GetProperty},
    {kEnv, "proxy_send_local_response", "iiiiiiii", "i", SendLocalResponse},
    {kEnv, "proxy_set_effective_context", "i", "i", SetEffectiveContext},
    {kEnv, "proxy_close_stream", "i", "i", CloseStream},
    {kEnv, "proxy_set_tick_period_milliseconds", "i", "i", SetTickPeriod},
    {kEnv, "proxy_define_metric", "iiii", "i", DefineMetric},
    {kEnv, "proxy_increment_metric", "iI", "i", IncrementMetric},
    {kEnv, "proxy_record_metric", "iI", "i", RecordMetric},
    {kEnv, "proxy_get_metric", "ii", "i", GetMetric},
    {kWasi, "fd_write", "iiii", "i", FdWrite},
    {kWasi, "proc_exit", "i", "", ProcExit},
    {kWasi, "clock_time_get", "iIi", "i", ClockTimeGet},
    {kWasi, "random_get", "ii", "i", RandomGet},
    {kWasi, "environ_sizes_get", "ii", "i", ZeroSizes},
    {kWasi, "args_sizes_get", "ii", "i", ZeroSizes},
    {kWasi, "environ_get", "ii", "i", Nothing},
    {kWasi, "args_get", "ii", "i", Nothing},
    {kWasi, "sched_yield", "", "i", Nothing},
    // AssemblyScript 0.14 (the proxy-wasm SDK's abort) imports proc_exit from the old name.
    {"wasi_unstable", "proc_exit", "i", "", ProcExit},
};

std::string Signature(const wasm_valtype_vec_t* types) {
  std::string out;
  for (std::size_t i = 0; i < types->size; ++i) {
    switch (wasm_valtype_kind(types->data[i])) {
      case WASM_I32:
        out += 'i';
        break;
      case WASM_I64:
        out += 'I';
        break;
      default:
        out += '?';
        break;
    }
  }
  return out;
}

wasm_trap_t* Dispatch(void* env, wasmtime_caller_t* caller, const wasmtime_val_t* args, std::size_t,
                      wasmtime_val_t* results, std::size_t nresults) {
  auto* binding = static_cast<Binding*>(env);
  wasm_trap_t* trap = nullptr;
  std::int32_t result = binding->unimplemented_result;
  if (binding->spec) {
    // Memory is reached through the calling context while the plugin runs; a hostcall may
    // re-enter the plugin (its allocator), which may call a hostcall in turn.
    HostState& host = *binding->host;
    wasmtime_context_t* outer = host.context;
    host.context = wasmtime_caller_context(caller);
    Call call{host, caller, args};
    result = binding->spec->handler(call, &trap);
    host.context = outer;
  }
  if (nresults == 1) {
    results[0].kind = WASMTIME_I32;
    results[0].of.i32 = result;
  }
  return trap;
}

}  // namespace

std::optional<std::span<std::uint8_t>> HostState::Memory(std::uint32_t ptr, std::uint32_t len) {
  const std::size_t size = wasmtime_memory_data_size(context, &memory);
  if (static_cast<std::uint64_t>(ptr) + len > size) return std::nullopt;
  return std::span<std::uint8_t>(wasmtime_memory_data(context, &memory) + ptr, len);
}

bool HostState::WriteU32(std::uint32_t ptr, std::uint32_t value) {
  auto out = Memory(ptr, 4);
  if (!out) return false;
  std::memcpy(out->data(), &value, 4);
  return true;
}

std::optional<std::uint32_t> HostState::CopyIn(wasmtime_context_t* call_context,
                                               std::string_view bytes) {
  if (bytes.empty()) return 0u;
  const std::string& name = plugin->spec.name;
  if (bytes.size() > UINT32_MAX / 2) {
    hostcall_failure = PluginError{FailureKind::kMemoryLimit,
                                   "plugin '" + name + "': " + std::to_string(bytes.size()) +
                                       " bytes do not fit a 32-bit linear memory"};
    return std::nullopt;
  }
  wasmtime_val_t arg{}, result{};
  arg.kind = WASMTIME_I32;
  arg.of.i32 = static_cast<std::int32_t>(bytes.size());
  wasm_trap_t* trap = nullptr;
  wasmtime_error_t* error =
      wasmtime_func_call(call_context, &allocator, &arg, 1, &result, 1, &trap);
  if (error || trap) {
    hostcall_failure =
        trap ? TrapError(name, "its allocator", trap) : ErrorError(name, "its allocator", error);
    return std::nullopt;
  }
  const auto address = static_cast<std::uint32_t>(result.of.i32);
  if (address == 0) {
    hostcall_failure = PluginError{
        FailureKind::kMemoryLimit,
        "plugin '" + name + "' could not allocate " + std::to_string(bytes.size()) +
            " bytes (memory limit " + std::to_string(plugin->spec.limits.memory_bytes) + " bytes)"};
    return std::nullopt;
  }
  auto out = Memory(address, static_cast<std::uint32_t>(bytes.size()));
  if (!out) {
    hostcall_failure = PluginError{FailureKind::kAbi, "plugin '" + name +
                                                          "': its allocator returned an address "
                                                          "outside its memory"};
    return std::nullopt;
  }
  std::memcpy(out->data(), bytes.data(), bytes.size());
  return address;
}

PluginResult<std::vector<wasmtime_extern_t>> BindImports(
    wasmtime_context_t* context, const wasmtime_module_t* module, const std::string& plugin_name,
    HostState* host, std::vector<std::unique_ptr<Binding>>& out) {
  wasm_importtype_vec_t imports;
  wasmtime_module_imports(module, &imports);
  std::vector<wasmtime_extern_t> externs;
  std::optional<PluginError> failure;
  for (std::size_t i = 0; i < imports.size && !failure; ++i) {
    const wasm_importtype_t* import = imports.data[i];
    const std::string mod(wasm_importtype_module(import)->data,
                          wasm_importtype_module(import)->size);
    const std::string name(wasm_importtype_name(import)->data, wasm_importtype_name(import)->size);
    const wasm_functype_t* type = wasm_externtype_as_functype_const(wasm_importtype_type(import));
    const std::string what = mod + "." + name;
    if (!type) {
      failure = PluginError{FailureKind::kLoad, "plugin '" + plugin_name + "' imports " + what +
                                                    ", which is not a function; ember provides "
                                                    "only proxy-wasm hostcalls"};
      break;
    }
    const std::string params = Signature(wasm_functype_params(type));
    const std::string results = Signature(wasm_functype_results(type));
    auto binding = std::make_unique<Binding>();
    binding->host = host;
    binding->name = what;
    for (const HostcallSpec& spec : kHostcalls) {
      if (spec.module == mod && spec.name == name) binding->spec = &spec;
    }
    if (binding->spec && (binding->spec->params != params || binding->spec->results != results)) {
      failure = PluginError{FailureKind::kLoad, "plugin '" + plugin_name + "' imports " + what +
                                                    " as (" + params + ") -> (" + results +
                                                    "); proxy-wasm 0.2.1 has (" +
                                                    std::string(binding->spec->params) + ") -> (" +
                                                    std::string(binding->spec->results) + ")"};
      break;
    }
    if (!binding->spec) {
      const bool known_module = mod == kEnv || mod == kWasi;
      if (!known_module || results.size() > 1 || (results.size() == 1 && results != "i")) {
        failure = PluginError{FailureKind::kLoad, "plugin '" + plugin_name + "' imports " + what +
                                                      ", which ember does not provide"};
        break;
      }
      binding->unimplemented_result =
          mod == kEnv ? static_cast<std::int32_t>(WasmResult::kUnimplemented) : kWasiEnosys;
    }
    wasmtime_extern_t item{};
    item.kind = WASMTIME_EXTERN_FUNC;
    wasmtime_func_new(context, type, Dispatch, binding.get(), nullptr, &item.of.func);
    externs.push_back(item);
    out.push_back(std::move(binding));
  }
  wasm_importtype_vec_delete(&imports);
  if (failure) return std::unexpected(*failure);
  return externs;
}

}  // namespace ember::plugins
