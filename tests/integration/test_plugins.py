"""WebAssembly plugins through the real binary (docs/plugins.md): a plugins file with the C
examples the build compiles (src/plugins/examples): the model allow-list answers 403 with the
OpenAI envelope before the model is looked up, the PII redaction rewrites the prompt the model
sees, and a fail-closed plugin stuck in a loop gets its requests a 503 naming it while the other
routes keep serving; the usage exporter logs each request's usage once, at its completion
point. Skipped where ember was built without Wasmtime."""
import os
import shutil
import tempfile
import threading
import time
import unittest

from harness import Server

EXAMPLES = os.path.join(os.environ.get("EMBER_BUILD_DIR", "build/release"), "src", "plugins",
                        "examples")
BUILT = os.path.exists(os.path.join(EXAMPLES, "model_allowlist.wasm"))
# A plugin as WebAssembly text (ember compiles text too): loops forever on every request body.
LOOP_WAT = """(module
  (memory (export "memory") 1)
  (func (export "malloc") (param i32) (result i32) (i32.const 1024))
  (func (export "proxy_abi_version_0_2_1"))
  (func (export "proxy_on_context_create") (param i32 i32))
  (func (export "proxy_on_request_body") (param i32 i32 i32) (result i32)
    (loop $forever (br $forever)) (i32.const 0)))"""


class PluginServerCase(unittest.TestCase):
    """Starts the real binary with `--plugins DIR/plugins.toml` in a new directory holding the
    build's example modules named in `examples`, the files of `files` (name -> text) and
    `plugins_toml` (or what `write_plugins` writes); stops it and removes the directory after
    the class."""
    examples = ()
    files = {}
    plugins_toml = ""

    @classmethod
    def setUpClass(cls):
        cls.dir = tempfile.mkdtemp(prefix="ember-plugins-")
        for name in cls.examples:
            shutil.copy(os.path.join(EXAMPLES, name + ".wasm"), cls.dir)
        for name, text in cls.files.items():
            with open(os.path.join(cls.dir, name), "w") as f:
                f.write(text)
        cls.path = os.path.join(cls.dir, "plugins.toml")
        cls.write_plugins()
        cls.server = Server("--plugins", cls.path)

    @classmethod
    def write_plugins(cls):
        with open(cls.path, "w") as f:
            f.write(cls.plugins_toml)

    @classmethod
    def tearDownClass(cls):
        cls.server.stop()
        shutil.rmtree(cls.dir, ignore_errors=True)


