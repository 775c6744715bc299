"""Soak (label `slow`): EMBER_SOAK_REQUESTS (default 10,000) requests against the real binary
and stories260K from EMBER_SOAK_CLIENTS (default 12) client threads, a random mix (seeded by
EMBER_SOAK_SEED, printed at the end, so a failing mix can be replayed) of:

- completions and chat completions, streamed and not, that run to the end (200) or are refused
  because the wait queue is full (429: --parallel 4 --queue-size 6 and 12 clients; a turned-away
  client backs off ~EMBER_SOAK_BACKOFF = 0.1 s, so about one generation request in ten is a 429);
- explicit cancels: a streamed request whose client closes right after the response headers;
- disconnects mid-stream: the client reads a few events of a long stream, then closes;
- disconnects before the first token: a long prompt (prefilled in 64-token chunks) whose client
  half-closes after 0-20 ms, while it waits for a slot or is being prefilled, then reads
  whatever the server sent until the server closes (so even these outcomes are observed);
- bad requests: malformed JSON, invalid fields, unknown model, prompt + max_tokens beyond the
  context, token ids outside the vocabulary (400/404), bodies over --max-body-bytes (413),
  garbage instead of HTTP (400), unknown paths (404), wrong methods (400).

Every client knows what it saw (a status, a whole 200 response, a 200 it walked away from, or
no response at all), so afterwards the server's counters must match exactly:

- started = finished + cancelled + failed: ember_requests_started_total equals the sum of
  ember_request_success_total over finished_reason stop, length (finished), abort (cancelled)
  and error (failed); and failed = 0;
- started = whole 200 responses + 200s walked away from + requests answered with nothing;
- ember_http_requests_total{endpoint,status} equals the clients' count for both generation
  endpoints and `other` (protocol errors, unknown paths): 200s, 429s and every 4xx by code;
- ember_requests_rejected_total{reason=queue_full} = 429s seen, {reason=invalid} = 4xx seen on
  the generation endpoints (every generation request is either rejected or started);
- abort >= requests answered with nothing, stop + length >= whole 200 responses;
- running = waiting = 0 and KV-cache usage 0 (both metric names) once idle; the server then
  still answers the greedy reference prompt with the e2e reference text, and exits 0 on SIGTERM.

Tenants: the server runs with DIR/tenants.toml holding three tenants of different weights,
classes and limits (TENANTS); every request carries one of their keys, chosen at random. On top
of the identities above, per tenant:

- ember_tenant_requests_total{tenant,status} equals what that tenant's clients saw, status by
  status (0: answered with nothing);
- the ember_tenant_{prompt,generation}_tokens_total sum over tenants to the model's
  ember_{prompt,generation}_tokens_total (every token belongs to exactly one tenant);
- beta's generated tokens stay within its output tokens/min bucket (capacity + refill over the
  run), gamma is `batch` (interactive requests preempt it; its answers stay whole);
- 429s: ember_requests_rejected_total{reason=queue_full} + {reason=tenant_*} = 429s seen, and
  ember_generation_outcomes_total sums to ember_generation_requests_total (the completion point
  ran once for each).

RSS: VmRSS of the server after a warm-up phase (a tenth of the requests, at least 500, same
mix) and after the rest, both sampled idle. What scales with load (KV cache, batch, slots,
queue, HTTP buffers, the console's ring of recent requests, which the soak sizes to
CONSOLE_RING records so that the warm-up fills it) is allocated at load or during the warm-up,
so the growth over the rest
must stay below RSS_GROWTH_BOUND_MIB = 4 MiB: a leak of 1 KiB per started request (about 6,000
after the warm-up) crosses it. Two bounded caches still fill after the warm-up and are
subtracted, as their own gauges report them: SQLite's page caches (the ledger grows with every
request; 2,000 KiB per connection, about 1.5 MiB of the growth at 10,000 requests) and the
prefix cache's RAM tier. What remains is allocator noise and thread arenas (measured on the
Xeon VM at 10,000 requests: +0.9 to +1.2 MiB over 28 MiB; each run prints its numbers).
Checked only when at least 2,000 requests follow the warm-up; the mix-coverage checks (some
429s, some requests aborted before a response) need at least 1,000 requests in all.
"""
import hashlib
import json
import os
import shutil
import tempfile
import random
import re
import signal
import sqlite3
import socket
import sys
import threading
import time
import unittest

