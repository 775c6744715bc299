"""The real ember binary over real HTTP: endpoints, admission, cancellation, bad input."""
import json
import socket
import threading
import time
import unittest

from harness import Server, post_bytes, raw_socket


class EndpointsAndBadInputTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.server = Server("--parallel", "2", "--ctx-size", "1024", "--max-body-bytes", "65536",
                            "--read-timeout", "1s")

    @classmethod
    def tearDownClass(cls):
        cls.server.stop()

    def assertOpenAIError(self, status, body, expected_status, param=None):
        self.assertEqual(status, expected_status, body)
        err = json.loads(body)["error"]
        self.assertTrue(err["message"])
        self.assertIn("type", err)
        self.assertIn("code", err)
        if param is not None:
            self.assertEqual(err["param"], param)

    def test_health_ready_models(self):
        self.assertEqual(self.server.get("/health")[0], 200)
        self.assertEqual(self.server.get("/ready")[0], 200)
        status, body, _ = self.server.get("/v1/models")
        models = json.loads(body)
        self.assertEqual(status, 200)
        self.assertEqual(models["data"][0]["id"], "stories260K")
        self.assertEqual(models["data"][0]["context_length"], 512)

    def test_metrics_have_vllm_compatible_series(self):
        self.server.post("/v1/completions", {"prompt": "Hi", "max_tokens": 3})
        status, body, headers = self.server.get("/metrics")
        text = body.decode()
        self.assertEqual(status, 200)
        self.assertTrue(headers["Content-Type"].startswith("text/plain"))
        for name in ["vllm:num_requests_running", "vllm:num_requests_waiting",
                     "vllm:kv_cache_usage_perc", "ember_time_to_first_token_seconds_bucket",
                     "ember_inter_token_latency_seconds_bucket",
                     "ember_e2e_request_latency_seconds_count",
                     "ember_request_queue_time_seconds_sum", "ember_prompt_tokens_total",
                     "ember_generation_tokens_total", "ember_http_requests_total"]:
            self.assertIn(name, text)
        self.assertGreaterEqual(self.server.metric(
            "ember_http_requests_total", {"endpoint": "/v1/completions", "status": "200"}), 1)

    def test_startup_phases_are_measured(self):
        phases = {p: self.server.metric("ember_startup_seconds", {"phase": p})
                  for p in ("metadata", "tokenizer", "buffers", "weights", "context", "warmup",
                            "total")}
        for phase, seconds in phases.items():
            self.assertIsNotNone(seconds, phase)
            self.assertGreaterEqual(seconds, 0, phase)
        # The phases happen one after another inside the total, which starts earlier.
        parts = sum(phases[p] for p in phases if p != "total")
        self.assertLessEqual(parts, phases["total"] + 1e-3)
        self.assertLess(phases["total"], 30)
        self.assertTrue(any("startup: metadata" in line for line in self.server.log))

    def test_responses_carry_a_system_fingerprint(self):
        status, a, _ = self.server.post_json("/v1/completions", {"prompt": "Hi", "max_tokens": 2})
        self.assertEqual(status, 200)
        self.assertRegex(a["system_fingerprint"], r"^fp_[0-9a-f]{16}$")
        status, b, _ = self.server.post_json(
            "/v1/chat/completions", {"messages": [{"role": "user", "content": "Hi"}],
                                     "max_tokens": 2})
        self.assertEqual(b["system_fingerprint"], a["system_fingerprint"])

    def test_bad_inputs_get_4xx_and_server_keeps_serving(self):
        cases = [
            ("/v1/completions", b"{not json", 400, None),
            ("/v1/completions", b"[1,2]", 400, None),
            ("/v1/completions", b'{"prompt": 5}', 400, "prompt"),
            ("/v1/completions", b'{"prompt": "x", "max_tokens": -5}', 400, "max_tokens"),
            ("/v1/completions", b'{"prompt": "x", "max_tokens": 99999999999}', 400, "max_tokens"),
            ("/v1/completions", b'{"prompt": "x", "max_tokens": "ten"}', 400, "max_tokens"),
            ("/v1/completions", b'{"prompt": "x", "temperature": 9}', 400, "temperature"),
            ("/v1/completions", b'{"prompt": "x", "n": 9}', 400, "n"),
            ("/v1/completions", b'{"prompt": "x", "n": 3}', 400, "n"),  # > 2 slots
            ("/v1/completions", b'{"prompt": "x", "model": "gpt-9"}', 404, "model"),
            ("/v1/completions", b'{"prompt": [1, 2, 999999]}', 400, "prompt"),
            ("/v1/completions", b'{"prompt": "x", "max_tokens": 600}', 400, "max_tokens"),
            ("/v1/completions", b'{"prompt": "\xff\xfe bad utf8"}', 400, None),
            ("/v1/completions", b"[" * 20000, 400, None),
            ("/v1/chat/completions", b'{"messages": []}', 400, "messages"),
            ("/v1/chat/completions", b'{"messages": [{"role": "wizard", "content": "x"}]}', 400,
             None),
            ("/v1/chat/completions", b'{"messages": "hello"}', 400, "messages"),
            ("/v1/completions", b"x" * 70000, 413, None),
        ]
        for path, body, expected, param in cases:
            with self.subTest(body=body[:40]):
                status, data, _ = self.server.post(path, body)
                self.assertOpenAIError(status, data, expected, param)
        self.assertEqual(self.server.get("/nope")[0], 404)
        self.assertEqual(self.server.request("DELETE", "/v1/completions")[0], 400)
        status, data, _ = self.server.post_json("/v1/completions", {"prompt": "Hi", "max_tokens": 4})
        self.assertEqual(status, 200)
        self.assertEqual(data["usage"]["completion_tokens"], 4)
        self.assertGreaterEqual(self.server.metric(
            "ember_http_requests_total", {"endpoint": "/v1/completions", "status": "400"}), 10)

    def test_expect_100_continue_is_answered_before_the_body(self):
        body = json.dumps({"prompt": "Once upon a time", "max_tokens": 3}).encode()
        s = raw_socket(self.server.port)
        s.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\n"
                  b"Content-Type: application/json\r\nContent-Length: " +
                  str(len(body)).encode() + b"\r\n\r\n")
        self.assertTrue(s.recv(100).startswith(b"HTTP/1.1 100 Continue"))
        s.sendall(body)
        self.assertIn(b"200 OK", s.recv(4096).split(b"\r\n")[0])
        s.close()

    def test_slow_client_is_timed_out_and_others_are_served(self):
        s = raw_socket(self.server.port)
        s.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\n")  # never finishes headers
        start = time.time()
        status, _, _ = self.server.post("/v1/completions", {"prompt": "Hi", "max_tokens": 2})
        self.assertEqual(status, 200)
        s.settimeout(5)
        reply = s.recv(4096)
        self.assertLess(time.time() - start, 4)
        self.assertIn(b"408", reply.split(b"\r\n")[0])
        s.close()


