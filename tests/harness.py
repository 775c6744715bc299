"""Starts the real ember binary on an ephemeral port and talks HTTP to it (stdlib only).

EMBER_BIN and EMBER_TEST_MODEL are set by ctest (tests/CMakeLists.txt). `Server.stop()` shuts
the server down with SIGTERM and fails the test when it exits non-zero, dies of a signal or
wrote a sanitizer report (the ASan/UBSan/TSan builds, README "Sanitizers")."""
import hashlib
import http.client
import json
import os
import re
import signal
import socket
import subprocess
import threading
import time

EMBER_BIN = os.environ.get("EMBER_BIN", "build/release/src/cli/ember")
MODEL = os.environ.get("EMBER_TEST_MODEL", "../shared/models/stories260K.gguf")
SANITIZER_REPORT = re.compile(
    r"ERROR: (Address|Leak|Thread|UndefinedBehavior)Sanitizer|WARNING: ThreadSanitizer|"
    r"runtime error: ")


class Server:
    def __init__(self, *args, model=MODEL, wait_ready=True):
        """model=None: the caller passes its own --model flags in args."""
        models = ["--model", model] if model is not None else []
        self.proc = subprocess.Popen(
            [EMBER_BIN, "serve", *models, "--port", "0", "--threads", "1", *args],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        self.log = []
        self.port = None
        port_found = threading.Event()

        def pump():
            for line in self.proc.stderr:
                self.log.append(line)
                m = re.search(r"listening on http://[^:]+:(\d+)", line)
                if m:
                    self.port = int(m.group(1))
                    port_found.set()
            port_found.set()

        self._pump = threading.Thread(target=pump, daemon=True)
        self._pump.start()
        if not port_found.wait(30) or self.port is None:
            self.kill()
            raise RuntimeError("ember did not start:\n" + "".join(self.log))
        if wait_ready:
            self.wait_ready()

    def wait_ready(self, timeout=60):
        deadline = time.time() + timeout
        while time.time() < deadline and self.proc.poll() is None:
            try:
                if self.get("/ready")[0] == 200:
                    return
            except OSError:
                pass
            time.sleep(0.05)
        if self.proc.poll() is not None:
            self._pump.join(10)  # the whole log, a sanitizer report included
        raise RuntimeError("ember never became ready:\n" + "".join(self.log))

    def conn(self, timeout=60):
        return http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)

    def request(self, method, path, body=None, headers=None, timeout=60):
        c = self.conn(timeout)
        if isinstance(body, (dict, list)):
            body = json.dumps(body)
        c.request(method, path, body=body, headers=headers or {"Content-Type": "application/json"})
        r = c.getresponse()
        data = r.read()
        c.close()
        return r.status, data, dict(r.getheaders())

    def get(self, path):
        return self.request("GET", path)

    def post(self, path, body, **kw):
        return self.request("POST", path, body, **kw)

    def post_json(self, path, body, **kw):
        status, data, headers = self.post(path, body, **kw)
        return status, json.loads(data) if data else None, headers

    def stream(self, path, body, timeout=60, headers=None):
        """Returns (status, list of parsed data events, saw_done)."""
        c = self.conn(timeout)
        c.request("POST", path, body=json.dumps(body),
                  headers={"Content-Type": "application/json", **(headers or {})})
        r = c.getresponse()
        if r.status != 200:
            data = r.read()
            c.close()
            return r.status, [json.loads(data)], False
        events, done = [], False
        for raw in r:
            line = raw.decode().strip()
            if not line.startswith("data: "):
                continue
            payload = line[len("data: "):]
            if payload == "[DONE]":
                done = True
                break
            events.append(json.loads(payload))
        c.close()
        return 200, events, done

    def metric(self, name, labels=None):
        """Sum of the samples of `name` whose labels include `labels`."""
        _, text, _ = self.get("/metrics")
        total, found = 0.0, False
        for line in text.decode().splitlines():
            if line.startswith("#"):
                continue
            m = re.match(r"([^{\s]+)(\{[^}]*\})?\s+(\S+)$", line)
            if not m or m.group(1) != name:
                continue
            if labels and not all(f'{k}="{v}"' in (m.group(2) or "") for k, v in labels.items()):
                continue
            total += float(m.group(3))
            found = True
        return total if found else None

    def wait_metric(self, name, value, timeout=10, labels=None):
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.metric(name, labels) == value:
                return True
            time.sleep(0.02)
        return False

    def wait_log(self, needle, timeout=10):
        """Whether a line of the server's log contains `needle` within `timeout` seconds."""
        deadline = time.time() + timeout
        while time.time() < deadline:
            if any(needle in line for line in self.log):
                return True
            time.sleep(0.02)
        return False

    def rss_bytes(self):
        """Resident memory of the server process (Linux)."""
        with open(f"/proc/{self.proc.pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
        raise RuntimeError("no VmRSS")

    def signal(self, sig=signal.SIGTERM):
        self.proc.send_signal(sig)

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(10)

    def stop(self, timeout=60):
        """SIGTERM, then wait for the drain to end; raises AssertionError when the server does
        not exit 0 in time or its log holds a sanitizer report."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()
                raise AssertionError(f"ember did not exit within {timeout}s of SIGTERM:\n" +
                                     self.log_tail())
        self._pump.join(10)
        report = next((i for i, line in enumerate(self.log) if SANITIZER_REPORT.search(line)), None)
        if report is not None:
            raise AssertionError("sanitizer report from ember:\n" + "".join(self.log[report:]))
        if self.proc.returncode != 0:
            raise AssertionError(f"ember exited with status {self.proc.returncode}:\n" +
                                 self.log_tail())

    def log_tail(self, lines=60):
        return "".join(self.log[-lines:])


def write_tenants(data_dir, tenants, keys):
    """DIR/tenants.toml, replaced atomically. tenants: {name: {field: value}} (values written
    as JSON, which TOML reads the same for strings, numbers and booleans); keys:
    [(id, tenant, key)], stored as SHA-256 hashes."""
    lines = []
    for name, fields in tenants.items():
        lines.append(f"[tenants.{name}]")
        for k, v in fields.items():
            lines.append(f"{k} = {json.dumps(v)}")
        lines.append("")
    for key_id, tenant, key in keys:
        lines += ["[[keys]]", f'id = "{key_id}"', f'tenant = "{tenant}"',
                  f'sha256 = "{hashlib.sha256(key.encode()).hexdigest()}"', "created = 1764921600",
                  ""]
    tmp = os.path.join(data_dir, "tenants.toml.tmp")
    with open(tmp, "w") as f:
        f.write("\n".join(lines))
    os.replace(tmp, os.path.join(data_dir, "tenants.toml"))


def runnable_variants():
    """(the CPU variants this machine runs, the CPU's name), from `ember --version`'s line
    "this CPU: NAME; runs a, b, c; gets X"."""
    out = subprocess.run([EMBER_BIN, "--version"], env={**os.environ, "EMBER_CPU_VARIANT": ""},
                         capture_output=True, text=True, check=True).stdout
    m = re.search(r"^this CPU: (.*); runs (.*); gets ", out, re.MULTILINE)
    if not m:
        return [], "unknown"
    return [v.strip() for v in m.group(2).split(",")], m.group(1)


def post_bytes(path, body, extra=b""):
    """A whole POST request with a JSON body, for raw sockets; `extra` adds header lines."""
    return (f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n").encode() + extra + b"\r\n" + body


def raw_socket(port):
    return socket.create_connection(("127.0.0.1", port), timeout=10)
