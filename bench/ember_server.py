"""What the benchmark scripts share: `ember serve` on an ephemeral port with its log kept for
error reports, and the CPU model BENCHMARKS.md quotes. Stdlib only; traffic to 127.0.0.1."""
import http.client
import platform
import re
import subprocess
import threading
import time


def cpu_model():
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor()


class Server:
    """Starts `argv` (an `ember serve ... --port 0` command line) at once; wait_ready() blocks
    until /ready answers 200 and raises RuntimeError with the log's tail when it does not."""

    def __init__(self, argv, name="ember"):
        self.name, self.argv = name, argv
        self.proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                     text=True)
        self.log, self.port = [], None
        self._found = threading.Event()

        def pump():
            for line in self.proc.stderr:
                self.log.append(line)
                m = re.search(r"listening on http://[^:]+:(\d+)", line)
                if m and self.port is None:
                    self.port = int(m.group(1))
                    self._found.set()
            self._found.set()

        threading.Thread(target=pump, daemon=True).start()

    def wait_ready(self, timeout=60):
        if not self._found.wait(timeout) or self.port is None:
            self.kill()
            raise RuntimeError(f"{self.name} did not start: {' '.join(self.argv)}\n" +
                               "".join(self.log[-40:]))
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self.proc.poll() is None:
            try:
                c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
                c.request("GET", "/ready")
                r = c.getresponse()
                r.read()
                c.close()
                if r.status == 200:
                    return
            except OSError:
                pass
            time.sleep(0.05)
        self.kill()
        raise RuntimeError(f"{self.name} never became ready:\n" + "".join(self.log[-40:]))

    def kill(self):
        """SIGKILL, and reap it."""
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(30)

    def stop(self):
        """SIGTERM (the drain), then SIGKILL after 30 s."""
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.kill()