class AdmissionTest(unittest.TestCase):
    def test_queue_full_gives_429_with_retry_after(self):
        server = Server("--parallel", "1", "--queue-size", "1", "--debug-step-delay", "20ms")
        try:
            long_req = {"prompt": "Once", "max_tokens": 300}
            statuses = []
            threads = [threading.Thread(
                target=lambda: statuses.append(server.post("/v1/completions", long_req)[0]))
                for _ in range(2)]
            threads[0].start()  # takes the only slot
            self.assertTrue(server.wait_metric("ember_num_requests_running", 1))
            threads[1].start()  # takes the only queue place
            self.assertTrue(server.wait_metric("ember_num_requests_waiting", 1))
            status, body, headers = server.post("/v1/completions", long_req)
            self.assertEqual(status, 429, body)
            self.assertEqual(headers.get("Retry-After"), "1")
            self.assertEqual(json.loads(body)["error"]["type"], "rate_limit_error")
            for t in threads:
                t.join()
            self.assertEqual(statuses, [200, 200])
        finally:
            server.stop()

    def test_queue_timeout_gives_503(self):
        server = Server("--parallel", "1", "--queue-timeout", "200ms", "--debug-step-delay", "20ms")
        try:
            t = threading.Thread(target=server.post,
                                 args=("/v1/completions", {"prompt": "Once", "max_tokens": 100}))
            t.start()
            self.assertTrue(server.wait_metric("ember_num_requests_running", 1))
            status, body, _ = server.post("/v1/completions", {"prompt": "Hi", "max_tokens": 2})
            self.assertEqual(status, 503, body)
            self.assertIn("queue timeout", json.loads(body)["error"]["message"])
            t.join()
        finally:
            server.stop()


