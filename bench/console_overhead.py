#!/usr/bin/env python3
"""What watching costs: output tok/s at concurrency 32 with the console open against with it off.

Starts, at once, two ember servers that differ only in the console (each `--parallel 32`):

  off  --console-ring 0 --console-trace-steps 0, and nobody subscribed to /admin/events
  on   the defaults (a 2000-request ring, 128 steps traced per request) with a client reading
       /admin/events (a snapshot every --console-interval 1s, a "request" event per request) and
       polling /admin/history every 10 s, as an open console page does

then runs `ember bench` (concurrency 32, --requests streamed /v1/completions of --max-tokens
tokens) against them in ABBA order, --rounds times, so the machine's drift hits both alike. Only
one server is loaded at a time; the other idles. Prints the CPU model, each run's output tok/s,
the median per server, and the median of the per-round ratios on/off (issue 18's target: the
console costs <= 1%, i.e. a ratio >= 0.99). All traffic goes to 127.0.0.1; each request has a
60 s timeout.

  bench/console_overhead.py [--ember build/release/src/cli/ember]
      [--model ../shared/models/stories260K.gguf] [--requests 256] [--max-tokens 64]
      [--rounds 5] [--json]
"""
import argparse
import http.client
import json
import os
import statistics
import subprocess
import threading
import time

from ember_server import Server, cpu_model

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class Watcher:
    """An open console: reads the event feed and polls the history until stopped."""

    def __init__(self, port):
        self.port, self.events, self.stopped = port, 0, threading.Event()
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        self.conn.request("GET", "/admin/events")
        self.response = self.conn.getresponse()
        assert self.response.status == 200, self.response.status
        threading.Thread(target=self._read, daemon=True).start()
        threading.Thread(target=self._poll, daemon=True).start()

    def _read(self):
        try:
            for line in self.response:
                if line.startswith(b"event: "):
                    self.events += 1
                if self.stopped.is_set():
                    return
        except (OSError, AttributeError, ValueError):
            pass  # stop() closed the connection under the reader

    def _poll(self):
        while not self.stopped.wait(10):
            c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
            c.request("GET", "/admin/history")
            c.getresponse().read()
            c.close()

    def stop(self):
        self.stopped.set()
        self.conn.close()


def bench(ember, port, args):
    out = subprocess.run(
        [ember, "bench", "--port", str(port), "--concurrency", "32", "--requests",
         str(args.requests), "--max-tokens", str(args.max_tokens), "--prompt-min-words", "8",
         "--prompt-max-words", "32", "--temperature", "0", "--timeout", "60", "--json"],
        check=True, capture_output=True, text=True, timeout=600).stdout
    report = json.loads(out)
    if report["requests_failed"]:
        raise RuntimeError(f"failed requests: {report['first_error']}")
    return report["output_tokens_per_s"]


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--ember", default=os.path.join(REPO, "build/release/src/cli/ember"))
    p.add_argument("--model", default=os.path.join(REPO, "../shared/models/stories260K.gguf"))
    p.add_argument("--requests", type=int, default=256)
    p.add_argument("--max-tokens", type=int, default=64)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--json", action="store_true")
    args = p.parse_args()

    common = [args.ember, "serve", "-m", args.model, "--port", "0", "--parallel", "32",
              "--ctx-size", "8192"]
    servers = {"off": Server(common + ["--console-ring", "0", "--console-trace-steps", "0"],
                             "off"),
               "on": Server(common, "on")}
    watcher = None
    try:
        for s in servers.values():
            s.wait_ready()
        watcher = Watcher(servers["on"].port)
        runs = {"off": [], "on": []}
        for _ in range(args.rounds):
            for name in ["off", "on", "on", "off"]:
                runs[name].append(bench(args.ember, servers[name].port, args))
        events = watcher.events
    finally:
        if watcher:
            watcher.stop()
        for s in servers.values():
            s.stop()
    # A round's ratio: its two "on" runs over its two "off" runs.
    ratios = [(runs["on"][2 * i] + runs["on"][2 * i + 1]) /
              (runs["off"][2 * i] + runs["off"][2 * i + 1]) for i in range(args.rounds)]
    result = {"cpu": cpu_model(), "runs_tok_s": runs,
              "median_tok_s": {k: statistics.median(v) for k, v in runs.items()},
              "ratio_on_off_per_round": ratios, "median_ratio": statistics.median(ratios),
              "feed_events_read": events}
    if args.json:
        print(json.dumps(result))
        return
    print(f"CPU: {result['cpu']}")
    for name in ["off", "on"]:
        print(f"{name:>3}: median {result['median_tok_s'][name]:.0f} tok/s  runs " +
              " ".join(f"{v:.0f}" for v in runs[name]))
    print("on/off per round: " + " ".join(f"{r:.3f}" for r in ratios))
    print(f"median on/off: {result['median_ratio']:.3f} (target >= 0.99); "
          f"{events} feed events read")


if __name__ == "__main__":
    main()
