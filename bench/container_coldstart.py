#!/usr/bin/env python3
"""Exec -> first token of ember inside its container (issue 17), with the repack cache on a
volume cold (an empty data directory: the weights are repacked at load) and warm (the same
directory again: the repacked weights are mapped back), run by run in turn.

  python3 bench/container_coldstart.py MODEL.gguf [--runs N] [--image NAME] [--threads N]

Each run: `podman run -d` (host network, read-only root, MODEL on a read-only volume, /data on
a volume owned by the image's user 10001), then /ready polled every 10 ms, then one streamed
completion (max_tokens 1); the time is from just before `podman run` to the first SSE data
line. After it, the run waits for ember's background writer to finish the cache file, then
stops the container gracefully (`podman stop`). Builds the image with scripts/image.sh when NAME does not exist. Uses runc and
rlimits at or below the current ones, as tests/deploy_image does (this machine's hybrid
cgroups and rlimits; docs/deploy.md). Traffic stays on 127.0.0.1. Prints a JSON summary."""
import argparse
import http.client
import json
import os
import shutil
import socket
import statistics
import subprocess
import tempfile
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def podman(env, *args, check=True):
    p = subprocess.run(["podman", *args], env=env, stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT, text=True)
    if check and p.returncode != 0:
        raise SystemExit(f"podman {' '.join(args)} failed:\n{p.stdout[-3000:]}")
    return p.stdout


def first_token(port, deadline):
    """Polls /ready, then streams one token; returns when its first data line arrives."""
    while time.time() < deadline:
        try:
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            c.request("GET", "/ready")
            ok = c.getresponse().status == 200
            c.close()
            if ok:
                break
        except OSError:
            pass
        time.sleep(0.01)
    else:
        raise SystemExit("ember in the container never became ready")
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    c.request("POST", "/v1/completions",
              body=json.dumps({"prompt": "Once upon a time", "max_tokens": 1, "stream": True}),
              headers={"Content-Type": "application/json"})
    r = c.getresponse()
    if r.status != 200:
        raise SystemExit(f"completion: HTTP {r.status}: {r.read()[:500]!r}")
    for line in r:
        if line.startswith(b"data: "):
            break
    c.close()


def wait_for_cache(data, deadline_s=120):
    """Until the run's background writer has renamed a whole cache file into DIR/cache (the
    next start can only map what was written; a pod lives long enough for that)."""
    cache = os.path.join(data, "cache")
    deadline = time.time() + deadline_s
    while time.time() < deadline:
        names = os.listdir(cache) if os.path.isdir(cache) else []
        if any(n.endswith(".bin") for n in names) and not any(".tmp." in n for n in names):
            return
        time.sleep(0.1)
    raise SystemExit(f"no cache file written in {cache}")


def timed_start(port, t0, data):
    """Exec -> first token of the server started at t0; then waits until its cache is on disk."""
    first_token(port, t0 + 300)
    took = time.time() - t0
    wait_for_cache(data)
    return took


def one_run(env, image, models, data, threads):
    port = free_port()
    name = f"ember-coldstart-{port}"
    t0 = time.time()
    podman(env, "run", "-d", "--name", name, "--network", "host", "--read-only", "--tmpfs",
           "/tmp", "-v", f"{models}:/models:ro", "-v", f"{data}:/data",
           "-e", "EMBER_HOST=127.0.0.1", "-e", f"EMBER_PORT={port}", image,
           "serve", "--model", "/models/model.gguf", "--threads", str(threads))
    try:
        return timed_start(port, t0, data)
    finally:
        podman(env, "stop", "-t", "60", name, check=False)
        logs = podman(env, "logs", name, check=False)
        for line in logs.splitlines():
            if "repack cache:" in line or "ready: serving" in line:
                print(line[line.find(" info ") + 6:], file=sys.stderr)
        podman(env, "rm", "-f", name, check=False)


def one_host_run(binary, model, data, threads):
    """The same on this machine, without a container: the baseline run beside each."""
    port = free_port()
    t0 = time.time()
    proc = subprocess.Popen([binary, "serve", "--model", model, "--threads", str(threads),
                             "--port", str(port), "--data-dir", data],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        return timed_start(port, t0, data)
    finally:
        proc.terminate()
        proc.wait(60)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("model")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--image", default="localhost/ember:test")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--host-binary", default=os.path.join(REPO, "build/release/src/cli/ember"),
                    help="ember outside the container, timed the same way beside it")
    a = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="ember-coldstart-")
    try:
        conf = os.path.join(tmp, "containers.conf")
        with open(conf, "w") as f:
            f.write('[containers]\ndefault_ulimits = ["nofile=1024:1024", "nproc=4096:4096"]\n'
                    '[engine]\nruntime = "runc"\n')
        env = dict(os.environ, CONTAINERS_CONF=conf, EMBER_IMAGE=a.image)
        if subprocess.run(["podman", "image", "exists", a.image], env=env).returncode != 0:
            subprocess.run([os.path.join(REPO, "scripts", "image.sh")], env=env, check=True,
                           stdout=subprocess.DEVNULL)
        models = os.path.join(tmp, "models")
        os.mkdir(models)
        shutil.copy(a.model, os.path.join(models, "model.gguf"))
        runs = {"container_cold": [], "container_warm": [], "host_cold": [], "host_warm": []}
        for i in range(a.runs):
            data = os.path.join(tmp, f"data{i}")
            os.mkdir(data)
            os.chown(data, 10001, 10001)
            runs["container_cold"].append(one_run(env, a.image, models, data, a.threads))
            runs["container_warm"].append(one_run(env, a.image, models, data, a.threads))
            host = os.path.join(tmp, f"host{i}")
            runs["host_cold"].append(one_host_run(a.host_binary, a.model, host, a.threads))
            runs["host_warm"].append(one_host_run(a.host_binary, a.model, host, a.threads))
        out = {"model": os.path.basename(a.model), "image": a.image, "threads": a.threads}
        for key, values in runs.items():
            out[key + "_s"] = [round(x, 3) for x in values]
            out[key + "_median_s"] = round(statistics.median(values), 3)
        print(json.dumps(out, indent=1))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
