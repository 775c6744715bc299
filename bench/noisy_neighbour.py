#!/usr/bin/env python3
"""Noisy neighbour: tenant A keeps FLOOD long requests in flight while tenant B sends one short
request every INTERVAL seconds. Prints B's time to first token (p50/p99) alone and under A's
flood, for ember (open mode: no tenancy; A and B as tenants of equal weight and class; A
`batch` and B `interactive`) and, with --llama-server, for llama-server (no tenancy: what B
suffers there). All traffic goes to 127.0.0.1. Prints a markdown table.

  bench/noisy_neighbour.py [--ember build/release/src/cli/ember] [--llama-server PATH]
      [--model ../shared/models/stories260K.gguf] [--parallel 8] [--ctx 8192] [--threads 2]
      [--flood 32] [--flood-tokens 256] [--samples 30] [--interval 0.5] [--only NAME,...]
"""
import argparse
import hashlib
import http.client
import json
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time

from ember_server import cpu_model

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
KEY_A = "ek_noisyneighbourtenantAAAAAAAAAAAAAAAAAA"
KEY_B = "ek_noisyneighbourtenantBBBBBBBBBBBBBBBBBB"
PROMPT_A = "Once upon a time there was a little dragon who lived in a cave by the sea."
PROMPT_B = "Lily went to the park"


class Server:
    def __init__(self, argv, port_pattern, ready_path="/ready"):
        self.proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                     text=True)
        self.port = None
        deadline = time.time() + 180
        for line in self.proc.stdout:
            m = re.search(port_pattern, line)
            if m:
                self.port = int(m.group(1))
                break
            if time.time() > deadline:
                break
        if self.port is None:
            self.stop()
            sys.exit(f"server did not start: {' '.join(argv)}")
        threading.Thread(target=lambda: [None for _ in self.proc.stdout], daemon=True).start()
        while time.time() < deadline:
            try:
                c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
                c.request("GET", ready_path)
                r = c.getresponse()
                r.read()
                if r.status == 200:
                    return
            except OSError:
                pass
            time.sleep(0.1)
        sys.exit("server never became ready")

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()


def stream(port, body, key, first_token=None, stop=None):
    """One streamed completion; calls first_token() at its first non-empty text."""
    headers = {"Content-Type": "application/json"}
    if key:
        headers["Authorization"] = f"Bearer {key}"
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
    c.request("POST", "/v1/completions", body=json.dumps({**body, "stream": True}),
              headers=headers)
    r = c.getresponse()
    if r.status != 200:
        r.read()
        c.close()
        return r.status
    seen = False
    for raw in r:
        line = raw.decode().strip()
        if not line.startswith("data: ") or line == "data: [DONE]":
            continue
        if stop is not None and stop.is_set():
            break
        if not seen:
            text = json.loads(line[6:])["choices"][0].get("text", "")
            if text:
                seen = True
                if first_token:
                    first_token()
    c.close()
    return 200


def measure_b(port, key, samples, interval):
    # One request first, not measured: a server's first request pays one-time costs.
    stream(port, {"prompt": PROMPT_B, "max_tokens": 2, "temperature": 0}, key)
    ttfts = []
    for _ in range(samples):
        start = time.perf_counter()
        got = []
        status = stream(port, {"prompt": PROMPT_B, "max_tokens": 8, "temperature": 0},
                        key, lambda: got.append(time.perf_counter() - start))
        if status == 200 and got:
            ttfts.append(got[0])
        time.sleep(max(0.0, interval - (time.perf_counter() - start)))
    return ttfts


def flood(port, key, n, tokens, stop):
    body = {"prompt": PROMPT_A, "max_tokens": tokens, "temperature": 0, "ignore_eos": True}

    def loop():
        while not stop.is_set():
            if stream(port, body, key, stop=stop) != 200:
                time.sleep(0.05)

    threads = [threading.Thread(target=loop, daemon=True) for _ in range(n)]
    for t in threads:
        t.start()
    return threads


def pct(values, p):
    values = sorted(values)
    if not values:
        return float("nan")
    k = min(len(values) - 1, max(0, int(round(p / 100 * len(values) + 0.5)) - 1))
    return values[k]


def write_tenants(data_dir, a, b):
    lines = []
    for name, fields, key in (("a", a, KEY_A), ("b", b, KEY_B)):
        lines.append(f"[tenants.{name}]")
        lines += [f"{k} = {json.dumps(v)}" for k, v in fields.items()]
        lines.append("")
    for i, (name, key) in enumerate((("a", KEY_A), ("b", KEY_B))):
        lines += ["[[keys]]", f'id = "key_00000000000{i}"', f'tenant = "{name}"',
                  f'sha256 = "{hashlib.sha256(key.encode()).hexdigest()}"', "created = 0", ""]
    with open(os.path.join(data_dir, "tenants.toml"), "w") as f:
        f.write("\n".join(lines))


