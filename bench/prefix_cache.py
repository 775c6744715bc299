#!/usr/bin/env python3
"""Prefix reuse (issue 19): ember against llama-server on traffic that repeats itself.

Two workloads, each server started fresh for each and driven the same way (non-streamed
requests, temperature 0, all traffic to 127.0.0.1):

  repeated  --prompts prompts of random words (--min-words..--max-words) at --concurrency, then
            the same prompts again; prints both passes' wall time and the cached tokens the
            second pass reported (usage.prompt_tokens_details.cached_tokens for ember,
            timings.cache_n for llama-server).
  chat      --convs conversations of --turns turns at --chat-concurrency, every turn re-sending
            the conversation so far after a shared system prompt (--system-words); prints the
            wall time and the p50/p99 turn latency.
  system    --system-requests streamed chat requests at --chat-concurrency, each a long shared
            system prompt (--long-system-words) and a short user message; prints output tok/s
            (completion tokens over the wall time), TTFT p50/p99 and the cached tokens.

Servers alternate (llama-server, ember, ember reusing nothing, ember without its RAM tier,
llama-server, ...) for --repeat rounds; medians.

  bench/prefix_cache.py MODEL [--ember build/rel/src/cli/ember] [--llama-server PATH]
      [--threads 2] [--parallel 16] [--ctx 16384] [--repeat 2] [--only repeated,chat,system]
      [--servers ember,llama-server]
"""
import argparse
import http.client
import json
import os
import random
import re
import socket
import statistics
import subprocess
import sys
import threading
import time

from ember_server import cpu_model

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WORDS = ("the a little girl boy dog cat sun park ball tree red big happy sad play run jump "
         "went saw said mom dad friend house garden flower bird sky blue green day night "
         "rain snow cake toy box car road hill river fish water sand beach ship").split()


class Server:
    def __init__(self, argv):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        argv = argv + ["--port", str(self.port), "--host", "127.0.0.1"]
        self.proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        ready = "/ready" if "serve" in argv else "/health"  # ember's /health is liveness
        deadline = time.time() + 180
        while time.time() < deadline:
            try:
                status, _ = self.call("GET", ready, None, timeout=5)
                if status == 200:
                    return
            except OSError:
                pass
            time.sleep(0.1)
        self.stop()
        sys.exit(f"server did not start: {' '.join(argv)}")

    def call(self, method, path, body, timeout=600):
        c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        c.request(method, path, body=json.dumps(body) if body is not None else None,
                  headers={"Content-Type": "application/json"})
        r = c.getresponse()
        data = r.read()
        c.close()
        return r.status, data

    def post(self, path, body):
        status, data = self.call("POST", path, body)
        if status != 200:
            raise RuntimeError(f"{path}: {status} {data[:200]!r}")
        return json.loads(data)

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def cached(body):
    details = (body.get("usage") or {}).get("prompt_tokens_details") or {}
    if "cached_tokens" in details:
        return details["cached_tokens"]
    return (body.get("timings") or {}).get("cache_n", 0)