class LivenessTest(unittest.TestCase):
    def test_health_fails_when_engine_makes_no_progress_with_work(self):
        # Each step stalls 3 s, longer than the 300 ms liveness timeout.
        server = Server("--parallel", "1", "--debug-step-delay", "3s", "--liveness-timeout",
                        "300ms")
        try:
            self.assertEqual(server.get("/health")[0], 200)  # idle: no work, healthy
            t = threading.Thread(target=server.post,
                                 args=("/v1/completions", {"prompt": "Once", "max_tokens": 2}))
            t.start()
            deadline = time.time() + 2.5
            status = 200
            while time.time() < deadline and status == 200:
                status, body, _ = server.get("/health")
                time.sleep(0.05)
            self.assertEqual(status, 503)
            self.assertEqual(json.loads(body)["status"], "stalled")
        finally:
            server.stop()
            t.join()


class CancellationTest(unittest.TestCase):
    def test_disconnect_frees_the_sequence(self):
        server = Server("--parallel", "2", "--debug-step-delay", "10ms")
        try:
            for stream in (True, False):
                with self.subTest(stream=stream):
                    s = raw_socket(server.port)
                    body = json.dumps({"prompt": "Once upon a time", "max_tokens": 400,
                                       "stream": stream}).encode()
                    s.sendall(post_bytes("/v1/completions", body))
                    self.assertTrue(server.wait_metric("ember_num_requests_running", 1))
                    if stream:
                        self.assertIn(b"200", s.recv(100))
                    s.close()
                    self.assertTrue(server.wait_metric("ember_num_requests_running", 0, timeout=2))
                    self.assertEqual(server.metric("ember_kv_cache_usage_perc"), 0)
            self.assertEqual(server.metric("ember_requests_cancelled_total"), 2)
            self.assertEqual(server.metric("ember_request_success_total",
                                           {"finished_reason": "abort"}), 2)
        finally:
            server.stop()


    def test_a_client_gone_before_its_first_token_is_not_counted_as_a_200(self):
        # The first step (the prefill) sleeps 300 ms; the client leaves during it, so its
        # first token comes out after the server has seen it go. That token must not start a
        # stream: no 200 was ever sent, so none may be counted (the soak test caught it).
        server = Server("--parallel", "2", "--debug-step-delay", "300ms")
        try:
            s = raw_socket(server.port)
            body = json.dumps({"prompt": "Once upon a time", "max_tokens": 40,
                               "stream": True}).encode()
            s.sendall(post_bytes("/v1/completions", body))
            self.assertTrue(server.wait_metric("ember_num_requests_running", 1))
            s.shutdown(socket.SHUT_WR)
            received = b""
            s.settimeout(10)
            while chunk := s.recv(4096):
                received += chunk
            s.close()
            self.assertEqual(received, b"", "the server answered a client that had left")
            self.assertTrue(server.wait_metric("ember_num_requests_running", 0, timeout=5))
            self.assertEqual(server.metric("ember_requests_cancelled_total"), 1)
            self.assertEqual(server.metric("ember_http_requests_total",
                                           {"endpoint": "/v1/completions", "status": "200"})
                             or 0, 0)
        finally:
            server.stop()


class DrainTest(unittest.TestCase):
    def test_sigterm_finishes_in_flight_then_exits_zero(self):
        server = Server("--parallel", "2", "--debug-step-delay", "10ms", "--drain-timeout", "20s")
        try:
            result = {}

            def run():
                result["r"] = server.post_json("/v1/completions",
                                               {"prompt": "Once upon a time", "max_tokens": 100})

            t = threading.Thread(target=run)
            t.start()
            self.assertTrue(server.wait_metric("ember_num_requests_running", 1))
            server.signal()
            deadline = time.time() + 5
            while server.get("/ready")[0] != 503 and time.time() < deadline:
                time.sleep(0.01)
            self.assertEqual(server.get("/ready")[0], 503)
            status, body, _ = server.post("/v1/completions", {"prompt": "Hi", "max_tokens": 2})
            self.assertEqual(status, 503, body)
            t.join(30)
            status, data, _ = result["r"]
            self.assertEqual(status, 200)
            self.assertEqual(data["usage"]["completion_tokens"], 100)
            self.assertEqual(server.proc.wait(30), 0)
        finally:
            server.stop()


if __name__ == "__main__":
    unittest.main()
