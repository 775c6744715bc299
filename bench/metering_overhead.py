#!/usr/bin/env python3
"""What metering adds to one request's latency, measured side by side.

Starts, at once, ember servers that differ only in metering (each `--threads 1 --parallel 4`):

  A  no --data-dir, no --prices: no ledger (the baseline)
  B  --data-dir TMP --prices FILE, no tenants file (open mode), --ledger-sync normal
  C  B plus --ledger-sync full (every response's last bytes wait for its record's commit);
     leave it out with --no-full

then sends sequential (concurrency 1) non-streamed /v1/completions requests with max_tokens 1
and a short prompt, alternating between the servers request by request (the order rotates each
round), so the machine's noise hits all of them alike: --warmup per server first, not measured,
then --requests per server. That pass is repeated --repeat times with freshly started servers
(on a shared 2-core machine one pass's p99 moves by ±1 ms); the differences are given per pass,
over all passes pooled, and as the median of the passes. Latency is client side:
time.perf_counter_ns from just before sending the request to the last byte of the body, over one
persistent http.client connection per server. Prints the CPU model, p50/p90/p99/mean per server
in µs, and the differences B-A and C-A at p50 and p99 (target: metering adds <= 50 µs at p99
with normal sync; full sync is expected to add up to one commit, an fsync). It also checks that
B and C hold one ledger row per request sent. All traffic goes to 127.0.0.1; every request has a
30 s timeout, so the run is bounded (a pass of the defaults takes 4-10 s on a 2-core EPYC).

  bench/metering_overhead.py [--ember build/release/src/cli/ember]
      [--model ../shared/models/stories260K.gguf] [--requests 2000] [--warmup 100]
      [--repeat 5] [--no-full] [--json]
"""
import argparse
import http.client
import json
import os
import shutil
import sqlite3
import statistics
import sys
import tempfile
import time

from ember_server import Server, cpu_model

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PROMPT = "Once upon a time"


class Client:
    """One persistent connection; timed() returns one request's latency in ns."""

    def __init__(self, server, body):
        self.server, self.body = server, body
        self.conn = None
        self.headers = {"Content-Type": "application/json"}

    def timed(self):
        if self.conn is None:
            self.conn = http.client.HTTPConnection("127.0.0.1", self.server.port, timeout=30)
            self.conn.connect()  # not part of the measured request
        start = time.perf_counter_ns()
        self.conn.request("POST", "/v1/completions", body=self.body, headers=self.headers)
        r = self.conn.getresponse()
        data = r.read()
        elapsed = time.perf_counter_ns() - start
        if r.status != 200:
            raise RuntimeError(f"{self.server.name}: HTTP {r.status}: {data[:300]!r}")
        if r.getheader("Connection", "").lower() == "close":
            self.conn.close()
            self.conn = None
        return elapsed


def percentile(sorted_ns, p):
    """Nearest-rank percentile."""
    k = max(0, min(len(sorted_ns) - 1, int(round(p / 100 * len(sorted_ns) + 0.5)) - 1))
    return sorted_ns[k]


def stats_us(ns):
    s = sorted(ns)
    return {"n": len(s), "p50": percentile(s, 50) / 1e3, "p90": percentile(s, 90) / 1e3,
            "p99": percentile(s, 99) / 1e3, "mean": sum(s) / len(s) / 1e3,
            "min": s[0] / 1e3, "max": s[-1] / 1e3}


def configs_for(args, tmp, prices):
    base = [args.ember, "serve", "--model", args.model, "--host", "127.0.0.1", "--port", "0",
            "--threads", "1", "--parallel", "4"]
    configs = [("A", base),
               ("B", base + ["--data-dir", os.path.join(tmp, "B"), "--prices", prices,
                             "--ledger-sync", "normal"])]
    if not args.no_full:
        configs.append(("C", base + ["--data-dir", os.path.join(tmp, "C"), "--prices", prices,
                                     "--ledger-sync", "full"]))
    return configs


def measure_once(args, model_id):
    """Fresh servers, one alternating pass: ({server: [ns, ...]}, {server: ledger rows})."""
    tmp = tempfile.mkdtemp(prefix="ember-metering-")
    try:
        prices = os.path.join(tmp, "prices.toml")
        with open(prices, "w") as f:
            f.write(f'[models."{model_id}"]\ninput_per_mtok = 0.15\noutput_per_mtok = 0.60\n'
                    f'[instance]\nprice_per_hour = 3.06\n')
        configs = configs_for(args, tmp, prices)
        for name, _ in configs[1:]:
            os.makedirs(os.path.join(tmp, name))
        servers = [Server(argv, name) for name, argv in configs]  # all start at once
        body = json.dumps({"model": model_id, "prompt": PROMPT, "max_tokens": 1,
                           "temperature": 0})
        lat = {s.name: [] for s in servers}
        try:
            for s in servers:
                s.wait_ready()
            clients = [Client(s, body) for s in servers]
            for rnd in range(args.warmup + args.requests):
                shift = rnd % len(clients)
                for c in clients[shift:] + clients[:shift]:
                    ns = c.timed()
                    if rnd >= args.warmup:
                        lat[c.server.name].append(ns)
            for c in clients:
                if c.conn is not None:
                    c.conn.close()
        finally:
            for s in servers:
                s.stop()
        rows = {}  # each metered server must hold one record per request after its stop
        for name, _ in configs[1:]:
            db = sqlite3.connect(os.path.join(tmp, name, "ledger.sqlite"))
            try:
                rows[name] = db.execute("SELECT COUNT(*) FROM usage").fetchone()[0]
            finally:
                db.close()
        return lat, rows
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def diffs_of(st):
    return {f"{n}-A": {k: st[n][k] - st["A"][k] for k in ("p50", "p90", "p99", "mean")}
            for n in st if n != "A"}


