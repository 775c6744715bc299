#!/usr/bin/env python3
"""What an embedding costs next to the prefill of the same tokens.

One `ember serve`; per run, --inputs fresh random token inputs of --tokens tokens each as one
/v1/embeddings request, then as many fresh inputs as concurrent /v1/completions requests with
max_tokens 1 (a prefill and one sampled token each), alternating, --repeat times; fresh inputs
every time, so the prompt cache never helps. Prints the medians in tokens/s.

    PYTHONPATH=tests EMBER_BIN=build/release/src/cli/ember \\
        bench/embeddings_vs_prefill.py MODEL [--inputs 64] [--tokens 200] [--repeat 3]
"""
import argparse
import random
import statistics
import sys
import threading
import time

from harness import Server  # tests/harness.py: ember on an ephemeral port, --threads 1


def main():
    p = argparse.ArgumentParser()
    p.add_argument("model")
    p.add_argument("--inputs", type=int, default=64)
    p.add_argument("--tokens", type=int, default=200)
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--parallel", type=int, default=4)
    args = p.parse_args()
    ctx = args.parallel * (args.tokens + 8)
    server = Server("--parallel", str(args.parallel), "--ctx-size", str(ctx), model=args.model)
    rng = random.Random(1)

    def fresh():
        return [[rng.randrange(100, 30000) for _ in range(args.tokens)]
                for _ in range(args.inputs)]

    def embed(batch):
        status, body, _ = server.post_json("/v1/embeddings", {"input": batch})
        assert status == 200, body

    def prefill(batch):
        def one(prompt):
            status, body, _ = server.post_json(
                "/v1/completions", {"prompt": prompt, "max_tokens": 1, "temperature": 0})
            assert status == 200, body
        threads = [threading.Thread(target=one, args=(x,)) for x in batch]
        for t in threads:
            t.start()
        for t in threads:
            t.join()

    try:
        embed(fresh()[:2])  # warm-up
        prefill(fresh()[:2])
        rates = {"embeddings": [], "prefill": []}
        for _ in range(args.repeat):
            for name, fn in (("embeddings", embed), ("prefill", prefill)):
                batch = fresh()
                start = time.perf_counter()
                fn(batch)
                rates[name].append(args.inputs * args.tokens / (time.perf_counter() - start))
    finally:
        server.stop()
    for name, r in rates.items():
        runs = ", ".join(f"{x:.0f}" for x in r)
        print(f"| {name} | {statistics.median(r):.0f} | {runs} |")


if __name__ == "__main__":
    sys.exit(main())
