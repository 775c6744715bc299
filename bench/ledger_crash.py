#!/usr/bin/env python3
"""Usage records lost to kill -9, per --ledger-sync mode.

Each trial starts `ember serve` with a fresh temporary --data-dir (and a --prices file), drives
it from 6 client threads that each send sequential non-streamed /v1/completions requests
(max_tokens 4) over a persistent connection for about 2 s, remembers the id of every
acknowledged (HTTP 200) response and the monotonic time its body arrived, then SIGKILLs the
server, stops the clients and reads DIR/ledger.sqlite with Python's sqlite3 (opening it
read-write, so SQLite recovers the WAL). The load lasts 2 s plus a random 0-200 ms so that the
kill lands at a random phase of the writer's 100 ms commit cycle: without the jitter it lands
at nearly the same phase every trial (the cycle starts with the server) and `oldest` below
samples one point of the window instead of all of it. Per trial it reports:

  acked      responses acknowledged with 200
  recorded   rows in the `usage` table
  lost       acknowledged ids missing from the ledger
  dup        duplicate request ids (ledger rows, or ids acknowledged twice); must be 0
  oldest     age of the oldest lost record: kill time - its ack time, in ms (normal sync
             promises at most the last commit window, ~100 ms plus a commit; full: nothing)
  extra      ledger rows no client saw acknowledged (in flight at the kill; allowed)
  acks/s     acknowledged throughput
  load s     client start to kill

Trials alternate normal, full, normal, full, ... so machine noise hits both modes alike; a
summary per mode gives the median and max of `lost` and of `oldest`, and the median
throughput. All traffic goes to 127.0.0.1. Each trial is bounded (start-up 60 s, load 2 s,
request timeout 10 s), so a run takes about runs x 2 x 5 s.

  bench/ledger_crash.py [--ember build/release/src/cli/ember]
      [--model ../shared/models/stories260K.gguf] [--runs 5] [--seed N] [--json]
"""
import argparse
import http.client
import json
import os
import random
import shutil
import sqlite3
import statistics
import sys
import tempfile
import threading
import time

from ember_server import Server

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CLIENTS = 6
LOAD_S = 2.0
JITTER_S = 0.2  # more than one commit interval (100 ms)
MODES = ("normal", "full")


def prices_toml(model_id):
    return (f'[models."{model_id}"]\ninput_per_mtok = 0.15\noutput_per_mtok = 0.60\n'
            f'[instance]\nprice_per_hour = 3.06\n')


def read_ledger(data_dir):
    """The request ids in the usage table, one per row (duplicates kept)."""
    db = sqlite3.connect(os.path.join(data_dir, "ledger.sqlite"), timeout=10)
    try:
        ids = [r[0] for r in db.execute("SELECT request_id FROM usage")]
    finally:
        db.close()
    return ids


def trial(args, model_id, mode, prices_path, rng):
    data = tempfile.mkdtemp(prefix="ember-ledger-crash-")
    try:
        server = Server([args.ember, "serve", "--model", args.model, "--host", "127.0.0.1",
                         "--port", "0", "--threads", "1", "--parallel", "4",
                         "--ctx-size", "1024", "--data-dir", data, "--prices", prices_path,
                         "--ledger-sync", mode])
        try:
            server.wait_ready()
        except RuntimeError as e:
            sys.exit(str(e))
        acked, statuses, errors = [], {}, []
        lock, stop = threading.Lock(), threading.Event()

        def client(k):
            conn, i = None, 0
            while not stop.is_set():
                i += 1
                body = json.dumps({"model": model_id, "prompt": f"Once {k} {i}",
                                   "max_tokens": 4})
                try:
                    if conn is None:
                        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
                    conn.request("POST", "/v1/completions", body=body,
                                 headers={"Content-Type": "application/json"})
                    r = conn.getresponse()
                    data_ = r.read()
                    t = time.monotonic()
                except (OSError, http.client.HTTPException) as e:
                    if conn is not None:
                        conn.close()
                        conn = None
                    if stop.is_set() or server.proc.poll() is not None:
                        return
                    with lock:
                        errors.append(repr(e))
                    time.sleep(0.01)
                    continue
                with lock:
                    statuses[r.status] = statuses.get(r.status, 0) + 1
                    if r.status == 200:
                        acked.append((json.loads(data_)["id"], t))
            if conn is not None:
                conn.close()

        threads = [threading.Thread(target=client, args=(k,), daemon=True)
                   for k in range(CLIENTS)]
        started = time.monotonic()
        for t in threads:
            t.start()
        time.sleep(LOAD_S + rng.uniform(0, JITTER_S))
        killed_at = time.monotonic()
        server.proc.kill()  # SIGKILL
        stop.set()
        server.proc.wait(30)
        for t in threads:
            t.join(15)
        with lock:
            acked = list(acked)
        ids = read_ledger(data)
        stored = set(ids)
        ack_ids = [i for i, _ in acked]
        lost = [(i, t) for i, t in acked if i not in stored]
        ages = [(killed_at - t) * 1e3 for _, t in lost]
        return {
            "mode": mode,
            "acked": len(acked),
            "recorded": len(ids),
            "lost": len(lost),
            "dup_ledger": len(ids) - len(stored),
            "dup_acked": len(ack_ids) - len(set(ack_ids)),
            "extra": len(stored - set(ack_ids)),
            "oldest_loss_ms": max(ages) if ages else None,
            "newest_loss_ms": min(ages) if ages else None,
            "acked_after_kill": sum(1 for _, t in acked if t > killed_at),
            "load_s": killed_at - started,
            "acks_per_s": len(acked) / (killed_at - started),
            "statuses": {str(k): v for k, v in sorted(statuses.items())},
            "client_errors": len(errors),
            "exit": server.proc.returncode,
        }
    finally:
        shutil.rmtree(data, ignore_errors=True)


