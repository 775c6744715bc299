"""The console's server side (docs/console.md): x-request-id on every response, the ring of
recent requests with their timelines (GET /admin/requests[/{id}]) and the live event feed
(GET /admin/events), against the real binary over real HTTP."""
import http.client
import json
import shutil
import subprocess
import tempfile
import threading
import time
import unittest

from harness import EMBER_BIN, MODEL, Server, write_tenants


def complete(server, max_tokens=8, headers=None, **extra):
    body = {"prompt": "Once upon a time", "max_tokens": max_tokens, "temperature": 0, **extra}
    return server.post_json("/v1/completions", body,
                            headers={"Content-Type": "application/json", **(headers or {})})


def record(server, request_id, headers=None):
    status, body, _ = server.request("GET", f"/admin/requests/{request_id}", headers=headers or {})
    return status, json.loads(body)


def two_tenants():
    """A data directory whose tenants file holds acme and globex; returns it and their keys."""
    directory = tempfile.mkdtemp(prefix="ember-console-")
    keys = {"acme": "ek_acmeacmeacmeacmeacmeacmeacme0000000001",
            "globex": "ek_globexglobexglobexglobexgl0000000002"}
    write_tenants(directory, {"acme": {}, "globex": {}},
                  [("key_00000000000a", "acme", keys["acme"]),
                   ("key_00000000000b", "globex", keys["globex"])])
    return directory, keys


def events(server, path="/admin/events", headers=None, timeout=30):
    """Yields (event, data) from an SSE stream until the caller stops."""
    c = http.client.HTTPConnection("127.0.0.1", server.port, timeout=timeout)
    c.request("GET", path, headers=headers or {})
    r = c.getresponse()
    assert r.status == 200, r.status
    assert r.getheader("Content-Type") == "text/event-stream"
    name = None
    try:
        for raw in r:
            line = raw.decode().rstrip("\n")
            if line.startswith("event: "):
                name = line[len("event: "):]
            elif line.startswith("data: "):
                yield name, json.loads(line[len("data: "):])
    finally:
        c.close()


class RequestIdAndTimelineTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.server = Server("--parallel", "4", "--ctx-size", "1024", "--debug-step-delay", "10ms")

    @classmethod
    def tearDownClass(cls):
        cls.server.stop()

    def test_every_response_carries_a_request_id(self):
        _, _, headers = self.server.get("/health")
        self.assertTrue(headers.get("x-request-id", "").startswith("req-"), headers)
        status, body, headers = complete(self.server, max_tokens=2)
        self.assertEqual(status, 200)
        # Without a client id, the request id is the response's id.
        self.assertEqual(headers["x-request-id"], body["id"])
        # A client's own id is honoured and finds the request; the body keeps its own id.
        status, body, headers = complete(self.server, max_tokens=2,
                                         headers={"x-request-id": "trace-42.a:b_c"})
        self.assertEqual(headers["x-request-id"], "trace-42.a:b_c")
        self.assertTrue(body["id"].startswith("cmpl-"))
        status, r = record(self.server, "trace-42.a:b_c")
        self.assertEqual(status, 200)
        self.assertEqual(r["response_id"], body["id"])
        self.assertEqual(record(self.server, body["id"])[1]["id"], "trace-42.a:b_c")
        # An id that is not sane (markup, too long) is replaced, never echoed.
        for bad in ["<script>", "x" * 129]:
            _, _, headers = complete(self.server, max_tokens=1, headers={"x-request-id": bad})
            self.assertNotEqual(headers["x-request-id"], bad)
            self.assertTrue(headers["x-request-id"].startswith("cmpl-"))
        # Without --console-dir there is no page, and the 404 says how to get one.
        status, body, headers = self.server.get("/console")
        self.assertEqual(status, 404)
        self.assertIn("scripts/console.sh", json.loads(body)["error"]["message"])
        self.assertIn("x-request-id", headers)
        # Refusals carry one too.
        status, _, headers = self.server.post("/v1/completions", {"prompt": 5})
        self.assertEqual(status, 400)
        self.assertIn("x-request-id", headers)

    def test_timeline_of_a_finished_request(self):
        status, body, headers = complete(self.server, max_tokens=6, seed=42)
        self.assertEqual(status, 200)
        status, r = record(self.server, headers["x-request-id"])
        self.assertEqual(status, 200)
        self.assertEqual(r["outcome"], "finished")
        self.assertEqual(r["finish_reason"], "length")
        self.assertEqual(r["http_status"], 200)
        self.assertEqual(r["endpoint"], "/v1/completions")
        self.assertEqual(r["usage"], {"prompt_tokens": body["usage"]["prompt_tokens"],
                                      "cached_tokens": r["usage"]["cached_tokens"],
                                      "completion_tokens": 6})
        self.assertEqual(r["seed"], 42)
        self.assertIs(r["deterministic"], False)
        self.assertEqual(r["system_fingerprint"], body["system_fingerprint"])
        self.assertNotIn("prompt", r)  # no text without --console-keep-text
        self.assertNotIn("Once upon", json.dumps(r))
        names = [e["event"] for e in r["timeline"]]
        self.assertEqual(names[:4], ["arrival", "model_ready", "queued", "admitted"])
        self.assertEqual(names[4], "prefill")
        self.assertEqual(names[-1], "completed")
        self.assertEqual(names.count("first_token"), 1)
        # The prompt in one chunk, which samples the first token; then one decode step per
        # further token.
        self.assertEqual(names.count("prefill"), 1)
        self.assertEqual(names.count("decode"), 5)
        self.assertEqual(r["steps_total"], 6)
        times = [e["at_us"] for e in r["timeline"]]
        self.assertEqual(times, sorted(times))
        self.assertLessEqual(r["ttft_us"], r["duration_us"])

    def test_steps_name_the_requests_they_shared(self):
        ids = ["shared-a", "shared-b", "shared-c"]
        threads = [threading.Thread(target=complete, args=(self.server,),
                                    kwargs={"max_tokens": 12, "headers": {"x-request-id": i}})
                   for i in ids]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        status, r = record(self.server, "shared-a")
        self.assertEqual(status, 200)
        decodes = [e for e in r["timeline"] if e["event"] == "decode"]
        # A step where all three decoded (one token each).
        together = [e for e in decodes
                    if sorted(p["id"] for p in e["shared_with"]) == ["shared-b", "shared-c"]
                    and all(p["tokens"] == 1 for p in e["shared_with"])]
        self.assertTrue(together, decodes)
        self.assertEqual([p["tokens"] for p in together[0]["shared_with"]], [1, 1])
        self.assertEqual(together[0]["batch_tokens"], 3)
        # The other side names it too, in the same step.
        _, b = record(self.server, "shared-b")
        same = [e for e in b["timeline"] if e.get("step") == together[0]["step"]]
        self.assertEqual(sorted(p["id"] for p in same[0]["shared_with"]), ["shared-a", "shared-c"])

    def test_search_by_status_and_limit(self):
        self.server.post("/v1/completions", {"prompt": "x", "max_tokens": -1},
                         headers={"Content-Type": "application/json",
                                  "x-request-id": "bad-one"})
        complete(self.server, max_tokens=1, headers={"x-request-id": "good-one"})
        status, body, _ = self.server.get("/admin/requests?status=invalid&limit=5")
        self.assertEqual(status, 200)
        found = json.loads(body)["data"]
        self.assertEqual(found[0]["id"], "bad-one")
        self.assertTrue(all(r["outcome"] == "invalid" for r in found))
        _, body, _ = self.server.get("/admin/requests?status=ok&limit=1")
        self.assertEqual([r["id"] for r in json.loads(body)["data"]], ["good-one"])
        self.assertEqual(self.server.get("/admin/requests?limit=0")[0], 400)
        self.assertEqual(record(self.server, "never-seen")[0], 404)


class ConsoleOptionsTest(unittest.TestCase):
    def test_ring_keeps_only_the_newest(self):
        server = Server("--console-ring", "2")
        try:
            for i in range(3):
                complete(server, max_tokens=1, headers={"x-request-id": f"ring-{i}"})
            self.assertEqual(record(server, "ring-0")[0], 404)
            self.assertEqual(record(server, "ring-1")[0], 200)
            self.assertEqual(record(server, "ring-2")[0], 200)
        finally:
            server.stop()

    def test_keep_text_keeps_the_request_and_output(self):
        server = Server("--console-keep-text")
        try:
            prompt = "Hi <script>alert(1)</script>"
            _, body, headers = server.post_json(
                "/v1/completions", {"prompt": prompt, "max_tokens": 3, "temperature": 0})
            _, r = record(server, headers["x-request-id"])
            self.assertEqual(json.loads(r["prompt"])["prompt"], prompt)
            self.assertEqual(r["output"], body["choices"][0]["text"])
        finally:
            server.stop()

    def test_admin_key_guards_the_console(self):
        server = Server("--admin-key", "console-admin")
        try:
            complete(server, max_tokens=1, headers={"x-request-id": "guarded"})
            self.assertEqual(server.get("/admin/requests")[0], 401)
            self.assertEqual(server.get("/admin/requests/guarded")[0], 401)
            self.assertEqual(server.get("/admin/events")[0], 401)
            ok = {"Authorization": "Bearer console-admin"}
            self.assertEqual(record(server, "guarded", headers=ok)[0], 200)
        finally:
            server.stop()


