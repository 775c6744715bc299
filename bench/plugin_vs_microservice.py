#!/usr/bin/env python3
"""Issue 16's comparison: the same gateway logic (the C example plugins' model allow-list and
PII redaction) as a sidecar microservice in front of ember, against in-process Wasm plugins.

Builds bench/microservice (Go, `go build`) into a temporary directory and starts, all at once,
on 127.0.0.1 with the same model and flags (`--threads 1 --parallel P`, one tenant with one API
key in each server's own --data-dir):

  A  ember without plugins, behind the Go sidecar (allow-list + redaction of the request, and
     of the answer: a non-streamed body whole, a stream event by event)
  B  ember with `--plugins`: the chain allowlist, redact (model_allowlist.wasm,
     pii_redact.wasm) on /v1/chat/completions, the same configuration strings
  C  ember without plugins and without the sidecar: the floor

It first checks that A and B do the same thing (a model off the list gets the same 403 body
from both; a prompt with an e-mail reaches the model as "[EMAIL]": the same prompt_tokens and
output as the literal text sent to C), then runs --rounds rounds, each in the order
A B C C B A so the machine's drift hits all three alike:

  - short non-streamed chat requests (a prompt with an e-mail and a phone number to redact,
    max_tokens --max-tokens, temperature 0) at concurrency 1 and 8: response time per request,
    client side (send to last byte, one keep-alive connection per client thread);
  - streamed chat requests at concurrency 8 (--stream-tokens each): output tok/s.

Prints per round and setup p50/p99 and the ratios B/A and B/C within the round, then medians
over rounds; the processes' CPU time per request (the sidecar and ember summed for A, from
their threads' schedstat); and the request hook's own time per plugin from B's
ember_plugin_call_duration_seconds{hook="request"} histogram, p50/p99 interpolated linearly
inside its buckets (1, 2.5, 5, 10, 25, 50, 100 us, ...: coarse, so the share of calls under
each bucket bound is printed too). With --bench-plugins PATH
(build/release/src/plugins/bench_plugins) it also runs that Google Benchmark for each
plugin's in-process CPU time per request on a reused instance.

Issue 16's targets: B's response time >= 30% below A's; the request hook <= 20 µs p50 and
<= 100 µs p99; a per-event streaming hook <= 3% tok/s.

  bench/plugin_vs_microservice.py [--ember /tmp/msbench-bin/ember]
      [--wasm-dir /tmp/msbench-bin] [--model /work/shared/models/stories260K.gguf]
      [--rounds 7] [--requests 400] [--max-tokens 4] [--stream-requests 48]
      [--stream-tokens 200] [--parallel 8] [--ctx-size 4096] [--bench-plugins PATH] [--json F]

Every request has a 60 s timeout; the default run takes a few minutes with stories260K.
"""
import argparse
import hashlib
import http.client
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time

from ember_server import Server, cpu_model

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
KEY = "sk-bench-plugin-vs-microservice"
TENANT = "acme"
PROMPT = ("Please write a short note to jane.doe@example.com and call me on +1 555 010 4477 "
          "about the kittens.")
REDACTED = "Please write a short note to [EMAIL] and call me on [PHONE] about the kittens."
ORDER = ("A", "B", "C", "C", "B", "A")


def go_build(workdir):
    go = shutil.which("go") or "/usr/local/go/bin/go"
    out = os.path.join(workdir, "microservice")
    subprocess.run([go, "build", "-o", out, "."], cwd=os.path.join(REPO, "bench", "microservice"),
                   check=True, env={**os.environ, "CGO_ENABLED": "0"})
    return out


def write_data_dir(path):
    os.makedirs(path)
    with open(os.path.join(path, "tenants.toml"), "w") as f:
        f.write(f'[tenants.{TENANT}]\n\n[[keys]]\nid = "key_0123456789ab"\ntenant = "{TENANT}"\n'
                f'sha256 = "{hashlib.sha256(KEY.encode()).hexdigest()}"\n'
                'created = 1764921600\n')


def proc_cpu(pid):
    """CPU seconds the process's live threads have run (/proc/PID/task/*/schedstat, in ns:
    finer than /proc/PID/stat's clock ticks; a thread that exited is not counted)."""
    total = 0
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/schedstat") as f:
                total += int(f.read().split()[0])
        except OSError:
            pass
    return total / 1e9


