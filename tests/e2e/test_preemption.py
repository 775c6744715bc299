"""Priority classes with the real model: an `interactive` request that finds the only slot held
by a `batch` one preempts it, and the preempted request's client still sees one uninterrupted
answer, identical (deterministic mode, sampled at temperature 0.9) to the same request run
without interruption — its log-probabilities included, when it asks for them."""
import hashlib
import json
import os
import shutil
import tempfile
import threading
import time
import unittest

from harness import Server

KEYS = {"batch": "ek_batchbatchbatchbatchbatchbatchbatch01",
        "inter": "ek_interinterinterinterinterinterinter02"}


class PreemptionTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.dir = tempfile.mkdtemp(prefix="ember-preempt-")
        lines = ['[tenants.batch]', 'priority = "batch"', '', '[tenants.inter]',
                 'priority = "interactive"', '']
        for i, (tenant, key) in enumerate(KEYS.items()):
            lines += ["[[keys]]", f'id = "key_00000000000{i}"', f'tenant = "{tenant}"',
                      f'sha256 = "{hashlib.sha256(key.encode()).hexdigest()}"', "created = 1", ""]
        with open(os.path.join(cls.dir, "tenants.toml"), "w") as f:
            f.write("\n".join(lines))
        cls.server = Server("--parallel", "1", "--ctx-size", "512", "--allow-deterministic",
                            "--data-dir", cls.dir, "--debug-step-delay", "15ms")

    @classmethod
    def tearDownClass(cls):
        cls.server.stop()
        shutil.rmtree(cls.dir, ignore_errors=True)

    def stream_text(self, tenant, body, first_text=None):
        c = self.server.conn()
        c.request("POST", "/v1/completions", body=json.dumps({**body, "stream": True}),
                  headers={"Content-Type": "application/json",
                           "Authorization": f"Bearer {KEYS[tenant]}"})
        r = c.getresponse()
        self.assertEqual(r.status, 200)
        text, finish, logprobs = "", None, []
        for raw in r:
            line = raw.decode().strip()
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            choice = json.loads(line[6:])["choices"][0]
            text += choice.get("text", "")
            finish = choice.get("finish_reason") or finish
            if choice.get("logprobs"):
                lp = choice["logprobs"]
                logprobs += list(zip(lp["tokens"], lp["token_logprobs"], lp["top_logprobs"],
                                     lp["text_offset"]))
            if text and first_text is not None and not first_text.is_set():
                first_text.set()
        c.close()
        return text, finish, logprobs

    def test_interactive_preempts_batch_and_the_batch_answer_is_unchanged(self):
        self.preempt_and_compare({"prompt": "Once upon a time", "max_tokens": 120,
                                  "ignore_eos": True, "temperature": 0.9, "seed": 7,
                                  "deterministic": True})

    def test_a_preempted_answer_keeps_its_logprobs(self):
        # Deterministic numerics: the resumed sequence's logits, recomputed after the
        # preemption, are bit-identical, so are its log-probabilities.
        alone = self.preempt_and_compare({"prompt": "One day, a little", "max_tokens": 100,
                                          "temperature": 0.9, "seed": 11, "deterministic": True,
                                          "logprobs": 3})
        self.assertEqual("".join(token for token, *_ in alone[2]), alone[0])

    def preempt_and_compare(self, body):
        alone = self.stream_text("batch", body)
        self.assertEqual(alone[1], "length")
        before = self.server.metric("ember_requests_preempted_total") or 0
        tenant_before = self.server.metric("ember_tenant_preemptions_total",
                                           {"tenant": "batch"}) or 0

        started = threading.Event()
        result = {}

        def batch():
            result["batch"] = self.stream_text("batch", body, started)
            result["batch_done"] = time.monotonic()

        t = threading.Thread(target=batch)
        t.start()
        self.assertTrue(started.wait(30))
        inter, *_ = self.stream_text("inter", {"prompt": "Lily went", "max_tokens": 8,
                                               "temperature": 0})
        inter_done = time.monotonic()
        t.join(120)
        self.assertTrue(inter)
        self.assertLess(inter_done, result["batch_done"],
                        "with one slot, the interactive request finished first: it preempted")
        self.assertEqual(self.server.metric("ember_requests_preempted_total"), before + 1)
        self.assertEqual(self.server.metric("ember_tenant_preemptions_total", {"tenant": "batch"}),
                         tenant_before + 1)
        self.assertEqual(result["batch"], alone,
                         "the preempted client sees the same uninterrupted answer")
        return alone


if __name__ == "__main__":
    unittest.main()
