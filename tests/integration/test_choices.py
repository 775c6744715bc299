"""n > 1 through the real binary and the real model over HTTP: n choices numbered 0..n-1,
streamed interleaved with one [DONE], seeded choices that differ and repeat, usage that sums the
choices with the prompt counted once, the prompt computed once (engine step tokens), and the
400s for n out of range (docs/api.md, "Several choices")."""
import http.client
import json
import os
import shutil
import sqlite3
import tempfile
import time
import unittest

from harness import Server, post_bytes, raw_socket, write_tenants

CHAT = "/v1/chat/completions"
COMPLETIONS = "/v1/completions"
# A prompt a few dozen tokens long, so computing it once or three times shows in the counters.
PROMPT = ("Once upon a time there was a little girl named Lily. She liked to play in the park "
          "with her dog, and one day she found a big red ball under a tree near the pond.")


class ChoicesTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.server = Server("--parallel", "4", "--ctx-size", "2048")

    @classmethod
    def tearDownClass(cls):
        cls.server.stop()

    def assertRefused(self, body, param="n"):
        status, data, _ = self.server.post_json(COMPLETIONS, body)
        self.assertEqual(status, 400, data)
        self.assertEqual(data["error"]["param"], param)
        self.assertTrue(data["error"]["message"])

    def test_three_choices_numbered_with_usage_summed(self):
        status, body, _ = self.server.post_json(COMPLETIONS, {
            "prompt": "The cat", "max_tokens": 8, "n": 3, "temperature": 0})
        self.assertEqual(status, 200, body)
        self.assertEqual([c["index"] for c in body["choices"]], [0, 1, 2])
        completion = 0
        for c in body["choices"]:
            self.assertIn(c["finish_reason"], ("stop", "length"))
            completion += len(c["text"]) > 0
        # Greedy choices are the same text: one prefill, the same logits.
        self.assertEqual(len({c["text"] for c in body["choices"]}), 1)
        status, single, _ = self.server.post_json(COMPLETIONS, {
            "prompt": "The cat", "max_tokens": 8, "temperature": 0})
        self.assertEqual(single["choices"][0]["text"], body["choices"][0]["text"])
        self.assertEqual(body["usage"]["prompt_tokens"], single["usage"]["prompt_tokens"])
        self.assertEqual(body["usage"]["completion_tokens"],
                         3 * single["usage"]["completion_tokens"])
        self.assertEqual(body["usage"]["total_tokens"],
                         body["usage"]["prompt_tokens"] + body["usage"]["completion_tokens"])

    def test_seeded_choices_differ_and_are_reproducible(self):
        request = {"messages": [{"role": "user", "content": "Tell me a story."}],
                   "max_tokens": 24, "n": 3, "temperature": 1.0, "seed": 11}
        status, first, _ = self.server.post_json(CHAT, request)
        self.assertEqual(status, 200, first)
        status, second, _ = self.server.post_json(CHAT, request)
        self.assertEqual(status, 200, second)
        texts = [c["message"]["content"] for c in first["choices"]]
        self.assertEqual([c["index"] for c in first["choices"]], [0, 1, 2])
        self.assertEqual(len(set(texts)), 3, texts)
        self.assertEqual(texts, [c["message"]["content"] for c in second["choices"]])
        for c in first["choices"]:
            self.assertEqual(c["message"]["role"], "assistant")

    def test_prompt_is_computed_and_counted_once(self):
        prompt_before = self.server.metric("ember_prompt_tokens_total") or 0
        steps_before = self.server.metric("ember_engine_step_tokens_total") or 0
        status, body, _ = self.server.post_json(COMPLETIONS, {
            "prompt": "Zebras: " + PROMPT, "max_tokens": 4, "n": 3, "temperature": 0.8,
            "seed": 3})
        self.assertEqual(status, 200, body)
        n_prompt = body["usage"]["prompt_tokens"]
        self.assertGreater(n_prompt, 30)
        self.assertEqual(self.server.metric("ember_prompt_tokens_total") - prompt_before,
                         n_prompt)
        computed = self.server.metric("ember_engine_step_tokens_total") - steps_before
        # The prompt once, its last token again for each other choice, and each choice's
        # output but its last token.
        self.assertLessEqual(computed, n_prompt + 2 + body["usage"]["completion_tokens"])
        self.assertLess(computed, 2 * n_prompt)

    def stream_raw(self, path, body):
        c = http.client.HTTPConnection("127.0.0.1", self.server.port, timeout=60)
        c.request("POST", path, body=json.dumps(body),
                  headers={"Content-Type": "application/json"})
        r = c.getresponse()
        self.assertEqual(r.status, 200)
        payloads = [line.decode().strip()[len("data: "):] for line in r
                    if line.startswith(b"data: ")]
        c.close()
        return payloads

    def test_streamed_choices_interleave_and_end_with_one_done(self):
        payloads = self.stream_raw(COMPLETIONS, {
            "prompt": "The dog", "max_tokens": 16, "n": 3, "temperature": 1.0, "seed": 5,
            "stream": True, "stream_options": {"include_usage": True}})
        self.assertEqual(payloads.count("[DONE]"), 1)
        self.assertEqual(payloads[-1], "[DONE]")
        events = [json.loads(p) for p in payloads[:-1]]
        usage = events[-1]
        self.assertEqual(usage["choices"], [])
        order, texts, finishes = [], {0: "", 1: "", 2: ""}, {}
        for e in events[:-1]:
            self.assertEqual(len(e["choices"]), 1)
            c = e["choices"][0]
            order.append(c["index"])
            texts[c["index"]] += c["text"]
            if c["finish_reason"]:
                self.assertNotIn(c["index"], finishes)
                finishes[c["index"]] = c["finish_reason"]
        self.assertEqual(sorted(finishes), [0, 1, 2])
        self.assertTrue(any(a != b for a, b in zip(order, order[1:])), "chunks interleave")
        status, body, _ = self.server.post_json(COMPLETIONS, {
            "prompt": "The dog", "max_tokens": 16, "n": 3, "temperature": 1.0, "seed": 5})
        self.assertEqual(status, 200, body)
        self.assertEqual([texts[i] for i in range(3)], [c["text"] for c in body["choices"]])
        # (cached_tokens may differ: the second request finds the first one's prompt cells.)
        for key in ("prompt_tokens", "completion_tokens", "total_tokens"):
            self.assertEqual(usage["usage"][key], body["usage"][key], key)

    def test_streamed_chat_sends_a_role_chunk_per_choice(self):
        payloads = self.stream_raw(CHAT, {
            "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 6, "n": 2,
            "stream": True})
        self.assertEqual(payloads.count("[DONE]"), 1)
        events = [json.loads(p) for p in payloads[:-1]]
        roles = [e["choices"][0]["index"] for e in events
                 if e["choices"][0]["delta"].get("role") == "assistant"]
        self.assertEqual(sorted(roles), [0, 1])
        ends = [e["choices"][0]["index"] for e in events if e["choices"][0]["finish_reason"]]
        self.assertEqual(sorted(ends), [0, 1])

    def test_each_choice_has_its_own_logprobs(self):
        status, body, _ = self.server.post_json(CHAT, {
            "messages": [{"role": "user", "content": "Tell me a story."}], "max_tokens": 12,
            "n": 2, "temperature": 1.0, "seed": 21, "logprobs": True, "top_logprobs": 2})
        self.assertEqual(status, 200, body)
        for c in body["choices"]:
            content = c["logprobs"]["content"]
            spelled = b"".join(bytes(e["bytes"]) for e in content).decode("utf-8", "replace")
            self.assertEqual(spelled, c["message"]["content"])
            self.assertTrue(all(len(e["top_logprobs"]) == 2 for e in content))
        self.assertNotEqual(body["choices"][0]["logprobs"], body["choices"][1]["logprobs"])

    def test_n_out_of_range_is_a_400_naming_n(self):
        self.assertRefused({"prompt": "x", "n": 0})
        self.assertRefused({"prompt": "x", "n": 9})
        self.assertRefused({"prompt": "x", "n": "2"})
        self.assertRefused({"prompt": "x", "n": 5}, "n")  # more than the 4 slots
        status, data, _ = self.server.post_json(CHAT, {
            "messages": [{"role": "user", "content": "x"}], "n": 5})
        self.assertEqual(status, 400, data)
        self.assertIn("parallel", data["error"]["message"])
        self.assertRefused({"prompt": "x", "best_of": 2}, "best_of")