from e2e.test_generation import REFERENCE
from harness import Server, post_bytes

REQUESTS = int(os.environ.get("EMBER_SOAK_REQUESTS", "10000"))
CLIENTS = int(os.environ.get("EMBER_SOAK_CLIENTS", "12"))
SEED = int(os.environ.get("EMBER_SOAK_SEED", str(int(time.time()))))
RSS_GROWTH_BOUND_MIB = 4
# The console keeps the last --console-ring requests' records (default 2,000, ~2.5 KiB each
# with their step traces): bounded, but it would still be filling after a 1,000-request warm-up.
# A ring smaller than the warm-up is full before RSS is first sampled, and one that failed to
# forget would still grow past the bound.
CONSOLE_RING = 300
MIN_REQUESTS_FOR_RSS_BOUND = 2000

PARALLEL, CTX, QUEUE, BATCH, MAX_BODY = 4, 2048, 6, 64, 65536
BACKOFF_S = float(os.environ.get("EMBER_SOAK_BACKOFF", "0.1"))
N_CTX_SEQ = CTX // PARALLEL  # 512
COMPLETIONS, CHAT = "/v1/completions", "/v1/chat/completions"
REFERENCE_PROMPT = {"prompt": "Once upon a time", "max_tokens": 40, "temperature": 0}
PROMPTS = ["Once upon a time", "The dog", "Lily and Ben went to the park.", "Tom had a red ball",
           "One day, a little bird", "The sun was hot and the cat", "Mom said", "A big fish"]
# name -> (fields of its [tenants.NAME] table, its key)
TENANTS = {
    "alpha": ({"weight": 1}, "ek_soakalphaalphaalphaalphaalphaalpha001"),
    "beta": ({"weight": 2, "output_tpm": 30000}, "ek_soakbetabetabetabetabetabetabeta0002"),
    "gamma": ({"priority": "batch", "max_concurrent": 4, "rpm": 6000},
              "ek_soakgammagammagammagammagammagamma03"),
}
BETA_OUTPUT_TPM = 30000
CURRENT = threading.local()  # the tenant of the request this client thread is sending


def write_tenants(data_dir):
    lines = []
    for name, (fields, _) in TENANTS.items():
        lines.append(f"[tenants.{name}]")
        lines += [f"{k} = {json.dumps(v)}" for k, v in fields.items()]
        lines.append("")
    for i, (name, (_, key)) in enumerate(TENANTS.items()):
        lines += ["[[keys]]", f'id = "key_00000000000{i}"', f'tenant = "{name}"',
                  f'sha256 = "{hashlib.sha256(key.encode()).hexdigest()}"', "created = 1", ""]
    with open(os.path.join(data_dir, "tenants.toml"), "w") as f:
        f.write("\n".join(lines))


def key_header():
    return {"Content-Type": "application/json",
            "Authorization": f"Bearer {TENANTS[CURRENT.tenant][1]}"}


def key_line():
    return f"Authorization: Bearer {TENANTS[CURRENT.tenant][1]}\r\n".encode()


LONG_TEXT = ("Once upon a time, there was a little girl named Lily. She loved to play outside "
             "in the park with her dog Max. One day, she saw a big red ball under a tree. ") * 30


class Tally:
    """What the clients saw, and what they saw that they should not have."""

    def __init__(self):
        self.lock = threading.Lock()
        self.http = {}  # (endpoint, status) -> count, every status line a client read
        self.kinds = {}
        self.complete = 0  # whole 200 generation responses
        self.walked_away = 0  # 200 generation responses the client closed before the end
        self.no_response = 0  # generation requests answered with nothing (client left first)
        self.rejected_invalid = 0  # 4xx seen on generation endpoints (parse/validation)
        self.failures = []
        self.seconds = {}  # kind -> client seconds spent on it
        self.tenant_http = {}  # (tenant, status) -> count, generation requests past the HTTP layer

    def saw(self, endpoint, status, outcome=None, kind=None):
        with self.lock:
            if status is not None:
                self.http[(endpoint, status)] = self.http.get((endpoint, status), 0) + 1
            if endpoint in (COMPLETIONS, CHAT) and kind not in ("bad_http", "oversized", None):
                key = (getattr(CURRENT, "tenant", None), status or 0)
                self.tenant_http[key] = self.tenant_http.get(key, 0) + 1
            if outcome is not None:
                setattr(self, outcome, getattr(self, outcome) + 1)
            if kind is not None:
                self.kinds[kind] = self.kinds.get(kind, 0) + 1

    def fail(self, *what):
        with self.lock:
            self.failures.append(what)


