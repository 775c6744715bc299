"""Tenancy through the real binary: API keys (401/403), limits (429 with Retry-After and
x-ratelimit-* headers), zero overshoot of an output tokens/min limit under 50 concurrent
requests, reload of DIR/tenants.toml without a restart, and the completion point: every
generation request ends in exactly one outcome."""
import hashlib
import json
import os
import shutil
import socket
import subprocess
import tempfile
import threading
import time
import unittest

from harness import EMBER_BIN, Server, post_bytes, raw_socket, write_tenants

KEYS = {"acme": "ek_acmeacmeacmeacmeacmeacmeacme0000000001",
        "slow": "ek_slowslowslowslowslowslowslow0000000002",
        "off": "ek_offoffoffoffoffoffoffoffoffo0000000003",
        "burst": "ek_burstburstburstburstburstbu0000000004"}


def auth(tenant):
    return {"Content-Type": "application/json", "Authorization": f"Bearer {KEYS[tenant]}"}


class TenancyTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.dir = tempfile.mkdtemp(prefix="ember-tenancy-")
        write_tenants(cls.dir, {
            "acme": {"weight": 2, "max_tokens": 64},
            "slow": {"rpm": 2, "priority": "batch"},
            "off": {"enabled": False},
            "burst": {"output_tpm": 600},
        }, [("key_00000000000a", "acme", KEYS["acme"]), ("key_00000000000b", "slow", KEYS["slow"]),
            ("key_00000000000c", "off", KEYS["off"]), ("key_00000000000d", "burst", KEYS["burst"])])
        cls.server = Server("--parallel", "4", "--ctx-size", "1024", "--data-dir", cls.dir)

    @classmethod
    def tearDownClass(cls):
        cls.server.stop()
        shutil.rmtree(cls.dir, ignore_errors=True)

    def test_zz_keys_never_reach_logs_or_metrics(self):  # runs last: after every other request
        _, metrics, _ = self.server.get("/metrics")
        for key in KEYS.values():
            self.assertNotIn(key, "".join(self.server.log))
            self.assertNotIn(key, metrics.decode())
            self.assertNotIn(hashlib.sha256(key.encode()).hexdigest(), "".join(self.server.log))
        self.assertIn('tenant="acme"', metrics.decode())

    def post(self, body, headers, path="/v1/completions"):
        return self.server.request("POST", path, json.dumps(body), headers=headers)

    def assertError(self, status, body, expected_status, code):
        self.assertEqual(status, expected_status, body)
        err = json.loads(body)["error"]
        self.assertEqual(err["code"], code, err)
        self.assertTrue(err["message"])
        for key in KEYS.values():
            self.assertNotIn(key.encode(), body)

    def test_missing_and_unknown_keys_get_401(self):
        for headers in ({"Content-Type": "application/json"},
                        {"Content-Type": "application/json", "Authorization": "Bearer ek_nope"},
                        {"Content-Type": "application/json", "Authorization": KEYS["acme"]}):
            status, body, h = self.post({"prompt": "Hi", "max_tokens": 2}, headers)
            self.assertError(status, body, 401, "invalid_api_key")
            self.assertEqual(h.get("WWW-Authenticate"), "Bearer")
        status, body, _ = self.server.request("GET", "/v1/models", headers={})
        self.assertError(status, body, 401, "invalid_api_key")
        status, _, _ = self.server.request("GET", "/v1/models", headers=auth("acme"))
        self.assertEqual(status, 200)
        # health, readiness and metrics stay open for probes and scrapers
        self.assertEqual(self.server.get("/health")[0], 200)
        self.assertEqual(self.server.get("/metrics")[0], 200)

    def test_disabled_tenant_gets_403(self):
        status, body, _ = self.post({"prompt": "Hi", "max_tokens": 2}, auth("off"))
        self.assertError(status, body, 403, "permission_denied")

    def test_requests_per_minute_429_with_retry_after_and_headers(self):
        first = self.post({"prompt": "Hi", "max_tokens": 2}, auth("slow"))
        self.assertEqual(first[0], 200, first[1])
        self.assertEqual(first[2]["x-ratelimit-limit-requests"], "2")
        self.assertEqual(first[2]["x-ratelimit-remaining-requests"], "1")
        self.assertTrue(first[2]["x-ratelimit-reset-requests"].endswith("s"))
        self.assertEqual(self.post({"prompt": "Hi", "max_tokens": 2}, auth("slow"))[0], 200)
        status, body, h = self.post({"prompt": "Hi", "max_tokens": 2}, auth("slow"))
        self.assertError(status, body, 429, "rate_limit_exceeded")
        # 2 per minute: the next request is allowed 30 s after the first, less what passed
        self.assertTrue(1 <= int(h["Retry-After"]) <= 30, h)
        self.assertEqual(h["x-ratelimit-remaining-requests"], "0")

    def test_max_tokens_cap(self):
        status, body, _ = self.post({"prompt": "Hi", "max_tokens": 65}, auth("acme"))
        self.assertError(status, body, 400, "invalid_value")
        status, body, _ = self.post({"prompt": "Once upon a time", "ignore_eos": True},
                                    auth("acme"))
        if status == 200:
            self.assertLessEqual(json.loads(body)["usage"]["completion_tokens"], 64)

    def test_output_tokens_per_minute_never_overshoot_under_50_concurrent(self):
        results = []
        lock = threading.Lock()
        start = time.time()

        def one():
            status, body, _ = self.post({"prompt": "Once upon a time", "max_tokens": 40},
                                        auth("burst"))
            with lock:
                results.append((status, json.loads(body)))

        threads = [threading.Thread(target=one) for _ in range(50)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        elapsed = time.time() - start
        ok = [b for s, b in results if s == 200]
        limited = [b for s, b in results if s == 429]
        self.assertEqual(len(ok) + len(limited), 50, [s for s, _ in results])
        self.assertTrue(limited, "50 x 40 reserved tokens cannot all fit 600/min")
        for b in limited:
            self.assertEqual(b["error"]["code"], "rate_limit_exceeded")
        used = sum(b["usage"]["completion_tokens"] for b in ok)
        # A token bucket lets through its capacity plus what refills meanwhile, never more.
        allowed = 600 + 600 * elapsed / 60
        self.assertLessEqual(used, allowed, f"{len(ok)} requests generated {used} tokens")
        self.assertGreaterEqual(len(ok), 15, "600/min holds 15 reservations of 40 at once")
        # Refunds: once they settled, what is left is 600 - used (+ refill), not 600 - 40 x n.
        _, _, h = self.post({"prompt": "Hi", "max_tokens": 1}, auth("burst"))
        remaining = int(h["x-ratelimit-remaining-tokens"])
        self.assertGreaterEqual(remaining + 1, 600 - used - 1)


class ReloadAndCompletionPointTest(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="ember-tenancy-")
        self.server = None

    def tearDown(self):
        if self.server:
            self.server.stop()
        shutil.rmtree(self.dir, ignore_errors=True)

    def wait_status(self, headers, expected, timeout=2.0):
        """Polls until a request gets `expected`; returns the seconds it took."""
        start = time.time()
        while time.time() - start < timeout:
            status, _, _ = self.server.request(
                "POST", "/v1/completions", json.dumps({"prompt": "Hi", "max_tokens": 1}),
                headers=headers)
            if status == expected:
                return time.time() - start
            time.sleep(0.05)
        self.fail(f"still not {expected} after {timeout}s")

    def test_open_then_keys_required_then_revoked_without_restart(self):
        self.server = Server("--parallel", "2", "--ctx-size", "512", "--data-dir", self.dir,
                             "--debug-step-delay", "40ms")
        self.assertTrue(self.server.wait_log("serving OPEN"))
        plain = {"Content-Type": "application/json"}
        self.assertEqual(self.server.post("/v1/completions", {"prompt": "Hi", "max_tokens": 1})[0],
                         200)
        write_tenants(self.dir, {"acme": {}}, [("key_00000000000a", "acme", KEYS["acme"])])
        self.assertLess(self.wait_status(plain, 401), 1.5)
        self.assertEqual(self.server.request("POST", "/v1/completions",
                                             json.dumps({"prompt": "Hi", "max_tokens": 1}),
                                             headers=auth("acme"))[0], 200)
        # A request in flight when its key is revoked finishes; the next one is refused.
        c = self.server.conn()
        c.request("POST", "/v1/completions",
                  body=json.dumps({"prompt": "Once upon a time", "max_tokens": 40,
                                   "ignore_eos": True, "stream": True}),
                  headers=auth("acme"))
        r = c.getresponse()
        self.assertEqual(r.status, 200)
        write_tenants(self.dir, {"acme": {}}, [])
        self.assertLess(self.wait_status(auth("acme"), 401), 1.5)
        rest = r.read().decode()
        c.close()
        self.assertIn("data: [DONE]", rest)
        self.assertIn('"finish_reason":"length"', rest)
        # A bad change is rejected and counted; the configuration in force stays.
        with open(os.path.join(self.dir, "tenants.toml"), "a") as f:
            f.write("\n[tenants.acme.limitz]\nrpm = 1\n")
        self.assertTrue(self.server.wait_metric("ember_tenancy_reloads_total", 1,
                                                labels={"result": "error"}, timeout=3))
        self.assertTrue(self.server.wait_log("rejected a change"))
        self.wait_status(plain, 401)
        self.assertEqual(self.server.metric("ember_tenancy_tenants"), 1)

    def test_malformed_file_stops_startup_with_file_and_line(self):
        with open(os.path.join(self.dir, "tenants.toml"), "w") as f:
            f.write('[tenants.acme]\nweight = 1\nrmp = 5\n')
        proc = subprocess.run([EMBER_BIN, "serve", "--model", os.environ.get(
            "EMBER_TEST_MODEL", "../shared/models/stories260K.gguf"), "--port", "0",
            "--data-dir", self.dir], capture_output=True, text=True, timeout=60)
        self.assertNotEqual(proc.returncode, 0)
        self.assertIn("tenants.toml:3", proc.stderr)
        self.assertIn("rmp", proc.stderr)

    def test_every_request_passes_the_completion_point_once(self):
        write_tenants(self.dir, {"acme": {"max_concurrent": 1}, "off": {"enabled": False},
                                 "burst": {}},
                      [("key_00000000000a", "acme", KEYS["acme"]),
                       ("key_00000000000c", "off", KEYS["off"]),
                       ("key_00000000000d", "burst", KEYS["burst"])])
        self.server = Server("--parallel", "1", "--ctx-size", "512", "--queue-size", "1",
                             "--data-dir", self.dir, "--debug-step-delay", "30ms")
        s = self.server
        post = lambda body, h=auth("acme"): s.request("POST", "/v1/completions", json.dumps(body),
                                                      headers=h)
        expected = {}

        def expect(outcome, n=1):
            expected[outcome] = expected.get(outcome, 0) + n

        self.assertEqual(post({"prompt": "Hi", "max_tokens": 2})[0], 200)
        expect("finished")
        self.assertEqual(post({"prompt": "Hi", "max_tokens": 2},
                              {"Content-Type": "application/json"})[0], 401)
        self.assertEqual(post({"prompt": "Hi", "max_tokens": 2}, auth("off"))[0], 403)
        expect("unauthorized", 2)
        self.assertEqual(post({"prompt": "Hi", "max_tokens": "x"})[0], 400)
        self.assertEqual(post({"prompt": "Hi", "model": "nope"})[0], 404)
        expect("invalid", 2)
        # A long request holds the only slot and acme's only concurrency place.
        sock = raw_socket(s.port)
        body = json.dumps({"prompt": "Once upon a time", "max_tokens": 200, "ignore_eos": True,
                           "stream": True}).encode()
        sock.sendall(post_bytes("/v1/completions", body,
                                f"Authorization: Bearer {KEYS['acme']}\r\n".encode()))
        sock.recv(1)  # its stream has started
        self.assertEqual(post({"prompt": "Hi", "max_tokens": 2})[0], 429)
        expect("rate_limited")  # max_concurrent 1
        # Another tenant's request waits for the only slot (--queue-size 1) ...
        queued = []
        waiter = threading.Thread(target=lambda: queued.append(
            post({"prompt": "Hi", "max_tokens": 2}, auth("burst"))[0]))
        waiter.start()
        self.assertTrue(s.wait_metric("ember_num_requests_waiting", 1, timeout=10))
        # ... and the next finds no room to wait.
        self.assertEqual(post({"prompt": "Hi", "max_tokens": 2}, auth("burst"))[0], 429)
        expect("queue_full")
        sock.close()  # the client leaves mid-stream
        expect("client_gone")
        waiter.join(30)
        self.assertEqual(queued, [200])
        expect("finished")
        self.assertTrue(s.wait_metric("ember_generation_outcomes_total", 1,
                                      labels={"outcome": "client_gone"}, timeout=10))
        for outcome, n in expected.items():
            self.assertEqual(s.metric("ember_generation_outcomes_total", {"outcome": outcome}), n,
                             outcome)
        started = s.metric("ember_generation_requests_total")
        self.assertEqual(started, sum(expected.values()))
        self.assertEqual(s.metric("ember_generation_outcomes_total"), started)
        # the limits were settled: acme's concurrency place is free again
        status, body, _ = post({"prompt": "Hi", "max_tokens": 2})
        self.assertEqual(status, 200, body)
        self.assertEqual(s.metric("ember_tenant_rejections_total",
                                  {"tenant": "acme", "reason": "concurrency"}), 1)
        self.assertEqual(s.metric("ember_tenant_rejections_total", {"tenant": "unknown"}), 2)


if __name__ == "__main__":
    unittest.main()