def run_scenario(name, argv, pattern, keys, args):
    server = Server(argv, pattern, "/ready" if "serve" in argv else "/health")
    try:
        alone = measure_b(server.port, keys[1], args.samples, args.interval)
        stop = threading.Event()
        threads = flood(server.port, keys[0], args.flood, args.flood_tokens, stop)
        time.sleep(3)  # let the flood fill every slot and the queue
        loaded = measure_b(server.port, keys[1], args.samples, args.interval)
        stop.set()
    finally:
        server.stop()
    for t in threads:
        t.join(5)
    return name, alone, loaded


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--ember", default=os.path.join(REPO, "build/release/src/cli/ember"))
    ap.add_argument("--llama-server", default="")
    ap.add_argument("--model", default=os.path.join(REPO, "../shared/models/stories260K.gguf"))
    ap.add_argument("--parallel", type=int, default=8)
    ap.add_argument("--ctx", type=int, default=8192)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--flood", type=int, default=32)
    ap.add_argument("--flood-tokens", type=int, default=256)
    ap.add_argument("--samples", type=int, default=30)
    ap.add_argument("--interval", type=float, default=0.5)
    ap.add_argument("--only", default="")
    args = ap.parse_args()

    common = ["--model", args.model, "--threads", str(args.threads), "--ctx-size", str(args.ctx),
              "--parallel", str(args.parallel), "--port", "0", "--queue-size", "256"]
    pattern = r"listening on http://[^:]+:(\d+)"
    scenarios = []
    tmp = tempfile.mkdtemp(prefix="ember-noisy-")
    open_dir = os.path.join(tmp, "open")
    fair_dir = os.path.join(tmp, "fair")
    prio_dir = os.path.join(tmp, "prio")
    for d in (open_dir, fair_dir, prio_dir):
        os.makedirs(d)
    write_tenants(fair_dir, {"weight": 1}, {"weight": 1})
    write_tenants(prio_dir, {"priority": "batch"}, {"priority": "interactive"})
    scenarios.append(("ember, open (no tenancy)", [args.ember, "serve", *common, "--data-dir",
                                                   open_dir], (None, None)))
    scenarios.append(("ember, A and B equal tenants", [args.ember, "serve", *common,
                                                       "--data-dir", fair_dir], (KEY_A, KEY_B)))
    scenarios.append(("ember, A batch, B interactive", [args.ember, "serve", *common,
                                                        "--data-dir", prio_dir], (KEY_A, KEY_B)))
    if args.llama_server:
        scenarios.append(("llama-server", [args.llama_server, "-m", args.model, "-t",
                                           str(args.threads), "-c", str(args.ctx), "-np",
                                           str(args.parallel), "--port", "0", "--host",
                                           "127.0.0.1"], (None, None)))
    only = [s for s in args.only.split(",") if s]
    rows = []
    for name, argv, keys in scenarios:
        if only and not any(o in name for o in only):
            continue
        if argv[0] == args.ember:
            pat = pattern
        else:  # llama-server takes no --port 0: give it a free port
            with socket.socket() as s:
                s.bind(("127.0.0.1", 0))
                port = s.getsockname()[1]
            argv = [str(port) if i > 0 and argv[i - 1] == "--port" else a
                    for i, a in enumerate(argv)]
            pat = r"listening on http://127\.0\.0\.1:(" + str(port) + ")"
        print(f"[noisy] {name} ...", file=sys.stderr)
        rows.append(run_scenario(name, argv, pat, keys, args))
    shutil.rmtree(tmp, ignore_errors=True)
    print(f"CPU: {cpu_model()}; flood {args.flood} x {args.flood_tokens} tokens, "
          f"--parallel {args.parallel}, {args.samples} B samples each\n")
    print("| server | B TTFT p50 alone | p99 alone | p50 under flood | p99 under flood | "
          "p99 ratio |")
    print("|---|---|---|---|---|---|")
    for name, alone, loaded in rows:
        a50, a99, l50, l99 = (pct(alone, 50), pct(alone, 99), pct(loaded, 50), pct(loaded, 99))
        print(f"| {name} | {a50 * 1e3:.1f} ms | {a99 * 1e3:.1f} ms | {l50 * 1e3:.1f} ms | "
              f"{l99 * 1e3:.1f} ms | {l99 / a99:.2f}x |")


if __name__ == "__main__":
    main()
