"""Deterministic mode (docs/determinism.md): a request's output depends only on the request and
the model, never on what else runs beside it.

For each weight type (stories260K is F32; F16, Q8_0 and Q4_0 come from `ember model synth`),
200 prompts run one at a time and then all together with random arrival (bursts of 1 to 32 at
once against 32 slots), with the prompt cache on: every output must be bit-identical. The
prompts are token ids, so their lengths are exact: short ones, ones of 64+ tokens (where
ggml's flash attention would switch to its tiled kernel), ones past 512 cells (where a lone
decode would take the split-KV kernel), and families sharing a 100-token prefix (prompt-cache
hits in both runs, at different places). Half are greedy, half sampled with a seed.

Run as a script it reports the divergence rate with and without --deterministic instead:
    EMBER_BIN=build/release/src/cli/ember python3 tests/determinism/test_determinism.py
"""
import concurrent.futures
import os
import random
import subprocess
import sys
import tempfile
import time
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
from harness import EMBER_BIN, MODEL, Server  # noqa: E402

N_PROMPTS = int(os.environ.get("EMBER_DETERMINISM_PROMPTS", "200"))
SLOTS = 32
CTX_PER_SEQ = 1024


def make_prompts(n_vocab, count, seed=7):
    rnd = random.Random(seed)
    families = [[1] + [rnd.randrange(3, n_vocab) for _ in range(99)] for _ in range(4)]
    prompts = []
    for i in range(count):
        kind = i % 10
        if kind < 4:
            tokens = [1] + [rnd.randrange(3, n_vocab) for _ in range(rnd.randrange(4, 60))]
        elif kind < 7:
            tokens = [1] + [rnd.randrange(3, n_vocab) for _ in range(rnd.randrange(64, 300))]
        elif kind < 9:
            tokens = rnd.choice(families) + [rnd.randrange(3, n_vocab)
                                             for _ in range(rnd.randrange(1, 80))]
        else:
            tokens = [1] + [rnd.randrange(3, n_vocab) for _ in range(rnd.randrange(520, 700))]
        body = {"prompt": tokens, "max_tokens": rnd.randrange(8, 25)}
        if i % 2 == 0:
            body["temperature"] = 0
        else:
            body.update(temperature=0.8, top_p=0.95, seed=1000 + i)
        prompts.append(body)
    return prompts


def complete(server, body):
    status, resp, _ = server.post_json("/v1/completions", body, timeout=300)
    if status != 200:
        raise AssertionError(f"status {status}: {resp}")
    choice = resp["choices"][0]
    return choice["text"], choice["finish_reason"], resp["usage"]["completion_tokens"]


def run_alone(server, prompts):
    return [complete(server, p) for p in prompts]


def run_together(server, prompts, seed=11):
    """Random arrival: bursts of 1..32 requests at once, separated by short random pauses."""
    rnd = random.Random(seed)
    order = list(range(len(prompts)))
    rnd.shuffle(order)
    results = [None] * len(prompts)
    errors = []
    with concurrent.futures.ThreadPoolExecutor(max_workers=SLOTS) as pool:
        futures = []
        i = 0
        while i < len(order):
            burst = rnd.randint(1, SLOTS)
            for idx in order[i:i + burst]:
                futures.append((idx, pool.submit(complete, server, prompts[idx])))
            i += burst
            time.sleep(rnd.uniform(0, 0.3))
        for idx, fut in futures:
            try:
                results[idx] = fut.result()
            except Exception as e:  # noqa: BLE001 - reported below with the request index
                errors.append(f"prompt {idx}: {e}")
    if errors:
        raise AssertionError("\n".join(errors[:5]))
    return results


class Models:
    """stories260K plus tiny synthesized models of the other weight types, made once."""
    _dir = None

    @classmethod
    def path(cls, weight_type):
        if weight_type == "f32":
            return MODEL
        if cls._dir is None:
            cls._dir = tempfile.mkdtemp(prefix="ember-determinism-")
        out = os.path.join(cls._dir, f"tiny-{weight_type}.gguf")
        if not os.path.exists(out):
            subprocess.run([EMBER_BIN, "model", "synth", "--shape", "tiny", "--type",
                            weight_type, "-o", out], check=True, capture_output=True)
        return out


