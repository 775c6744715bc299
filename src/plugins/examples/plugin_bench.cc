// What the request hook costs, with the C example plugins (docs/plugins.md), one thread:
//   allowlist_pooled: one reused Instance, a request the allow-list passes (two properties
//     read, the list scanned) + the completion callbacks;
//   redact_pooled/N: one reused Instance, PII redaction over an N-byte chat body with one
//     e-mail address (body copied in, scanned, rewritten, copied out);
//   allowlist_fresh: Instance::Create (instantiation, _initialize, root context, configure)
//     + the same request: what a request would pay without instance reuse.
//   event_redact / event_guardrail: one streamed event (a completion chunk of ~140 bytes with
//     a few tokens of text) through proxy_on_response_body of a reused instance: what each
//     event of a stream pays in the plugin (PII redaction with a term, the guardrail);
//   event_round_trip: the same redaction through HookRunner::RunResponse, posted from this
//     thread and waited for (the worker hop both ways, real time): the latency an event gains.
//   build/release/src/plugins/bench_plugins [--benchmark_repetitions=5]
#include <benchmark/benchmark.h>

#include <fstream>
#include <future>
#include <sstream>
#include <string>

#include "plugins/config.h"
#include "plugins/hook_runner.h"
#include "plugins/plugin.h"

namespace ember::plugins {
namespace {

std::shared_ptr<const Plugin> Load(const std::string& name, std::string configuration) {
  static std::shared_ptr<Runtime> runtime = *Runtime::Create();
  std::ifstream in(std::string(EMBER_EXAMPLE_PLUGINS_DIR) + "/" + name + ".wasm", std::ios::binary);
  std::stringstream bytes;
  bytes << in.rdbuf();
  return *Plugin::Compile(runtime, PluginSpec{.name = name,
                                              .wasm = bytes.str(),
                                              .configuration = std::move(configuration),
                                              .vm_configuration = "",
                                              .limits = {},
                                              .metrics = nullptr});
}

RequestData Request(std::string body) {
  return RequestData{.headers = {{":method", "POST"}, {":path", "/v1/chat/completions"}},
                     .body = std::move(body),
                     .tenant = "acme",
                     .key_id = "key-1",
                     .model = "tiny",
                     .request_id = "req-1",
                     .completion = std::nullopt};
}

void RunOnce(Instance& instance, RequestData& request, benchmark::State& state) {
  auto outcome = instance.OnRequest(request);
  if (!outcome || outcome->local_response) state.SkipWithError("the hook did not pass");
  if (outcome) (void)instance.OnComplete(outcome->context_id, request);
}

void BM_AllowlistPooled(benchmark::State& state) {
  auto instance = *Instance::Create(Load("model_allowlist", "acme: tiny, small\n*: tiny"));
  for (auto _ : state) {
    RequestData request = Request(R"({"model":"tiny","messages":[]})");
    RunOnce(*instance, request, state);
  }
}
BENCHMARK(BM_AllowlistPooled);

void BM_AllowlistFresh(benchmark::State& state) {
  auto plugin = Load("model_allowlist", "acme: tiny, small\n*: tiny");
  for (auto _ : state) {
    auto instance = *Instance::Create(plugin);
    RequestData request = Request(R"({"model":"tiny","messages":[]})");
    RunOnce(*instance, request, state);
  }
}
BENCHMARK(BM_AllowlistFresh);

void BM_RedactPooled(benchmark::State& state) {
  auto instance = *Instance::Create(Load("pii_redact", ""));
  std::string text(static_cast<std::size_t>(state.range(0)), 'a');
  for (std::size_t i = 0; i < text.size(); i += 8) text[i] = ' ';
  const std::string body = R"({"model":"tiny","messages":[{"role":"user","content":"mail )"
                           R"(jane@example.com )" +
                           text + R"("}]})";
  for (auto _ : state) {
    RequestData request = Request(body);
    RunOnce(*instance, request, state);
  }
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations() * body.size()));
}
BENCHMARK(BM_RedactPooled)->Arg(256)->Arg(4096);

const std::string kEvent =
    R"(data: {"id":"cmpl-5f0c2a","object":"text_completion","created":1733400000,)"
    R"("model":"tiny","choices":[{"text":" she saw a big","index":0,"finish_reason":null}]})"
    "\n\n";

void EventThroughInstance(benchmark::State& state, const std::string& name,
                          const std::string& configuration) {
  auto instance = *Instance::Create(Load(name, configuration));
  RequestData request = Request(R"({"model":"tiny","messages":[]})");
  auto created = instance->OnRequest(request);
  if (!created) return state.SkipWithError("no context");
  for (auto _ : state) {
    ResponseData response{.headers = {}, .body = kEvent, .end_of_stream = false};
    auto outcome = instance->OnResponseBody(created->context_id, request, response);
    if (!outcome || outcome->close_stream) state.SkipWithError("the event did not pass");
  }
}
void BM_EventRedact(benchmark::State& state) {
  EventThroughInstance(state, "pii_redact", "terms: Lily");
}
BENCHMARK(BM_EventRedact);
void BM_EventGuardrail(benchmark::State& state) {
  EventThroughInstance(state, "guardrail", "park, dragon");
}
BENCHMARK(BM_EventGuardrail);

void BM_EventRoundTrip(benchmark::State& state) {
  auto config = ParsePluginsConfig(
      "[[plugin]]\nname = \"redact\"\npath = \"pii_redact.wasm\"\nconfiguration = \"terms: "
      "Lily\"\n[[chain]]\nroute = \"*\"\nplugins = \"redact\"\n",
      "plugins.toml");
  auto runner = HookRunner::Create(*config, EMBER_EXAMPLE_PLUGINS_DIR, 1);
  if (!runner) return state.SkipWithError(runner.error().message.c_str());
  std::promise<RequestVerdict> verdict;
  (*runner)->RunRequest("/v1/completions", Request("{}"),
                        [&](RequestVerdict v) { verdict.set_value(std::move(v)); });
  std::shared_ptr<Flow> flow = verdict.get_future().get().flow;
  for (auto _ : state) {
    std::promise<void> back;
    (*runner)->RunResponse(flow,
                           ResponseData{.headers = {}, .body = kEvent, .end_of_stream = false},
                           false, true, [&](ResponseVerdict) { back.set_value(); });
    back.get_future().wait();
  }
}
BENCHMARK(BM_EventRoundTrip)->UseRealTime();

}  // namespace
}  // namespace ember::plugins

BENCHMARK_MAIN();
