// Per-tenant model allow-list, written with the AssemblyScript proxy-wasm SDK
// (@solo-io/proxy-runtime 0.1.8, ABI 0.2.0) and nothing else: the SDK's RootContext and Context
// classes, its get_property, send_local_response and log. It does what model_allowlist.c does
// (docs/plugins.md, "The plugin written with an SDK"), with the same configuration, one line per
// tenant ("*" for every tenant not named; a tenant with no line and no "*" line may use no model):
//     acme: tiny, small
//     *: tiny
// A request whose tenant may not use its model is answered 403 with the OpenAI error envelope;
// at completion (proxy_on_log) one line names the tenant and the request's total tokens. The
// SDK's metric "refused" (a counter) counts the 403s: ember serves it as
// ember_plugin_counter_total{plugin="tenant_models",name="refused"}.
// The plugins file must name it "tenant_models": the SDK finds its root context by the
// `plugin_root_id` property, which ember answers with the plugin's name.
export * from "@solo-io/proxy-runtime/proxy";
import {
  RootContext, Context, registerRootContext, FilterHeadersStatusValues, GrpcStatusValues,
  LogLevelValues, send_local_response, log,
} from "@solo-io/proxy-runtime";
import {
  define_metric, increment_metric, MetricTypeValues, WasmResultValues,
} from "@solo-io/proxy-runtime/runtime";
import { get_property, get_buffer_bytes, BufferTypeValues } from "@solo-io/proxy-runtime/runtime";

// The configuration, parsed once: tenant → the models it may use.
class TenantModelsRoot extends RootContext {
  lists: Map<string, Array<string>> = new Map();
  // Defined at configure with the SDK's define_metric rather than its Counter class, whose
  // constructor throws (aborting the plugin) on a host without metrics.
  refused: u32 = 0;
  has_refused: bool = false;

  // The SDK's own onConfigure passes the configuration's size where proxy_get_buffer_bytes
  // wants a pointer (the host writes 4 bytes at that address), so the configuration is read here
  // with the SDK's get_buffer_bytes instead.
  onConfigure(configuration_size: u32): bool {
    this.lists.clear();
    if (configuration_size == 0) return false;
    if (!this.has_refused) {
      const defined = define_metric(MetricTypeValues.Counter, "refused");
      this.has_refused = defined.result == WasmResultValues.Ok;
      this.refused = defined.metric_id;
    }
    const bytes = get_buffer_bytes(BufferTypeValues.PluginConfiguration, 0, configuration_size);
    const lines = String.UTF8.decode(bytes).split("\n");
    for (let i = 0; i < lines.length; ++i) {
      const line = lines[i];
      const colon = line.indexOf(":");
      if (colon < 0) continue;
      const tenant = line.substring(0, colon).trim();
      const items = line.substring(colon + 1).split(",");
      const models = new Array<string>();
      for (let j = 0; j < items.length; ++j) {
        const model = items[j].trim();
        if (model.length > 0) models.push(model);
      }
      // The first line for a tenant wins, as in model_allowlist.c.
      if (!this.lists.has(tenant)) this.lists.set(tenant, models);
    }
    return true;
  }

  // Whether `tenant` (or, with no line for it, "*") may use `model`.
  allowed(tenant: string, model: string): bool {
    if (this.lists.has(tenant)) return this.lists.get(tenant).includes(model);
    if (this.lists.has("*")) return this.lists.get("*").includes(model);
    return false;
  }

  createContext(context_id: u32): Context {
    return new TenantModels(context_id, this);
  }
}

function property(path: string): string {
  return String.UTF8.decode(get_property(path));
}

// One request.
class TenantModels extends Context {
  constructor(context_id: u32, root_context: TenantModelsRoot) {
    super(context_id, root_context);
  }

  onRequestHeaders(headers: u32, end_of_stream: bool): FilterHeadersStatusValues {
    const root = this.root_context as TenantModelsRoot;
    const tenant = property("tenant");
    const model = property("model");
    if (root.allowed(tenant, model)) return FilterHeadersStatusValues.Continue;
    const body = "{\"error\":{\"message\":\"model '" + model + "' is not allowed for this " +
      "tenant\",\"type\":\"permission_error\",\"param\":\"model\",\"code\":\"model_not_allowed\"}}";
    send_local_response(403, "model_not_allowed", String.UTF8.encode(body), [],
      GrpcStatusValues.InvalidCode);
    if (root.has_refused) increment_metric(root.refused, 1);
    return FilterHeadersStatusValues.StopIteration;
  }

  // The completion point: usage properties are answered here only.
  onLog(): void {
    // Not `tenant.length > 0 ? tenant : "-"`: with that conditional, AssemblyScript 0.14's
    // reference counting released a string twice here (an abort in ~lib/rt/pure.ts).
    let tenant = property("tenant");
    if (tenant.length == 0) tenant = "-";
    log(LogLevelValues.info, "tenant_models: tenant=" + tenant + " total_tokens=" +
      property("usage.total_tokens"));
  }
}

registerRootContext((context_id: u32): RootContext => {
  return new TenantModelsRoot(context_id);
}, "tenant_models");
