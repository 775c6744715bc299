#!/usr/bin/env python3
"""Prefix reuse (issue 19): ember against llama-server on traffic that repeats itself.

Three workloads, each server started fresh for each and driven the same way (streamed
requests, temperature 0, all traffic to 127.0.0.1). Each prints output tok/s (completion tokens
over the wall time), time to first token p50/p99, and the cached tokens the servers reported
(usage.prompt_tokens_details.cached_tokens for ember, timings.cache_n for llama-server), and
the ratios ember / llama-server that issue 19's targets are stated in (tok/s >= 1.2x, TTFT p99
<= 0.7x):

  repeated  --prompts completions of random words (--min-words..--max-words) at --concurrency,
            then the same prompts again; the second pass is the one reported (the first too).
  chat      --convs conversations of --turns turns at --chat-concurrency, every turn re-sending
            the conversation so far after a shared system prompt (--system-words).
  system    --system-requests chat requests at --chat-concurrency, each a long shared system
            prompt (--long-system-words) and a short user message.

Servers alternate (llama-server, ember, ember reusing nothing, ember without its RAM tier,
llama-server, ...) for --repeat rounds; medians.

  bench/prefix_cache.py MODEL [--ember build/rel/src/cli/ember] [--llama-server PATH]
      [--threads 2] [--parallel 16] [--ctx 16384] [--repeat 2] [--only repeated,chat,system]
      [--servers ember,llama-server] [--chat-template-file bench/chatml.jinja]
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
        return lambda: stream(server, "/v1/completions", {
            "prompt": p, "max_tokens": args.max_tokens, "temperature": 0, "stream": True,
            "stream_options": {"include_usage": True}})

    out = {}
    for name in ("first", "again"):
        start = time.monotonic()
        rows = run_pool([job(p) for p in prompts], args.concurrency)
        out[name] = summary(rows, time.monotonic() - start)
    return {**out["again"], "first": out["first"]}


def chat(server, args):
    rng = random.Random(11)
    system = {"role": "system", "content": words(rng, args.system_words)}
    users = [[words(rng, rng.randint(8, 20)) for _ in range(args.turns)]
             for _ in range(args.convs)]
    rows, lock = [], threading.Lock()

    def conversation(c):
        def run():
            messages = [system]
            for turn in range(args.turns):
                messages.append({"role": "user", "content": users[c][turn]})
                row = stream(server, "/v1/chat/completions", {
                    "messages": messages, "max_tokens": args.max_tokens, "temperature": 0,
                    "stream": True, "stream_options": {"include_usage": True}})
                with lock:
                    rows.append(row)
                messages.append({"role": "assistant", "content": row[3]})
        return run

    start = time.monotonic()
    run_pool([conversation(c) for c in range(args.convs)], args.chat_concurrency)
    return summary(rows, time.monotonic() - start)


def stream(server, path, body):
    """A streamed request: (seconds to the first content, completion tokens, cached tokens)."""
    c = http.client.HTTPConnection("127.0.0.1", server.port, timeout=600)
    start = time.monotonic()
    c.request("POST", path, body=json.dumps(body), headers={"Content-Type": "application/json"})
    r = c.getresponse()
    if r.status != 200:
        raise RuntimeError(f"{path}: {r.status} {r.read()[:200]!r}")
    first, chunks, usage, timings, text = None, 0, None, None, []
    for line in r:
        line = line.strip()
        if not line.startswith(b"data: ") or line == b"data: [DONE]":
            continue
        event = json.loads(line[6:])
        usage = event.get("usage") or usage
        timings = event.get("timings") or timings
        for choice in event.get("choices") or []:
            piece = (choice.get("delta") or {}).get("content") or choice.get("text")
            if piece:
                chunks += 1
                text.append(piece)
                if first is None:
                    first = time.monotonic() - start
    c.close()
    tokens = (usage or {}).get("completion_tokens", chunks)
    hit = cached({"usage": usage or {}, "timings": timings or {}})
    return (first if first is not None else time.monotonic() - start), tokens, hit, "".join(text)


def summary(rows, wall):
    """rows: stream() results of one pass that took `wall` seconds."""
    ttft = sorted(r[0] for r in rows)
    return {"wall": wall, "tok_s": sum(r[1] for r in rows) / wall,
            "ttft_p50": ttft[len(ttft) // 2],
            "ttft_p99": ttft[min(len(ttft) - 1, int(len(ttft) * 0.99))],
            "cached": sum(r[2] for r in rows)}


def system(server, args):
    rng = random.Random(13)
    prompt = {"role": "system", "content": words(rng, args.long_system_words)}
    users = [words(rng, rng.randint(6, 16)) for _ in range(args.system_requests)]

    def job(i, u):
        def run():
            sent = time.monotonic() - start
            row = stream(server, "/v1/chat/completions", {
                "messages": [prompt, {"role": "user", "content": u}],
                "max_tokens": args.max_tokens, "temperature": 0, "stream": True,
                "stream_options": {"include_usage": True}})
            if args.per_request:
                print(f"[prefix] system request {i}: sent at {sent:.2f} s, TTFT {row[0]:.2f} s, "
                      f"cached {row[2]}", file=sys.stderr)
            return row
        return run

    start = time.monotonic()
    rows = run_pool([job(i, u) for i, u in enumerate(users)], args.chat_concurrency)
    return summary(rows, time.monotonic() - start)


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
    # ~1,500 tokens with these words and a chat template (measured on the synthesized models'
    # vocabulary: 1,200 words made 1,170 tokens)
    ap.add_argument("--long-system-words", type=int, default=1550)
    ap.add_argument("--servers", default="", help="only these (comma-separated names)")
    # A model without a chat template (the synthesized ones) gets ember's documented fallback
    # format from ember and ChatML from llama-server: different prompts. This gives both the
    # same template (bench/chatml.jinja renders what llama-server's fallback does).
    ap.add_argument("--chat-template-file", default="")
    ap.add_argument("--per-request", action="store_true",
                    help="system: print each request's send time, TTFT and cached tokens")
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
    if args.chat_template_file:
        for argv in servers.values():
            argv += ["--chat-template-file", args.chat_template_file]
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

    titles = {
        "repeated": f"repeated: {args.prompts} completions of {args.min_words}-{args.max_words} "
                    f"words at c={args.concurrency}, then the same again (the second pass; the "
                    f"first pass's tok/s in the last column), {args.max_tokens} tokens out",
        "chat": f"chat: {args.convs} conversations x {args.turns} turns at "
                f"c={args.chat_concurrency}, {args.system_words}-word system prompt, "
                f"{args.max_tokens} tokens out",
        "system": f"system: {args.system_requests} chat requests at c={args.chat_concurrency}, "
                  f"{args.long_system_words}-word shared system prompt, {args.max_tokens} "
                  f"tokens out"}
    for wl in titles:
        names = present(wl)
        if not names:
            continue
        print(f"\n{titles[wl]}\n")
        first = "first pass tok/s | " if wl == "repeated" else ""
        print(f"| server | output tok/s | TTFT p50 s | TTFT p99 s | cached tokens | wall s | "
              f"{first}runs (tok/s) |")
        print("|---|---:|---:|---:|---:|---:|" + ("---:|" if first else "") + "---|")
        for name in names:
            rows = results[(wl, name)]
            extra = (f"{statistics.median(r['first']['tok_s'] for r in rows):.1f} | "
                     if first else "")
            print(f"| {name} | {med(rows, 'tok_s'):.1f} | {med(rows, 'ttft_p50'):.2f} | "
                  f"{med(rows, 'ttft_p99'):.2f} | {int(med(rows, 'cached'))} | "
                  f"{med(rows, 'wall'):.2f} | {extra}"
                  f"{', '.join('%.1f' % r['tok_s'] for r in rows)} |")
        if ("llama-server" in names and "ember" in names):
            e, l = results[(wl, "ember")], results[(wl, "llama-server")]
            print(f"\nember / llama-server: output tok/s {med(e, 'tok_s') / med(l, 'tok_s'):.2f}x "
                  f"(target >= 1.2x), TTFT p99 {med(e, 'ttft_p99') / med(l, 'ttft_p99'):.2f}x "
                  f"(target <= 0.7x); per round: " + ", ".join(
                      f"{a['tok_s'] / b['tok_s']:.2f}x/{a['ttft_p99'] / b['ttft_p99']:.2f}x"
                      for a, b in zip(e, l)))

if __name__ == "__main__":
    main()
