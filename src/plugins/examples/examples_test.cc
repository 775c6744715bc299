// The example plugins written in C (model_allowlist.c, pii_redact.c), compiled to wasm32-wasi by
// the build, through the real host: what a tenant and a prompt look like after them.
#include <gtest/gtest.h>

#include <fstream>
#include <future>
#include <sstream>
#include <string>

#include "plugins/config.h"
#include "plugins/hook_runner.h"
#include "plugins/plugin.h"

namespace ember::plugins {
namespace {

std::string ReadExample(const std::string& name) {
  std::ifstream in(std::string(EMBER_EXAMPLE_PLUGINS_DIR) + "/" + name + ".wasm", std::ios::binary);
  std::stringstream bytes;
  bytes << in.rdbuf();
  return bytes.str();
}

std::unique_ptr<Instance> Load(const std::string& name, std::string configuration = "") {
  static std::shared_ptr<Runtime> runtime = *Runtime::Create();
  auto plugin = Plugin::Compile(runtime, PluginSpec{.name = name,
                                                    .wasm = ReadExample(name),
                                                    .configuration = configuration,
                                                    .vm_configuration = "",
                                                    .limits = {},
                                                    .metrics = nullptr});
  EXPECT_TRUE(plugin.has_value()) << (plugin ? "" : plugin.error().message);
  if (!plugin) return nullptr;
  auto instance = Instance::Create(*plugin);
  EXPECT_TRUE(instance.has_value()) << (instance ? "" : instance.error().message);
  return instance ? std::move(*instance) : nullptr;
}

RequestData Request(std::string tenant, std::string model, std::string body = "{}") {
  return RequestData{.headers = {{":method", "POST"}, {":path", "/v1/chat/completions"}},
                     .body = std::move(body),
                     .tenant = std::move(tenant),
                     .key_id = "key-1",
                     .model = std::move(model),
                     .request_id = "req-1",
                     .completion = std::nullopt};
}

TEST(ModelAllowlistTest, ATenantGetsOnlyItsModelsAndOthersTheDefault) {
  auto allowlist = Load("model_allowlist", "acme: tiny, small\n*: tiny\n");
  ASSERT_TRUE(allowlist);
  for (auto [tenant, model] : {std::pair{"acme", "small"}, {"acme", "tiny"}, {"other", "tiny"}}) {
    RequestData request = Request(tenant, model);
    auto outcome = allowlist->OnRequest(request);
    ASSERT_TRUE(outcome.has_value()) << outcome.error().message;
    EXPECT_FALSE(outcome->local_response) << tenant << " " << model;
  }
  RequestData denied = Request("other", "small");
  auto outcome = allowlist->OnRequest(denied);
  ASSERT_TRUE(outcome.has_value()) << outcome.error().message;
  ASSERT_TRUE(outcome->local_response);
  EXPECT_EQ(outcome->local_response->status, 403);
  EXPECT_EQ(outcome->local_response->body,
            R"({"error":{"message":"model 'small' is not allowed for this tenant",)"
            R"("type":"permission_error","param":"model","code":"model_not_allowed"}})");
}

// The allow-list written with the AssemblyScript proxy-wasm SDK (assemblyscript/tenant_models.ts,
// ABI 0.2.0), unmodified SDK code through the host: built when scripts/assemblyscript.sh
// installed the SDK (EMBER_ASSEMBLYSCRIPT_PREFIX). Load names it "tenant_models", the root id
// it registers (ember answers plugin_root_id with the plugin's name).
TEST(AssemblyScriptSdkTest, TenantListsRejectWithTheEnvelopeAndOnLogReadsTheUsage) {
#ifndef EMBER_HAVE_ASSEMBLYSCRIPT_EXAMPLE
  GTEST_SKIP() << "built without EMBER_ASSEMBLYSCRIPT_PREFIX (scripts/assemblyscript.sh prefix)";
#endif
  auto plugin = Load("tenant_models", "acme: tiny, small\n*: tiny");
  ASSERT_TRUE(plugin);
  // acme has its own list; any other tenant gets "*"'s.
  for (auto [tenant, model] : {std::pair{"acme", "small"}, {"acme", "tiny"}, {"other", "tiny"}}) {
    RequestData request = Request(tenant, model);
    auto outcome = plugin->OnRequest(request);
    ASSERT_TRUE(outcome.has_value()) << outcome.error().message;
    EXPECT_FALSE(outcome->local_response) << tenant << " " << model;
  }
  for (auto [tenant, model] : {std::pair{"other", "small"}, {"acme", "large"}}) {
    RequestData denied = Request(tenant, model);
    auto outcome = plugin->OnRequest(denied);
    ASSERT_TRUE(outcome.has_value()) << outcome.error().message;
    ASSERT_TRUE(outcome->local_response) << tenant << " " << model;
    EXPECT_EQ(outcome->local_response->status, 403);
    EXPECT_EQ(outcome->local_response->body,
              std::string(R"({"error":{"message":"model ')") + model +
                  R"(' is not allowed for this tenant",)"
                  R"("type":"permission_error","param":"model","code":"model_not_allowed"}})");
    EXPECT_EQ(outcome->local_response->details, "model_not_allowed");
  }
  // The completion point: proxy_on_done, proxy_on_log (reads usage.total_tokens), proxy_on_delete.
  RequestData request = Request("acme", "small");
  auto outcome = plugin->OnRequest(request);
  ASSERT_TRUE(outcome.has_value()) << outcome.error().message;
  request.completion = CompletionData{.prompt_tokens = 5,
                                      .completion_tokens = 12,
                                      .cached_tokens = 0,
                                      .cost_microdollars = std::nullopt,
                                      .finish_reason = "stop",
                                      .outcome = "finished",
                                      .http_status = 200};
  testing::internal::CaptureStderr();
  auto done = plugin->OnComplete(outcome->context_id, request);
  const std::string log = testing::internal::GetCapturedStderr();
  ASSERT_TRUE(done.has_value()) << done.error().message << log;
  EXPECT_NE(log.find("tenant_models: tenant=acme total_tokens=17"), std::string::npos) << log;
  // The instance goes on serving after its contexts were deleted: the SDK's reference counting
  // over many requests, allowed and refused, each completed.
  testing::internal::CaptureStderr();
  for (int i = 0; i < 300; ++i) {
    RequestData again = Request(i % 3 ? "acme" : "", i % 2 ? "small" : "tiny");
    auto next = plugin->OnRequest(again);
    ASSERT_TRUE(next.has_value()) << i << ": " << next.error().message;
    EXPECT_EQ(next->local_response.has_value(), i % 3 == 0 && i % 2 == 1) << i;
    again.completion = CompletionData{};
    again.completion->prompt_tokens = i;
    again.completion->outcome = "finished";
    auto completed = plugin->OnComplete(next->context_id, again);
    ASSERT_TRUE(completed.has_value()) << i << ": " << completed.error().message;
  }
  const std::string many = testing::internal::GetCapturedStderr();
  EXPECT_NE(many.find("tenant_models: tenant=- total_tokens=297"), std::string::npos);
  EXPECT_NE(many.find("tenant_models: tenant=acme total_tokens=299"), std::string::npos);
  // Under another name the SDK finds no root context for its plugin_root_id: it aborts
  // (proc_exit) in the root context's creation, and the plugin does not load.
  static std::shared_ptr<Runtime> runtime = *Runtime::Create();
  testing::internal::CaptureStderr();
  auto renamed = Plugin::Compile(runtime, PluginSpec{.name = "renamed",
                                                     .wasm = ReadExample("tenant_models"),
                                                     .configuration = "*: tiny",
                                                     .vm_configuration = "",
                                                     .limits = {},
                                                     .metrics = nullptr});
  const std::string refusal = testing::internal::GetCapturedStderr();
  EXPECT_FALSE(renamed.has_value());
  EXPECT_NE(refusal.find("Missing root context factory for root id: renamed"), std::string::npos)
      << refusal;
}

TEST(PiiRedactTest, EmailsPhonesAndCardsInStringsAreRedactedNumbersAreNot) {
  auto redact = Load("pii_redact");
  ASSERT_TRUE(redact);
  RequestData request =
      Request("acme", "tiny",
              R"({"model":"tiny","seed":12345678,"messages":[{"role":"user","content":)"
              R"("mail jane.doe@example.com or call +1 (555) 123-4567, card 4111 1111 1111 1111, )"
              R"(order 42 \"x\""}]})");
  auto outcome = redact->OnRequest(request);
  ASSERT_TRUE(outcome.has_value()) << outcome.error().message;
  EXPECT_TRUE(outcome->body_changed);
  EXPECT_EQ(request.body, R"({"model":"tiny","seed":12345678,"messages":[{"role":"user","content":)"
                          R"("mail [EMAIL] or call [PHONE], card [CARD], order 42 \"x\""}]})");
  RequestData clean = Request("acme", "tiny", R"({"prompt":"nothing to hide"})");
  auto untouched = redact->OnRequest(clean);
  ASSERT_TRUE(untouched.has_value());
  EXPECT_FALSE(untouched->body_changed);
  EXPECT_EQ(clean.body, R"({"prompt":"nothing to hide"})");
}