@unittest.skipUnless(BUILT, "ember was built without WebAssembly plugins (no Wasmtime)")
class PluginsTest(PluginServerCase):
    examples = ("model_allowlist", "pii_redact", "usage_export")
    files = {"loop.wat": LOOP_WAT}
    plugins_toml = ('[[plugin]]\nname = "allowlist"\npath = "model_allowlist.wasm"\n'
                    'configuration = "*: stories260K"\n\n'
                    '[[plugin]]\nname = "redact"\npath = "pii_redact.wasm"\n'
                    'failure = "fail-open"\n\n'
                    '[[plugin]]\nname = "export"\npath = "usage_export.wasm"\n\n'
                    '[[plugin]]\nname = "looper"\npath = "loop.wat"\nfuel_per_call = 100000\n'
                    'failure = "fail-closed"\n\n'
                    '[[chain]]\nroute = "/v1/completions"\nplugins = "export, allowlist, redact"\n\n'
                    '[[chain]]\nroute = "/v1/chat/completions"\nplugins = "looper"\n')

    def complete(self, body, path="/v1/completions", request_id=None):
        headers = {"Content-Type": "application/json"}
        if request_id:
            headers["x-request-id"] = request_id
        return self.server.post_json(path, body, headers=headers)

    def test_a_model_off_the_allow_list_gets_the_plugins_403(self):
        status, body, headers = self.complete({"model": "gpt-9", "prompt": "Hi", "max_tokens": 2})
        self.assertEqual(status, 403, body)
        self.assertEqual(body["error"]["code"], "model_not_allowed")
        self.assertEqual(body["error"]["message"], "model 'gpt-9' is not allowed for this tenant")
        self.assertTrue(headers.get("x-request-id"))

    def test_a_fail_closed_plugin_that_loops_gets_503_and_others_keep_serving(self):
        chat = {"model": "stories260K", "messages": [{"role": "user", "content": "Hi"}],
                "max_tokens": 2}
        for _ in range(2):  # the instance is rebuilt after the first and fails the same way
            status, body, headers = self.complete(chat, "/v1/chat/completions")
            self.assertEqual(status, 503, body)
            self.assertEqual(body["error"]["code"], "plugin_failed")
            self.assertIn("plugin 'looper'", body["error"]["message"])
            self.assertIn("CPU limit", body["error"]["message"])
            self.assertEqual(headers.get("Retry-After"), "1")
        status, body, _ = self.complete({"model": "stories260K", "prompt": "Hi", "max_tokens": 2})
        self.assertEqual(status, 200, body)

    def test_the_model_sees_the_redacted_prompt(self):
        request = {"model": "stories260K", "max_tokens": 12, "temperature": 0}
        status, redacted, _ = self.complete(dict(request, prompt="Mail jane.doe@example.com"))
        self.assertEqual(status, 200, redacted)
        status, literal, _ = self.complete(dict(request, prompt="Mail [EMAIL]"))
        self.assertEqual(status, 200, literal)
        self.assertEqual(redacted["usage"]["prompt_tokens"], literal["usage"]["prompt_tokens"])
        self.assertEqual(redacted["choices"][0]["text"], literal["choices"][0]["text"])

    def plugin_metric(self, name, **labels):
        return self.server.metric(name, labels) or 0

    def test_each_plugin_has_its_calls_time_failures_and_rejections_in_metrics(self):
        calls = self.plugin_metric("ember_plugin_calls_total", plugin="looper", hook="request")
        cpu = self.plugin_metric("ember_plugin_failures_total", plugin="looper", kind="cpu_limit")
        rejected = self.plugin_metric("ember_plugin_rejections_total", plugin="allowlist")
        timed = self.plugin_metric("ember_plugin_call_duration_seconds_count", plugin="redact",
                                   hook="request")
        exported = self.plugin_metric("ember_plugin_calls_total", plugin="export", hook="complete")
        chat = {"model": "stories260K", "messages": [{"role": "user", "content": "Hi"}],
                "max_tokens": 2}
        status, _, _ = self.complete(chat, "/v1/chat/completions")
        self.assertEqual(status, 503)
        status, _, _ = self.complete({"model": "gpt-9", "prompt": "Hi", "max_tokens": 2})
        self.assertEqual(status, 403)
        status, _, _ = self.complete({"model": "stories260K", "prompt": "Hi", "max_tokens": 2})
        self.assertEqual(status, 200)
        self.assertEqual(self.plugin_metric("ember_plugin_calls_total", plugin="looper",
                                            hook="request"), calls + 1)
        self.assertEqual(self.plugin_metric("ember_plugin_failures_total", plugin="looper",
                                            kind="cpu_limit"), cpu + 1)
        self.assertEqual(self.plugin_metric("ember_plugin_failures_total", plugin="looper",
                                            kind="trap"), 0)
        self.assertEqual(self.plugin_metric("ember_plugin_rejections_total", plugin="allowlist"),
                         rejected + 1)
        # The redaction ran for the request the allow-list let through, not the rejected one.
        self.assertEqual(self.plugin_metric("ember_plugin_call_duration_seconds_count",
                                            plugin="redact", hook="request"), timed + 1)
        # The export ran at both requests' completion (the rejected one too), off the I/O thread.
        self.assertTrue(self.server.wait_metric("ember_plugin_calls_total", exported + 2,
                                                labels={"plugin": "export", "hook": "complete"}))

    def usage_line(self, request_id):
        needle = "usage request=" + request_id + " "
        self.assertTrue(self.server.wait_log(needle), self.server.log_tail())
        time.sleep(0.2)  # a second line, were there one, would be there by now
        lines = [line for line in self.server.log if needle in line]
        self.assertEqual(len(lines), 1, lines)  # exactly once per request
        return lines[0]

    def test_the_usage_exporter_logs_what_the_client_was_billed_once_at_completion(self):
        status, body, _ = self.complete(
            {"model": "stories260K", "prompt": "Once upon", "max_tokens": 7, "temperature": 0},
            request_id="export-plain")
        self.assertEqual(status, 200, body)
        self.assertEqual(body["usage"]["completion_tokens"], 7)
        line = self.usage_line("export-plain")
        self.assertIn("tenant=- model=stories260K outcome=finished status=200 finish=length "
                      f"prompt={body['usage']['prompt_tokens']} completion=7 ", line)

    def test_a_streamed_answer_is_exported_with_its_usage(self):
        status, events, done = self.server.stream(
            "/v1/completions",
            {"model": "stories260K", "prompt": "Once upon", "max_tokens": 5, "stream": True,
             "stream_options": {"include_usage": True}},
            headers={"x-request-id": "export-stream"})
        self.assertEqual(status, 200, events)
        self.assertTrue(done)
        usage = events[-1]["usage"]
        line = self.usage_line("export-stream")
        self.assertIn(f"outcome=finished status=200 finish=length prompt={usage['prompt_tokens']} "
                      f"completion={usage['completion_tokens']} ", line)

    def test_the_exporters_own_metrics_count_every_request_across_instances(self):
        def own(metric, name):
            return self.server.metric(metric, {"plugin": "export", "name": name}) or 0
        requests = own("ember_plugin_counter_total", "requests")
        tokens = own("ember_plugin_counter_total", "completion_tokens")
        observed = own("ember_plugin_histogram_count", "completion_tokens_per_request")
        status, body, _ = self.complete(
            {"model": "stories260K", "prompt": "Once", "max_tokens": 6, "temperature": 0},
            request_id="export-metrics")
        self.assertEqual(status, 200, body)
        self.usage_line("export-metrics")  # its completion hook ran
        self.assertEqual(own("ember_plugin_counter_total", "requests"), requests + 1)
        self.assertEqual(own("ember_plugin_counter_total", "completion_tokens"),
                         tokens + body["usage"]["completion_tokens"])
        self.assertEqual(own("ember_plugin_histogram_count", "completion_tokens_per_request"),
                         observed + 1)

    def test_a_request_a_later_plugin_rejects_is_exported_with_its_status(self):
        status, body, _ = self.complete({"model": "gpt-9", "prompt": "Hi", "max_tokens": 2},
                                        request_id="export-denied")
        self.assertEqual(status, 403, body)
        line = self.usage_line("export-denied")
        self.assertIn("model=gpt-9 outcome=plugin_rejected status=403 finish=- prompt=0 "
                      "completion=0 cached=0 cost_microdollars=-", line)