def fmt_ms(v):
    return "-" if v is None else f"{v:.1f}"


def summarize(results):
    out = {}
    for mode in MODES:
        rs = [r for r in results if r["mode"] == mode]
        if not rs:
            continue
        lost = [r["lost"] for r in rs]
        ages = [r["oldest_loss_ms"] for r in rs if r["oldest_loss_ms"] is not None]
        out[mode] = {
            "runs": len(rs),
            "lost_median": statistics.median(lost), "lost_max": max(lost),
            "lost_total": sum(lost), "acked_total": sum(r["acked"] for r in rs),
            "runs_with_loss": len(ages),
            "oldest_loss_ms_median": statistics.median(ages) if ages else None,
            "oldest_loss_ms_max": max(ages) if ages else None,
            "duplicates": sum(r["dup_ledger"] + r["dup_acked"] for r in rs),
            "acks_per_s_median": statistics.median(r["acks_per_s"] for r in rs),
        }
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--ember", default=os.path.join(REPO, "build/release/src/cli/ember"))
    ap.add_argument("--model", default=os.path.join(REPO, "../shared/models/stories260K.gguf"))
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--seed", type=int, default=None, help="for the kill-time jitter")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    model_id = os.path.splitext(os.path.basename(args.model))[0]
    tmp = tempfile.mkdtemp(prefix="ember-ledger-crash-prices-")
    prices_path = os.path.join(tmp, "prices.toml")
    with open(prices_path, "w") as f:
        f.write(prices_toml(model_id))
    rng = random.Random(args.seed)
    results = []
    try:
        if not args.json:
            print(f"{'run':>3} {'mode':<6} {'acked':>6} {'recorded':>8} {'lost':>5} "
                  f"{'dup':>4} {'extra':>5} {'oldest ms':>9} {'newest ms':>9} {'acks/s':>7} "
                  f"{'load s':>6} statuses / errors")
        for run in range(1, args.runs + 1):
            for mode in MODES:
                r = trial(args, model_id, mode, prices_path, rng)
                r["run"] = run
                results.append(r)
                if not args.json:
                    print(f"{run:>3} {mode:<6} {r['acked']:>6} {r['recorded']:>8} "
                          f"{r['lost']:>5} {r['dup_ledger'] + r['dup_acked']:>4} "
                          f"{r['extra']:>5} {fmt_ms(r['oldest_loss_ms']):>9} "
                          f"{fmt_ms(r['newest_loss_ms']):>9} {r['acks_per_s']:>7.1f} "
                          f"{r['load_s']:>6.3f} "
                          f"{r['statuses']} / {r['client_errors']}", flush=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    summary = summarize(results)
    if args.json:
        print(json.dumps({"runs": results, "summary": summary}, indent=2))
    else:
        print()
        print(f"{'mode':<6} {'runs':>4} {'lost med':>8} {'lost max':>8} {'lost/acked':>12} "
              f"{'oldest med ms':>13} {'oldest max ms':>13} {'dup':>4} {'acks/s med':>10}")
        for mode, s in summary.items():
            print(f"{mode:<6} {s['runs']:>4} {s['lost_median']:>8} {s['lost_max']:>8} "
                  f"{s['lost_total']:>5}/{s['acked_total']:<6} "
                  f"{fmt_ms(s['oldest_loss_ms_median']):>13} "
                  f"{fmt_ms(s['oldest_loss_ms_max']):>13} {s['duplicates']:>4} "
                  f"{s['acks_per_s_median']:>10.1f}")
    bad = [m for m, s in summary.items() if s["duplicates"]] + \
        [m for m, s in summary.items() if m == "full" and s["lost_total"]]
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
