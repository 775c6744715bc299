#!/usr/bin/env python3
"""Limit exactness side by side: the same burst of BURST concurrent requests (max_tokens MAX
each) against a tokens/min limit of LIMIT, enforced (a) by ember itself (a tenant with
output_tpm = LIMIT) and (b) by LiteLLM's proxy in front of ember (open mode), its deployment
`tpm: LIMIT` with usage-based routing (LiteLLM's TPM limit without its database). Prints what
each let through in the burst, as tokens and as a share of the limit. All traffic goes to
127.0.0.1.

LiteLLM counts prompt + completion tokens against `tpm`; ember's output_tpm counts completion
tokens, so each is reported against its own definition.

  python3 -m venv /tmp/litellm-venv && /tmp/litellm-venv/bin/pip install 'litellm[proxy]'
  bench/limit_exactness.py --litellm /tmp/litellm-venv/bin/litellm [--limit 600] [--burst 50]
      [--max-tokens 40] [--ember build/release/src/cli/ember] [--model PATH]
"""
import argparse
import hashlib
import http.client
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
KEY = "ek_limitexactnessbenchmarkkey000000000001"
LITELLM_MASTER = "sk-" + hashlib.sha256(b"ember limit exactness bench").hexdigest()


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http(port, path, timeout=120, headers=None):
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            c.request("GET", path, headers=headers or {})
            r = c.getresponse()
            r.read()
            if r.status == 200:
                return True
        except OSError:
            pass
        time.sleep(0.2)
    return False


def start_ember(ember, model, data_dir):
    port = free_port()
    proc = subprocess.Popen([ember, "serve", "--model", model, "--port", str(port), "--parallel",
                             "8", "--ctx-size", "4096", "--threads", "2", "--queue-size", "256",
                             "--data-dir", data_dir],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    if not wait_http(port, "/health"):
        proc.kill()
        sys.exit("ember did not start")
    return proc, port


def burst(port, path, n, body, headers):
    results = []
    lock = threading.Lock()

    def one():
        try:
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=300)
            c.request("POST", path, body=json.dumps(body), headers=headers)
            r = c.getresponse()
            data = r.read()
            c.close()
            usage = json.loads(data).get("usage") if r.status == 200 else None
            with lock:
                results.append((r.status, usage))
        except Exception as e:  # noqa: BLE001 - counted as a failure
            with lock:
                results.append((None, repr(e)))

    start = time.time()
    threads = [threading.Thread(target=one) for _ in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results, time.time() - start


def summarize(name, results, elapsed, limit, counted):
    ok = [u for s, u in results if s == 200]
    statuses = {}
    for s, _ in results:
        statuses[s] = statuses.get(s, 0) + 1
    tokens = sum(counted(u) for u in ok)
    allowed = limit * (1 + elapsed / 60)  # a bucket's capacity plus its refill meanwhile
    return (f"| {name} | {limit} | {len(ok)} of {len(results)} | {tokens} | "
            f"{100 * tokens / limit:.0f}% | {100 * tokens / allowed:.0f}% | {statuses} |")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--ember", default=os.path.join(REPO, "build/release/src/cli/ember"))
    ap.add_argument("--model", default=os.path.join(REPO, "../shared/models/stories260K.gguf"))
    ap.add_argument("--litellm", default="")
    ap.add_argument("--limit", type=int, default=600)
    ap.add_argument("--burst", type=int, default=50)
    ap.add_argument("--max-tokens", type=int, default=40)
    args = ap.parse_args()
    body = {"model": "stories260K", "prompt": "Once upon a time", "max_tokens": args.max_tokens,
            "temperature": 0, "ignore_eos": True}
    rows = []
    tmp = tempfile.mkdtemp(prefix="ember-limits-")
    try:
        # (a) ember's own limit.
        tenant_dir = os.path.join(tmp, "tenant")
        os.makedirs(tenant_dir)
        with open(os.path.join(tenant_dir, "tenants.toml"), "w") as f:
            f.write(f'[tenants.burst]\noutput_tpm = {args.limit}\n\n[[keys]]\n'
                    f'id = "key_000000000001"\ntenant = "burst"\n'
                    f'sha256 = "{hashlib.sha256(KEY.encode()).hexdigest()}"\ncreated = 0\n')
        proc, port = start_ember(args.ember, args.model, tenant_dir)
        try:
            results, elapsed = burst(port, "/v1/completions", args.burst, body,
                                     {"Content-Type": "application/json",
                                      "Authorization": f"Bearer {KEY}"})
        finally:
            proc.terminate()
            proc.wait(30)
        rows.append(summarize("ember, tenant output_tpm", results, elapsed, args.limit,
                              lambda u: u["completion_tokens"]))
        # (b) LiteLLM's proxy in front of ember (open).
        if args.litellm:
            open_dir = os.path.join(tmp, "open")
            os.makedirs(open_dir)
            proc, port = start_ember(args.ember, args.model, open_dir)
            lport = free_port()
            config = os.path.join(tmp, "litellm.yaml")
            with open(config, "w") as f:
                f.write(f"""model_list:
  - model_name: stories260K
    litellm_params:
      model: text-completion-openai/stories260K
      api_base: http://127.0.0.1:{port}/v1
      api_key: none
      tpm: {args.limit}
router_settings:
  routing_strategy: usage-based-routing-v2
general_settings:
  master_key: {LITELLM_MASTER}
""")
            lite = subprocess.Popen([args.litellm, "--config", config, "--port", str(lport),
                                     "--host", "127.0.0.1", "--num_workers", "1"],
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                    env={**os.environ, "LITELLM_LOG": "ERROR"})
            try:
                if not wait_http(lport, "/health/liveliness", timeout=180):
                    sys.exit("LiteLLM proxy did not start")
                results, elapsed = burst(lport, "/v1/completions", args.burst, body,
                                         {"Content-Type": "application/json",
                                          "Authorization": f"Bearer {LITELLM_MASTER}"})
            finally:
                lite.terminate()
                lite.wait(30)
                proc.terminate()
                proc.wait(30)
            rows.append(summarize("LiteLLM proxy (deployment tpm) -> ember", results, elapsed,
                                  args.limit, lambda u: u["total_tokens"]))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"burst of {args.burst} concurrent requests, max_tokens {args.max_tokens}\n")
    print("| enforced by | limit (tokens/min) | requests let through | tokens let through | "
          "of the limit | of limit + refill during the burst | statuses |")
    print("|---|---|---|---|---|---|---|")
    print("\n".join(rows))


if __name__ == "__main__":
    main()