def print_stats(title, st):
    print(title)
    print(f"{'server':<7} {'n':>6} {'p50 µs':>9} {'p90 µs':>9} {'p99 µs':>9} {'mean µs':>9} "
          f"{'min µs':>9} {'max µs':>9}")
    for n, s in st.items():
        print(f"{n:<7} {s['n']:>6} {s['p50']:>9.1f} {s['p90']:>9.1f} {s['p99']:>9.1f} "
              f"{s['mean']:>9.1f} {s['min']:>9.1f} {s['max']:>9.1f}")


def print_diffs(title, diffs):
    print(title)
    print(f"{'diff':<7} {'p50 µs':>9} {'p90 µs':>9} {'p99 µs':>9} {'mean µs':>9}")
    for n, d in diffs.items():
        print(f"{n:<7} {d['p50']:>+9.1f} {d['p90']:>+9.1f} {d['p99']:>+9.1f} {d['mean']:>+9.1f}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--ember", default=os.path.join(REPO, "build/release/src/cli/ember"))
    ap.add_argument("--model", default=os.path.join(REPO, "../shared/models/stories260K.gguf"))
    ap.add_argument("--requests", type=int, default=2000, help="measured requests per server")
    ap.add_argument("--warmup", type=int, default=100, help="unmeasured requests per server")
    ap.add_argument("--repeat", type=int, default=5,
                    help="passes, each with freshly started servers")
    ap.add_argument("--no-full", action="store_true", help="leave out server C (full sync)")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    model_id = os.path.splitext(os.path.basename(args.model))[0]
    started = time.monotonic()
    passes, pooled, rows_ok = [], {}, True
    for _ in range(args.repeat):
        lat, rows = measure_once(args, model_id)
        st = {n: stats_us(v) for n, v in lat.items()}
        passes.append({"latency_us": st, "diff_us": diffs_of(st), "ledger_rows": rows})
        rows_ok &= all(c == args.warmup + args.requests for c in rows.values())
        for n, v in lat.items():
            pooled.setdefault(n, []).extend(v)
    elapsed = time.monotonic() - started
    pooled_st = {n: stats_us(v) for n, v in pooled.items()}
    median_diffs = {d: {k: statistics.median(p["diff_us"][d][k] for p in passes)
                        for k in ("p50", "p90", "p99", "mean")}
                    for d in passes[0]["diff_us"]}
    report = {"cpu": cpu_model(), "cores": os.cpu_count(), "requests_per_server": args.requests,
              "warmup_per_server": args.warmup, "repeat": args.repeat,
              "elapsed_s": round(elapsed, 1),
              "servers": {n: " ".join(a[1:]) for n, a in configs_for(args, "TMP", "PRICES")},
              "passes": passes, "pooled_latency_us": pooled_st, "pooled_diff_us":
              diffs_of(pooled_st), "median_of_pass_diffs_us": median_diffs,
              "ledger_rows_ok": rows_ok}
    if args.json:
        print(json.dumps(report, indent=2))
        return 0 if rows_ok else 1
    print(f"CPU: {report['cpu']} ({report['cores']} CPUs); {args.repeat} passes x "
          f"{args.requests} requests per server after {args.warmup} warm-up, alternating; "
          f"{elapsed:.1f} s")
    for n, a in report["servers"].items():
        print(f"  {n}: {a}")
    for i, p in enumerate(passes, 1):
        print()
        print_stats(f"pass {i} (ledger rows: " + ", ".join(
            f"{n}={c}" for n, c in p["ledger_rows"].items()) +
            f"; expected {args.warmup + args.requests} each)", p["latency_us"])
        print_diffs("", p["diff_us"])
    print()
    print_stats(f"all passes pooled ({args.repeat * args.requests} per server)", pooled_st)
    print()
    print_diffs("differences, pooled", report["pooled_diff_us"])
    print()
    print_diffs(f"differences, median of the {args.repeat} passes", median_diffs)
    if not rows_ok:
        print("\nLEDGER ROW COUNT MISMATCH: a metered server did not record every request")
    return 0 if rows_ok else 1


if __name__ == "__main__":
    sys.exit(main())
