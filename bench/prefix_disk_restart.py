#!/usr/bin/env python3
"""A restarted ember's first request with a known system prompt: the prefix cache's disk tier
against recomputing it (issue 19, item 3).

Prepares a data directory: starts ember on MODEL with one slot, sends SYSTEM + question 1,
another prompt (the slot's cache goes to the RAM tier) and SYSTEM + question 2 (restored from
the RAM tier: reused, so written to DATA_DIR/prefix). Then, --runs times each, alternating:
  disk: exec ember on that data directory and, as soon as /ready answers 200, send SYSTEM +
        question 3 (streamed): the disk tier is read in the background, so this shows whether
        the first request after ready finds it;
  cold: the same with --prefix-cache-disk-size 0 (the prompt is computed in full).
Prints exec -> ready, exec -> first token, the request's own time to first token, and
cached_tokens, per run and the medians.

  bench/prefix_disk_restart.py MODEL [--ember build/release/src/cli/ember] [--words 300]
"""
import argparse
import http.client
import json
import os
import random
import shutil
import statistics
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import prefix_cache as pc  # noqa: E402


def metric(server, name):
    _, text = server.call("GET", "/metrics", None)
    for line in text.decode().splitlines():
        if line.startswith(name + "{") or line.startswith(name + " "):
            return float(line.rsplit(" ", 1)[1])
    return None


def first_token(server, prompt):
    """Seconds to the first streamed token, and cached_tokens."""
    c = http.client.HTTPConnection("127.0.0.1", server.port, timeout=600)
    start = time.monotonic()
    c.request("POST", "/v1/completions", body=json.dumps(
        {"prompt": prompt, "max_tokens": 8, "temperature": 0, "stream": True,
         "stream_options": {"include_usage": True}}),
        headers={"Content-Type": "application/json"})
    ttft, cached = None, None
    for raw in c.getresponse():
        if not raw.startswith(b"data: ") or raw.strip() == b"data: [DONE]":
            continue
        if ttft is None:
            ttft = time.monotonic() - start
        chunk = json.loads(raw[6:])
        if chunk.get("usage"):
            cached = chunk["usage"].get("prompt_tokens_details", {}).get("cached_tokens")
    c.close()
    return ttft, cached


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("model")
    ap.add_argument("--ember", default=os.path.join(pc.REPO, "build/release/src/cli/ember"))
    ap.add_argument("--words", type=int, default=300)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--ctx-size", default="2048")
    ap.add_argument("--runs", type=int, default=5)
    # Two prompts' cells must fit at once (the one saved, the one restored): 110m, 1,200 words
    # is ~43 MB a prompt.
    ap.add_argument("--prefix-cache-size", default="64MiB")
    args = ap.parse_args()
    rng = random.Random(5)
    system = pc.words(rng, args.words)
    questions = [" " + pc.words(rng, 8) for _ in range(3)]
    data = tempfile.mkdtemp(prefix="ember-prefix-disk-bench-")
    base = [args.ember, "serve", "--model", args.model, "--threads", str(args.threads),
            "--ctx-size", args.ctx_size, "--parallel", "1", "--data-dir", data,
            "--cache-min-free", "1MiB", "--prefix-cache-size", args.prefix_cache_size]
    try:
        server = pc.Server(base)
        try:
            for p in (system + questions[0], pc.words(rng, args.words), system + questions[1]):
                server.post("/v1/completions", {"prompt": p, "max_tokens": 1, "temperature": 0})
            deadline = time.time() + 30
            while (metric(server, "ember_prefix_cache_disk_writes_total") or 0) < 1:
                if time.time() > deadline:
                    sys.exit("the system prompt was not written to the disk tier")
                time.sleep(0.05)
        finally:
            server.stop()
        rows = {"disk": [], "cold": []}
        for _ in range(args.runs):
            for mode in ("disk", "cold"):
                extra = [] if mode == "disk" else ["--prefix-cache-disk-size", "0"]
                t0 = time.monotonic()
                server = pc.Server(base + extra)
                try:
                    ready = time.monotonic() - t0
                    ttft, cached = first_token(server, system + questions[2])
                    rows[mode].append((ready, ready + ttft, ttft, cached))
                    print(f"{mode}: exec->ready {ready:.3f} s, exec->first token "
                          f"{ready + ttft:.3f} s (request ttft {ttft:.3f} s), cached {cached}")
                finally:
                    server.stop()
        for mode, r in rows.items():
            print(f"{mode} median: exec->ready {statistics.median(x[0] for x in r):.3f} s, "
                  f"exec->first token {statistics.median(x[1] for x in r):.3f} s, "
                  f"request ttft {statistics.median(x[2] for x in r):.3f} s, "
                  f"cached {sorted(x[3] for x in r)}")
    finally:
        shutil.rmtree(data, ignore_errors=True)


if __name__ == "__main__":
    main()