// The chain of a plugins file on the runner's workers: the allow-list first, then redaction.
TEST(HookRunnerTest, AChainRejectsOrRewritesOffTheCallersThread) {
  auto config = ParsePluginsConfig(R"(
[[plugin]]
name = "allowlist"
path = "model_allowlist.wasm"
configuration = "*: tiny"
[[plugin]]
name = "redact"
path = "pii_redact.wasm"
failure = "fail-open"
[[chain]]
route = "/v1/chat/completions"
plugins = "allowlist, redact"
)",
                                   "plugins.toml");
  ASSERT_TRUE(config.has_value()) << config.error().message;
  auto runner = HookRunner::Create(*config, EMBER_EXAMPLE_PLUGINS_DIR, 2);
  ASSERT_TRUE(runner.has_value()) << runner.error().message;
  EXPECT_TRUE((*runner)->Applies("/v1/chat/completions", "acme"));
  EXPECT_FALSE((*runner)->Applies("/v1/embeddings", "acme"));
  auto run = [&](RequestData request) {
    std::promise<RequestVerdict> promise;
    (*runner)->RunRequest("/v1/chat/completions", std::move(request),
                          [&](RequestVerdict v) { promise.set_value(std::move(v)); });
    return promise.get_future().get();
  };
  RequestVerdict denied = run(Request("acme", "large", R"({"model":"large"})"));
  ASSERT_TRUE(denied.local_response);
  EXPECT_EQ(denied.local_response->status, 403);
  EXPECT_EQ(denied.decided_by, "allowlist");
  RequestVerdict redacted = run(Request("acme", "tiny", R"({"prompt":"mail a@b.org"})"));
  EXPECT_FALSE(redacted.local_response);
  EXPECT_TRUE(redacted.body_changed);
  EXPECT_EQ(redacted.request.body, R"({"prompt":"mail [EMAIL]"})");
}