class Setup:
    """A client-facing server (ember, or the sidecar in front of one) and its processes."""

    def __init__(self, name, front, processes):
        self.name, self.front, self.processes = name, front, processes

    @property
    def port(self):
        return self.front.port

    def cpu(self):
        return sum(proc_cpu(p.proc.pid) for p in self.processes)


def percentile(values, q):
    """Nearest-rank percentile of a list (q in [0, 100])."""
    s = sorted(values)
    return s[min(len(s) - 1, max(0, int(round(q / 100 * len(s) + 0.5)) - 1))]


class Conn:
    """One keep-alive connection; post() returns (status, body bytes, seconds)."""

    def __init__(self, port):
        self.port, self.c = port, None

    def post(self, body, stream=False):
        if self.c is None:
            self.c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
            self.c.connect()
        headers = {"Content-Type": "application/json", "Authorization": f"Bearer {KEY}"}
        start = time.perf_counter()
        try:
            self.c.request("POST", "/v1/chat/completions", body=body, headers=headers)
            r = self.c.getresponse()
            if stream and r.status == 200:
                data = b"".join(iter(lambda: r.read1(65536), b""))
            else:
                data = r.read()
        except Exception:
            self.c.close()
            self.c = None
            raise
        elapsed = time.perf_counter() - start
        if r.getheader("Connection", "").lower() == "close":
            self.c.close()
            self.c = None
        return r.status, data, elapsed


def chat_body(model, content, max_tokens, stream=False, temperature=0):
    body = {"model": model, "messages": [{"role": "user", "content": content}],
            "max_tokens": max_tokens, "temperature": temperature, "seed": 1}
    if stream:
        body.update(stream=True, stream_options={"include_usage": True})
    return json.dumps(body).encode()


