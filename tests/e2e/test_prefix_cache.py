"""Prefix reuse across slots with the real model (stories260K): a request whose prompt shares a
long beginning with a running request's copies that request's KV cells, reports exactly the
shared tokens as cached, and answers with the same greedy text as a server that reuses nothing;
in deterministic mode the same request gives the same tokens with and without a cache hit. The
RAM tier: more distinct prompts than slots, sent twice, come back from host memory the second
time with the same greedy text."""
import glob
import json
import os
import shutil
import tempfile
import threading
import unittest

from harness import Server

STORY = ("Once upon a time, there was a little girl named Lily. She loved to play outside in the "
         "park with her big red ball. One day, her mom said they would go to the beach.")
RUNNING = STORY + " Lily was very happy and"
ASKED = STORY + " The sun was hot, so"


def common_prefix(a, b):
    n = 0
    while n < min(len(a), len(b)) and a[n] == b[n]:
        n += 1
    return n


class RunningRequest:
    """A streamed greedy completion held open in a thread; started() returns once its first
    token arrived (its prompt's cells are computed)."""

    def __init__(self, server, prompt):
        self.first = threading.Event()
        self.conn = server.conn()
        self.conn.request("POST", "/v1/completions", body=json.dumps(
            {"prompt": prompt, "max_tokens": 300, "temperature": 0, "stream": True}),
            headers={"Content-Type": "application/json"})
        self.thread = threading.Thread(target=self._read)
        self.thread.start()

    def _read(self):
        for raw in self.conn.getresponse():
            if raw.startswith(b"data: "):
                self.first.set()
        self.first.set()

    def join(self):
        self.thread.join(60)
        self.conn.close()


class PrefixCacheTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        args = ("--parallel", "4", "--ctx-size", "2048", "--debug-step-delay", "10ms")
        cls.on = Server(*args)
        cls.off = Server(*args, "--prefix-cache-share", "off")
        cls.det = Server(*args, "--deterministic")
        cls.det_off = Server(*args, "--deterministic", "--prefix-cache-share", "off")

    @classmethod
    def tearDownClass(cls):
        for s in (cls.on, cls.off, cls.det, cls.det_off):
            s.stop()

    def shared_tokens(self, server):
        _, a, _ = server.post_json("/tokenize", {"content": RUNNING})
        _, b, _ = server.post_json("/tokenize", {"content": ASKED})
        shared = common_prefix(a["tokens"], b["tokens"])
        self.assertGreaterEqual(shared, 32, "the test needs a prefix worth copying")
        return shared

    def ask(self, server):
        status, data, _ = server.post_json(
            "/v1/completions", {"prompt": ASKED, "max_tokens": 40, "temperature": 0})
        self.assertEqual(status, 200, data)
        return data["choices"][0]["text"], data["usage"]["prompt_tokens_details"]["cached_tokens"]

    def ask_beside_running(self, server):
        running = RunningRequest(server, RUNNING)
        self.assertTrue(running.first.wait(30))
        try:
            return self.ask(server)
        finally:
            running.join()

    def test_copied_prefix_gives_the_same_greedy_text_as_no_reuse(self):
        shared = self.shared_tokens(self.on)
        text_off, cached_off = self.ask_beside_running(self.off)
        self.assertEqual(cached_off, 0)
        text_on, cached_on = self.ask_beside_running(self.on)
        self.assertEqual(cached_on, shared)
        self.assertEqual(text_on, text_off)
        self.assertEqual(self.on.metric("ember_prefix_cache_copies_total"), 1)
        self.assertEqual(self.on.metric("ember_prefix_cache_saved_tokens_total"), shared)
        self.assertEqual(self.off.metric("ember_prefix_cache_hits_total"), 0)

    def test_deterministic_request_gives_the_same_tokens_with_and_without_a_hit(self):
        shared = self.shared_tokens(self.det)
        text_miss, cached_miss = self.ask_beside_running(self.det_off)
        self.assertEqual(cached_miss, 0)
        text_hit, cached_hit = self.ask_beside_running(self.det)
        self.assertEqual(cached_hit, shared)
        self.assertEqual(text_hit, text_miss)
        # Asked again, it finds its own earlier prompt whole (all but the last token).
        text_again, cached_again = self.ask(self.det)
        _, asked, _ = self.det.post_json("/tokenize", {"content": ASKED})
        self.assertEqual(cached_again, len(asked["tokens"]) - 1)
        self.assertEqual(text_again, text_miss)

    def test_requests_sent_together_compute_their_shared_beginning_once(self):
        # 16 tokens a step, 10 ms each: the shared ~180 tokens take a dozen steps, and the
        # requests sent beside the first arrive before it has any cells worth copying. They
        # wait for its cells instead of computing the same tokens beside it.
        args = ("--parallel", "4", "--ctx-size", "2048", "--batch-size", "16",
                "--debug-step-delay", "10ms")
        story = STORY * 4
        prompts = [story + f" Then {name} said" for name in NAMES[:4]]
        results = {}
        for label, extra in (("off", ("--prefix-cache-share", "off")), ("on", ())):
            server = Server(*args, *extra)
            try:
                out = [None] * len(prompts)

                def ask(i, server=server, out=out):
                    status, data, _ = server.post_json("/v1/completions", {
                        "prompt": prompts[i], "max_tokens": 16, "temperature": 0})
                    out[i] = (status, data)

                threads = [threading.Thread(target=ask, args=(i,)) for i in range(len(prompts))]
                for t in threads:
                    t.start()
                for t in threads:
                    t.join(60)
                for status, data in out:
                    self.assertEqual(status, 200, data)
                results[label] = [
                    (d["choices"][0]["text"], d["usage"]["prompt_tokens_details"]["cached_tokens"])
                    for _, d in out]
                if label == "on":
                    toks = [server.post_json("/tokenize", {"content": p})[1]["tokens"]
                            for p in prompts[:2]]
                    shared = common_prefix(*toks)
                    copies = server.metric("ember_prefix_cache_copies_total")
            finally:
                server.stop()
        self.assertEqual([c for _, c in results["off"]], [0] * 4)
        self.assertEqual(sorted(c for _, c in results["on"]), [0, shared, shared, shared])
        self.assertEqual(copies, 3)
        # Greedy text unchanged by the copies.
        self.assertEqual([t for t, _ in results["on"]], [t for t, _ in results["off"]])

    def test_a_cache_moved_aside_before_an_overwrite_gives_the_same_text(self):
        server = Server("--parallel", "2", "--ctx-size", "1024")
        try:
            _, asked, _ = server.post_json("/tokenize", {"content": ASKED})
            first, cached_first = self.ask(server)  # slot 0
            self.assertEqual(cached_first, 0)
            # Lands on slot 0 too (lowest free): ASKED's cells move to slot 1 first.
            status, _, _ = server.post_json("/v1/completions", {
                "prompt": "Tom had a small boat. " * 8, "max_tokens": 8, "temperature": 0})
            self.assertEqual(status, 200)
            again, cached_again = self.ask(server)
            self.assertEqual(cached_again, len(asked["tokens"]) - 1)
            self.assertEqual(again, first)
            self.assertEqual(server.metric("ember_prefix_cache_copies_total"), 0)
        finally:
            server.stop()


NAMES = ["Tom", "Sue", "Ben", "Mia", "Max", "Zoe"]


def ram_prompt(name):
    return (f"{name} had a small red boat. Every morning {name} went to the lake with it and "
            f"looked at the fish. One day the wind was strong and the boat")