// A fail-open plugin that rewrites the body and then traps: its change is undone, the chain goes
// on, and the failure is counted; a fail-closed one stops the chain with the failure.
TEST(HookRunnerTest, FailOpenUndoesTheFailedCallAndGoesOnFailClosedStops) {
  const std::string wat = std::string(testing::TempDir()) + "/rewrite_then_trap.wat";
  std::ofstream(wat) << R"((module
  (import "env" "proxy_set_buffer_bytes" (func $set (param i32 i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 16) "clobbered")
  (func (export "malloc") (param i32) (result i32) (i32.const 1024))
  (func (export "proxy_abi_version_0_2_1"))
  (func (export "proxy_on_context_create") (param i32 i32))
  (func (export "proxy_on_request_body") (param i32 i32 i32) (result i32)
    (drop (call $set (i32.const 0) (i32.const 0) (local.get 1) (i32.const 16) (i32.const 9)))
    (unreachable)))
)";
  for (const std::string policy : {"fail-open", "fail-closed"}) {
    auto config = ParsePluginsConfig("[[plugin]]\nname = \"bad\"\npath = \"" + wat +
                                         "\"\nfailure = \"" + policy +
                                         "\"\n[[plugin]]\nname = \"redact\"\npath = "
                                         "\"pii_redact.wasm\"\n[[chain]]\nroute = \"*\"\n"
                                         "plugins = \"bad, redact\"\n",
                                     "plugins.toml");
    ASSERT_TRUE(config.has_value()) << config.error().message;
    auto runner = HookRunner::Create(*config, EMBER_EXAMPLE_PLUGINS_DIR, 1);
    ASSERT_TRUE(runner.has_value()) << runner.error().message;
    std::promise<RequestVerdict> promise;
    (*runner)->RunRequest("/v1/completions",
                          Request("acme", "tiny", R"({"prompt":"mail a@b.org"})"),
                          [&](RequestVerdict v) { promise.set_value(std::move(v)); });
    RequestVerdict verdict = promise.get_future().get();
    if (policy == "fail-open") {
      EXPECT_FALSE(verdict.failure);
      EXPECT_EQ(verdict.failed_open, 1);
      EXPECT_EQ(verdict.request.body, R"({"prompt":"mail [EMAIL]"})");
    } else {
      ASSERT_TRUE(verdict.failure);
      EXPECT_EQ(verdict.decided_by, "bad");
      EXPECT_EQ(verdict.failure->kind, FailureKind::kTrap);
      EXPECT_EQ(verdict.request.body, R"({"prompt":"mail a@b.org"})");
    }
  }
}