def run_pool(jobs, concurrency):
    """Runs jobs (callables) on `concurrency` threads; returns their results in order."""
    results, lock, it = [None] * len(jobs), threading.Lock(), iter(range(len(jobs)))

    def worker():
        while True:
            with lock:
                i = next(it, None)
            if i is None:
                return
            results[i] = jobs[i]()

    threads = [threading.Thread(target=worker) for _ in range(concurrency)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results


def words(rng, n):
    return " ".join(rng.choice(WORDS) for _ in range(n))


def repeated(server, args):
    rng = random.Random(7)
    prompts = [words(rng, rng.randint(args.min_words, args.max_words))
               for _ in range(args.prompts)]

    def job(p):
        return lambda: cached(server.post("/v1/completions", {
            "prompt": p, "max_tokens": args.max_tokens, "temperature": 0}))

    out = {}
    for name in ("first", "again"):
        start = time.monotonic()
        hits = run_pool([job(p) for p in prompts], args.concurrency)
        out[name] = time.monotonic() - start
        out[name + "_cached"] = sum(hits)
    return out


def chat(server, args):
    rng = random.Random(11)
    system = {"role": "system", "content": words(rng, args.system_words)}
    users = [[words(rng, rng.randint(8, 20)) for _ in range(args.turns)]
             for _ in range(args.convs)]
    latencies, cached_total = [], [0]
    lock = threading.Lock()

    def conversation(c):
        def run():
            messages = [system]
            for turn in range(args.turns):
                messages.append({"role": "user", "content": users[c][turn]})
                start = time.monotonic()
                body = server.post("/v1/chat/completions", {
                    "messages": messages, "max_tokens": args.max_tokens, "temperature": 0})
                with lock:
                    latencies.append(time.monotonic() - start)
                    cached_total[0] += cached(body)
                messages.append({"role": "assistant",
                                 "content": body["choices"][0]["message"]["content"]})
        return run

    start = time.monotonic()
    run_pool([conversation(c) for c in range(args.convs)], args.chat_concurrency)
    wall = time.monotonic() - start
    latencies.sort()
    return {"wall": wall, "p50": latencies[len(latencies) // 2],
            "p99": latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))],
            "cached": cached_total[0]}


def stream(server, path, body):
    """A streamed request: (seconds to the first content, completion tokens, cached tokens)."""
    c = http.client.HTTPConnection("127.0.0.1", server.port, timeout=600)
    start = time.monotonic()
    c.request("POST", path, body=json.dumps(body), headers={"Content-Type": "application/json"})
    r = c.getresponse()
    if r.status != 200:
        raise RuntimeError(f"{path}: {r.status} {r.read()[:200]!r}")
    first, chunks, usage, timings = None, 0, None, None
    for line in r:
        line = line.strip()
        if not line.startswith(b"data: ") or line == b"data: [DONE]":
            continue
        event = json.loads(line[6:])
        usage = event.get("usage") or usage
        timings = event.get("timings") or timings
        for choice in event.get("choices") or []:
            if (choice.get("delta") or {}).get("content"):
                chunks += 1
                if first is None:
                    first = time.monotonic() - start
    c.close()
    tokens = (usage or {}).get("completion_tokens", chunks)
    hit = cached({"usage": usage or {}, "timings": timings or {}})
    return (first if first is not None else time.monotonic() - start), tokens, hit


