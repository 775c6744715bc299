#!/usr/bin/env python3
"""What --deterministic costs: output tokens/s of ember with and without it, side by side.

Runs `ember serve` without and then with --deterministic, alternating, --repeat times; at every
concurrency `ember bench` sends --requests streamed requests (fresh prompts each run, so the
prompt cache never replays an earlier run). Prints a markdown table of medians.

    bench/deterministic_cost.py [--model M] [--threads 2] [--ctx 8192] [--parallel 32]
        [--requests 64] [--max-tokens 64] [--concurrency 1 8 32] [--repeat 3]
"""
import argparse
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import time
import urllib.request

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def wait_ready(port, proc, timeout=180):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"ember exited during start-up (code {proc.returncode})")
        try:
            if urllib.request.urlopen(f"http://127.0.0.1:{port}/ready", timeout=2).status == 200:
                return
        except Exception:  # noqa: BLE001 - not up yet
            pass
        time.sleep(0.1)
    raise SystemExit("ember never became ready")


def start(args, deterministic):
    cmd = [args.ember, "serve", "--model", args.model, "--threads", str(args.threads),
           "--ctx-size", str(args.ctx), "--parallel", str(args.parallel), "--port", "0",
           "--queue-size", "1024"]
    if deterministic:
        cmd.append("--deterministic")
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    for line in proc.stderr:
        m = re.search(r"listening on http://[^:]+:(\d+)", line)
        if m:
            port = int(m.group(1))
            break
    else:
        raise SystemExit("ember did not print its port")
    wait_ready(port, proc)
    return proc, port


def bench(args, port, concurrency, seed):
    out = subprocess.run(
        [args.ember, "bench", "--host", "127.0.0.1", "--port", str(port), "--concurrency",
         str(concurrency), "--requests", str(args.requests), "--max-tokens", str(args.max_tokens),
         "--temperature", "0", "--seed", str(seed), "--json"],
        check=True, capture_output=True, text=True).stdout
    return json.loads(out)


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default=os.path.join(REPO, "..", "shared", "models",
                                                   "stories260K.gguf"))
    p.add_argument("--ember", default=os.environ.get(
        "EMBER_BIN", os.path.join(REPO, "build", "release", "src", "cli", "ember")))
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--ctx", type=int, default=8192)
    p.add_argument("--parallel", type=int, default=32)
    p.add_argument("--requests", type=int, default=64)
    p.add_argument("--max-tokens", type=int, default=64)
    p.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 32])
    p.add_argument("--repeat", type=int, default=3)
    args = p.parse_args()

    results = {(mode, c): [] for mode in ("off", "on") for c in args.concurrency}
    seed = 1
    for r in range(args.repeat):
        for mode in ("off", "on"):
            proc, port = start(args, mode == "on")
            try:
                bench(args, port, 4, seed=999_000 + r)  # warm-up, discarded
                for c in args.concurrency:
                    report = bench(args, port, c, seed)
                    seed += 1
                    if report.get("errors_by_status"):
                        raise SystemExit(f"errors during the run: {report['errors_by_status']}")
                    results[(mode, c)].append(report["output_tokens_per_s"])
                    print(f"[cost] round {r + 1} {mode} c={c}: "
                          f"{report['output_tokens_per_s']:.1f} tok/s", file=sys.stderr)
            finally:
                proc.terminate()
                proc.wait(60)

    print(f"### --deterministic cost: {os.path.basename(args.model)}\n")
    print("| concurrency | default tok/s | --deterministic tok/s | change |")
    print("|---:|---:|---:|---:|")
    for c in args.concurrency:
        off = statistics.median(results[("off", c)])
        on = statistics.median(results[("on", c)])
        print(f"| {c} | {off:.1f} | {on:.1f} | {100 * (on - off) / off:+.1f}% |")
    print()
    print(f"Medians of {args.repeat} alternating runs; per run: {args.requests} streamed greedy "
          f"requests, max_tokens {args.max_tokens}, fresh prompts of 16-64 words; "
          f"{args.threads} threads, context {args.ctx}, {args.parallel} slots.")
    for c in args.concurrency:
        print(f"- c={c} tok/s default: {results[('off', c)]}; "
              f"--deterministic: {results[('on', c)]}")
    cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo")
                if l.startswith("model name")), platform.processor())
    print(f"- machine: {cpu}, {os.cpu_count()} CPUs; date: "
          f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}")
    print(f"- command: `bench/deterministic_cost.py {' '.join(sys.argv[1:])}`")


if __name__ == "__main__":
    main()