// The usage exporter: proxy_on_log runs when the server hands the completion over (not after the
// request hook), on the worker that holds the request's context, and reads the usage properties.
TEST(UsageExportTest, OnLogRunsAtTheCompletionPointWithTheRequestsUsage) {
  auto config = ParsePluginsConfig(R"(
[[plugin]]
name = "export"
path = "usage_export.wasm"
[[chain]]
route = "*"
plugins = "export"
)",
                                   "plugins.toml");
  ASSERT_TRUE(config.has_value()) << config.error().message;
  testing::internal::CaptureStderr();
  auto runner = HookRunner::Create(*config, EMBER_EXAMPLE_PLUGINS_DIR, 2);
  ASSERT_TRUE(runner.has_value()) << runner.error().message;
  std::vector<std::shared_ptr<Flow>> flows;
  for (int i = 0; i < 6; ++i) {
    RequestData request = Request("acme", "tiny");
    request.request_id = "req-" + std::to_string(i);
    std::promise<RequestVerdict> promise;
    (*runner)->RunRequest("/v1/completions", std::move(request),
                          [&](RequestVerdict v) { promise.set_value(std::move(v)); });
    RequestVerdict verdict = promise.get_future().get();
    ASSERT_TRUE(verdict.flow);
    flows.push_back(std::move(verdict.flow));
  }
  for (int i = 0; i < 6; ++i) {
    CompletionData done{.prompt_tokens = 5,
                        .completion_tokens = 10 + i,
                        .cached_tokens = 3,
                        .cost_microdollars = 40 + i,
                        .finish_reason = "stop",
                        .outcome = "finished",
                        .http_status = 200};
    if (i == 5) {  // refused before the model: no tokens, no price, no finish reason
      done = CompletionData{};
      done.outcome = "rate_limited";
      done.http_status = 429;
    }
    (*runner)->Complete(std::move(flows[static_cast<std::size_t>(i)]), std::move(done));
  }
  runner->reset();  // drains the workers' queues
  const std::string log = testing::internal::GetCapturedStderr();
  for (int i = 0; i < 5; ++i) {
    EXPECT_NE(
        log.find("usage request=req-" + std::to_string(i) +
                 " tenant=acme model=tiny outcome=finished status=200 finish=stop prompt=5 "
                 "completion=" +
                 std::to_string(10 + i) + " cached=3 cost_microdollars=" + std::to_string(40 + i)),
        std::string::npos)
        << log;
  }
  EXPECT_NE(log.find("usage request=req-5 tenant=acme model=tiny outcome=rate_limited status=429 "
                     "finish=- prompt=0 completion=0 cached=0 cost_microdollars=- totals"),
            std::string::npos)
      << log;
  // Exactly one line per request, whichever of the two workers ran its request hook.
  std::size_t lines = 0;
  for (std::size_t at = log.find("usage request="); at != std::string::npos;
       at = log.find("usage request=", at + 1)) {
    ++lines;
  }
  EXPECT_EQ(lines, 6u) << log;
}