@unittest.skipUnless(BUILT, "ember was built without WebAssembly plugins (no Wasmtime)")
class ResponseHooksTest(PluginServerCase):
    """The response hooks: the PII redaction (with the term "Lily", which stories260K writes at
    temperature 0) rewrites a streamed answer event by event and a whole answer once; the
    guardrail ends a chat stream at "park" with a clean finish; the usage is exported once."""

    examples = ("pii_redact", "guardrail", "usage_export")
    plugins_toml = ('[[plugin]]\nname = "redact"\npath = "pii_redact.wasm"\n'
                    'configuration = "terms: Lily"\n\n'
                    '[[plugin]]\nname = "guard"\npath = "guardrail.wasm"\n'
                    'configuration = "park"\n\n'
                    '[[plugin]]\nname = "export"\npath = "usage_export.wasm"\n\n'
                    '[[chain]]\nroute = "/v1/completions"\nplugins = "export, redact"\n\n'
                    '[[chain]]\nroute = "/v1/chat/completions"\nplugins = "export, guard"\n')

    def test_a_streamed_answer_is_redacted_event_by_event_like_the_whole_one(self):
        request = {"model": "stories260K", "prompt": "Once upon a time", "max_tokens": 40,
                   "temperature": 0}
        status, whole, _ = self.server.post_json("/v1/completions", request)
        self.assertEqual(status, 200, whole)
        text = whole["choices"][0]["text"]
        self.assertIn("[REDACTED]", text)  # the model wrote the term, the client never sees it
        self.assertNotIn("Lily", text)
        status, events, done = self.server.stream("/v1/completions", dict(request, stream=True))
        self.assertEqual(status, 200, events)
        self.assertTrue(done)
        # Each event parsed as JSON on its own (none split or merged), and together they read
        # as the whole answer: nothing lost or repeated where a term was held back.
        streamed = "".join(e["choices"][0]["text"] for e in events if e.get("choices"))
        self.assertEqual(streamed, text)
        self.assertEqual(events[-1]["choices"][0]["finish_reason"], "length")

    def test_the_guardrail_ends_a_stream_cleanly_and_the_usage_is_recorded_once(self):
        request = {"model": "stories260K", "max_tokens": 40, "temperature": 0,
                   "messages": [{"role": "user", "content": "Once upon a time"}]}
        status, whole, _ = self.server.post_json("/v1/chat/completions", request)
        self.assertEqual(status, 200, whole)
        content = whole["choices"][0]["message"]["content"]
        self.assertIn("park", content)  # non-streamed answers pass the guardrail unchanged
        before = self.server.metric("ember_generation_outcomes_total",
                                    {"outcome": "plugin_stopped"}) or 0
        status, events, done = self.server.stream(
            "/v1/chat/completions",
            dict(request, stream=True, stream_options={"include_usage": True}),
            headers={"Content-Type": "application/json", "x-request-id": "guarded"})
        self.assertEqual(status, 200, events)
        self.assertTrue(done)  # the stream ended with data: [DONE]
        chunks = [e for e in events if e.get("choices")]
        streamed = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks)
        # Everything before the phrase, and never the phrase: the event that completes it is cut
        # where it starts (a start already sent in an earlier event stays sent).
        start = content.index("park")
        self.assertTrue(content.startswith(streamed), streamed)
        self.assertGreaterEqual(len(streamed), start)
        self.assertLess(len(streamed), start + len("park"))
        self.assertEqual(chunks[-1]["choices"][0]["finish_reason"], "content_filter")
        usage = events[-1]["usage"]
        self.assertGreater(usage["completion_tokens"], 0)
        self.assertLessEqual(usage["completion_tokens"], whole["usage"]["completion_tokens"])
        needle = "usage request=guarded "
        self.assertTrue(self.server.wait_log(needle), self.server.log_tail())
        time.sleep(0.2)
        lines = [line for line in self.server.log if needle in line]
        self.assertEqual(len(lines), 1, lines)
        self.assertIn("outcome=plugin_stopped status=200 finish=content_filter "
                      f"prompt={usage['prompt_tokens']} completion={usage['completion_tokens']} ",
                      lines[0])
        self.assertEqual(self.server.metric("ember_generation_outcomes_total",
                                            {"outcome": "plugin_stopped"}), before + 1)
        self.assertGreaterEqual(self.server.metric("ember_plugin_streams_closed_total",
                                                   {"plugin": "guard"}), 1)
        self.assertGreater(self.server.metric("ember_plugin_calls_total",
                                              {"plugin": "guard", "hook": "response_body"}), 0)



