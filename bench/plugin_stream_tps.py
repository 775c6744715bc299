#!/usr/bin/env python3
"""What a per-event response hook costs a stream: output tok/s of streamed /v1/completions with
the PII redaction (pii_redact.wasm, `terms: Lily`) on every SSE event, against no plugin.

Starts two ember servers at once that differ only in `--plugins`, then streams --requests
requests of --max-tokens tokens at concurrency 1 and 8 against them in ABBA order, --rounds
times, so the machine's drift hits both alike. Prints the CPU model, each run's tok/s, and per
concurrency the median of the per-round ratios hook/none and the server's CPU time per output
token (user + system, from /proc: steadier than tok/s on a shared machine) (issue 16's target: a per-event hook
costs <= 3% tok/s, a ratio >= 0.97). With stories260K (thousands of tok/s, an event every few
hundred microseconds) this is the worst case: a real model leaves far more time per event.

  EMBER_BIN=build/release/src/cli/ember EMBER_TEST_MODEL=../shared/models/stories260K.gguf \\
  EMBER_BUILD_DIR=build/release bench/plugin_stream_tps.py [--requests 16] [--max-tokens 200]
      [--rounds 3]
"""
import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests"))
from harness import Server  # noqa: E402


def cpu_seconds(server):
    """The server process's user + system CPU time so far."""
    with open(f"/proc/{server.proc.pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def tok_per_s(server, concurrency, requests, max_tokens):
    """Output tok/s, and the server's CPU microseconds per output token."""
    body = {"model": "stories260K", "prompt": "Once upon a time", "max_tokens": max_tokens,
            "temperature": 0.8, "seed": 1, "stream": True,
            "stream_options": {"include_usage": True}}
    tokens, lock = [0], threading.Lock()

    def client(n):
        for _ in range(n):
            status, events, done = server.stream("/v1/completions", body)
            assert status == 200 and done, events
            with lock:
                tokens[0] += events[-1]["usage"]["completion_tokens"]

    start, cpu = time.time(), cpu_seconds(server)
    threads = [threading.Thread(target=client, args=(max(1, requests // concurrency),))
               for _ in range(concurrency)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return tokens[0] / (time.time() - start), (cpu_seconds(server) - cpu) * 1e6 / tokens[0]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--requests", type=int, default=16)
    ap.add_argument("--max-tokens", type=int, default=200)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    examples = os.path.join(os.environ.get("EMBER_BUILD_DIR", "build/release"), "src",
                            "plugins", "examples")
    workdir = tempfile.mkdtemp(prefix="ember-plugin-tps-")
    shutil.copy(os.path.join(examples, "pii_redact.wasm"), workdir)
    plugins = os.path.join(workdir, "plugins.toml")
    with open(plugins, "w") as f:
        f.write('[[plugin]]\nname = "redact"\npath = "pii_redact.wasm"\n'
                'configuration = "terms: Lily"\n\n[[chain]]\nroute = "/v1/completions"\n'
                'plugins = "redact"\n')
    cpu = subprocess.run(["sh", "-c", "lscpu | grep 'Model name'"], capture_output=True,
                         text=True).stdout.strip()
    print(cpu)
    servers = {"none": Server(), "hook": Server("--plugins", plugins)}
    try:
        for s in servers.values():
            tok_per_s(s, 1, 2, args.max_tokens)  # warm
        for concurrency in (1, 8):
            ratios, cpu = [], {"none": [], "hook": []}
            for r in range(args.rounds):
                order = ("none", "hook", "hook", "none")
                got = {"none": [], "hook": []}
                for name in order:
                    rate, us = tok_per_s(servers[name], concurrency, args.requests,
                                         args.max_tokens)
                    got[name].append(rate)
                    cpu[name].append(us)
                none, hook = statistics.mean(got["none"]), statistics.mean(got["hook"])
                ratios.append(hook / none)
                print(f"c={concurrency} round {r}: none {none:.0f} tok/s, hook {hook:.0f} tok/s, "
                      f"ratio {hook / none:.3f}")
            print(f"c={concurrency}: median ratio hook/none {statistics.median(ratios):.3f}; "
                  f"server CPU per output token: none {statistics.median(cpu['none']):.0f} us, "
                  f"hook {statistics.median(cpu['hook']):.0f} us")
    finally:
        for s in servers.values():
            s.stop()
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