// Nothing runs at the completion point until the server reaches it.
TEST(UsageExportTest, NothingIsExportedBeforeTheRequestCompletes) {
  auto config = ParsePluginsConfig(
      "[[plugin]]\nname = \"export\"\npath = \"usage_export.wasm\"\n[[chain]]\nroute = \"*\"\n"
      "plugins = \"export\"\n",
      "plugins.toml");
  ASSERT_TRUE(config.has_value()) << config.error().message;
  testing::internal::CaptureStderr();
  auto runner = HookRunner::Create(*config, EMBER_EXAMPLE_PLUGINS_DIR, 1);
  ASSERT_TRUE(runner.has_value()) << runner.error().message;
  std::promise<RequestVerdict> promise;
  (*runner)->RunRequest("/v1/completions", Request("acme", "tiny"),
                        [&](RequestVerdict v) { promise.set_value(std::move(v)); });
  RequestVerdict verdict = promise.get_future().get();
  runner->reset();
  const std::string log = testing::internal::GetCapturedStderr();
  EXPECT_EQ(log.find("usage request="), std::string::npos) << log;
}

std::string Event(std::string_view text, std::string_view finish = "") {
  return std::string(R"(data: {"id":"cmpl-1","choices":[{"text":")") + std::string(text) +
         R"(","index":0,"finish_reason":)" +
         (finish.empty() ? std::string("null") : "\"" + std::string(finish) + "\"") + "}]}\n\n";
}

// Streamed events through a plugin's response hook, one per call, as the server sends them.
struct Stream {
  Instance& instance;
  RequestData request = Request("acme", "tiny");
  std::uint32_t context = 0;
  explicit Stream(Instance& i) : instance(i) {
    auto outcome = instance.OnRequest(request);
    EXPECT_TRUE(outcome.has_value());
    if (outcome) context = outcome->context_id;
  }
  // The event as the plugin left it, and whether it closed the stream.
  std::pair<std::string, bool> Send(std::string event) {
    ResponseData response{.headers = {}, .body = std::move(event), .end_of_stream = false};
    auto outcome = instance.OnResponseBody(context, request, response);
    EXPECT_TRUE(outcome.has_value()) << outcome.error().message;
    return {response.body, outcome && outcome->close_stream};
  }
};

TEST(PiiRedactTest, StreamedEventsAreRedactedATermSplitAcrossEventsIsCaught) {
  auto redact = Load("pii_redact", "terms: Lily");
  ASSERT_TRUE(redact);
  Stream stream(*redact);
  EXPECT_EQ(stream.Send(Event("a girl named Li")).first, Event("a girl named "));
  EXPECT_EQ(stream.Send(Event("ly. Mail a@b.org, L")).first, Event("[REDACTED]. Mail [EMAIL], "));
  // The choice's last event flushes what was held back ("L" began no term after all).
  EXPECT_EQ(stream.Send(Event("", "length")).first, Event("L", "length"));
  // A chat stream's last chunk has no content: the held text goes out in it.
  Stream chat(*redact);
  EXPECT_EQ(chat.Send("data: {\"choices\":[{\"delta\":{\"content\":\"hi Li\"}}]}\n\n").first,
            "data: {\"choices\":[{\"delta\":{\"content\":\"hi \"}}]}\n\n");
  EXPECT_EQ(
      chat.Send("data: {\"choices\":[{\"delta\":{},\"finish_reason\":\"stop\"}]}\n\n").first,
      "data: {\"choices\":[{\"delta\":{\"content\":\"Li\"},\"finish_reason\":\"stop\"}]}\n\n");
  EXPECT_EQ(chat.Send("data: [DONE]\n\n").first, "data: [DONE]\n\n");
}