# Traps in every response body callback.
TRAP_WAT = """(module
  (memory (export "memory") 1)
  (func (export "malloc") (param i32) (result i32) (i32.const 1024))
  (func (export "proxy_abi_version_0_2_1"))
  (func (export "proxy_on_context_create") (param i32 i32))
  (func (export "proxy_on_response_body") (param i32 i32 i32) (result i32) unreachable))"""


@unittest.skipUnless(BUILT, "ember was built without WebAssembly plugins (no Wasmtime)")
class FailingResponseHookTest(PluginServerCase):
    """A response hook that traps: fail-closed turns a whole answer into 503 and ends a stream
    cleanly; fail-open leaves the answer as it was. The server keeps serving either way."""

    files = {"trap.wat": TRAP_WAT}
    plugins_toml = ('[[plugin]]\nname = "closed"\npath = "trap.wat"\n\n'
                    '[[plugin]]\nname = "open"\npath = "trap.wat"\nfailure = "fail-open"\n\n'
                    '[[chain]]\nroute = "/v1/chat/completions"\nplugins = "closed"\n\n'
                    '[[chain]]\nroute = "/v1/completions"\nplugins = "open"\n')

    CHAT = {"model": "stories260K", "max_tokens": 8, "temperature": 0,
            "messages": [{"role": "user", "content": "Once upon a time"}]}

    def test_fail_closed_answers_503_or_ends_the_stream_cleanly(self):
        status, body, headers = self.server.post_json("/v1/chat/completions", self.CHAT)
        self.assertEqual(status, 503, body)
        self.assertEqual(body["error"]["code"], "plugin_failed")
        self.assertIn("plugin 'closed'", body["error"]["message"])
        self.assertEqual(headers.get("Retry-After"), "1")
        status, events, done = self.server.stream(
            "/v1/chat/completions",
            dict(self.CHAT, stream=True, stream_options={"include_usage": True}))
        self.assertEqual(status, 200, events)
        self.assertTrue(done)
        chunks = [e for e in events if e.get("choices")]
        self.assertEqual(chunks[-1]["choices"][0]["finish_reason"], "content_filter")
        self.assertIn("usage", events[-1])
        self.assertGreaterEqual(self.server.metric("ember_plugin_failures_total",
                                                   {"plugin": "closed", "kind": "trap"}), 2)

    def test_fail_open_leaves_the_answer_as_it_was(self):
        request = {"model": "stories260K", "prompt": "Once upon a time", "max_tokens": 12,
                   "temperature": 0}
        status, whole, _ = self.server.post_json("/v1/completions", request)
        self.assertEqual(status, 200, whole)
        status, events, done = self.server.stream("/v1/completions", dict(request, stream=True))
        self.assertEqual(status, 200, events)
        self.assertTrue(done)
        streamed = "".join(e["choices"][0]["text"] for e in events if e.get("choices"))
        self.assertEqual(streamed, whole["choices"][0]["text"])
        self.assertEqual(events[-1]["choices"][0]["finish_reason"], "length")
        self.assertGreaterEqual(self.server.metric("ember_plugin_failures_total",
                                                   {"plugin": "open", "kind": "trap"}), 2)