class ChoicesCancellationTest(unittest.TestCase):
    def test_a_client_that_leaves_cancels_every_choice(self):
        server = Server("--parallel", "4", "--ctx-size", "2048", "--debug-step-delay", "10ms")
        try:
            s = raw_socket(server.port)
            body = json.dumps({"prompt": "Once", "max_tokens": 400, "n": 3, "stream": True})
            s.sendall(post_bytes(COMPLETIONS, body.encode()))
            deadline = time.time() + 10
            while (server.metric("ember_num_requests_running") or 0) < 3:
                self.assertLess(time.time(), deadline, "the 3 choices never ran together")
                time.sleep(0.005)
            s.close()
            self.assertTrue(server.wait_metric("ember_num_requests_running", 0, timeout=3))
            # The request is counted once, as aborted; the server keeps serving.
            self.assertEqual(
                server.metric("ember_request_success_total", {"finished_reason": "abort"}), 1)
            self.assertEqual(server.metric("ember_requests_cancelled_total"), 1)
            status, resp, _ = server.post_json(COMPLETIONS, {"prompt": "Hi", "max_tokens": 3,
                                                             "n": 4})
            self.assertEqual(status, 200, resp)
            self.assertEqual(len(resp["choices"]), 4)
        finally:
            server.stop()