TEST(PiiRedactTest, ANonStreamedAnswerIsRedactedWhole) {
  auto redact = Load("pii_redact");
  ASSERT_TRUE(redact);
  RequestData request = Request("acme", "tiny");
  auto created = redact->OnRequest(request);
  ASSERT_TRUE(created.has_value());
  ResponseData response{
      .headers = {{":status", "200"}},
      .body = R"({"choices":[{"text":"call 555-123-4567 now"}],"created":1712345678})",
      .end_of_stream = true};
  auto outcome = redact->OnResponseBody(created->context_id, request, response);
  ASSERT_TRUE(outcome.has_value()) << outcome.error().message;
  EXPECT_TRUE(outcome->body_changed);
  EXPECT_EQ(response.body, R"({"choices":[{"text":"call [PHONE] now"}],"created":1712345678})");
}

TEST(GuardrailTest, ABannedPhraseEndsTheStreamBeforeItEvenAcrossEvents) {
  auto guard = Load("guardrail", "park, dragon");
  ASSERT_TRUE(guard);
  Stream stream(*guard);
  EXPECT_EQ(stream.Send(Event("She played in the pa")),
            std::pair(Event("She played in the pa"), false));
  // The phrase completes in the next event: nothing of it goes out, the stream is closed.
  EXPECT_EQ(stream.Send(Event("rk all day")), std::pair(Event(""), true));
  Stream other(*guard);
  EXPECT_EQ(other.Send(Event("a red dragon flew")), std::pair(Event("a red "), true));
  Stream clean(*guard);
  EXPECT_EQ(clean.Send(Event("a quiet garden")), std::pair(Event("a quiet garden"), false));
  // No phrase configured: the plugin refuses to load (a guardrail that guards nothing).
  auto runtime = Runtime::Create();
  auto empty = Plugin::Compile(*runtime, PluginSpec{.name = "guardrail",
                                                    .wasm = ReadExample("guardrail"),
                                                    .configuration = "",
                                                    .vm_configuration = "",
                                                    .limits = {},
                                                    .metrics = nullptr});
  ASSERT_FALSE(empty.has_value());
  EXPECT_EQ(empty.error().kind, FailureKind::kLoad);
}

// The contract checker the integration tests put in front of every stream: it must refuse what
// a broken host would send (two events at once, half of one), or its passing proves nothing.
TEST(OneEventCheckTest, OneWholeEventPassesTwoOrHalfOfOneTrap) {
  auto check = Load("one_event_check");
  ASSERT_TRUE(check);
  for (const std::string& event :
       {Event("one"), std::string("event: response.output_text.delta\ndata: {}\n\n"),
        Event("one") + Event("two"), Event("half").substr(0, 20)}) {
    RequestData request = Request("acme", "tiny");
    auto created = check->OnRequest(request);
    ASSERT_TRUE(created.has_value());
    ResponseData response{.headers = {}, .body = event, .end_of_stream = false};
    auto outcome = check->OnResponseBody(created->context_id, request, response);
    const bool whole_single = event == Event("one") || event.starts_with("event: ");
    EXPECT_EQ(outcome.has_value(), whole_single) << event;
    if (!outcome) {
      EXPECT_EQ(outcome.error().kind, FailureKind::kTrap);
    }
  }
}

}  // namespace
}  // namespace ember::plugins