@unittest.skipUnless(BUILT, "ember was built without WebAssembly plugins (no Wasmtime)")
class OneEventPerCallbackTest(PluginServerCase):
    """The streaming contract, checked inside a plugin: one_event_check traps (fail-closed) when
    a callback gets anything but exactly one complete SSE event, which would end the stream with
    content_filter. Every streamed endpoint must end with the model's own finish instead."""

    examples = ("one_event_check",)
    plugins_toml = ('[[plugin]]\nname = "check"\npath = "one_event_check.wasm"\n\n'
                    '[[chain]]\nroute = "*"\nplugins = "check"\n')

    def test_every_streamed_endpoint_passes_whole_single_events(self):
        base = {"model": "stories260K", "max_tokens": 24, "temperature": 0, "stream": True,
                "stream_options": {"include_usage": True}}
        status, events, done = self.server.stream(
            "/v1/completions", dict(base, prompt="Once upon a time"))
        self.assertEqual((status, done), (200, True), events)
        self.assertEqual([e for e in events if e.get("choices")][-1]["choices"][0]
                         ["finish_reason"], "length")
        chat = dict(base, messages=[{"role": "user", "content": "Once upon a time"}])
        for n in (1, 2):
            status, events, done = self.server.stream("/v1/chat/completions", dict(chat, n=n))
            self.assertEqual((status, done), (200, True), events)
            finishes = [e["choices"][0]["finish_reason"] for e in events
                        if e.get("choices") and e["choices"][0].get("finish_reason")]
            self.assertEqual(finishes, ["length"] * n, events)
        # The Responses API writes several events in one string: they are cut apart.
        status, events, _ = self.server.stream(
            "/v1/responses", {"model": "stories260K", "input": "Once upon a time",
                              "max_output_tokens": 24, "temperature": 0, "stream": True})
        self.assertEqual(status, 200, events)
        self.assertEqual(events[-1]["type"], "response.incomplete", events[-1])
        self.assertEqual(self.server.metric("ember_plugin_failures_total",
                                            {"plugin": "check"}), 0)
        self.assertGreater(self.server.metric("ember_plugin_calls_total",
                                              {"plugin": "check", "hook": "response_body"}), 10)