def run_load(setup, body, concurrency, requests, stream=False):
    """`requests` requests over `concurrency` threads, one connection each: (latencies in s,
    completion tokens, wall seconds, CPU seconds of the setup's processes)."""
    latencies, tokens, errors, lock = [], [0], [], threading.Lock()
    per = max(1, requests // concurrency)

    def client():
        conn = Conn(setup.port)
        for _ in range(per):
            try:
                status, data, dt = conn.post(body, stream)
            except Exception as e:  # noqa: BLE001 - reported after the run
                errors.append(repr(e))
                continue
            if status != 200:
                errors.append(f"{status} {data[:200]!r}")
                continue
            if stream:
                usage = [json.loads(line[6:]) for line in data.decode().split("\n")
                         if line.startswith("data: {") and '"usage":{' in line]
                n = usage[-1]["usage"]["completion_tokens"] if usage else 0
            else:
                n = json.loads(data)["usage"]["completion_tokens"]
            with lock:
                latencies.append(dt)
                tokens[0] += n

    threads = [threading.Thread(target=client) for _ in range(concurrency)]
    cpu, start = setup.cpu(), time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall, cpu = time.perf_counter() - start, setup.cpu() - cpu
    if errors:
        raise RuntimeError(f"{setup.name}: {len(errors)} failed requests, e.g. {errors[:3]}")
    return latencies, tokens[0], wall, cpu


def metrics_histograms(port, name, hook):
    """{plugin: [(le, cumulative count), ...]} of `name`_bucket for `hook`."""
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    c.request("GET", "/metrics")
    text = c.getresponse().read().decode()
    c.close()
    out = {}
    for line in text.splitlines():
        m = re.match(name + r"_bucket\{([^}]*)\}\s+(\S+)$", line)
        if not m:
            continue
        labels = dict(re.findall(r'(\w+)="([^"]*)"', m.group(1)))
        if labels.get("hook") != hook:
            continue
        le = float("inf") if labels["le"] == "+Inf" else float(labels["le"])
        out.setdefault(labels["plugin"], []).append((le, float(m.group(2))))
    return {p: sorted(b) for p, b in out.items()}


def histogram_delta(after, before):
    return {p: [(le, n - dict(before.get(p, [])).get(le, 0)) for le, n in b]
            for p, b in after.items()}


def histogram_quantile(buckets, q):
    """Linear interpolation inside the bucket holding the q-quantile (Prometheus' way)."""
    total = buckets[-1][1]
    if total == 0:
        return None
    rank, lower, below = q * total, 0.0, 0.0
    for le, n in buckets:
        if n >= rank:
            if le == float("inf"):
                return lower
            return lower + (le - lower) * ((rank - below) / (n - below) if n > below else 1)
        lower, below = le, n
    return lower


def hook_report(buckets):
    total = buckets[-1][1] if buckets else 0
    if not total:
        return "no calls"
    p50, p99 = histogram_quantile(buckets, 0.5), histogram_quantile(buckets, 0.99)
    shares = ", ".join(f"<= {le * 1e6:g} us {n / total:.1%}" for le, n in buckets
                       if le != float("inf") and 5e-6 <= le <= 1e-4)
    return f"{int(total)} calls, p50 {p50 * 1e6:.1f} us, p99 {p99 * 1e6:.1f} us ({shares})"


def check_same_behaviour(setups, model, alt_model):
    """A and B refuse the same way and redact the same way; C shows what the model gets."""
    refused = {}
    for name in ("A", "B"):
        status, data, _ = Conn(setups[name].port).post(chat_body(alt_model, "Hi", 2))
        assert status == 403, (name, status, data)
        refused[name] = json.loads(data)
    assert refused["A"] == refused["B"], refused
    status, data, _ = Conn(setups["C"].port).post(chat_body(alt_model, "Hi", 2))
    assert status in (400, 404), (status, data)  # C has no allow-list: the model is just unknown
    literal = json.loads(Conn(setups["C"].port).post(chat_body(model, REDACTED, 8))[1])
    for name in ("A", "B"):
        status, data, _ = Conn(setups[name].port).post(chat_body(model, PROMPT, 8))
        got = json.loads(data)
        assert status == 200, (name, status, data)
        assert got["usage"]["prompt_tokens"] == literal["usage"]["prompt_tokens"], (name, got)
        assert (got["choices"][0]["message"]["content"] ==
                literal["choices"][0]["message"]["content"]), (name, got, literal)
    print(f"same behaviour: 403 {refused['A']['error']['code']} from A and B; the prompt reaches "
          f"the model redacted ({literal['usage']['prompt_tokens']} prompt tokens) through both")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--ember", default=os.environ.get("EMBER_BIN", "/tmp/msbench-bin/ember"))
    ap.add_argument("--wasm-dir", default="/tmp/msbench-bin",
                    help="where model_allowlist.wasm and pii_redact.wasm are")
    ap.add_argument("--model", default="/work/shared/models/stories260K.gguf")
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--requests", type=int, default=400,
                    help="short requests per setup per round and concurrency")
    ap.add_argument("--max-tokens", type=int, default=4)
    ap.add_argument("--stream-requests", type=int, default=48)
    ap.add_argument("--stream-tokens", type=int, default=200)
    ap.add_argument("--parallel", type=int, default=8)
    ap.add_argument("--ctx-size", type=int, default=4096)
    ap.add_argument("--threads", type=int, default=1, help="ember's compute threads, each")
    ap.add_argument("--bench-plugins", help="build/.../src/plugins/bench_plugins, optional")
    ap.add_argument("--json", help="write the raw results here")
    args = ap.parse_args()

    model_id = os.path.splitext(os.path.basename(args.model))[0]
    allowlist = f"{TENANT}: {model_id}\\n*: tiny"  # TOML's \n; the sidecar reads it the same
    workdir = tempfile.mkdtemp(prefix="ember-msbench-")
    print(f"CPU: {cpu_model()} ({os.cpu_count()} CPUs); load average "
          f"{os.getloadavg()[0]:.1f}; {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}")
    print(f"model {args.model}; ember {args.ember}; --threads {args.threads} --parallel "
          f"{args.parallel} --ctx-size {args.ctx_size}")
    sidecar_bin = go_build(workdir)
    for name in ("model_allowlist.wasm", "pii_redact.wasm"):
        shutil.copy(os.path.join(args.wasm_dir, name), workdir)
    plugins = os.path.join(workdir, "plugins.toml")
    with open(plugins, "w") as f:
        f.write(f'[[plugin]]\nname = "allowlist"\npath = "model_allowlist.wasm"\n'
                f'configuration = "{allowlist}"\n\n'
                '[[plugin]]\nname = "redact"\npath = "pii_redact.wasm"\n\n'
                '[[chain]]\nroute = "/v1/chat/completions"\nplugins = "allowlist, redact"\n')

    def ember(name, *extra):
        data = os.path.join(workdir, "data-" + name)
        write_data_dir(data)
        return Server([args.ember, "serve", "--model", args.model, "--model-id", model_id,
                       "--host", "127.0.0.1", "--port", "0", "--threads", str(args.threads),
                       "--parallel", str(args.parallel), "--ctx-size", str(args.ctx_size),
                       "--data-dir", data, *extra], "ember " + name)

    started = []
    try:
        ember_a, ember_b, ember_c = (ember("A"), ember("B", "--plugins", plugins), ember("C"))
        started += [ember_a, ember_b, ember_c]
        for s in started:
            s.wait_ready()
        sidecar = Server([sidecar_bin, "-upstream", f"http://127.0.0.1:{ember_a.port}",
                          "-listen", "127.0.0.1:0", "-allowlist", allowlist,
                          "-keys", os.path.join(workdir, "data-A", "tenants.toml"),
                          "-routes", "/v1/chat/completions"], "sidecar")
        started.append(sidecar)
        sidecar.wait_ready()
        setups = {"A": Setup("A", sidecar, [sidecar, ember_a]),
                  "B": Setup("B", ember_b, [ember_b]),
                  "C": Setup("C", ember_c, [ember_c])}
        check_same_behaviour(setups, model_id, "gpt-9")

        short = chat_body(model_id, PROMPT, args.max_tokens)
        streamed = chat_body(model_id, PROMPT, args.stream_tokens, stream=True, temperature=0.8)
        for s in setups.values():  # warm: connections, caches, the sidecar's pool
            run_load(s, short, 8, 32)
            run_load(s, streamed, 8, 8, stream=True)

        results = {"short": {}, "stream": [], "cpu_us_per_request": {}}
        hist = {}
        for concurrency in (1, 8):
            before = metrics_histograms(ember_b.port, "ember_plugin_call_duration_seconds",
                                        "request")
            rounds = []
            cpu = {k: [] for k in setups}
            for r in range(args.rounds):
                got = {k: [] for k in setups}
                for name in ORDER:
                    lat, _, _, c = run_load(setups[name], short, concurrency,
                                            args.requests // 2)
                    got[name] += lat
                    cpu[name].append(c * 1e6 / len(lat))
                row = {k: {"p50": percentile(v, 50), "p99": percentile(v, 99), "n": len(v)}
                       for k, v in got.items()}
                rounds.append(row)
                print(f"c={concurrency} round {r}: " + "; ".join(
                    f"{k} p50 {row[k]['p50'] * 1e3:.2f} ms p99 {row[k]['p99'] * 1e3:.2f} ms"
                    for k in "ABC") +
                    f"; B/A p50 {row['B']['p50'] / row['A']['p50']:.3f} "
                    f"p99 {row['B']['p99'] / row['A']['p99']:.3f}", flush=True)
            hist[concurrency] = histogram_delta(
                metrics_histograms(ember_b.port, "ember_plugin_call_duration_seconds",
                                   "request"), before)
            results["short"][concurrency] = rounds
            results["cpu_us_per_request"][concurrency] = {
                k: statistics.median(v) for k, v in cpu.items()}
            med = {k: {q: statistics.median(r[k][q] for r in rounds) for q in ("p50", "p99")}
                   for k in "ABC"}
            ratio = {q: statistics.median(r["B"][q] / r["A"][q] for r in rounds)
                     for q in ("p50", "p99")}
            ratio_c = {q: statistics.median(r["B"][q] / r["C"][q] for r in rounds)
                       for q in ("p50", "p99")}
            extra = {k: statistics.median(r[k]["p50"] - r["C"]["p50"] for r in rounds)
                     for k in "AB"}
            print(f"c={concurrency} medians of {args.rounds} rounds ({args.requests} requests "
                  "per setup per round): " +
                  "; ".join(f"{k} p50 {med[k]['p50'] * 1e3:.2f} ms p99 "
                            f"{med[k]['p99'] * 1e3:.2f} ms" for k in "ABC"))
            print(f"c={concurrency} ratio B/A (median of rounds): p50 {ratio['p50']:.3f} "
                  f"p99 {ratio['p99']:.3f}; B/C p50 {ratio_c['p50']:.3f} p99 "
                  f"{ratio_c['p99']:.3f}; p50 over the floor C: A {extra['A'] * 1e6:+.0f} us, "
                  f"B {extra['B'] * 1e6:+.0f} us")
            print(f"c={concurrency} CPU per request (median of legs; A = sidecar + ember): " +
                  ", ".join(f"{k} {v:.0f} us" for k, v in
                            results["cpu_us_per_request"][concurrency].items()))
            for plugin, buckets in sorted(hist[concurrency].items()):
                print(f"c={concurrency} request hook '{plugin}' (histogram, bucket-"
                      f"interpolated): {hook_report(buckets)}")

        before_events = metrics_histograms(ember_b.port, "ember_plugin_call_duration_seconds",
                                           "response_body")
        tps_rounds, cpu_tok = [], {k: [] for k in setups}
        for r in range(args.rounds):
            got = {k: [0, 0.0] for k in setups}
            for name in ORDER:
                _, tokens, wall, c = run_load(setups[name], streamed, 8, args.stream_requests,
                                              stream=True)
                got[name][0] += tokens
                got[name][1] += wall
                cpu_tok[name].append(c * 1e6 / tokens)
            tps = {k: v[0] / v[1] for k, v in got.items()}
            tps_rounds.append(tps)
            print(f"stream c=8 round {r}: " + ", ".join(f"{k} {tps[k]:.0f} tok/s" for k in "ABC")
                  + f"; B/A {tps['B'] / tps['A']:.3f}, B/C {tps['B'] / tps['C']:.3f}", flush=True)
        results["stream"] = tps_rounds
        events = histogram_delta(
            metrics_histograms(ember_b.port, "ember_plugin_call_duration_seconds",
                               "response_body"), before_events)
        print("stream c=8 medians: " + ", ".join(
            f"{k} {statistics.median(t[k] for t in tps_rounds):.0f} tok/s" for k in "ABC") +
            f"; B/A {statistics.median(t['B'] / t['A'] for t in tps_rounds):.3f}, "
            f"B/C {statistics.median(t['B'] / t['C'] for t in tps_rounds):.3f}, "
            f"A/C {statistics.median(t['A'] / t['C'] for t in tps_rounds):.3f}")
        results["stream_cpu_us_per_token"] = {k: statistics.median(v) for k, v in cpu_tok.items()}
        print("stream c=8 CPU per output token (median of legs; A = sidecar + ember): " +
              ", ".join(f"{k} {v:.1f} us" for k, v in results["stream_cpu_us_per_token"].items()))
        for plugin, buckets in sorted(events.items()):
            print(f"stream per-event hook '{plugin}' (histogram, bucket-interpolated): "
                  f"{hook_report(buckets)}")
    finally:
        for s in reversed(started):
            s.stop()
    go = shutil.which("go") or "/usr/local/go/bin/go"
    out = subprocess.run([go, "test", "-run", "^$", "-bench", "RequestPolicy", "-benchtime",
                          "20000x", "-count", "5", "."], capture_output=True, text=True,
                         cwd=os.path.join(REPO, "bench", "microservice"), timeout=300)
    ns = [float(m) for m in re.findall(r"\s([\d.]+) ns/op", out.stdout)]
    if ns:
        print(f"the sidecar's policy code alone (go test -bench RequestPolicy, median of "
              f"{len(ns)}): {statistics.median(ns) / 1e3:.1f} us per request")
    if args.bench_plugins:
        out = subprocess.run(
            [args.bench_plugins,
             "--benchmark_filter=AllowlistPooled|RedactPooled/256|EventRedact",
             "--benchmark_repetitions=5", "--benchmark_report_aggregates_only=true"],
            capture_output=True, text=True, timeout=300)
        print("in-process Wasm (bench_plugins, medians of 5; real time, CPU time):")
        print("\n".join(line for line in out.stdout.splitlines() if "_median" in line))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)
    shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
