#!/usr/bin/env python3
"""n choices in one request against as many separate concurrent requests on the same prompt.

One `ember serve`; per run a fresh prompt of --tokens random token ids (so the prompt cache
never helps), asked once as one /v1/completions request with n = --n, and once as --n
concurrent requests with n = 1 (the same seeds: choice i of the first gets seed + i). Each
records the wall time and the tokens the engine computed (ember_engine_step_tokens_total:
prompt and decode) and counted as prompt (ember_prompt_tokens_total) from /metrics. Prints the
medians of --repeat runs.

    PYTHONPATH=tests EMBER_BIN=build/release/src/cli/ember \\
        bench/n_choices.py MODEL [--n 4] [--tokens 300] [--max-tokens 32] [--repeat 3]
"""
import argparse
import random
import statistics
import threading
import time

from ember_server import cpu_model
from harness import Server  # tests/harness.py: ember on an ephemeral port, --threads 1


def main():
    p = argparse.ArgumentParser()
    p.add_argument("model")
    p.add_argument("--n", type=int, default=4)
    p.add_argument("--tokens", type=int, default=300)
    p.add_argument("--max-tokens", type=int, default=32)
    p.add_argument("--repeat", type=int, default=3)
    args = p.parse_args()
    ctx = args.n * (args.tokens + args.max_tokens + 16)
    server = Server("--parallel", str(args.n), "--ctx-size", str(ctx), model=args.model)
    rng = random.Random(1)

    def counters():
        return (server.metric("ember_engine_step_tokens_total") or 0,
                server.metric("ember_prompt_tokens_total") or 0)

    def complete(prompt, n, seed):
        status, body, _ = server.post_json("/v1/completions", {
            "prompt": prompt, "max_tokens": args.max_tokens, "n": n, "temperature": 0.8,
            "seed": seed})
        assert status == 200, body
        assert len(body["choices"]) == n

    def one_request(prompt):
        complete(prompt, args.n, 7)

    def separate(prompt):
        threads = [threading.Thread(target=complete, args=(prompt, 1, 7 + i))
                   for i in range(args.n)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()

    try:
        results = {"n": [], "separate": []}
        one_request([rng.randrange(100, 30000) for _ in range(16)])  # warm-up
        for _ in range(args.repeat):
            for name, fn in (("n", one_request), ("separate", separate)):
                prompt = [rng.randrange(100, 30000) for _ in range(args.tokens)]
                computed0, counted0 = counters()
                start = time.perf_counter()
                fn(prompt)
                wall = time.perf_counter() - start
                computed1, counted1 = counters()
                results[name].append((wall, computed1 - computed0, counted1 - counted0))
        print(f"CPU: {cpu_model()}; model {args.model}; prompt {args.tokens} tokens, "
              f"max_tokens {args.max_tokens}, n {args.n}, median of {args.repeat}")
        print("| | wall s | tokens computed (prefill + decode) | prompt tokens counted |")
        print("|---|---|---|---|")
        for name, label in (("n", f"one request, n={args.n}"),
                            ("separate", f"{args.n} concurrent requests, n=1")):
            rows = results[name]
            print(f"| {label} | {statistics.median(r[0] for r in rows):.2f} | "
                  f"{statistics.median(r[1] for r in rows):.0f} | "
                  f"{statistics.median(r[2] for r in rows):.0f} |")
    finally:
        server.stop()


if __name__ == "__main__":
    main()
