// The proxy-wasm host against small plugins written as WebAssembly text: what a plugin can do
// to a request (pass, reject, rewrite, read properties and headers) and what a bad plugin gets
// (each failure a PluginError of the right kind; the instance rebuilds and serves again).
#include "plugins/plugin.h"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <string>
#include <thread>

#include "plugins/hook_runner.h"

namespace ember::plugins {
namespace {

// A plugin: the hostcall imports, a bump allocator over one growing memory, the ABI marker and
// the root context callbacks, plus `body` (functions and data of the test).
std::string Wat(const std::string& body, const std::string& extra_imports = "") {
  return R"((module
  (import "env" "proxy_log" (func $log (param i32 i32 i32) (result i32)))
  (import "env" "proxy_send_local_response"
    (func $send (param i32 i32 i32 i32 i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_get_buffer_bytes" (func $get_buffer (param i32 i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_set_buffer_bytes" (func $set_buffer (param i32 i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_get_property" (func $get_property (param i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_get_header_map_value"
    (func $get_header (param i32 i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_replace_header_map_value"
    (func $replace_header (param i32 i32 i32 i32 i32) (result i32)))
)" + extra_imports +
         R"(
  (memory (export "memory") 1)
  (global $heap (mut i32) (i32.const 4096))
  (func $malloc (export "malloc") (param $n i32) (result i32) (local $p i32)
    (local.set $p (global.get $heap))
    (global.set $heap (i32.add (global.get $heap) (local.get $n)))
    (block $done (loop $grow
      (br_if $done (i32.le_u (global.get $heap) (i32.mul (memory.size) (i32.const 65536))))
      (if (i32.eq (memory.grow (i32.const 1)) (i32.const -1)) (then (return (i32.const 0))))
      (br $grow)))
    (local.get $p))
  (func (export "proxy_abi_version_0_2_1"))
  (func (export "proxy_on_context_create") (param i32 i32))
  ;; answers a local response with status $status and body [$ptr, $ptr+$len)
  (func $reply (param $status i32) (param $ptr i32) (param $len i32)
    (drop (call $send (local.get $status) (i32.const 0) (i32.const 0)
                      (local.get $ptr) (local.get $len) (i32.const 0) (i32.const 0) (i32.const -1))))
)" + body +
         ")";
}

std::shared_ptr<Runtime> TheRuntime() {
  static std::shared_ptr<Runtime> runtime = *Runtime::Create();
  return runtime;
}

PluginResult<std::shared_ptr<const Plugin>> Load(const std::string& wat, Limits limits = {},
                                                 std::string configuration = "",
                                                 std::shared_ptr<MetricSink> metrics = nullptr) {
  return Plugin::Compile(TheRuntime(), PluginSpec{.name = "test",
                                                  .wasm = wat,
                                                  .configuration = std::move(configuration),
                                                  .vm_configuration = "",
                                                  .limits = limits,
                                                  .metrics = std::move(metrics)});
}

std::unique_ptr<Instance> Instantiate(const std::string& wat, Limits limits = {},
                                      std::shared_ptr<MetricSink> metrics = nullptr) {
  auto plugin = Load(wat, limits, "", std::move(metrics));
  EXPECT_TRUE(plugin.has_value()) << (plugin ? "" : plugin.error().message);
  if (!plugin) return nullptr;
  auto instance = Instance::Create(*plugin);
  EXPECT_TRUE(instance.has_value()) << (instance ? "" : instance.error().message);
  return instance ? std::move(*instance) : nullptr;
}

RequestData Request(std::string body = R"({"model":"tiny","prompt":"hi"})") {
  return RequestData{
      .headers = {{":method", "POST"}, {":path", "/v1/completions"}, {"x-team", "search"}},
      .body = std::move(body),
      .tenant = "acme",
      .key_id = "key-7",
      .model = "tiny",
      .request_id = "req-42",
      .completion = std::nullopt};
}

TEST(PluginTest, PassLeavesTheRequestAlone) {
  auto instance = Instantiate(Wat(R"(
  (func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32) (i32.const 0))
  (func (export "proxy_on_request_body") (param i32 i32 i32) (result i32) (i32.const 0)))"));
  ASSERT_TRUE(instance);
  RequestData request = Request();
  auto outcome = instance->OnRequest(request);
  ASSERT_TRUE(outcome.has_value()) << outcome.error().message;
  EXPECT_FALSE(outcome->local_response);
  EXPECT_FALSE(outcome->body_changed);
  EXPECT_EQ(request.body, R"({"model":"tiny","prompt":"hi"})");
  EXPECT_TRUE(instance->OnComplete(outcome->context_id, request).has_value());
}

// The response hooks: map 2 is the response's headers, proxy_close_stream ends a stream, and
// what only makes sense in one phase answers BadArgument (2) in the other.
TEST(PluginTest, ResponseHooksChangeHeadersAndCloseTheStream) {
  auto instance = Instantiate(Wat(R"(
  (data (i32.const 100) "x-guardon")
  (func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32)
    (if (i32.ne (call $close (i32.const 1)) (i32.const 2)) (then (unreachable)))
    (i32.const 0))
  (func (export "proxy_on_response_headers") (param i32 i32 i32) (result i32)
    (if (call $replace_header (i32.const 2) (i32.const 100) (i32.const 7) (i32.const 107)
                              (i32.const 2))
      (then (unreachable)))
    (if (i32.ne (call $send (i32.const 403) (i32.const 0) (i32.const 0) (i32.const 0)
                            (i32.const 0) (i32.const 0) (i32.const 0) (i32.const -1))
                (i32.const 2))
      (then (unreachable)))
    (i32.const 0))
  (func (export "proxy_on_response_body") (param i32 i32 i32) (result i32)
    (if (call $close (i32.const 1)) (then (unreachable)))
    (i32.const 0)))",
                                  R"(
  (import "env" "proxy_close_stream" (func $close (param i32) (result i32))))"));
  ASSERT_TRUE(instance);
  RequestData request = Request();
  auto created = instance->OnRequest(request);
  ASSERT_TRUE(created.has_value()) << created.error().message;
  ResponseData response{.headers = {{":status", "200"}}, .body = "", .end_of_stream = false};
  auto headers = instance->OnResponseHeaders(created->context_id, request, response);
  ASSERT_TRUE(headers.has_value()) << headers.error().message;
  EXPECT_TRUE(headers->headers_changed);
  EXPECT_FALSE(headers->close_stream);
  EXPECT_EQ(response.headers, (Headers{{":status", "200"}, {"x-guard", "on"}}));
  response.body = "data: {}\n\n";
  auto body = instance->OnResponseBody(created->context_id, request, response);
  ASSERT_TRUE(body.has_value()) << body.error().message;
  EXPECT_TRUE(body->close_stream);
  EXPECT_EQ(response.body, "data: {}\n\n");
  // After the completion the context is gone: the response passes untouched.
  ASSERT_TRUE(instance->OnComplete(created->context_id, request).has_value());
  auto late = instance->OnResponseBody(created->context_id, request, response);
  ASSERT_TRUE(late.has_value());
  EXPECT_FALSE(late->close_stream);
}

TEST(PluginTest, RejectAnswersWithTheStatusAndBodyThePluginChose) {
  auto instance = Instantiate(Wat(R"(
  (data (i32.const 100) "model not allowed")
  (func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32)
    (call $reply (i32.const 403) (i32.const 100) (i32.const 17)) (i32.const 1))
  (func (export "proxy_on_request_body") (param i32 i32 i32) (result i32) (unreachable)))"));
  ASSERT_TRUE(instance);
  RequestData request = Request();
  auto outcome = instance->OnRequest(request);
  ASSERT_TRUE(outcome.has_value()) << outcome.error().message;
  ASSERT_TRUE(outcome->local_response);
  EXPECT_EQ(outcome->local_response->status, 403);
  EXPECT_EQ(outcome->local_response->body, "model not allowed");
}

// The body hook sees the whole body with end_of_stream true; get_buffer_bytes reads it and
// set_buffer_bytes at (length, 0) appends: the body comes back doubled.
TEST(PluginTest, BodyHookReadsTheWholeBodyAndRewritesIt) {
  auto instance = Instantiate(Wat(R"(
  (func (export "proxy_on_request_body") (param $ctx i32) (param $size i32) (param $eos i32)
    (result i32)
    (if (i32.eqz (local.get $eos)) (then (unreachable)))
    (if (call $get_buffer (i32.const 0) (i32.const 0) (local.get $size) (i32.const 8) (i32.const 12))
      (then (unreachable)))
    (drop (call $set_buffer (i32.const 0) (local.get $size) (i32.const 0)
                            (i32.load (i32.const 8)) (i32.load (i32.const 12))))
    (i32.const 0)))"));
  ASSERT_TRUE(instance);
  RequestData request = Request("abc");
  auto outcome = instance->OnRequest(request);
  ASSERT_TRUE(outcome.has_value()) << outcome.error().message;
  EXPECT_TRUE(outcome->body_changed);
  EXPECT_EQ(request.body, "abcabc");
}

TEST(PluginTest, PropertiesNameTheTenantKeyModelAndRequest) {
  auto instance = Instantiate(Wat(R"(
  (data (i32.const 200) "tenant\00key_id\00model\00request_id\00request\00id")
  (func $prop (param $ptr i32) (param $len i32)
    (if (call $get_property (local.get $ptr) (local.get $len) (i32.const 8) (i32.const 12))
      (then (unreachable)))
    (drop (call $log (i32.const 2) (i32.load (i32.const 8)) (i32.load (i32.const 12)))))
  (func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32)
    (call $prop (i32.const 200) (i32.const 6))
    (call $prop (i32.const 207) (i32.const 6))
    (call $prop (i32.const 214) (i32.const 5))
    ;; the answer: request.id as a two-segment path, in the body of a local response
    (if (call $get_property (i32.const 231) (i32.const 10) (i32.const 8) (i32.const 12))
      (then (unreachable)))
    (call $reply (i32.const 200) (i32.load (i32.const 8)) (i32.load (i32.const 12)))
    (i32.const 0)))"));
  ASSERT_TRUE(instance);
  RequestData request = Request();
  auto outcome = instance->OnRequest(request);
  ASSERT_TRUE(outcome.has_value()) << outcome.error().message;
  ASSERT_TRUE(outcome->local_response);
  EXPECT_EQ(outcome->local_response->body, "req-42");
}

TEST(PluginTest, HeaderValuesCanBeReadAndReplaced) {
  auto instance = Instantiate(Wat(R"(
  (data (i32.const 300) "x-team")
  (data (i32.const 310) "x-route")
  (func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32)
    (if (call $get_header (i32.const 0) (i32.const 300) (i32.const 6) (i32.const 8) (i32.const 12))
      (then (unreachable)))
    (drop (call $replace_header (i32.const 0) (i32.const 310) (i32.const 7)
                                (i32.load (i32.const 8)) (i32.load (i32.const 12))))
    (i32.const 0)))"));
  ASSERT_TRUE(instance);
  RequestData request = Request();
  auto outcome = instance->OnRequest(request);
  ASSERT_TRUE(outcome.has_value()) << outcome.error().message;
  EXPECT_TRUE(outcome->headers_changed);
  EXPECT_EQ(request.headers.back(), (std::pair<std::string, std::string>{"x-route", "search"}));
}

TEST(PluginTest, AConfigurationThePluginRejectsIsALoadError) {
  const std::string wat = Wat(R"(
  (func (export "proxy_on_configure") (param i32) (param $size i32) (result i32)
    (i32.ne (local.get $size) (i32.const 6))))");
  auto rejected = Load(wat, {}, "strict");
  ASSERT_FALSE(rejected.has_value());
  EXPECT_EQ(rejected.error().kind, FailureKind::kLoad);
  EXPECT_EQ(rejected.error().message, "plugin 'test' rejected its configuration");
  EXPECT_TRUE(Load(wat, {}, "lenient config").has_value());
}

TEST(PluginTest, OneInstanceServesManyRequestsWithoutRebuilding) {
  auto instance = Instantiate(Wat(R"(
  (func (export "proxy_on_request_body") (param $ctx i32) (param $size i32) (param i32)
    (result i32)
    (if (call $get_buffer (i32.const 0) (i32.const 0) (local.get $size) (i32.const 8) (i32.const 12))
      (then (unreachable)))
    (i32.const 0)))"));
  ASSERT_TRUE(instance);
  for (int i = 0; i < 2000; ++i) {
    RequestData request = Request();
    auto outcome = instance->OnRequest(request);
    ASSERT_TRUE(outcome.has_value()) << i << ": " << outcome.error().message;
    ASSERT_TRUE(instance->OnComplete(outcome->context_id, request).has_value());
  }
  EXPECT_EQ(instance->rebuilds(), 0u);
}

// ---- bad plugins -----------------------------------------------------------------------------

// Loops forever when the body is 4 bytes long: the fuel limit stops it, the instance rebuilds
// and the next request is served.
// A sink that keeps what the metric hostcalls asked for (the server's is plugin_metrics.cc).
class FakeSink : public MetricSink {
 public:
  std::optional<std::uint32_t> Define(Type type, std::string_view name) override {
    std::lock_guard lock(mu);
    defined.emplace_back(type, std::string(name));
    if (name == "refused") return std::nullopt;
    return static_cast<std::uint32_t>(defined.size() + 6);
  }
  bool Increment(std::uint32_t id, std::int64_t offset) override {
    std::lock_guard lock(mu);
    increments.emplace_back(id, offset);
    return true;
  }
  bool Record(std::uint32_t id, std::uint64_t value) override {
    std::lock_guard lock(mu);
    records.emplace_back(id, value);
    return id != 99;
  }
  std::optional<std::uint64_t> Get(std::uint32_t id) override {
    if (id != 7) return std::nullopt;
    return 0x1122334455667788ull;
  }
  std::mutex mu;  // the runner's workers call it at once
  std::vector<std::pair<Type, std::string>> defined;
  std::vector<std::pair<std::uint32_t, std::int64_t>> increments;
  std::vector<std::pair<std::uint32_t, std::uint64_t>> records;
};

// The metric hostcalls reach the plugin's sink with the ids it gave; the plugin checks each
// WasmResult and the value proxy_get_metric wrote (unreachable on a surprise).
constexpr char kMetricsWat[] = R"(
  (data (i32.const 100) "hitsrefused")
  (func (export "proxy_on_request_body") (param i32 i32 i32) (result i32)
    (local $r i32)
    (local.set $r (call $define (i32.const 0) (i32.const 100) (i32.const 4) (i32.const 200)))
    (if (i32.eq (local.get $r) (i32.const 12)) (then (return (i32.const 0))))  ;; no sink
    (if (local.get $r) (then (unreachable)))
    (if (i32.ne (i32.load (i32.const 200)) (i32.const 7)) (then (unreachable)))
    (if (call $increment (i32.load (i32.const 200)) (i64.const 5)) (then (unreachable)))
    (if (call $record (i32.const 8) (i64.const -1)) (then (unreachable)))
    (if (i32.ne (call $record (i32.const 99) (i64.const 1)) (i32.const 2)) (then (unreachable)))
    (if (call $get (i32.const 7) (i32.const 300)) (then (unreachable)))
    (if (i64.ne (i64.load (i32.const 300)) (i64.const 0x1122334455667788)) (then (unreachable)))
    (if (i32.ne (call $get (i32.const 8) (i32.const 300)) (i32.const 2)) (then (unreachable)))
    (if (i32.ne (call $define (i32.const 2) (i32.const 104) (i32.const 7) (i32.const 200))
                (i32.const 2))
      (then (unreachable)))
    (if (i32.ne (call $define (i32.const 3) (i32.const 100) (i32.const 4) (i32.const 200))
                (i32.const 2))
      (then (unreachable)))
    (if (i32.ne (call $define (i32.const 0) (i32.const 100) (i32.const 4) (i32.const 70000))
                (i32.const 6))
      (then (unreachable)))
    (i32.const 0)))";
constexpr char kMetricsImports[] = R"(
  (import "env" "proxy_define_metric" (func $define (param i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_increment_metric" (func $increment (param i32 i64) (result i32)))
  (import "env" "proxy_record_metric" (func $record (param i32 i64) (result i32)))
  (import "env" "proxy_get_metric" (func $get (param i32 i32) (result i32))))";

TEST(PluginTest, MetricHostcallsReachThePluginsSink) {
  auto sink = std::make_shared<FakeSink>();
  auto instance = Instantiate(Wat(kMetricsWat, kMetricsImports), {}, sink);
  ASSERT_TRUE(instance);
  RequestData request = Request();
  auto outcome = instance->OnRequest(request);
  ASSERT_TRUE(outcome.has_value()) << outcome.error().message;
  using Type = MetricSink::Type;
  // The third define (type 3) never reaches the sink; the fourth's id cannot be written back.
  EXPECT_EQ(sink->defined, (std::vector<std::pair<Type, std::string>>{{Type::kCounter, "hits"},
                                                                      {Type::kHistogram, "refused"},
                                                                      {Type::kCounter, "hits"}}));
  EXPECT_EQ(sink->increments, (std::vector<std::pair<std::uint32_t, std::int64_t>>{{7, 5}}));
  // An i64 -1 arrives as the u64 it is in proxy-wasm's signature.
  EXPECT_EQ(sink->records, (std::vector<std::pair<std::uint32_t, std::uint64_t>>{
                               {8, 0xffffffffffffffffull}, {99, 1}}));
}

TEST(PluginTest, MetricHostcallsWithoutASinkAnswerUnimplemented) {
  auto instance = Instantiate(Wat(kMetricsWat, kMetricsImports));
  ASSERT_TRUE(instance);
  RequestData request = Request();
  auto outcome = instance->OnRequest(request);
  EXPECT_TRUE(outcome.has_value()) << outcome.error().message;  // it saw 12 and passed
}

// Asks for a tick every 20 ms at configure and counts each tick in metric 7 of its sink.
constexpr char kTickWat[] = R"(
  (func (export "proxy_on_configure") (param i32 i32) (result i32)
    (drop (call $tick_period (i32.const 20)))
    (i32.const 1))
  (func (export "proxy_on_tick") (param $root i32)
    (if (i32.ne (local.get $root) (i32.const 1)) (then (unreachable)))
    (drop (call $increment (i32.const 7) (i64.const 1)))))";
constexpr char kTickImports[] = R"(
  (import "env" "proxy_set_tick_period_milliseconds" (func $tick_period (param i32) (result i32)))
  (import "env" "proxy_increment_metric" (func $increment (param i32 i64) (result i32))))";

TEST(PluginTest, TheRootContextTicksAtThePeriodItAskedFor) {
  auto sink = std::make_shared<FakeSink>();
  auto instance = Instantiate(Wat(kTickWat, kTickImports), {}, sink);
  ASSERT_TRUE(instance);
  EXPECT_EQ(instance->TickPeriod(), std::chrono::milliseconds(20));
  ASSERT_TRUE(instance->OnTick().has_value());
  ASSERT_TRUE(instance->OnTick().has_value());
  EXPECT_EQ(sink->increments.size(), 2u);
  // A plugin that asked for no ticks has no period.
  auto quiet = Instantiate(Wat(""));
  ASSERT_TRUE(quiet);
  EXPECT_EQ(quiet->TickPeriod(), std::chrono::milliseconds(0));
}

// The runner's workers call proxy_on_tick when due, between requests, each on its own instance.
class TickMetrics : public HookMetrics {
 public:
  void Call(std::size_t, Hook hook, std::chrono::nanoseconds, const PluginError*) override {
    if (hook == Hook::kTick) ++ticks;
  }
  void Rejected(std::size_t) override {}
  void StreamClosed(std::size_t) override {}
  std::shared_ptr<MetricSink> Sink(std::size_t) override { return sink; }
  std::shared_ptr<FakeSink> sink = std::make_shared<FakeSink>();
  std::atomic<int> ticks{0};
};

TEST(HookRunnerTest, WorkersTickEachInstanceAtItsPeriod) {
  const auto dir = std::filesystem::temp_directory_path() / "ember-plugin-tick-test";
  std::filesystem::create_directories(dir);
  std::ofstream(dir / "ticker.wat") << Wat(kTickWat, kTickImports);
  PluginsConfig config;
  PluginEntry entry;
  entry.name = "ticker";
  entry.path = "ticker.wat";
  config.plugins.push_back(entry);
  config.chains.push_back(Chain{.route = "*", .tenant = "", .plugins = {"ticker"}});
  TickMetrics metrics;
  auto runner = HookRunner::Create(config, dir.string(), 2, &metrics);
  ASSERT_TRUE(runner.has_value()) << runner.error().message;
  // Two workers at 20 ms: about 100 ticks a second; at least a few within one, even loaded.
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (metrics.ticks < 6 && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  EXPECT_GE(metrics.ticks.load(), 6);
  runner->reset();  // joins the workers before `metrics` goes
  std::filesystem::remove_all(dir);
}

TEST(BadPluginTest, AnInfiniteLoopHitsTheCpuLimitAndTheInstanceRebuilds) {
  auto instance = Instantiate(Wat(R"(
  (func (export "proxy_on_request_body") (param i32) (param $size i32) (param i32) (result i32)
    (if (i32.eq (local.get $size) (i32.const 4)) (then (loop $forever (br $forever))))
    (i32.const 0)))"),
                              Limits{.fuel_per_call = 1'000'000});
  ASSERT_TRUE(instance);
  RequestData looping = Request("loop");
  auto failed = instance->OnRequest(looping);
  ASSERT_FALSE(failed.has_value());
  EXPECT_EQ(failed.error().kind, FailureKind::kCpuLimit);
  EXPECT_NE(failed.error().message.find("plugin 'test'"), std::string::npos);
  EXPECT_NE(failed.error().message.find("CPU limit"), std::string::npos);
  RequestData fine = Request("fine!");
  auto served = instance->OnRequest(fine);
  ASSERT_TRUE(served.has_value()) << served.error().message;
  EXPECT_EQ(instance->rebuilds(), 1u);
}

TEST(BadPluginTest, UnboundedRecursionIsAStackOverflow) {
  auto instance = Instantiate(Wat(R"(
  (func $down (param $n i32) (result i32) (i32.add (call $down (local.get $n)) (i32.const 1)))
  (func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32)
    (call $down (i32.const 0))))"));
  ASSERT_TRUE(instance);
  RequestData request = Request();
  auto failed = instance->OnRequest(request);
  ASSERT_FALSE(failed.has_value());
  EXPECT_EQ(failed.error().kind, FailureKind::kStackOverflow);
}

TEST(BadPluginTest, AnOutOfBoundsLoadTraps) {
  auto instance = Instantiate(Wat(R"(
  (func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32)
    (i32.load (i32.const -16))))"));
  ASSERT_TRUE(instance);
  RequestData request = Request();
  auto failed = instance->OnRequest(request);
  ASSERT_FALSE(failed.has_value());
  EXPECT_EQ(failed.error().kind, FailureKind::kOutOfBounds);
}

// memory.grow past the limit answers -1 to the plugin (here it replies 507 when it does).
TEST(BadPluginTest, MemoryGrowthPastTheLimitIsRefused) {
  auto instance = Instantiate(Wat(R"(
  (func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32)
    (if (i32.eq (memory.grow (i32.const 64)) (i32.const -1))
      (then (call $reply (i32.const 507) (i32.const 0) (i32.const 0))))
    (i32.const 0)))"),
                              Limits{.memory_bytes = 1 << 20});
  ASSERT_TRUE(instance);
  RequestData request = Request();
  auto outcome = instance->OnRequest(request);
  ASSERT_TRUE(outcome.has_value()) << outcome.error().message;
  ASSERT_TRUE(outcome->local_response);
  EXPECT_EQ(outcome->local_response->status, 507);
}

// A body larger than the plugin's memory limit: the plugin's allocator fails when the host copies
// the body in, and the call fails as a memory-limit failure.
TEST(BadPluginTest, AHugeAllocationOverTheMemoryLimitFails) {
  auto instance = Instantiate(Wat(R"(
  (func (export "proxy_on_request_body") (param i32) (param $size i32) (param i32) (result i32)
    (drop (call $get_buffer (i32.const 0) (i32.const 0) (local.get $size) (i32.const 8)
                            (i32.const 12)))
    (i32.const 0)))"),
                              Limits{.memory_bytes = 1 << 20});
  ASSERT_TRUE(instance);
  RequestData request = Request(std::string(2 << 20, 'x'));
  auto failed = instance->OnRequest(request);
  ASSERT_FALSE(failed.has_value());
  EXPECT_EQ(failed.error().kind, FailureKind::kMemoryLimit);
  EXPECT_EQ(failed.error().message,
            "plugin 'test' could not allocate 2097152 bytes (memory limit 1048576 bytes)");
}

TEST(BadPluginTest, AMalformedModuleIsRefusedAtLoad) {
  auto binary = Load(std::string("\0asm\x01\0\0\0\xff\xff", 10));
  ASSERT_FALSE(binary.has_value());
  EXPECT_EQ(binary.error().kind, FailureKind::kLoad);
  EXPECT_NE(binary.error().message.find("plugin 'test' failed in compiling"), std::string::npos);
  auto text = Load("(module (func (export \"x\") (i32.add)))");
  ASSERT_FALSE(text.has_value());
  EXPECT_EQ(text.error().kind, FailureKind::kLoad);
}

TEST(BadPluginTest, AMissingExportIsNamedAtLoad) {
  auto no_abi = Load(R"((module (memory (export "memory") 1)
    (func (export "malloc") (param i32) (result i32) (i32.const 0))
    (func (export "proxy_on_context_create") (param i32 i32))))");
  ASSERT_FALSE(no_abi.has_value());
  EXPECT_EQ(no_abi.error().message,
            "plugin 'test': does not export proxy_abi_version_0_2_1 (or _0_2_0): not a proxy-wasm "
            "0.2 plugin");
  auto no_allocator = Load(R"((module (memory (export "memory") 1)
    (func (export "proxy_abi_version_0_2_1"))
    (func (export "proxy_on_context_create") (param i32 i32))))");
  ASSERT_FALSE(no_allocator.has_value());
  EXPECT_EQ(no_allocator.error().message,
            "plugin 'test': exports neither proxy_on_memory_allocate nor malloc");
}

TEST(BadPluginTest, ImportsEmberDoesNotProvideAreRefusedOrUnimplemented) {
  auto foreign = Load(Wat("", R"((import "evil" "open" (func (param i32) (result i32))))"));
  ASSERT_FALSE(foreign.has_value());
  EXPECT_EQ(foreign.error().message,
            "plugin 'test' imports evil.open, which ember does not provide");
  auto wrong_signature =
      Load(Wat("", R"((import "env" "proxy_log" (func (param i32) (result i32))))"));
  ASSERT_FALSE(wrong_signature.has_value());
  EXPECT_NE(wrong_signature.error().message.find("proxy-wasm 0.2.1 has (iii) -> (i)"),
            std::string::npos);
  // A proxy-wasm hostcall ember does not implement answers Unimplemented (12): the plugin replies
  // 400 + that status.
  auto instance = Instantiate(Wat(R"(
  (func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32)
    (call $reply (i32.add (i32.const 400) (call $done)) (i32.const 0) (i32.const 0))
    (i32.const 0)))",
                                  R"((import "env" "proxy_done" (func $done (result i32))))"));
  ASSERT_TRUE(instance);
  RequestData request = Request();
  auto outcome = instance->OnRequest(request);
  ASSERT_TRUE(outcome.has_value()) << outcome.error().message;
  ASSERT_TRUE(outcome->local_response);
  EXPECT_EQ(outcome->local_response->status, 412);
}

// Lengths and pointers past the end of memory answer InvalidMemoryAccess (6), never touch host
// memory: the plugin replies 400 + proxy_log's status + 10 x proxy_get_buffer_bytes's status.
TEST(BadPluginTest, GarbageLengthsInHostcallsAnswerInvalidMemoryAccess) {
  auto instance = Instantiate(Wat(R"(
  (func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32)
    (call $reply
      (i32.add (i32.add (i32.const 400) (call $log (i32.const 2) (i32.const 0) (i32.const -16)))
               (i32.mul (i32.const 10) (call $get_buffer (i32.const 0) (i32.const 0) (i32.const 10)
                                                         (i32.const -2) (i32.const 12))))
      (i32.const 0) (i32.const 0))
    (i32.const 0)))"));
  ASSERT_TRUE(instance);
  RequestData request = Request();
  auto outcome = instance->OnRequest(request);
  ASSERT_TRUE(outcome.has_value()) << outcome.error().message;
  ASSERT_TRUE(outcome->local_response);
  EXPECT_EQ(outcome->local_response->status, 466);
}

TEST(BadPluginTest, AnUnknownActionIsAnAbiError) {
  auto instance = Instantiate(Wat(R"(
  (func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32) (i32.const 7)))"));
  ASSERT_TRUE(instance);
  RequestData request = Request();
  auto failed = instance->OnRequest(request);
  ASSERT_FALSE(failed.has_value());
  EXPECT_EQ(failed.error().kind, FailureKind::kAbi);
  EXPECT_EQ(failed.error().message,
            "plugin 'test' returned action 7 from proxy_on_request_headers (0 Continue, 1 Pause)");
}

}  // namespace
}  // namespace ember::plugins
