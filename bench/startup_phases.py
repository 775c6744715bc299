#!/usr/bin/env python3
"""Start-up phases of ember (issue 4 baseline): starts `ember serve` N times, waits for /ready,
reads ember_startup_seconds{phase} and prints the medians with exec -> ready measured outside.

    bench/startup_phases.py MODEL [N]

Superseded by `ember bench coldstart` (also times the first token and runs llama-server beside
ember; bench/coldstart.sh); kept because BENCHMARKS.md's issue-4 baseline quotes it.
"""
import os, re, subprocess, sys, time, urllib.request, statistics
model = sys.argv[1]; n = int(sys.argv[2]) if len(sys.argv) > 2 else 5
rows = []
for i in range(n):
    t0 = time.time()
    p = subprocess.Popen([os.environ.get("EMBER_BIN", "build/release/src/cli/ember"), "serve", "--model", model, "--port", "0", "--threads", "2", "--ctx-size", "4096", "--parallel", "4"], stderr=subprocess.PIPE, text=True)
    port = None
    for line in p.stderr:
        m = re.search(r"listening on http://[^:]+:(\d+)", line)
        if m: port = int(m.group(1)); break
    while True:
        try:
            if urllib.request.urlopen(f"http://127.0.0.1:{port}/ready", timeout=2).status == 200: break
        except Exception: pass
        time.sleep(0.002)
    ready = time.time() - t0
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics").read().decode()
    ph = {m.group(1): float(m.group(2)) for m in re.finditer(r'ember_startup_seconds\{[^}]*phase="(\w+)"\} (\S+)', text)}
    ph["exec_to_ready"] = ready
    rows.append(ph); p.terminate(); p.wait()
keys = ["metadata", "weights", "context", "warmup", "total", "exec_to_ready"]
print(" | ".join(f"{k} {1000*statistics.median(r[k] for r in rows):.1f} ms" for k in keys))