AS_PLUGIN = os.path.join(EXAMPLES, "tenant_models.wasm")


@unittest.skipUnless(os.path.exists(AS_PLUGIN),
                     "the AssemblyScript SDK example was not built (scripts/assemblyscript.sh)")
class AssemblyScriptSdkPluginTest(PluginServerCase):
    """The allow-list written with the AssemblyScript proxy-wasm SDK (ABI 0.2.0), unmodified SDK
    code, in the real binary: it rejects a model off its list with 403 and the OpenAI envelope,
    lets the listed one through, and logs the request's total tokens at completion. Named
    "tenant_models", the root id it registers (ember answers plugin_root_id with the name)."""

    examples = ("tenant_models",)
    plugins_toml = ('[[plugin]]\nname = "tenant_models"\npath = "tenant_models.wasm"\n'
                    'configuration = "acme: gpt-9\\n*: stories260K"\n'
                    'failure = "fail-closed"\n\n'
                    '[[chain]]\nroute = "*"\nplugins = "tenant_models"\n')

    def refused(self):
        return self.server.metric("ember_plugin_counter_total",
                                  {"plugin": "tenant_models", "name": "refused"}) or 0

    def test_a_model_off_the_list_gets_403_with_the_envelope(self):
        refused = self.refused()
        status, body, _ = self.server.post_json(
            "/v1/completions", {"model": "gpt-9", "prompt": "Hi", "max_tokens": 2})
        self.assertEqual(status, 403, body)
        self.assertEqual(body["error"], {"message": "model 'gpt-9' is not allowed for this tenant",
                                         "type": "permission_error", "param": "model",
                                         "code": "model_not_allowed"})
        # The SDK's own Counter, through proxy_define_metric / proxy_increment_metric.
        self.assertEqual(self.refused(), refused + 1)

    def test_a_listed_model_is_served_and_its_usage_logged_at_completion(self):
        status, body, _ = self.server.post_json(
            "/v1/completions", {"model": "stories260K", "prompt": "Once upon", "max_tokens": 5})
        self.assertEqual(status, 200, body)
        total = body["usage"]["total_tokens"]
        self.assertTrue(self.server.wait_log(f"tenant_models: tenant=- total_tokens={total}"),
                        self.server.log_tail())


# Burns about a second or more of CPU in every request body (a countdown loop), so a request is
# still in its hook while the test reloads the plugins file.
SLOW_WAT = """(module
  (memory (export "memory") 1)
  (func (export "malloc") (param i32) (result i32) (i32.const 1024))
  (func (export "proxy_abi_version_0_2_1"))
  (func (export "proxy_on_context_create") (param i32 i32))
  (func (export "proxy_on_request_body") (param i32 i32 i32) (result i32)
    (local $i i32)
    (local.set $i (i32.const 1500000000))
    (loop $count (local.set $i (i32.sub (local.get $i) (i32.const 1)))
                 (br_if $count (local.get $i)))
    (i32.const 0)))"""