def system(server, args):
    rng = random.Random(13)
    prompt = {"role": "system", "content": words(rng, args.long_system_words)}
    users = [words(rng, rng.randint(6, 16)) for _ in range(args.system_requests)]

    def job(u):
        return lambda: stream(server, "/v1/chat/completions", {
            "messages": [prompt, {"role": "user", "content": u}],
            "max_tokens": args.max_tokens, "temperature": 0, "stream": True,
            "stream_options": {"include_usage": True}})

    start = time.monotonic()
    rows = run_pool([job(u) for u in users], args.chat_concurrency)
    wall = time.monotonic() - start
    ttft = sorted(r[0] for r in rows)
    return {"wall": wall, "tok_s": sum(r[1] for r in rows) / wall,
            "ttft_p50": ttft[len(ttft) // 2],
            "ttft_p99": ttft[min(len(ttft) - 1, int(len(ttft) * 0.99))],
            "cached": sum(r[2] for r in rows)}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("model")
    ap.add_argument("--ember", default=os.path.join(REPO, "build/rel/src/cli/ember"))
    ap.add_argument("--llama-server", default="")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--parallel", type=int, default=16)
    ap.add_argument("--ctx", type=int, default=16384)
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--only", default="repeated,chat")
    ap.add_argument("--prompts", type=int, default=32)
    ap.add_argument("--min-words", type=int, default=80)
    ap.add_argument("--max-words", type=int, default=500)
    ap.add_argument("--concurrency", type=int, default=16)
    ap.add_argument("--max-tokens", type=int, default=24)
    ap.add_argument("--convs", type=int, default=24)
    ap.add_argument("--turns", type=int, default=6)
    ap.add_argument("--chat-concurrency", type=int, default=8)
    ap.add_argument("--system-words", type=int, default=120)
    ap.add_argument("--system-requests", type=int, default=48)
    ap.add_argument("--long-system-words", type=int, default=1200)  # ~1,500 tokens
    ap.add_argument("--servers", default="", help="only these (comma-separated names)")
    args = ap.parse_args()

    servers = {"ember": [args.ember, "serve", "--model", args.model, "--threads",
                         str(args.threads), "--ctx-size", str(args.ctx), "--parallel",
                         str(args.parallel), "--queue-size", "256"]}
    # The same ember reusing nothing: what the prefix cache itself is worth.
    servers["ember --prefix-cache-share off"] = servers["ember"] + ["--prefix-cache-share", "off"]
    # The slot tier alone: what the RAM tier adds.
    servers["ember --prefix-cache-size 0"] = servers["ember"] + ["--prefix-cache-size", "0"]
    if args.llama_server:
        servers["llama-server"] = [args.llama_server, "-m", args.model, "-t", str(args.threads),
                                   "-c", str(args.ctx), "-np", str(args.parallel)]
    if args.servers:
        keep = set(args.servers.split(","))
        servers = {name: argv for name, argv in servers.items() if name in keep}
    workloads = {"repeated": repeated, "chat": chat, "system": system}
    results = {}
    for _ in range(args.repeat):
        for wl in [w for w in args.only.split(",") if w]:
            for name in sorted(servers, key=lambda n: (n != "llama-server", n)):
                server = Server(servers[name])
                try:
                    r = workloads[wl](server, args)
                finally:
                    server.stop()
                print(f"[prefix] {wl} {name}: {r}", file=sys.stderr)
                results.setdefault((wl, name), []).append(r)

    def med(rows, key):
        return statistics.median(r[key] for r in rows)

    print(f"CPU: {cpu_model()}; --threads {args.threads} --parallel {args.parallel} "
          f"--ctx {args.ctx}; medians of {args.repeat}\n")
    def present(wl):
        return [name for name in servers if (wl, name) in results]

    if ("repeated", "ember") in results:
        print(f"repeated: {args.prompts} prompts of {args.min_words}-{args.max_words} words, "
              f"{args.max_tokens} tokens out, c={args.concurrency}\n")
        print("| server | first pass s | same prompts again s | cached tokens (again) | runs "
              "(again) |")
        print("|---|---:|---:|---:|---|")
        for name in servers:
            rows = results[("repeated", name)]
            print(f"| {name} | {med(rows, 'first'):.2f} | {med(rows, 'again'):.2f} | "
                  f"{int(med(rows, 'again_cached'))} | "
                  f"{' '.join('%.2f' % r['again'] for r in rows)} |")
    if ("chat", "ember") in results:
        print(f"\nchat: {args.convs} conversations x {args.turns} turns, c={args.chat_concurrency},"
              f" {args.system_words}-word system prompt, {args.max_tokens} tokens out\n")
        print("| server | wall s | turn p50 s | turn p99 s | cached tokens | runs (wall) |")
        print("|---|---:|---:|---:|---:|---|")
        for name in servers:
            rows = results[("chat", name)]
            print(f"| {name} | {med(rows, 'wall'):.2f} | {med(rows, 'p50'):.2f} | "
                  f"{med(rows, 'p99'):.2f} | {int(med(rows, 'cached'))} | "
                  f"{' '.join('%.2f' % r['wall'] for r in rows)} |")
    if present("system"):
        print(f"\nsystem: {args.system_requests} streamed chat requests, c={args.chat_concurrency},"
              f" {args.long_system_words}-word shared system prompt, {args.max_tokens} tokens "
              "out\n")
        print("| server | output tok/s | TTFT p50 s | TTFT p99 s | cached tokens | runs (tok/s) |")
        print("|---|---:|---:|---:|---:|---|")
        for name in present("system"):
            rows = results[("system", name)]
            print(f"| {name} | {med(rows, 'tok_s'):.1f} | {med(rows, 'ttft_p50'):.2f} | "
                  f"{med(rows, 'ttft_p99'):.2f} | {int(med(rows, 'cached'))} | "
                  f"{' '.join('%.1f' % r['tok_s'] for r in rows)} |")


if __name__ == "__main__":
    main()
