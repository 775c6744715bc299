// Internal to src/plugins/: the Wasmtime objects behind plugin.h, and the proxy-wasm hostcall
// table (proxy_wasm_hostcalls.cc). Runs on whichever thread owns the Instance.
#pragma once

#include <wasmtime.h>

#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "plugins/plugin.h"

namespace ember::plugins {

// proxy-wasm v0.2.1 WasmResult values returned by hostcalls.
enum class WasmResult : std::int32_t {
  kOk = 0,
  kNotFound = 1,
  kBadArgument = 2,
  kSerializationFailure = 3,
  kParseFailure = 4,
  kInvalidMemoryAccess = 6,
  kEmpty = 7,
  kInternalFailure = 10,
  kUnimplemented = 12,
};

struct Runtime::Impl {
  wasm_engine_t* engine = nullptr;
  ~Impl();
};

struct Plugin::Impl {
  std::shared_ptr<Runtime> runtime;
  PluginSpec spec;
  wasmtime_module_t* module = nullptr;
  ~Impl();
};

struct HostState;

// One import of the module, bound to its hostcall (or to the "unimplemented" stub).
struct HostcallSpec;
struct Binding {
  HostState* host = nullptr;
  const HostcallSpec* spec = nullptr;  // null: an import ember does not implement
  std::int32_t unimplemented_result = 0;
  std::string name;
};

// Everything the hostcalls reach: the instance's memory and allocator, the request being
// processed, what the plugin asked for.
struct HostState {
  const Plugin::Impl* plugin = nullptr;
  wasmtime_context_t* context = nullptr;  // the store's, or the calling one inside a hostcall
  wasmtime_memory_t memory{};
  wasmtime_func_t allocator{};
  RequestData* request = nullptr;    // set during a request's callbacks
  ResponseData* response = nullptr;  // set during the response callbacks
  bool close_stream = false;
  std::optional<LocalResponse> local_response;
  bool body_changed = false;
  bool headers_changed = false;
  std::uint32_t effective_context = 0;
  std::uint32_t tick_period_ms = 0;             // proxy_set_tick_period_milliseconds; 0: no ticks
  std::optional<PluginError> hostcall_failure;  // why a hostcall trapped (allocator, limits)

  // The bytes [ptr, ptr+len) of linear memory, or nothing when they are outside it.
  std::optional<std::span<std::uint8_t>> Memory(std::uint32_t ptr, std::uint32_t len);
  bool WriteU32(std::uint32_t ptr, std::uint32_t value);
  // Copies `bytes` into memory the plugin allocated; returns its address (0 for no bytes), or
  // nothing after a failed allocation (hostcall_failure says why).
  std::optional<std::uint32_t> CopyIn(wasmtime_context_t* context, std::string_view bytes);
};

// Binds every import of `module` to a hostcall, or refuses it (kLoad) when it is not a function
// ember can stand in for. The bindings must outlive the store.
PluginResult<std::vector<wasmtime_extern_t>> BindImports(
    wasmtime_context_t* context, const wasmtime_module_t* module, const std::string& plugin_name,
    HostState* host, std::vector<std::unique_ptr<Binding>>& out);

// A Wasmtime error or trap as a PluginError of the right kind, naming the plugin.
PluginError TrapError(const std::string& plugin, std::string_view during, wasm_trap_t* trap);
PluginError ErrorError(const std::string& plugin, std::string_view during, wasmtime_error_t* error);

}  // namespace ember::plugins
