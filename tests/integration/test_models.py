"""Idle unload and several models in one server (docs/coldstart.md, "Idle unload and several
models"): the real binary over real HTTP, with stories260K under several ids and a synthesized
tiny F32 model (~79 MB of weights) where resident memory must visibly drop."""
import json
import os
import subprocess
import tempfile
import threading
import time
import unittest

from harness import EMBER_BIN, MODEL, Server, raw_socket

MIB = 1 << 20


def complete(server, model=None, max_tokens=4, stream=False):
    body = {"prompt": "Once upon a time", "max_tokens": max_tokens, "temperature": 0}
    if model is not None:
        body["model"] = model
    if stream:
        body["stream"] = True
        body["stream_options"] = {"include_usage": True}
        return server.stream("/v1/completions", body)
    return server.post_json("/v1/completions", body)


def estimate_of(model_flags, *args):
    """ember_model_memory_estimate_bytes of each model, read from a lazily loading server."""
    server = Server("--no-preload", *args, *model_flags, model=None)
    try:
        _, body, _ = server.get("/v1/models")
        ids = [m["id"] for m in json.loads(body)["data"]]
        return {i: server.metric("ember_model_memory_estimate_bytes", {"model_name": i})
                for i in ids}
    finally:
        server.stop()


def synth_tiny(directory):
    """A tiny F32 model, big enough (79 MB) for its load and unload to show in RSS."""
    path = os.path.join(directory, "tiny.gguf")
    subprocess.run([EMBER_BIN, "model", "synth", "--shape", "tiny", "--type", "f32", "-o", path],
                   check=True, capture_output=True, timeout=120)
    return path


class IdleUnloadTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.TemporaryDirectory()
        cls.tiny = synth_tiny(cls.tmp.name)

    @classmethod
    def tearDownClass(cls):
        cls.tmp.cleanup()

    def test_idle_unload_frees_memory_and_next_request_pays_a_cold_start(self):
        server = Server("--idle-unload", "1s", "--ctx-size", "256", model=self.tiny)
        try:
            status, body, headers = complete(server)
            self.assertEqual(status, 200, body)
            self.assertNotIn("cold_start_seconds", body["usage"])  # preloaded: warm
            self.assertNotIn("x-ember-cold-start", {k.lower() for k in headers})
            loaded_rss = server.rss_bytes()
            self.assertEqual(server.metric("ember_model_loaded", {"model_name": "tiny"}), 1)

            self.assertTrue(server.wait_metric("ember_model_loaded", 0, timeout=15,
                                               labels={"model_name": "tiny"}))
            unloaded_rss = server.rss_bytes()
            # The weights alone are ~79 MB; the llama model and context are gone.
            self.assertLess(unloaded_rss, loaded_rss - 40 * MIB, (loaded_rss, unloaded_rss))
            self.assertEqual(server.metric("ember_model_unloads_total",
                                           {"model_name": "tiny", "reason": "idle"}), 1)
            self.assertEqual(server.metric("ember_model_memory_bytes", {"model_name": "tiny"}), 0)
            _, models, _ = server.get("/v1/models")
            self.assertEqual(json.loads(models)["data"][0]["status"], "unloaded")
            self.assertEqual(server.get("/ready")[0], 200)  # readiness does not need it loaded

            status, body, headers = complete(server)
            self.assertEqual(status, 200, body)
            cold = body["usage"]["cold_start_seconds"]
            self.assertGreater(cold, 0)
            self.assertEqual(float({k.lower(): v for k, v in headers.items()}["x-ember-cold-start"]),
                             cold)
            self.assertEqual(server.metric("ember_model_loaded", {"model_name": "tiny"}), 1)
            self.assertEqual(server.metric("ember_model_loads_total", {"model_name": "tiny"}), 2)
            self.assertGreater(server.rss_bytes(), unloaded_rss + 40 * MIB)

            # The next request is warm again.
            status, body, _ = complete(server)
            self.assertEqual(status, 200, body)
            self.assertNotIn("cold_start_seconds", body["usage"])
        finally:
            server.stop()

    def test_a_failed_load_gives_503_and_the_next_request_retries(self):
        broken = os.path.join(self.tmp.name, "broken.gguf")
        with open(self.tiny, "rb") as src, open(broken, "wb") as dst:
            dst.write(src.read(10_000_000))  # the header reads, the tensor data is cut short
        server = Server("--no-preload", "--ctx-size", "256", model=broken)
        try:
            status, body, headers = complete(server)
            self.assertEqual(status, 503, body)
            self.assertIn("cannot load model 'broken'", body["error"]["message"])
            self.assertIn("Retry-After", headers)
            self.assertEqual(server.metric("ember_model_load_failures_total",
                                           {"model_name": "broken"}), 1)
            self.assertEqual(server.metric("ember_requests_rejected_total",
                                           {"reason": "load_failed"}), 1)
            with open(self.tiny, "rb") as src, open(broken, "wb") as dst:
                dst.write(src.read())
            status, body, _ = complete(server)
            self.assertEqual(status, 200, body)
            self.assertGreater(body["usage"]["cold_start_seconds"], 0)
        finally:
            server.stop()

    def test_streamed_cold_start_reports_it_in_the_usage_chunk(self):
        server = Server("--no-preload", "--ctx-size", "256", model=self.tiny)
        try:
            status, events, done = complete(server, stream=True)
            self.assertEqual(status, 200, events)
            self.assertTrue(done)
            self.assertGreater(events[-1]["usage"]["cold_start_seconds"], 0)
        finally:
            server.stop()


class SeveralModelsTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.TemporaryDirectory()
        cls.tiny = synth_tiny(cls.tmp.name)
        cls.one = estimate_of([f"--model=a={MODEL}"])["a"]
        cls.three = [f"--model=a={MODEL}", f"--model=b={MODEL}", f"--model=c={MODEL}"]

    @classmethod
    def tearDownClass(cls):
        cls.tmp.cleanup()

    def loaded(self, server):
        return {i: server.metric("ember_model_loaded", {"model_name": i}) for i in "abc"}

    def test_lru_eviction_under_a_budget_that_fits_two(self):
        budget = int(self.one * 2.5)
        server = Server("--memory-budget", str(budget), *self.three, model=None)
        try:
            _, body, _ = server.get("/v1/models")
            self.assertEqual([(m["id"], m["status"]) for m in json.loads(body)["data"]],
                             [("a", "unloaded"), ("b", "unloaded"), ("c", "unloaded")])
            self.assertEqual(server.metric("ember_memory_budget_bytes"), budget)
            for model in "abc":
                status, body, _ = complete(server, model)
                self.assertEqual(status, 200, body)
                self.assertEqual(body["model"], model)
                self.assertGreater(body["usage"]["cold_start_seconds"], 0)
            # a was the least recently used when c needed room; b stays.
            self.assertEqual(self.loaded(server), {"a": 0, "b": 1, "c": 1})
            evicted = {i: server.metric("ember_model_unloads_total",
                                        {"model_name": i, "reason": "evicted"}) for i in "abc"}
            self.assertEqual(evicted, {"a": 1, "b": 0, "c": 0})
            self.assertLessEqual(sum(server.metric("ember_model_memory_bytes", {"model_name": i})
                                     for i in "abc"), budget)
            # Per-model series stay apart.
            self.assertEqual(server.metric("ember_requests_started_total", {"model_name": "b"}), 1)
            # b is now the least recently used: a comes back in its place.
            status, body, _ = complete(server, "a")
            self.assertEqual(status, 200, body)
            self.assertEqual(self.loaded(server), {"a": 1, "b": 0, "c": 1})
        finally:
            server.stop()

    def test_a_model_that_can_never_fit_is_refused_and_evicts_nothing(self):
        budget = int(self.one * 1.5)
        server = Server("--memory-budget", str(budget), f"--model=a={MODEL}",
                        f"--model=huge={self.tiny}", "--ctx-size", "256", model=None)
        try:
            self.assertEqual(complete(server, "a")[0], 200)
            status, body, _ = complete(server, "huge")
            self.assertEqual(status, 413, body)
            err = body["error"]
            self.assertEqual(err["code"], "model_too_large")
            self.assertIn("budget", err["message"])
            self.assertIn(str(budget), err["message"])
            status, raw, _ = server.post("/admin/models/huge/load", "")
            self.assertEqual(status, 413, raw)
            self.assertEqual(server.metric("ember_model_loaded", {"model_name": "a"}), 1)
            self.assertEqual(server.metric("ember_model_unloads_total", {"model_name": "a"}), 0)
            self.assertEqual(server.metric("ember_requests_rejected_total",
                                           {"reason": "model_too_large"}), 1)
        finally:
            server.stop()

    def test_tokenize_uses_the_model_the_body_names(self):
        with tempfile.TemporaryDirectory() as tmp:
            tiny = synth_tiny(tmp)  # another vocabulary than stories260K's
            server = Server("--ctx-size", "256", f"--model=s={MODEL}", f"--model=t={tiny}",
                            model=None)
            try:
                text = {"content": "Once upon a time"}
                status, default, _ = server.post_json("/tokenize", text)
                self.assertEqual(status, 200, default)
                status, named_s, _ = server.post_json("/tokenize", {**text, "model": "s"})
                self.assertEqual(named_s, default)  # the first --model is the default
                status, named_t, _ = server.post_json("/tokenize", {**text, "model": "t"})
                self.assertEqual(status, 200, named_t)
                self.assertNotEqual(named_t["tokens"], default["tokens"])
                self.assertEqual(server.metric("ember_model_loaded", {"model_name": "t"}), 1)
                status, body, _ = server.post_json("/tokenize", {**text, "model": "nope"})
                self.assertEqual(status, 404, body)
                self.assertEqual(body["error"]["param"], "model")
                status, body, _ = server.post_json("/tokenize", {**text, "model": 5})
                self.assertEqual(status, 400, body)
            finally:
                server.stop()

    def one_at_a_time(self, *args):
        """Models a and b under a budget that holds one of them, each step slowed to 20 ms."""
        return Server("--memory-budget", str(int(self.one * 1.5)), *args,
                      "--debug-step-delay", "20ms", f"--model=a={MODEL}", f"--model=b={MODEL}",
                      model=None)

    def start_on_a(self, server, target, *args):
        """Runs target(*args) on a thread once it has a request running on model a."""
        t = threading.Thread(target=target, args=args)
        t.start()
        self.assertTrue(server.wait_metric("ember_num_requests_running", 1,
                                           labels={"model_name": "a"}))
        return t

    def test_a_request_waits_while_the_other_models_are_busy(self):
        server = self.one_at_a_time("--queue-timeout", "1500ms")
        try:
            t = self.start_on_a(server, complete, server, "a", 400)
            status, body, _ = complete(server, "b")
            self.assertEqual(status, 503, body)
            self.assertEqual(body["error"]["code"], "queue_timeout")
            self.assertEqual(server.metric("ember_model_loaded", {"model_name": "a"}), 1)
            t.join()
            # Once a is idle, b evicts it.
            status, body, _ = complete(server, "b")
            self.assertEqual(status, 200, body)
            self.assertEqual(server.metric("ember_model_unloads_total",
                                           {"model_name": "a", "reason": "evicted"}), 1)
        finally:
            server.stop()

    def test_a_waiting_model_gets_its_turn_after_model_switch_after(self):
        server = self.one_at_a_time("--model-switch-after", "300ms")
        try:
            results = {}

            def run(name, model, max_tokens):
                results[name] = complete(server, model, max_tokens)

            a1 = self.start_on_a(server, run, "a1", "a", 60)  # ~1.2 s of steps
            b = threading.Thread(target=run, args=("b", "b", 4))
            b.start()
            self.assertTrue(server.wait_log("closing model 'a' to new requests"),
                            server.log_tail())
            # a is closed: this request is held back until a comes back after b's turn.
            a2 = threading.Thread(target=run, args=("a2", "a", 4))
            a2.start()
            for t in (a1, b, a2):
                t.join(timeout=30)
            for name in ("a1", "b", "a2"):
                status, body, _ = results[name]
                self.assertEqual(status, 200, (name, body))
            self.assertIn("cold_start_seconds", results["b"][1]["usage"])
            self.assertIn("cold_start_seconds", results["a2"][1]["usage"])
            self.assertEqual(server.metric("ember_model_unloads_total",
                                           {"model_name": "a", "reason": "evicted"}), 1)
            self.assertEqual(server.metric("ember_model_loaded", {"model_name": "a"}), 1)
        finally:
            server.stop()

    def test_a_client_that_leaves_while_waiting_for_its_model_loads_nothing(self):
        server = self.one_at_a_time("--model-switch-after", "0")
        try:
            t = self.start_on_a(server, complete, server, "a", 40)  # ~0.8 s of steps
            body = json.dumps({"model": "b", "prompt": "Once upon a time", "max_tokens": 4})
            s = raw_socket(server.port)
            s.sendall((f"POST /v1/completions HTTP/1.1\r\nHost: x\r\n"
                       f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
                       f"{body}").encode())
            time.sleep(0.2)  # b waits for a's memory
            s.close()
            t.join(timeout=30)
            time.sleep(0.5)
            # Nobody waits for b any more: a keeps its memory and b is never loaded.
            self.assertEqual(server.metric("ember_model_loads_total", {"model_name": "b"}), 0)
            self.assertEqual(server.metric("ember_model_loaded", {"model_name": "a"}), 1)
        finally:
            server.stop()

    def test_admin_endpoints_need_the_admin_key_when_one_is_set(self):
        server = Server(*self.three, "--admin-key", "s3cret-admin", model=None)
        try:
            for headers in ({}, {"Authorization": "Bearer wrong"},
                            {"Authorization": "s3cret-admin"}):
                status, raw, _ = server.post("/admin/models/b/load", "", headers=headers)
                self.assertEqual(status, 401, (headers, raw))
                self.assertEqual(json.loads(raw)["error"]["type"], "authentication_error")
            self.assertEqual(server.metric("ember_model_loads_total", {"model_name": "b"}), 0)
            status, raw, _ = server.post("/admin/models/b/load", "",
                                         headers={"Authorization": "Bearer s3cret-admin"})
            self.assertEqual(status, 200, raw)
            self.assertEqual(server.metric("ember_model_loaded", {"model_name": "b"}), 1)
            self.assertFalse(any("s3cret-admin" in line for line in server.log))
        finally:
            server.stop()

    def test_admin_load_and_unload(self):
        server = Server(*self.three, "--debug-step-delay", "20ms", model=None)
        try:
            status, raw, _ = server.post("/admin/models/b/load", "")
            self.assertEqual(status, 200, raw)
            self.assertEqual(json.loads(raw), {"id": "b", "status": "loaded"})
            self.assertEqual(server.post("/admin/models/b/load", "")[0], 200)  # already loaded
            self.assertEqual(server.metric("ember_model_loads_total", {"model_name": "b"}), 1)
            _, body, _ = server.get("/v1/models")
            self.assertEqual({m["id"]: m["status"] for m in json.loads(body)["data"]},
                             {"a": "unloaded", "b": "loaded", "c": "unloaded"})
            # Warmed ahead of traffic: no cold start.
            status, body, _ = complete(server, "b")
            self.assertNotIn("cold_start_seconds", body["usage"])

            # Busy: 409.
            t = threading.Thread(target=complete, args=(server, "b", 200))
            t.start()
            self.assertTrue(server.wait_metric("ember_num_requests_running", 1,
                                               labels={"model_name": "b"}))
            status, raw, _ = server.post("/admin/models/b/unload", "")
            self.assertEqual(status, 409, raw)
            self.assertEqual(json.loads(raw)["error"]["code"], "model_busy")
            t.join()

            status, raw, _ = server.post("/admin/models/b/unload", "")
            self.assertEqual(status, 200, raw)
            self.assertEqual(json.loads(raw), {"id": "b", "status": "unloaded"})
            self.assertEqual(server.metric("ember_model_loaded", {"model_name": "b"}), 0)
            self.assertEqual(server.metric("ember_model_unloads_total",
                                           {"model_name": "b", "reason": "admin"}), 1)
            self.assertEqual(server.post("/admin/models/b/unload", "")[0], 200)  # already

            status, raw, _ = server.post("/admin/models/nope/load", "")
            self.assertEqual(status, 404, raw)
            self.assertEqual(json.loads(raw)["error"]["code"], "model_not_found")
            self.assertEqual(server.post("/admin/models/nope/unload", "")[0], 404)
            status, body, _ = complete(server, "nope")
            self.assertEqual(status, 404, body)
            self.assertEqual(body["error"]["code"], "model_not_found")
            self.assertIn("'a', 'b', 'c'", body["error"]["message"])
        finally:
            server.stop()

    def test_sigterm_during_a_load_drains_and_exits_zero(self):
        server = Server("--no-preload", f"--model=t={self.tiny}", "--ctx-size", "256",
                        model=None)
        result = {}
        t = threading.Thread(target=lambda: result.update(r=complete(server, "t")))
        t.start()
        time.sleep(0.05)
        server.stop()  # raises unless it exits 0
        t.join()
        self.assertIn(result["r"][0], (200, 503))


class BadStartupTest(unittest.TestCase):
    def start(self, *args):
        return subprocess.run([EMBER_BIN, "serve", "--port", "0", *args], capture_output=True,
                              text=True, timeout=60)

    def assertRefused(self, needle, *args):
        r = self.start(*args)
        self.assertNotEqual(r.returncode, 0, r.stderr)
        self.assertIn(needle, r.stderr)

    def test_bad_model_flags_are_refused_with_a_clear_message(self):
        self.assertRefused("malformed --model", "--model", f"={MODEL}")
        self.assertRefused("malformed --model", "--model", "a=")
        self.assertRefused("two models have the id 'a'", "--model", f"a={MODEL}", "--model",
                           f"a={MODEL}")
        self.assertRefused("model file not found", "--model", f"a={MODEL}", "--model",
                           "b=/nonexistent.gguf")
        self.assertRefused("serve one model only", "--model", f"a={MODEL}", "--model",
                           f"b={MODEL}", "--allow-deterministic")
        self.assertRefused("invalid size", "--model", MODEL, "--memory-budget", "lots")


if __name__ == "__main__":
    unittest.main()