class DeterministicChoicesTest(unittest.TestCase):
    """In deterministic mode choice i of a request with seed s is exactly the answer a request
    with n = 1 and seed s + i gets: the copied prompt cells are the ones it would compute."""

    @classmethod
    def setUpClass(cls):
        cls.server = Server("--parallel", "4", "--ctx-size", "2048", "--allow-deterministic")

    @classmethod
    def tearDownClass(cls):
        cls.server.stop()

    def test_choice_i_is_the_request_with_seed_plus_i(self):
        request = {"prompt": PROMPT, "max_tokens": 24, "temperature": 0.9, "seed": 40,
                   "deterministic": True}
        status, body, _ = self.server.post_json(COMPLETIONS, dict(request, n=3))
        self.assertEqual(status, 200, body)
        for i, c in enumerate(body["choices"]):
            status, single, _ = self.server.post_json(COMPLETIONS, dict(request, seed=40 + i))
            self.assertEqual(status, 200, single)
            self.assertEqual(c["text"], single["choices"][0]["text"], f"choice {i}")


class ChoicesReservationTest(unittest.TestCase):
    """A tenant's output-token limit reserves n x max_tokens at admission and settles to the
    sum of the choices' tokens."""
    KEY = "ek_nchoicesnchoicesnchoicesnc000000000001"
    OPEN_KEY = "ek_nchoicesnchoicesnchoicesnc000000000002"

    @classmethod
    def setUpClass(cls):
        cls.dir = tempfile.mkdtemp(prefix="ember-choices-")
        write_tenants(cls.dir, {"small": {"output_tpm": 100}, "open": {}},
                      [("key_00000000001e", "small", cls.KEY),
                       ("key_00000000002e", "open", cls.OPEN_KEY)])
        cls.server = Server("--parallel", "4", "--ctx-size", "1024", "--data-dir", cls.dir,
                            "--ledger-sync", "full")

    @classmethod
    def tearDownClass(cls):
        cls.server.stop()
        shutil.rmtree(cls.dir, ignore_errors=True)

    def test_one_usage_record_with_the_choices_summed(self):
        status, body, _ = self.post({"prompt": "Once upon", "max_tokens": 5, "n": 3,
                                     "temperature": 0}, self.OPEN_KEY)
        self.assertEqual(status, 200, body)
        db = sqlite3.connect(f"file:{os.path.join(self.dir, 'ledger.sqlite')}?mode=ro", uri=True)
        db.row_factory = sqlite3.Row
        try:
            rows = [dict(r) for r in db.execute("SELECT * FROM usage WHERE request_id = ?",
                                                (body["id"],))]
        finally:
            db.close()
        self.assertEqual(len(rows), 1)
        self.assertEqual(rows[0]["prompt_tokens"], body["usage"]["prompt_tokens"])
        self.assertEqual(rows[0]["completion_tokens"], body["usage"]["completion_tokens"])
        self.assertEqual(rows[0]["completion_tokens"], 15)
        self.assertGreater(rows[0]["engine_ns"], 0)

    def post(self, body, key=None):
        return self.server.post_json(COMPLETIONS, body, headers={
            "Content-Type": "application/json", "Authorization": f"Bearer {key or self.KEY}"})

    def test_reservation_is_n_times_max_tokens(self):
        # 4 x 30 = 120 output tokens cannot be reserved from 100/min, though 30 could.
        status, body, _ = self.post({"prompt": "Hi", "max_tokens": 30, "n": 4})
        self.assertEqual(status, 429, body)
        self.assertEqual(body["error"]["code"], "rate_limit_exceeded")
        status, body, headers = self.post({"prompt": "Hi", "max_tokens": 30, "n": 3})
        self.assertEqual(status, 200, body)
        self.assertEqual(len(body["choices"]), 3)
        used = body["usage"]["completion_tokens"]
        self.assertGreater(used, 30, "3 choices of up to 30 tokens each, summed")
        _, _, h = self.post({"prompt": "Hi", "max_tokens": 1})
        # Settled to what the 3 choices generated (the refill meanwhile is a token or two).
        self.assertGreaterEqual(int(h["x-ratelimit-remaining-tokens"]) + 1, 100 - used - 1)
        self.assertLessEqual(int(h["x-ratelimit-remaining-tokens"]), 100 - used + 3)


if __name__ == "__main__":
    unittest.main()
