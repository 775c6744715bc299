// Runtime, Plugin and Instance (plugin.h) over Wasmtime's C API: engine configuration, module
// compilation and checks, instantiation with the proxy-wasm root context lifecycle, and the
// per-request callbacks with their fuel and memory limits.
#include <wasmtime.h>

#include <algorithm>
#include <array>
#include <cstring>
#include <set>
#include <string>

#include "plugins/plugin.h"
#include "plugins/wasm_internal.h"

namespace ember::plugins {
namespace {

constexpr std::uint32_t kRootContext = 1;
constexpr std::array<std::string_view, 2> kAbiVersions = {"proxy_abi_version_0_2_1",
                                                          "proxy_abi_version_0_2_0"};
constexpr std::array<std::string_view, 2> kAllocators = {"proxy_on_memory_allocate", "malloc"};

std::string ByteVecString(const wasm_byte_vec_t& vec) {
  std::string s(vec.data, vec.size);
  while (!s.empty() && s.back() == '\0') s.pop_back();
  return s;
}

// An exported function and its arity, looked up once per instantiation.
struct Export {
  wasmtime_func_t func{};
  std::size_t params = 0;
  std::size_t results = 0;
  bool present = false;
};

std::string Name(const wasm_name_t* name) { return std::string(name->data, name->size); }

}  // namespace

std::string_view FailureKindName(FailureKind kind) {
  switch (kind) {
    case FailureKind::kLoad:
      return "load";
    case FailureKind::kCpuLimit:
      return "cpu_limit";
    case FailureKind::kStackOverflow:
      return "stack_overflow";
    case FailureKind::kMemoryLimit:
      return "memory_limit";
    case FailureKind::kOutOfBounds:
      return "out_of_bounds";
    case FailureKind::kTrap:
      return "trap";
    case FailureKind::kAbi:
      return "abi";
  }
  return "unknown";
}

PluginError TrapError(const std::string& plugin, std::string_view during, wasm_trap_t* trap) {
  wasm_byte_vec_t message;
  wasm_trap_message(trap, &message);
  std::string text = ByteVecString(message);
  wasm_byte_vec_delete(&message);
  FailureKind kind = FailureKind::kTrap;
  wasmtime_trap_code_t code;
  if (wasmtime_trap_code(trap, &code)) {
    switch (code) {
      case WASMTIME_TRAP_CODE_OUT_OF_FUEL:
        kind = FailureKind::kCpuLimit;
        break;
      case WASMTIME_TRAP_CODE_STACK_OVERFLOW:
        kind = FailureKind::kStackOverflow;
        break;
      case WASMTIME_TRAP_CODE_MEMORY_OUT_OF_BOUNDS:
        kind = FailureKind::kOutOfBounds;
        break;
      default:
        break;
    }
  }
  wasm_trap_delete(trap);
  if (kind == FailureKind::kCpuLimit) text = "exceeded its CPU limit (fuel per call)";
  return PluginError{kind,
                     "plugin '" + plugin + "' trapped in " + std::string(during) + ": " + text};
}

PluginError ErrorError(const std::string& plugin, std::string_view during,
                       wasmtime_error_t* error) {
  wasm_name_t message;
  wasmtime_error_message(error, &message);
  std::string text = ByteVecString(message);
  wasm_byte_vec_delete(&message);
  wasmtime_error_delete(error);
  return PluginError{FailureKind::kTrap,
                     "plugin '" + plugin + "' failed in " + std::string(during) + ": " + text};
}

// ---- Runtime -------------------------------------------------------------------------------

Runtime::Impl::~Impl() {
  if (engine) wasm_engine_delete(engine);
}
Runtime::Runtime(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Runtime::~Runtime() = default;

Result<std::shared_ptr<Runtime>> Runtime::Create() {
  wasm_config_t* config = wasm_config_new();
  if (!config) return Internal("could not create a Wasmtime configuration");
  wasmtime_config_consume_fuel_set(config, true);
  // No SIGSEGV/SIGILL handlers in the process: explicit bounds checks instead of guard pages
  // (docs/plugins.md, "Traps without signal handlers").
  wasmtime_config_signals_based_traps_set(config, false);
  wasmtime_config_cranelift_opt_level_set(config, WASMTIME_OPT_LEVEL_SPEED);
  wasm_engine_t* engine = wasm_engine_new_with_config(config);  // takes the config
  if (!engine) return Internal("could not create the Wasmtime engine");
  auto impl = std::make_unique<Impl>();
  impl->engine = engine;
  return std::shared_ptr<Runtime>(new Runtime(std::move(impl)));
}

// ---- Plugin --------------------------------------------------------------------------------

Plugin::Impl::~Impl() {
  if (module) wasmtime_module_delete(module);
}
Plugin::Plugin(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Plugin::~Plugin() = default;
const std::string& Plugin::name() const { return impl_->spec.name; }
const Limits& Plugin::limits() const { return impl_->spec.limits; }

PluginResult<std::shared_ptr<const Plugin>> Plugin::Compile(std::shared_ptr<Runtime> runtime,
                                                            PluginSpec spec) {
  const std::string name = spec.name;
  auto load_error = [&](std::string message) {
    return std::unexpected(PluginError{FailureKind::kLoad, "plugin '" + name + "': " + message});
  };
  wasm_byte_vec_t binary{};
  const bool is_binary = spec.wasm.size() >= 4 && std::memcmp(spec.wasm.data(), "\0asm", 4) == 0;
  if (!is_binary) {
    if (wasmtime_error_t* error = wasmtime_wat2wasm(spec.wasm.data(), spec.wasm.size(), &binary)) {
      return std::unexpected(
          PluginError{FailureKind::kLoad, ErrorError(name, "parsing", error).message});
    }
  }
  const auto* bytes = is_binary ? reinterpret_cast<const std::uint8_t*>(spec.wasm.data())
                                : reinterpret_cast<const std::uint8_t*>(binary.data);
  const std::size_t size = is_binary ? spec.wasm.size() : binary.size;
  wasmtime_module_t* module = nullptr;
  wasmtime_error_t* error = wasmtime_module_new(runtime->impl().engine, bytes, size, &module);
  if (!is_binary) wasm_byte_vec_delete(&binary);
  if (error) {
    return std::unexpected(
        PluginError{FailureKind::kLoad, ErrorError(name, "compiling", error).message});
  }
  auto impl = std::make_unique<Impl>();
  impl->runtime = std::move(runtime);
  impl->spec = std::move(spec);
  impl->module = module;

  wasm_exporttype_vec_t exports;
  wasmtime_module_exports(module, &exports);
  bool memory = false, abi = false, allocator = false, context_create = false;
  for (std::size_t i = 0; i < exports.size; ++i) {
    const std::string export_name = Name(wasm_exporttype_name(exports.data[i]));
    memory |= export_name == "memory";
    context_create |= export_name == "proxy_on_context_create";
    for (auto v : kAbiVersions) abi |= export_name == v;
    for (auto a : kAllocators) allocator |= export_name == a;
  }
  wasm_exporttype_vec_delete(&exports);
  if (!abi) {
    return load_error(
        "does not export proxy_abi_version_0_2_1 (or _0_2_0): not a proxy-wasm 0.2 plugin");
  }
  if (!memory) return load_error("does not export its linear memory as 'memory'");
  if (!allocator) return load_error("exports neither proxy_on_memory_allocate nor malloc");
  if (!context_create) return load_error("does not export proxy_on_context_create");

  std::shared_ptr<const Plugin> plugin(new Plugin(std::move(impl)));
  // One trial instantiation: unsupported imports and a configuration the plugin rejects are
  // load errors, not the first request's.
  auto trial = Instance::Create(plugin);
  if (!trial) return std::unexpected(PluginError{FailureKind::kLoad, trial.error().message});
  return plugin;
}

// ---- Instance ------------------------------------------------------------------------------

struct Instance::Impl {
  std::shared_ptr<const Plugin> plugin;
  wasmtime_store_t* store = nullptr;
  std::unique_ptr<HostState> host;
  std::vector<std::unique_ptr<Binding>> bindings;
  wasmtime_instance_t instance{};
  Export on_context_create, on_vm_start, on_configure, on_request_headers, on_request_body, on_done,
      on_log, on_delete, on_response_headers, on_response_body, on_tick;
  // Never reset: a context id is not reused after a rebuild, so a completion for a context of
  // the previous instantiation cannot reach a new one's.
  std::uint32_t next_context = kRootContext + 1;
  std::set<std::uint32_t> live_contexts;  // created by OnRequest, not yet completed
  bool broken = false;
  std::uint64_t rebuilds = 0;

  ~Impl() { Destroy(); }
  const std::string& name() const { return plugin->name(); }
  wasmtime_context_t* context() const { return wasmtime_store_context(store); }

  void Destroy() {
    if (store) wasmtime_store_delete(store);
    store = nullptr;
    bindings.clear();
    host.reset();
  }

  Export Lookup(std::string_view export_name) {
    Export e;
    wasmtime_extern_t item;
    if (!wasmtime_instance_export_get(context(), &instance, export_name.data(), export_name.size(),
                                      &item) ||
        item.kind != WASMTIME_EXTERN_FUNC) {
      return e;
    }
    e.func = item.of.func;
    wasm_functype_t* type = wasmtime_func_type(context(), &e.func);
    e.params = wasm_functype_params(type)->size;
    e.results = wasm_functype_results(type)->size;
    wasm_functype_delete(type);
    e.present = true;
    return e;
  }

  // Calls a callback with fresh fuel. Returns its i32 result (0 when it has none).
  PluginResult<std::int32_t> Call(const Export& e, std::string_view what,
                                  std::initializer_list<std::int32_t> args) {
    if (e.params != args.size() || e.results > 1) {
      broken = true;
      return std::unexpected(PluginError{
          FailureKind::kAbi, "plugin '" + name() + "' exports " + std::string(what) + " with " +
                                 std::to_string(e.params) + " parameters and " +
                                 std::to_string(e.results) + " results; proxy-wasm 0.2.1 has " +
                                 std::to_string(args.size()) + " and at most 1"});
    }
    std::array<wasmtime_val_t, 8> params{};
    std::size_t n = 0;
    for (std::int32_t a : args) {
      params[n].kind = WASMTIME_I32;
      params[n++].of.i32 = a;
    }
    wasmtime_val_t result{};
    if (wasmtime_error_t* error =
            wasmtime_context_set_fuel(context(), plugin->limits().fuel_per_call)) {
      return std::unexpected(ErrorError(name(), what, error));
    }
    host->hostcall_failure.reset();
    wasm_trap_t* trap = nullptr;
    wasmtime_error_t* error =
        wasmtime_func_call(context(), &e.func, params.data(), n, &result, e.results, &trap);
    if (error || trap) {
      broken = true;
      PluginError failure = trap ? TrapError(name(), what, trap) : ErrorError(name(), what, error);
      // A hostcall that trapped on purpose (a refused allocation) knows better than the trap.
      if (host->hostcall_failure) return std::unexpected(*host->hostcall_failure);
      return std::unexpected(failure);
    }
    return e.results == 1 ? result.of.i32 : 0;
  }

  PluginResult<void> Build() {
    const Plugin::Impl& p = plugin->impl();
    store = wasmtime_store_new(p.runtime->impl().engine, nullptr, nullptr);
    const std::int64_t memory_limit = static_cast<std::int64_t>(plugin->limits().memory_bytes);
    wasmtime_store_limiter(store, memory_limit, -1, -1, -1, -1);
    host = std::make_unique<HostState>();
    host->plugin = &p;
    host->context = context();
    auto imports = BindImports(context(), p.module, name(), host.get(), bindings);
    if (!imports) return std::unexpected(imports.error());
    wasm_trap_t* trap = nullptr;
    // A module's start function (AssemblyScript's top-level code) runs inside instantiation:
    // it gets the fuel of one call, as the callbacks do (a new store has none).
    if (wasmtime_error_t* error =
            wasmtime_context_set_fuel(context(), plugin->limits().fuel_per_call)) {
      PluginError e = ErrorError(name(), "instantiation", error);
      e.kind = FailureKind::kLoad;
      return std::unexpected(e);
    }
    if (wasmtime_error_t* error = wasmtime_instance_new(context(), p.module, imports->data(),
                                                        imports->size(), &instance, &trap)) {
      PluginError e = ErrorError(name(), "instantiation", error);
      e.kind = FailureKind::kLoad;
      return std::unexpected(e);
    }
    if (trap) return std::unexpected(TrapError(name(), "instantiation", trap));
    wasmtime_extern_t item;
    if (!wasmtime_instance_export_get(context(), &instance, "memory", 6, &item) ||
        item.kind != WASMTIME_EXTERN_MEMORY) {
      return std::unexpected(
          PluginError{FailureKind::kLoad, "plugin '" + name() + "': 'memory' is not a memory"});
    }
    host->memory = item.of.memory;
    for (auto a : kAllocators) {
      if (Export e = Lookup(a); e.present && e.params == 1 && e.results == 1) {
        host->allocator = e.func;
        break;
      }
    }
    on_context_create = Lookup("proxy_on_context_create");
    on_vm_start = Lookup("proxy_on_vm_start");
    on_configure = Lookup("proxy_on_configure");
    on_request_headers = Lookup("proxy_on_request_headers");
    on_request_body = Lookup("proxy_on_request_body");
    on_response_headers = Lookup("proxy_on_response_headers");
    on_response_body = Lookup("proxy_on_response_body");
    on_done = Lookup("proxy_on_done");
    on_log = Lookup("proxy_on_log");
    on_delete = Lookup("proxy_on_delete");
    on_tick = Lookup("proxy_on_tick");
    if (Export init = Lookup("_initialize"); init.present) {
      if (auto r = Call(init, "_initialize", {}); !r) return std::unexpected(r.error());
    }
    if (auto r = Call(on_context_create, "proxy_on_context_create", {kRootContext, 0}); !r) {
      return std::unexpected(r.error());
    }
    const auto vm_size = static_cast<std::int32_t>(p.spec.vm_configuration.size());
    const auto config_size = static_cast<std::int32_t>(p.spec.configuration.size());
    if (on_vm_start.present) {
      auto r = Call(on_vm_start, "proxy_on_vm_start", {kRootContext, vm_size});
      if (!r) return std::unexpected(r.error());
      if (*r == 0) {
        return std::unexpected(
            PluginError{FailureKind::kLoad, "plugin '" + name() + "': proxy_on_vm_start failed"});
      }
    }
    if (on_configure.present) {
      auto r = Call(on_configure, "proxy_on_configure", {kRootContext, config_size});
      if (!r) return std::unexpected(r.error());
      if (*r == 0) {
        return std::unexpected(
            PluginError{FailureKind::kLoad, "plugin '" + name() + "' rejected its configuration"});
      }
    }
    broken = false;
    return {};
  }

  // A trap may have left the plugin's memory in any state: start over from the module.
  PluginResult<void> RebuildIfBroken() {
    if (!broken) return {};
    Destroy();
    ++rebuilds;
    live_contexts.clear();
    return Build();
  }
};

Instance::Instance(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Instance::~Instance() = default;
std::uint64_t Instance::rebuilds() const { return impl_->rebuilds; }

PluginResult<std::unique_ptr<Instance>> Instance::Create(std::shared_ptr<const Plugin> plugin) {
  auto impl = std::make_unique<Impl>();
  impl->plugin = std::move(plugin);
  if (auto built = impl->Build(); !built) return std::unexpected(built.error());
  return std::unique_ptr<Instance>(new Instance(std::move(impl)));
}

PluginResult<RequestOutcome> Instance::OnRequest(RequestData& request) {
  Impl& s = *impl_;
  if (auto rebuilt = s.RebuildIfBroken(); !rebuilt) return std::unexpected(rebuilt.error());
  HostState& host = *s.host;
  host.request = &request;
  host.local_response.reset();
  host.body_changed = host.headers_changed = false;
  RequestOutcome outcome;
  outcome.context_id = s.next_context++;
  const auto id = static_cast<std::int32_t>(outcome.context_id);
  host.effective_context = outcome.context_id;
  auto run = [&]() -> PluginResult<void> {
    if (auto r = s.Call(s.on_context_create, "proxy_on_context_create", {id, kRootContext}); !r) {
      return std::unexpected(r.error());
    }
    if (s.on_request_headers.present) {
      auto r = s.Call(s.on_request_headers, "proxy_on_request_headers",
                      {id, static_cast<std::int32_t>(request.headers.size()), 0});
      if (!r) return std::unexpected(r.error());
      if (*r != 0 && *r != 1) {
        return std::unexpected(PluginError{
            FailureKind::kAbi, "plugin '" + s.name() + "' returned action " + std::to_string(*r) +
                                   " from proxy_on_request_headers (0 Continue, 1 Pause)"});
      }
    }
    if (!host.local_response && s.on_request_body.present) {
      auto r = s.Call(s.on_request_body, "proxy_on_request_body",
                      {id, static_cast<std::int32_t>(request.body.size()), 1});
      if (!r) return std::unexpected(r.error());
      if (*r != 0 && *r != 1) {
        return std::unexpected(PluginError{
            FailureKind::kAbi, "plugin '" + s.name() + "' returned action " + std::to_string(*r) +
                                   " from proxy_on_request_body (0 Continue, 1 Pause)"});
      }
    }
    return {};
  };
  auto ran = run();
  host.request = nullptr;
  if (!ran) {
    s.broken = true;
    return std::unexpected(ran.error());
  }
  s.live_contexts.insert(outcome.context_id);
  outcome.local_response = std::move(host.local_response);
  outcome.body_changed = host.body_changed;
  outcome.headers_changed = host.headers_changed;
  return outcome;
}

bool Instance::HasResponseHooks() const {
  return impl_->on_response_headers.present || impl_->on_response_body.present;
}

namespace {
// One response callback: `body` true for proxy_on_response_body.
PluginResult<ResponseOutcome> RunResponse(Instance::Impl& s, std::uint32_t context_id,
                                          RequestData& request, ResponseData& response, bool body) {
  ResponseOutcome outcome;
  const Export& e = body ? s.on_response_body : s.on_response_headers;
  if (!e.present || s.broken || !s.live_contexts.contains(context_id)) return outcome;
  HostState& host = *s.host;
  host.request = &request;
  host.response = &response;
  host.body_changed = host.headers_changed = host.close_stream = false;
  host.effective_context = context_id;
  const char* what = body ? "proxy_on_response_body" : "proxy_on_response_headers";
  const std::int32_t size =
      static_cast<std::int32_t>(body ? response.body.size() : response.headers.size());
  auto r =
      s.Call(e, what,
             {static_cast<std::int32_t>(context_id), size, body && response.end_of_stream ? 1 : 0});
  host.request = nullptr;
  host.response = nullptr;
  if (!r) return std::unexpected(r.error());
  if (*r != 0 && *r != 1) {
    s.broken = true;
    return std::unexpected(PluginError{
        FailureKind::kAbi, "plugin '" + s.name() + "' returned action " + std::to_string(*r) +
                               " from " + what + " (0 Continue, 1 Pause)"});
  }
  outcome.body_changed = host.body_changed;
  outcome.headers_changed = host.headers_changed;
  outcome.close_stream = host.close_stream;
  return outcome;
}
}  // namespace

PluginResult<ResponseOutcome> Instance::OnResponseHeaders(std::uint32_t context_id,
                                                          RequestData& request,
                                                          ResponseData& response) {
  return RunResponse(*impl_, context_id, request, response, false);
}

PluginResult<ResponseOutcome> Instance::OnResponseBody(std::uint32_t context_id,
                                                       RequestData& request,
                                                       ResponseData& response) {
  return RunResponse(*impl_, context_id, request, response, true);
}

PluginResult<void> Instance::OnComplete(std::uint32_t context_id, RequestData& request) {
  Impl& s = *impl_;
  // The context died with the instance (broken, or rebuilt since OnRequest).
  if (s.broken || s.live_contexts.erase(context_id) == 0) return {};
  HostState& host = *s.host;
  host.request = &request;
  host.effective_context = context_id;
  const auto id = static_cast<std::int32_t>(context_id);
  PluginResult<void> result;
  for (auto [e, what] : {std::pair{&s.on_done, "proxy_on_done"},
                         {&s.on_log, "proxy_on_log"},
                         {&s.on_delete, "proxy_on_delete"}}) {
    if (!e->present) continue;
    if (auto r = s.Call(*e, what, {id}); !r) {
      result = std::unexpected(r.error());
      break;
    }
  }
  host.request = nullptr;
  return result;
}

std::chrono::milliseconds Instance::TickPeriod() const {
  const Impl& s = *impl_;
  // Broken: the rebuild (at the next call) runs the configure callbacks that set it again.
  if (!s.on_tick.present || s.host == nullptr || s.host->tick_period_ms == 0) {
    return std::chrono::milliseconds(0);
  }
  return std::max(std::chrono::milliseconds(s.host->tick_period_ms), kMinTickPeriod);
}

PluginResult<void> Instance::OnTick() {
  Impl& s = *impl_;
  if (auto rebuilt = s.RebuildIfBroken(); !rebuilt) return std::unexpected(rebuilt.error());
  if (!s.on_tick.present) return {};
  s.host->effective_context = kRootContext;
  auto r = s.Call(s.on_tick, "proxy_on_tick", {static_cast<std::int32_t>(kRootContext)});
  if (!r) return std::unexpected(r.error());
  return {};
}

}  // namespace ember::plugins