@unittest.skipUnless(BUILT, "ember was built without WebAssembly plugins (no Wasmtime)")
class PluginsReloadTest(PluginServerCase):
    """The plugins file is reloaded without a restart (docs/plugins.md, "Reload"): by
    POST /admin/plugins/reload and by the file's poll. A request in flight finishes on the
    plugins it started with, new requests get the new ones, and a bad file leaves the previous
    plugins in force."""

    examples = ("model_allowlist", "usage_export")
    files = {"slow.wat": SLOW_WAT}

    @classmethod
    def write_plugins(cls):
        cls.write(allowed="stories260K", chain="export, slow, allowlist")

    @classmethod
    def write(cls, allowed, chain, extra=""):
        text = ('[[plugin]]\nname = "allowlist"\npath = "model_allowlist.wasm"\n'
                f'configuration = "*: {allowed}"\n\n'
                '[[plugin]]\nname = "export"\npath = "usage_export.wasm"\n\n'
                '[[plugin]]\nname = "slow"\npath = "slow.wat"\nfuel_per_call = 100000000000\n\n'
                f'[[chain]]\nroute = "/v1/completions"\nplugins = "{chain}"\n' + extra)
        tmp = cls.path + ".tmp"
        with open(tmp, "w") as f:
            f.write(text)
        os.replace(tmp, cls.path)  # as a ConfigMap update does: never half a file

    def complete(self, request_id):
        return self.server.post_json(
            "/v1/completions", {"model": "stories260K", "prompt": "Hi", "max_tokens": 2},
            headers={"Content-Type": "application/json", "x-request-id": request_id})

    def reload(self):
        return self.server.post_json("/admin/plugins/reload", {})

    def export_line(self, request_id):
        needle = "usage request=" + request_id + " "
        self.assertTrue(self.server.wait_log(needle), self.server.log_tail())
        lines = [line for line in self.server.log if needle in line]
        self.assertEqual(len(lines), 1, lines)
        return lines[0]

    def test_a_reload_applies_to_new_requests_and_drops_none_in_flight(self):
        status, body, _ = self.complete("reload-first")
        self.assertEqual(status, 200, body)
        self.assertIn("totals: requests=1 ", self.export_line("reload-first"))

        # A request is in the slow plugin's hook when the file changes and is reloaded.
        result = {}
        inflight = threading.Thread(
            target=lambda: result.update(zip(("status", "body"), self.complete("reload-inflight"))))
        inflight.start()
        time.sleep(0.3)
        self.write(allowed="no-such-model", chain="export, allowlist")
        status, body, _ = self.reload()
        self.assertEqual(status, 200, body)
        self.assertEqual(body, {"status": "reloaded", "plugins": 3})
        self.assertTrue(inflight.is_alive(), "the slow hook ended before the reload: "
                        "the test no longer checks a request in flight")
        inflight.join(60)
        # It finished on the plugins it started with: the old allow-list let it through, and
        # the old exporter instance (its second request) logged it, once.
        self.assertEqual(result["status"], 200, result)
        self.assertIn("totals: requests=2 ", self.export_line("reload-inflight"))

        # New requests get the new file: the new allow-list refuses the model, and the new
        # exporter instance starts its totals again.
        status, body, _ = self.complete("reload-after")
        self.assertEqual(status, 403, body)
        self.assertEqual(body["error"]["code"], "model_not_allowed")
        self.assertIn("totals: requests=1 ", self.export_line("reload-after"))

        # A bad file is refused with its reason; the previous plugins stay in force.
        with open(self.path, "w") as f:
            f.write('[[plugin]]\nname = "allowlist"\n')
        status, body, _ = self.reload()
        self.assertEqual(status, 400, body)
        self.assertIn("plugins.toml", body["error"]["message"])
        status, body, _ = self.complete("reload-bad")
        self.assertEqual(status, 403, body)
        # An emptied file (a write caught halfway) is refused too, never read as "no plugins".
        open(self.path, "w").close()
        status, body, _ = self.reload()
        self.assertEqual(status, 400, body)
        self.assertIn("is empty", body["error"]["message"])
        status, body, _ = self.complete("reload-empty")
        self.assertEqual(status, 403, body)
        # (The poll may have seen the bad file first: it counts as an error too.)
        self.assertGreaterEqual(
            self.server.metric("ember_plugin_reloads_total", {"result": "error"}), 1)

        # Without the endpoint: the poll sees the file change and reloads within seconds.
        reloads = self.server.metric("ember_plugin_reloads_total", {"result": "ok"})
        self.write(allowed="stories260K", chain="export, allowlist")
        deadline = time.time() + 10
        while (self.server.metric("ember_plugin_reloads_total", {"result": "ok"}) == reloads
               and time.time() < deadline):
            time.sleep(0.1)
        status, body, _ = self.complete("reload-polled")
        self.assertEqual(status, 200, body)


if __name__ == "__main__":
    unittest.main()