class Raw:
    """A bare socket, for clients that leave at chosen moments and for malformed HTTP."""

    def __init__(self, port):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=30)
        self.buf = b""

    def send(self, data):
        self.sock.sendall(data)

    def fill(self):
        try:
            chunk = self.sock.recv(65536)
        except ConnectionResetError:
            chunk = b""
        self.buf += chunk
        return bool(chunk)

    def until(self, pred):
        while not pred(self.buf):
            if not self.fill():
                return False
        return True

    def to_eof(self):
        while self.fill():
            pass
        return self.buf

    def status(self):
        m = re.match(rb"HTTP/1\.1 (\d{3}) ", self.buf)
        return int(m.group(1)) if m else None

    def close(self):
        self.sock.close()


def whole_body(buf):
    """True if `buf` holds a whole response with a Content-Length body."""
    head, sep, body = buf.partition(b"\r\n\r\n")
    m = re.search(rb"Content-Length: (\d+)", head, re.I)
    return bool(sep and m) and len(body) >= int(m.group(1))


def whole(buf, stream):
    """True if `buf` holds a whole 200 generation response."""
    if stream:
        return b"data: [DONE]" in buf and buf.endswith(b"0\r\n\r\n")
    return whole_body(buf) and b'"finish_reason"' in buf


class Soak:
    def __init__(self, server, long_tokens):
        self.server = server
        self.long_tokens = long_tokens
        self.tally = Tally()

    # --- clients that read the whole response -------------------------------------------
    def generation_body(self, rnd, chat):
        n = rnd.randint(1, 48)
        body = {"max_tokens": n, "temperature": rnd.choice([0, 0.8, 1.0])}
        if chat:
            body["messages"] = [{"role": "user", "content": rnd.choice(PROMPTS)}]
        else:
            body["prompt"] = rnd.choice(PROMPTS)
        if rnd.random() < 0.2:
            body["stop"] = ["."]
        return body, n

    def check_429(self, endpoint, data, headers, kind):
        # 1 s for a full wait queue; a tenant's bucket says when it has room again.
        retry = headers.get("Retry-After", "")
        if b"rate_limit" not in data or not (
                retry.isdigit() and int(retry) >= 1 or
                b"concurrent" in data and retry == ""):
            self.tally.fail(kind, "429 without Retry-After or error envelope", data[:200])
        self.saw_429(endpoint, kind)

    def saw_429(self, endpoint, kind):
        self.tally.saw(endpoint, 429, kind=kind)
        # A client backs off (far less than Retry-After, to keep the queue contended); without
        # it the clients turned away would spin and most requests would be 429s.
        time.sleep(BACKOFF_S * (0.5 + random.random()))

    def full(self, rnd, chat, stream):
        endpoint = CHAT if chat else COMPLETIONS
        kind = ("chat" if chat else "completion") + ("_stream" if stream else "")
        body, n = self.generation_body(rnd, chat)
        if not stream:
            status, data, headers = self.server.post(endpoint, body, headers=key_header())
            if status == 429:
                return self.check_429(endpoint, data, headers, kind)
            if status != 200:
                return self.tally.fail(kind, status, data[:200])
            data = json.loads(data)
            reason = data["choices"][0]["finish_reason"]
            if reason not in ("stop", "length") or data["usage"]["completion_tokens"] > n:
                return self.tally.fail(kind, "bad finish", data)
            return self.tally.saw(endpoint, 200, "complete", kind)
        conn = self.server.conn(30)
        conn.request("POST", endpoint, json.dumps(dict(body, stream=True)), key_header())
        r = conn.getresponse()
        if r.status == 429:
            data = r.read()
            conn.close()
            return self.check_429(endpoint, data, dict(r.getheaders()), kind)
        if r.status != 200:
            return self.tally.fail(kind, r.status, r.read()[:200])
        reasons, done = [], False
        for raw in r:
            line = raw.decode().strip()
            if line == "data: [DONE]":
                done = True
                break
            if line.startswith("data: "):
                event = json.loads(line[6:])
                if "error" in event:
                    self.tally.fail(kind, "error event", event)
                for choice in event.get("choices", []):
                    if choice.get("finish_reason"):
                        reasons.append(choice["finish_reason"])
        conn.close()
        if not done or len(reasons) != 1 or reasons[0] not in ("stop", "length"):
            return self.tally.fail(kind, "stream ended badly", done, reasons)
        self.tally.saw(endpoint, 200, "complete", kind)

    # --- clients that leave early --------------------------------------------------------
    def open_stream(self, rnd, max_tokens):
        chat = rnd.random() < 0.4
        endpoint = CHAT if chat else COMPLETIONS
        body = {"max_tokens": max_tokens, "temperature": 1.0, "stream": True}
        if chat:
            body["messages"] = [{"role": "user", "content": rnd.choice(PROMPTS)}]
        else:
            body["prompt"] = rnd.choice(PROMPTS)
        raw = Raw(self.server.port)
        raw.send(post_bytes(endpoint, json.dumps(body).encode(), key_line()))
        if not raw.until(lambda b: b"\r\n\r\n" in b):
            raw.close()
            self.tally.fail("open_stream", "no response headers", raw.buf[:200])
            return None, endpoint
        return raw, endpoint

    def after_headers(self, raw, endpoint, kind):
        """Handles a non-200 answer; True if the caller should go on with a 200 stream."""
        status = raw.status()
        if status == 200:
            return True
        raw.until(whole_body)  # not to EOF: the connection stays open for the next request
        raw.close()
        if status == 429:
            head = raw.buf.partition(b"\r\n\r\n")[0].decode(errors="replace")
            headers = dict(line.split(": ", 1) for line in head.split("\r\n")[1:] if ": " in line)
            self.check_429(endpoint, raw.buf, headers, kind)
        else:
            self.tally.fail(kind, status, raw.buf[:200])
        return False

    def cancel_after_headers(self, rnd):
        raw, endpoint = self.open_stream(rnd, 300)
        if raw and self.after_headers(raw, endpoint, "cancel_after_headers"):
            raw.close()
            self.tally.saw(endpoint, 200, "walked_away", "cancel_after_headers")

    def disconnect_mid_stream(self, rnd):
        raw, endpoint = self.open_stream(rnd, rnd.randint(100, 400))
        if not raw or not self.after_headers(raw, endpoint, "disconnect_mid_stream"):
            return
        events = rnd.randint(1, 8)
        read = raw.until(lambda b: b.count(b"data: ") > events or b"data: [DONE]" in b)
        raw.close()
        if not read or b'"error"' in raw.buf:
            return self.tally.fail("disconnect_mid_stream", "stream broke", raw.buf[-300:])
        if b"data: [DONE]" in raw.buf:  # it ended before the client meant to leave
            self.tally.saw(endpoint, 200, "complete", "disconnect_mid_stream")
        else:
            self.tally.saw(endpoint, 200, "walked_away", "disconnect_mid_stream")

    def disconnect_before_first_token(self, rnd):
        stream = rnd.random() < 0.5
        # A window at a random offset, so the prompt cache seldom spares the prefill.
        n = rnd.randint(200, N_CTX_SEQ - 40)
        start = rnd.randrange(len(self.long_tokens) - n)
        body = {"prompt": self.long_tokens[start:start + n], "max_tokens": 32, "stream": stream}
        raw = Raw(self.server.port)
        raw.send(post_bytes(COMPLETIONS, json.dumps(body).encode(), key_line()))
        if rnd.random() < 0.7:
            time.sleep(rnd.random() * 0.02)
        raw.sock.shutdown(socket.SHUT_WR)  # the server sees EOF: the client has left
        raw.to_eof()
        raw.close()
        status, kind = raw.status(), "disconnect_early"
        if status is None:
            if raw.buf:
                return self.tally.fail(kind, "garbage answer", raw.buf[:200])
            return self.tally.saw(COMPLETIONS, None, "no_response", kind)
        if status == 429:
            return self.saw_429(COMPLETIONS, kind)
        if status != 200 or b'"error"' in raw.buf:
            return self.tally.fail(kind, status, raw.buf[:300])
        outcome = "complete" if whole(raw.buf, stream) else "walked_away"
        self.tally.saw(COMPLETIONS, 200, outcome, kind)

    # --- bad requests ---------------------------------------------------------------------
    BAD_BODIES = [
        (COMPLETIONS, b'{"prompt": ', 400),
        (COMPLETIONS, b"[1,2]", 400),
        (COMPLETIONS, b'{"prompt": 5}', 400),
        (COMPLETIONS, b'{"prompt": "x", "temperature": 9}', 400),
        (COMPLETIONS, b'{"prompt": "x", "n": 9}', 400),
        (COMPLETIONS, b'{"prompt": "x", "best_of": 2}', 400),
        (COMPLETIONS, b'{"prompt": "x", "max_tokens": -1}', 400),
        (COMPLETIONS, b'{"prompt": "x", "model": "gpt-9"}', 404),
        (COMPLETIONS, b'{"prompt": "x", "max_tokens": 600}', 400),
        (COMPLETIONS, b'{"prompt": [1, 2, 999999]}', 400),
        (COMPLETIONS, b'{"prompt": "\xff\xfe"}', 400),
        (CHAT, b'{"messages": []}', 400),
        (CHAT, b'{"messages": "hello"}', 400),
        (CHAT, b'{"messages": [{"role": "wizard", "content": "x"}]}', 400),
        (CHAT, b'{"messages": [{"role": "user", "content": "x"}], "model": "nope"}', 404),
    ]

    def bad_body(self, rnd):
        endpoint, body, expected = rnd.choice(self.BAD_BODIES)
        status, data, headers = self.server.post(endpoint, body, headers=key_header())
        if status == 429 and expected == 400 and b"prompt" in body:
            # What only the model can check (the context, the vocabulary) comes after the
            # tenant's limits: a tenant at its limit hears that first.
            return self.check_429(endpoint, data, headers, "bad_body")
        if status != expected or b'"error"' not in data:
            return self.tally.fail("bad_body", body, status, data[:200])
        self.tally.saw(endpoint, status, "rejected_invalid", "bad_body")

    def bad_http(self, rnd):
        choice = rnd.randrange(4)
        if choice == 0:  # declared body over the limit: refused after the headers
            request = post_bytes(COMPLETIONS, b"")
            request = request.replace(b"Content-Length: 0", f"Content-Length: {MAX_BODY + 1}".encode())
            endpoint, expected = "other", 413
        elif choice == 1:
            request, endpoint, expected = b"NOT HTTP AT ALL\r\n\r\n", "other", 400
        elif choice == 2:
            request, endpoint, expected = post_bytes("/v1/nope", b"{}"), "other", 404
        else:
            request = b"GET /v1/completions HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
            endpoint, expected = COMPLETIONS, 400
        raw = Raw(self.server.port)
        raw.send(request)
        raw.until(lambda b: b"\r\n\r\n" in b)
        raw.close()
        if raw.status() != expected:
            return self.tally.fail("bad_http", request[:60], raw.buf[:200])
        self.tally.saw(endpoint, expected, kind="bad_http")

    def oversized(self, rnd):
        body = b'{"prompt": "' + b"x" * rnd.randint(MAX_BODY, MAX_BODY + 4000) + b'"}'
        status, data, _ = self.server.post(COMPLETIONS, body)
        if status != 413:
            return self.tally.fail("oversized", status, data[:200])
        self.tally.saw("other", 413, kind="oversized")

    # --- the mix --------------------------------------------------------------------------
    def one(self, rnd):
        """Sends one request of a randomly chosen kind; returns the kind's name."""
        CURRENT.tenant = rnd.choice(sorted(TENANTS))
        x = rnd.random()
        for p, name, fn in self.MIX:
            if x < p:
                fn(self, rnd)
                return name
            x -= p
        return None

    def run(self, first, count):
        next_index = [first]
        lock = threading.Lock()

        def worker():
            while True:
                with lock:
                    i = next_index[0]
                    if i >= first + count:
                        return
                    next_index[0] += 1
                rnd = random.Random(SEED * 1_000_003 + i)
                t0 = time.monotonic()
                try:
                    name = self.one(rnd)
                except Exception as e:  # a hang (timeout) or a broken answer
                    name = "exception"
                    self.tally.fail("request", i, repr(e))
                with self.tally.lock:
                    self.tally.seconds[name] = self.tally.seconds.get(name, 0) + \
                        time.monotonic() - t0

        threads = [threading.Thread(target=worker) for _ in range(CLIENTS)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()

    MIX = [(0.18, "completion", lambda self, rnd: self.full(rnd, False, False)),
           (0.12, "completion_stream", lambda self, rnd: self.full(rnd, False, True)),
           (0.10, "chat", lambda self, rnd: self.full(rnd, True, False)),
           (0.08, "chat_stream", lambda self, rnd: self.full(rnd, True, True)),
           (0.08, "cancel_after_headers", cancel_after_headers),
           (0.10, "disconnect_mid_stream", disconnect_mid_stream),
           (0.12, "disconnect_early", disconnect_before_first_token),
           (0.15, "bad_body", bad_body),
           (0.05, "bad_http", bad_http),
           (0.02, "oversized", oversized)]


def scrape(server):
    _, text, _ = server.get("/metrics")
    samples = []
    for line in text.decode().splitlines():
        m = re.match(r"([^{\s]+)(?:\{([^}]*)\})?\s+(\S+)$", line)
        if m and not line.startswith("#"):
            labels = dict(re.findall(r'(\w+)="([^"]*)"', m.group(2) or ""))
            samples.append((m.group(1), labels, float(m.group(3))))
    return samples


def total(samples, name, **labels):
    return sum(v for n, lab, v in samples
               if n == name and all(lab.get(k) == x for k, x in labels.items()))


def bounded_caches(s):
    """Bytes held by the caches that are bounded but still fill after the warm-up: SQLite's
    page caches (2,000 KiB per ledger connection, filling as the ledger file grows over
    thousands of requests) and the prefix cache's RAM tier (its --prefix-cache-size)."""
    return (total(s, "ember_ledger_sqlite_memory_bytes")
            + total(s, "ember_prefix_cache_ram_bytes"))


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        return int(re.search(r"VmRSS:\s+(\d+) kB", f.read()).group(1))


class SoakTest(unittest.TestCase):
    def wait_idle(self, server):
        self.assertTrue(server.wait_metric("ember_num_requests_running", 0, timeout=30),
                        "requests still running")
        self.assertTrue(server.wait_metric("ember_num_requests_waiting", 0, timeout=30),
                        "requests still waiting")
        # Counters of a request whose client left first may land a moment after the gauges.
        deadline = time.time() + 10
        while time.time() < deadline:
            s = scrape(server)
            if total(s, "ember_requests_started_total") == total(
                    s, "ember_request_success_total"):
                break
            time.sleep(0.05)

    def reference(self, server):
        CURRENT.tenant = "alpha"
        status, data, _ = server.post_json(COMPLETIONS, REFERENCE_PROMPT, headers=key_header())
        self.assertEqual(status, 200, data)
        self.assertEqual(data["choices"][0]["text"], REFERENCE)

    def test_soak_leaves_nothing_behind_and_counters_add_up(self):
        data_dir = tempfile.mkdtemp(prefix="ember-soak-")
        self.addCleanup(shutil.rmtree, data_dir, ignore_errors=True)
        write_tenants(data_dir)
        server = Server("--parallel", str(PARALLEL), "--ctx-size", str(CTX), "--queue-size",
                        str(QUEUE), "--batch-size", str(BATCH), "--max-body-bytes", str(MAX_BODY),
                        "--data-dir", data_dir, "--console-ring", str(CONSOLE_RING))
        print(f"\nsoak: seed={SEED} (EMBER_SOAK_SEED replays this mix)", file=sys.stderr)
        try:
            CURRENT.tenant = "alpha"
            _, tok, _ = server.post_json("/tokenize", {"content": LONG_TEXT},
                                         headers=key_header())
            long_tokens = tok["tokens"]
            soak = Soak(server, long_tokens)
            self.reference(server)
            soak.tally.saw(COMPLETIONS, 200, "complete", "reference")

            started = time.time()
            warmup = min(REQUESTS, max(500, REQUESTS // 10))
            soak.run(0, warmup)
            self.wait_idle(server)
            rss_warm = rss_kib(server.proc.pid)
            bounded_warm = bounded_caches(scrape(server))
            soak.run(warmup, REQUESTS - warmup)
            self.wait_idle(server)
            rss_end = rss_kib(server.proc.pid)
            bounded_end = bounded_caches(scrape(server))
            took = time.time() - started

            self.reference(server)
            soak.tally.saw(COMPLETIONS, 200, "complete", "reference")
            self.wait_idle(server)
            t, s = soak.tally, scrape(server)
            finished = {r: total(s, "ember_request_success_total", finished_reason=r)
                        for r in ("stop", "length", "abort", "error")}
            n_started = total(s, "ember_requests_started_total")
            print(f"\nsoak: seed={SEED} requests={REQUESTS} clients={CLIENTS} took={took:.1f}s "
                  f"rss_warm={rss_warm / 1024:.1f}MiB rss_end={rss_end / 1024:.1f}MiB "
                  f"growth={(rss_end - rss_warm) / 1024:+.2f}MiB "
                  f"bounded_caches={bounded_warm / 2**20:.2f}->{bounded_end / 2**20:.2f}MiB "
                  f"started={n_started:.0f} "
                  f"finished={finished} cancelled_total="
                  f"{total(s, 'ember_requests_cancelled_total'):.0f} "
                  f"ttft_count={total(s, 'ember_time_to_first_token_seconds_count'):.0f} "
                  f"steps={total(s, 'ember_engine_step_duration_seconds_count'):.0f} "
                  f"step_seconds={total(s, 'ember_engine_step_duration_seconds_sum'):.1f} "
                  f"step_tokens={total(s, 'ember_engine_step_tokens_total'):.0f} "
                  f"generated={total(s, 'ember_generation_tokens_total'):.0f} "
                  f"complete={t.complete} walked_away={t.walked_away} "
                  f"no_response={t.no_response} kinds={dict(sorted(t.kinds.items()))} "
                  f"http={dict(sorted(t.http.items(), key=str))} "
                  f"seconds={ {k: round(v, 1) for k, v in sorted(t.seconds.items())} }",
                  file=sys.stderr)

            self.assertEqual(t.failures[:20], [], f"{len(t.failures)} client-side failures")
            self.assertIsNone(server.proc.poll(), "server died")
            self.assertEqual(total(s, "ember_num_requests_running"), 0)
            self.assertEqual(total(s, "ember_num_requests_waiting"), 0)
            self.assertEqual(total(s, "ember_kv_cache_usage_perc"), 0)
            self.assertEqual(total(s, "vllm:kv_cache_usage_perc"), 0)

            # started = finished + cancelled + failed, and nothing failed.
            self.assertEqual(n_started, sum(finished.values()))
            self.assertEqual(finished["error"], 0)
            # A client that left before its model lease arrived never started a request.
            gone = sum(v for n, lab, v in s
                       if n == "ember_requests_rejected_total" and lab["reason"] == "client_gone")
            self.assertEqual(n_started + gone, t.complete + t.walked_away + t.no_response)
            self.assertGreaterEqual(finished["stop"] + finished["length"], t.complete)
            self.assertGreaterEqual(finished["abort"], t.no_response)
            self.assertGreaterEqual(total(s, "ember_requests_cancelled_total"), finished["abort"])

            server_http = {(lab["endpoint"], int(lab["status"])): v for n, lab, v in s
                           if n == "ember_http_requests_total"
                           and lab["endpoint"] in (COMPLETIONS, CHAT, "other")}
            self.assertEqual(server_http, {k: float(v) for k, v in t.http.items()})
            tenant_rejected = sum(v for n, lab, v in s if n == "ember_requests_rejected_total"
                                  and lab["reason"].startswith("tenant_"))
            self.assertEqual(total(s, "ember_requests_rejected_total", reason="queue_full") +
                             tenant_rejected,
                             sum(v for (_, code), v in t.http.items() if code == 429))
            # The completion point ran once for every generation request.
            self.assertEqual(total(s, "ember_generation_outcomes_total"),
                             total(s, "ember_generation_requests_total"))
            # A request the engine finished whose client had already left ends as client_gone.
            answered = total(s, "ember_generation_outcomes_total", outcome="finished")
            self.assertLessEqual(answered, finished["stop"] + finished["length"])
            self.assertGreaterEqual(
                answered + total(s, "ember_generation_outcomes_total", outcome="client_gone"),
                finished["stop"] + finished["length"])
            self.assertGreaterEqual(answered, t.complete)
            # Per tenant: what its clients saw, status by status; every token has one tenant.
            server_tenant = {(lab["tenant"], int(lab["status"])): v for n, lab, v in s
                             if n == "ember_tenant_requests_total"}
            self.assertEqual(server_tenant, {k: float(v) for k, v in t.tenant_http.items()})
            for kind in ("prompt", "generation"):
                self.assertEqual(total(s, f"ember_tenant_{kind}_tokens_total"),
                                 total(s, f"ember_{kind}_tokens_total"), kind)
            beta = total(s, "ember_tenant_generation_tokens_total", tenant="beta")
            self.assertLessEqual(beta, BETA_OUTPUT_TPM * (1 + took / 60))
            print(f"soak: tenants {dict(sorted(t.tenant_http.items()))} beta_generated={beta:.0f}"
                  f" preempted={total(s, 'ember_requests_preempted_total'):.0f} tenant_rejected="
                  f"{tenant_rejected:.0f}", file=sys.stderr)
            self.assertEqual(total(s, "ember_requests_rejected_total", reason="invalid"),
                             t.rejected_invalid)
            if REQUESTS >= 1000:  # the mix reached every outcome
                self.assertGreater(sum(v for (_, code), v in t.http.items() if code == 429), 0)
                self.assertGreater(t.no_response, 0, "no disconnect landed before a response")
                self.assertGreater(t.walked_away, 0)

            if REQUESTS - warmup >= MIN_REQUESTS_FOR_RSS_BOUND:
                # the ledger is open (--data-dir), so the gauge subtracted below must see it
                self.assertGreater(total(s, "ember_ledger_sqlite_memory_bytes"), 0)
                caches_kib = max(0.0, bounded_end - bounded_warm) / 1024
                self.assertLess(rss_end - rss_warm - caches_kib, RSS_GROWTH_BOUND_MIB * 1024,
                                f"RSS grew from {rss_warm} KiB to {rss_end} KiB, "
                                f"{caches_kib:.0f} KiB of it in bounded caches")

            server.signal(signal.SIGTERM)  # nothing in flight: the drain ends at once
            self.assertEqual(server.proc.wait(30), 0)
        finally:
            server.stop()
        # The usage ledger (docs/finops.md), flushed by the drain: one record per started
        # request (and per admitted request whose client left before its model lease), none
        # twice, and its tokens are the server's.
        db = sqlite3.connect(os.path.join(data_dir, "ledger.sqlite"))
        n_records, n_ids, completion = db.execute(
            "SELECT COUNT(*), COUNT(DISTINCT request_id), SUM(completion_tokens) FROM usage"
        ).fetchone()
        db.close()
        print(f"soak: ledger records={n_records} started={n_started:.0f} gone={gone:.0f}",
              file=sys.stderr)
        self.assertEqual(n_records, n_ids)
        self.assertEqual(n_records, n_started + gone)
        self.assertEqual(n_records, total(s, "ember_usage_records_total"))
        self.assertEqual(completion, total(s, "ember_generation_tokens_total"))


if __name__ == "__main__":
    unittest.main()