VOCAB = {"f32": 512, "f16": 32000, "q8_0": 32000, "q4_0": 32000}


def measure(weight_type, deterministic, count=N_PROMPTS):
    """Returns (number of prompts whose output differed, count)."""
    args = ["--parallel", str(SLOTS), "--ctx-size", str(SLOTS * CTX_PER_SEQ),
            "--queue-size", "256"]
    if deterministic:
        args.append("--deterministic")
    server = Server(*args, model=Models.path(weight_type))
    try:
        prompts = make_prompts(VOCAB[weight_type], count)
        alone = run_alone(server, prompts)
        together = run_together(server, prompts)
        differ = [i for i in range(count) if alone[i] != together[i]]
        return differ, alone, together
    finally:
        server.stop()


class DeterministicModeTest(unittest.TestCase):
    def check(self, weight_type):
        differ, alone, together = measure(weight_type, deterministic=True)
        detail = "; ".join(f"prompt {i}: alone {alone[i]!r} vs together {together[i]!r}"
                           for i in differ[:3])
        self.assertEqual(differ, [], f"{len(differ)}/{len(alone)} outputs changed under load "
                                     f"with --deterministic ({weight_type}): {detail}")
        # The outputs are real generations, not empty strings that trivially match.
        self.assertGreater(sum(c for _, _, c in alone), 8 * len(alone))

    def test_f32_stories260k(self):
        self.check("f32")

    def test_f16(self):
        self.check("f16")

    def test_q8_0(self):
        self.check("q8_0")

    def test_q4_0(self):
        self.check("q4_0")


class DeterministicRequestsTest(unittest.TestCase):
    def test_per_request_flag_needs_the_operator(self):
        server = Server()
        try:
            status, resp, _ = server.post_json(
                "/v1/completions", {"prompt": "Once", "max_tokens": 2, "temperature": 0,
                                    "deterministic": True})
            self.assertEqual(status, 400)
            self.assertEqual(resp["error"]["param"], "deterministic")
            self.assertIn("--allow-deterministic", resp["error"]["message"])
        finally:
            server.stop()

    def test_per_request_flag_beside_ordinary_requests(self):
        """With --allow-deterministic a deterministic request keeps its output while ordinary
        requests share its steps, even when it lands on a slot whose cells an ordinary request
        computed (those are not reused for it)."""
        server = Server("--allow-deterministic", "--parallel", "8", "--ctx-size", "8192",
                        model=Models.path("f16"))
        try:
            prompts = make_prompts(32000, 24, seed=3)
            det = [dict(p, deterministic=True) for p in prompts[:8]]
            alone = run_alone(server, det)
            mixed = prompts[8:] + det
            together = run_together(server, mixed, seed=5)
            self.assertEqual(together[16:], alone)
            # Cells an ordinary request left behind are not reused by a deterministic one with
            # the same prompt (it reports no cached tokens); cells a deterministic one computed
            # are.
            base = prompts[14]  # 64+ tokens, greedy

            def cached(body):
                status, resp, _ = server.post_json("/v1/completions", body)
                self.assertEqual(status, 200, resp)
                return resp["usage"]["prompt_tokens_details"]["cached_tokens"]

            cached(base)
            self.assertGreater(cached(base), 32)
            self.assertEqual(cached(dict(base, deterministic=True)), 0)
            self.assertGreater(cached(dict(base, deterministic=True)), 32)
        finally:
            server.stop()


def report():
    print("| weight type | prompts | differ without --deterministic | with --deterministic |")
    print("|---|---|---|---|")
    for weight_type in ("f32", "f16", "q8_0", "q4_0"):
        off, alone, _ = measure(weight_type, deterministic=False)
        on, _, _ = measure(weight_type, deterministic=True)
        n = len(alone)
        print(f"| {weight_type} | {n} | {len(off)} ({100 * len(off) / n:.1f}%) | "
              f"{len(on)} ({100 * len(on) / n:.1f}%) |", flush=True)


if __name__ == "__main__":
    report()