class TenantSearchTest(unittest.TestCase):
    def test_search_by_tenant(self):
        directory, keys = two_tenants()
        server = Server("--data-dir", directory)
        try:
            for tenant in ["acme", "globex", "acme"]:
                status, _, _ = complete(server, max_tokens=1,
                                        headers={"Authorization": f"Bearer {keys[tenant]}"})
                self.assertEqual(status, 200)
            _, body, _ = server.get("/admin/requests?tenant=globex")
            found = json.loads(body)["data"]
            self.assertEqual([r["tenant"] for r in found], ["globex"])
            _, body, _ = server.get("/admin/requests?tenant=acme")
            self.assertEqual(len(json.loads(body)["data"]), 2)
            # The key never reaches the console.
            _, body, _ = server.get("/admin/requests")
            self.assertNotIn(keys["acme"], body.decode())
        finally:
            server.stop()
            shutil.rmtree(directory, ignore_errors=True)


class EventFeedTest(unittest.TestCase):
    def test_live_feed_shows_an_in_flight_request_then_its_end(self):
        server = Server("--parallel", "2", "--console-interval", "100ms",
                        "--debug-step-delay", "30ms")
        try:
            feed = events(server)
            name, first = next(feed)
            self.assertEqual(name, "snapshot")
            self.assertEqual(first["models"][0]["state"], "loaded")
            self.assertGreater(first["models"][0]["kv_cells_total"], 0)
            worker = threading.Thread(target=complete, args=(server,),
                                      kwargs={"max_tokens": 40,
                                              "headers": {"x-request-id": "live-1"}})
            worker.start()
            seen_decoding, ended = None, None
            deadline = time.time() + 30
            for name, data in feed:
                if time.time() > deadline:
                    break
                if name == "snapshot" and seen_decoding is None:
                    live = [r for r in data["requests"] if r["id"] == "live-1"]
                    if live and live[0]["state"] == "decoding" and live[0]["tokens"] > 0:
                        seen_decoding = (live[0], data["models"][0])
                        # Its record while in flight: what is known so far, no outcome yet.
                        status, now = record(server, "live-1")
                        self.assertEqual(status, 200)
                        self.assertIs(now["in_flight"], True)
                        self.assertIsNone(now["outcome"])
                        self.assertEqual(now["timeline"][0]["event"], "arrival")
                if name == "request" and data["id"] == "live-1":
                    ended = data
                    break
            worker.join()
            self.assertIsNotNone(seen_decoding, "no snapshot showed the request decoding")
            live, model = seen_decoding
            self.assertIsNotNone(live["ttft_ms"])
            self.assertEqual(live["model"], model["id"])
            self.assertGreaterEqual(model["running"], 1)
            self.assertGreater(model["kv_cells_used"], 0)
            self.assertIsNotNone(ended, "no request event when it completed")
            self.assertEqual(ended["outcome"], "finished")
            self.assertEqual(ended["usage"]["completion_tokens"], 40)
            feed.close()
        finally:
            server.stop()


    def test_live_feed_shows_a_long_prompts_prefill_progress(self):
        # 32 prompt tokens a step: a ~400-token prompt takes ~13 steps of 30 ms to prefill.
        server = Server("--parallel", "1", "--batch-size", "32", "--ctx-size", "1024",
                        "--console-interval", "50ms",
                        "--debug-step-delay", "30ms")
        try:
            feed = events(server)
            next(feed)
            worker = threading.Thread(target=complete, args=(server,), kwargs={
                "max_tokens": 2, "prompt": "Once upon a time there was a cat. " * 40,
                "headers": {"x-request-id": "long-1"}})
            worker.start()
            progress = []
            deadline = time.time() + 30
            for name, data in feed:
                if time.time() > deadline or (name == "request" and data["id"] == "long-1"):
                    break
                if name == "snapshot":
                    progress += [(r["prefilled"], r["prompt_tokens"]) for r in data["requests"]
                                 if r["id"] == "long-1" and r["state"] == "prefill"]
            worker.join()
            feed.close()
            partial = [n for n, m in progress if 0 < n < m]
            self.assertTrue(partial, f"no snapshot showed the prefill part-way: {progress}")
            self.assertGreater(progress[0][1], 300)
            self.assertEqual(partial, sorted(partial))  # it only moves forward
        finally:
            server.stop()

    def test_model_events_show_an_unload_and_a_cold_start(self):
        server = Server("--console-interval", "100ms")
        try:
            feed = events(server)
            _, first = next(feed)
            model = first["models"][0]["id"]
            # A periodic snapshot: the ticker has seen the model loaded (changes are seen at
            # the snapshot's resolution).
            for name, tick in feed:
                if name == "snapshot" and tick["models"][0]["state"] == "loaded":
                    break
            status, _, _ = server.post(f"/admin/models/{model}/unload", {})
            self.assertEqual(status, 200)
            seen = []
            worker = None
            for name, data in feed:
                if name == "model":
                    seen.append((data["model"], data["from"], data["to"]))
                    if data["to"] == "unloaded" and worker is None:
                        # The next request waits for a load: a cold start, then "loaded".
                        worker = threading.Thread(target=complete, args=(server,),
                                                  kwargs={"max_tokens": 1})
                        worker.start()
                    if data["to"] == "loaded":
                        break
                if name == "cold_start":
                    seen.append(("cold_start", data["model"], data["waited_ms"] >= 0))
            worker.join()
            self.assertIn((model, "loaded", "unloaded"), seen)
            self.assertIn(("cold_start", model, True), seen)
            self.assertEqual(seen[-1][0::2], (model, "loaded"))
            feed.close()
        finally:
            server.stop()