class PrefixRamTierTest(unittest.TestCase):
    """Six prompts on two slots, each sent twice in turn: by the second pass no slot holds the
    first four, so without the RAM tier they would be recomputed."""

    def setUp(self):
        self.start()

    def start(self, *extra):
        args = ("--parallel", "2", "--ctx-size", "1024", *extra)
        self.on = Server(*args)
        self.off = Server(*args, "--prefix-cache-share", "off")

    def tearDown(self):
        self.on.stop()
        self.off.stop()

    def complete(self, server, prompt):
        status, data, _ = server.post_json(
            "/v1/completions", {"prompt": prompt, "max_tokens": 24, "temperature": 0})
        self.assertEqual(status, 200, data)
        return data["choices"][0]["text"], data["usage"]["prompt_tokens_details"]["cached_tokens"]

    def test_prompts_no_slot_holds_come_back_from_ram_with_the_same_text(self):
        self.two_passes()

    def test_deterministic_requests_give_the_same_tokens_with_and_without_a_ram_hit(self):
        self.tearDown()
        self.start("--deterministic")
        self.two_passes()

    def two_passes(self):
        lengths = {}
        for name in NAMES:
            _, tokens, _ = self.on.post_json("/tokenize", {"content": ram_prompt(name)})
            lengths[name] = len(tokens["tokens"])
            self.assertGreaterEqual(lengths[name], 33, "a prompt must be worth saving")
        expected = {}
        for name in NAMES:
            expected[name], cached = self.complete(self.off, ram_prompt(name))
            self.assertEqual(cached, 0)
        for name in NAMES:
            text, cached = self.complete(self.on, ram_prompt(name))
            self.assertLess(cached, 32, name)  # only BOS and a few words in common
            self.assertEqual(text, expected[name], name)
        for name in NAMES:
            text, cached = self.complete(self.on, ram_prompt(name))
            # All but the last prompt token, whose logits give the first output token.
            self.assertEqual(cached, lengths[name] - 1, name)
            self.assertEqual(text, expected[name], name)
        self.assertGreaterEqual(self.on.metric("ember_prefix_cache_ram_hits_total"), 4)
        self.assertGreater(self.on.metric("ember_prefix_cache_ram_bytes"), 0)
        self.assertGreater(self.on.metric("ember_prefix_cache_ram_entries"), 0)
        self.assertEqual(self.off.metric("ember_prefix_cache_ram_hits_total"), 0)
        # Again without the tier: the same prompts are recomputed.
        for name in NAMES[:2]:
            self.assertEqual(self.complete(self.off, ram_prompt(name))[1], 0)



