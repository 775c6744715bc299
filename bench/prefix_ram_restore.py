#!/usr/bin/env python3
"""What a RAM-tier restore costs against a prefill (issue 19, item 2).

Starts ember on MODEL with 2 slots, sends three distinct prompts of --words random words (one
output token each), then the first and second again. The fourth request finds its prompt in no
slot: ember saves the cache of the slot it lands on to the RAM tier, restores the first
prompt's cells and computes one token. The fifth still sits in a slot (a slot hit). Prints each
request's wall time, prompt and cached tokens, and the tier's metrics.

  bench/prefix_ram_restore.py MODEL [--ember build/rel/src/cli/ember] [--words 300]
"""
import argparse
import os
import random
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import prefix_cache as pc  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("model")
    ap.add_argument("--ember", default=os.path.join(pc.REPO, "build/rel/src/cli/ember"))
    ap.add_argument("--words", type=int, default=300)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    rng = random.Random(3)
    prompts = [pc.words(rng, args.words) for _ in range(3)]
    server = pc.Server([args.ember, "serve", "--model", args.model, "--threads",
                        str(args.threads), "--ctx-size", "2048", "--parallel", "2"])
    try:
        for label, p in [("miss", prompts[0]), ("miss", prompts[1]), ("miss", prompts[2]),
                         ("ram", prompts[0]), ("slot", prompts[1])]:
            start = time.monotonic()
            body = server.post("/v1/completions", {"prompt": p, "max_tokens": 1,
                                                   "temperature": 0})
            print(f"{label}: {time.monotonic() - start:.3f} s, prompt_tokens "
                  f"{body['usage']['prompt_tokens']}, cached {pc.cached(body)}")
        _, metrics = server.call("GET", "/metrics", None)
        for line in metrics.decode().splitlines():
            if line.startswith("ember_prefix_cache_ram"):
                print(line)
    finally:
        server.stop()


if __name__ == "__main__":
    main()