class HistoryTest(unittest.TestCase):
    """GET /admin/history: the charts' points add up to the requests that ran."""

    def test_points_add_up_to_the_requests_their_tokens_and_cost(self):
        directory, keys = two_tenants()
        prices = f"{directory}/prices.toml"
        with open(prices, "w") as f:
            f.write('[models."stories260K"]\ninput_per_mtok = 100\noutput_per_mtok = 300\n')
        server = Server("--data-dir", directory, "--prices", prices,
                        "--console-history-step", "1s", "--console-interval", "100ms")
        try:
            for tenant in ["acme", "globex", "acme"]:
                status, _, _ = complete(server, max_tokens=6,
                                        headers={"Authorization": f"Bearer {keys[tenant]}"})
                self.assertEqual(status, 200)
            self.assertEqual(complete(server, max_tokens=1, headers={
                "Authorization": "Bearer ek_not_a_key_not_a_key_not_a_key_00"})[0], 401)
            _, body, _ = server.get("/admin/requests?limit=10")
            records = [r for r in json.loads(body)["data"] if r["endpoint"] == "/v1/completions"]
            self.assertEqual(len(records), 4)
            deadline = time.monotonic() + 10
            while True:
                _, body, _ = server.get("/admin/history")
                history = json.loads(body)
                outcomes = {}
                for p in history["points"]:
                    for name, n in p["outcomes"].items():
                        outcomes[name] = outcomes.get(name, 0) + n
                if sum(outcomes.values()) >= 4 or time.monotonic() > deadline:
                    break
                time.sleep(0.2)
            self.assertEqual(history["step_seconds"], 1)
            self.assertEqual(outcomes, {"finished": 3, "unauthorized": 1})
            points = history["points"]
            # Every generated token is counted once: tok/s x 1 s summed over the points.
            generated = sum(r["usage"]["completion_tokens"] for r in records)
            self.assertGreater(generated, 0)
            self.assertEqual(round(sum(p["tokens_per_s"] for p in points)), generated)
            # The cost per tenant is the ledger's list price, request by request.
            for tenant in ["acme", "globex"]:
                charged = sum(p["cost_microdollars"].get(tenant, 0) for p in points)
                self.assertEqual(charged, sum(r["cost_microdollars"] for r in records
                                              if r["tenant"] == tenant))
                self.assertGreater(charged, 0)
            ttfts = [p["ttft_ms"]["p50"] for p in points if p["ttft_ms"]["p50"] is not None]
            self.assertTrue(ttfts)
            slowest = max(r["ttft_us"] for r in records if r["ttft_us"] is not None) / 1000
            self.assertLessEqual(max(ttfts), slowest * 1.1)
            self.assertTrue(any(p["itl_ms"]["p99"] is not None for p in points))
        finally:
            server.stop()
            shutil.rmtree(directory, ignore_errors=True)

    def test_history_is_an_admin_endpoint_and_its_step_is_checked(self):
        server = Server("--admin-key", "console-admin")
        try:
            self.assertEqual(server.get("/admin/history")[0], 401)
            status, body, _ = server.request("GET", "/admin/history",
                                             headers={"Authorization": "Bearer console-admin"})
            self.assertEqual(status, 200)
            self.assertEqual(json.loads(body)["step_seconds"], 10)
        finally:
            server.stop()
        run = subprocess.run([EMBER_BIN, "serve", "-m", MODEL, "--console-history-step", "1500ms"],
                             capture_output=True, text=True, timeout=30)
        self.assertNotEqual(run.returncode, 0)
        self.assertIn("--console-history-step must be a whole number of seconds", run.stderr)


if __name__ == "__main__":
    unittest.main()