class PrefixDiskTierTest(unittest.TestCase):
    """The disk tier: a prompt reused from the RAM tier is written to --data-dir, and a
    restarted server restores it from there on its first request, with the same greedy text."""

    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="ember-prefix-disk-")
        self.args = ("--parallel", "1", "--ctx-size", "512", "--data-dir", self.dir,
                     "--cache-min-free", "1MiB")

    def tearDown(self):
        shutil.rmtree(self.dir, ignore_errors=True)

    def complete(self, server, prompt):
        status, data, _ = server.post_json(
            "/v1/completions", {"prompt": prompt, "max_tokens": 24, "temperature": 0})
        self.assertEqual(status, 200, data)
        return data["choices"][0]["text"], data["usage"]["prompt_tokens_details"]["cached_tokens"]

    def files(self):
        return glob.glob(os.path.join(self.dir, "prefix", "*", "*.pfx"))

    def test_a_restarted_server_restores_a_reused_prompt_from_disk(self):
        reused, other = ram_prompt("Lily"), ram_prompt("Tom")
        server = Server(*self.args)
        try:
            _, tokens, _ = server.post_json("/tokenize", {"content": reused})
            n = len(tokens["tokens"])
            expected, cached = self.complete(server, reused)
            self.assertEqual(cached, 0)
            self.complete(server, other)  # one slot: the first prompt goes to the RAM tier
            text, cached = self.complete(server, reused)  # reused: written to disk
            self.assertEqual((text, cached), (expected, n - 1))
            self.assertTrue(server.wait_metric("ember_prefix_cache_disk_writes_total", 1))
            self.assertTrue(server.wait_metric("ember_prefix_cache_disk_entries", 1))
        finally:
            server.stop()
        self.assertEqual(len(self.files()), 1)

        server = Server(*self.args)
        try:
            self.assertTrue(server.wait_metric("ember_prefix_cache_disk_reads_total", 1))
            text, cached = self.complete(server, reused)
            self.assertEqual(cached, n - 1)
            self.assertEqual(text, expected)
            self.assertTrue(server.wait_metric("ember_prefix_cache_disk_hits_total", 1))
            self.assertEqual(server.metric("ember_prefix_cache_disk_errors_total"), 0)
        finally:
            server.stop()

        # A damaged file is deleted, counted and never used.
        with open(self.files()[0], "r+b") as f:
            f.seek(-5, os.SEEK_END)
            byte = f.read(1)
            f.seek(-5, os.SEEK_END)
            f.write(bytes([byte[0] ^ 1]))
        server = Server(*self.args)
        try:
            self.assertTrue(server.wait_metric("ember_prefix_cache_disk_errors_total", 1))
            self.assertEqual(self.complete(server, reused), (expected, 0))
            self.assertEqual(server.metric("ember_prefix_cache_disk_reads_total"), 0)
        finally:
            server.stop()
        self.assertEqual(self.files(), [])


    def test_a_shared_beginning_held_in_a_slot_is_written_and_restored_after_a_restart(self):
        # A system prompt that one slot keeps serving never reaches the RAM tier; it is written
        # when a prompt branches from it, once, and a restarted server starts with it.
        asks = [STORY + f" Then {name} came to the park with a kite and a little dog, and they"
                for name in NAMES[:4]]
        server = Server(*self.args)
        try:
            toks = [server.post_json("/tokenize", {"content": a})[1]["tokens"] for a in asks[:2]]
            shared = common_prefix(toks[0], toks[1])
            self.assertGreaterEqual(shared, 32)
            self.assertEqual(self.complete(server, asks[0])[1], 0)
            self.assertEqual(self.complete(server, asks[1])[1], shared)  # branches: written
            self.assertTrue(server.wait_metric("ember_prefix_cache_disk_writes_total", 1))
            self.assertEqual(self.complete(server, asks[2])[1], shared)  # the same: not again
            expected, cached = self.complete(server, asks[3])
            self.assertEqual(cached, shared)
            self.assertEqual(server.metric("ember_prefix_cache_disk_writes_total"), 1)
        finally:
            server.stop()
        self.assertEqual(len(self.files()), 1)
        # The file holds the shared cells only: well under the cells the slot held (prompt and output).
        size = os.path.getsize(self.files()[0])
        server = Server(*self.args)
        try:
            self.assertTrue(server.wait_metric("ember_prefix_cache_disk_reads_total", 1))
            self.assertEqual(self.complete(server, asks[3]), (expected, shared))
            self.assertTrue(server.wait_metric("ember_prefix_cache_disk_hits_total", 1))
        finally:
            server.stop()
        self.assertLess(size, (shared + 16) * 640 + 4096)


class PrefixRamTierBudgetTest(unittest.TestCase):
    """The tier's bound is part of the model's charge against --memory-budget."""

    def estimate(self, *args):
        server = Server("--parallel", "2", "--ctx-size", "1024", *args)
        try:
            return server.metric("ember_model_memory_estimate_bytes")
        finally:
            server.stop()

    def test_the_bound_counts_in_the_models_memory(self):
        without = self.estimate("--prefix-cache-size", "0")
        with_tier = self.estimate("--prefix-cache-size", "1MiB")
        self.assertEqual(with_tier - without, 1 << 20)
        # auto, under a budget with 100 KiB to spare: the tier takes those and no more.
        budget = int(without) + 100 * 1024
        self.assertEqual(self.estimate("--memory-budget", str(budget)), budget)
        # off shares nothing, so it reserves nothing.
        self.assertEqual(self.estimate("--prefix-cache-share", "off"), without)


if __name__ == "__main__":
    unittest.main()
