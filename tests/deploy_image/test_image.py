"""The container image (scripts/image.sh, deploy/image/Containerfile) with podman: it builds
from the cached Debian base, serves stories260K as user 10001 with a read-only root filesystem
and /data on a volume, answers its healthcheck, and drains on `podman stop` (a request running
at the stop finishes; the container exits 0). Prints its size and exec → first token.

This machine's kernel mounts cgroups in hybrid mode, which crun refuses, and refuses raising
rlimits: the test gives podman its own containers.conf (runc, rlimits at or below the
current ones). Traffic stays on 127.0.0.1 (host network)."""
import json
import os
import shutil
import socket
import subprocess
import tempfile
import threading
import time
import unittest

from deploy.deploy_tools import REPO, run
from harness import MODEL

IMAGE = "localhost/ember:test"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ImageTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="ember-image-")
        conf = os.path.join(cls.tmp, "containers.conf")
        with open(conf, "w") as f:
            f.write('[containers]\ndefault_ulimits = ["nofile=1024:1024", "nproc=4096:4096"]\n'
                    '[engine]\nruntime = "runc"\n')
        cls.env = dict(os.environ, CONTAINERS_CONF=conf, EMBER_IMAGE=IMAGE)
        start = time.time()
        p = subprocess.run([os.path.join(REPO, "scripts", "image.sh")], env=cls.env,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        if p.returncode != 0:
            raise AssertionError("scripts/image.sh failed:\n" + p.stderr[-4000:])
        cls.build_seconds = time.time() - start
        cls.models = os.path.join(cls.tmp, "models")
        os.mkdir(cls.models)
        shutil.copy(MODEL, os.path.join(cls.models, "model.gguf"))
        cls.data = os.path.join(cls.tmp, "data")
        os.mkdir(cls.data)
        os.chown(cls.data, 10001, 10001)

    @classmethod
    def tearDownClass(cls):
        run("podman", "rm", "-f", "-a", "--filter", f"ancestor={IMAGE}", env=cls.env)
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def podman(self, *args):
        return run("podman", *args, env=self.env)

    def start(self, name, *extra):
        port = free_port()
        t0 = time.time()
        status, out = self.podman(
            "run", "-d", "--name", name, "--network", "host", "--read-only", "--tmpfs", "/tmp",
            "-v", f"{self.models}:/models:ro", "-v", f"{self.data}:/data",
            "-e", "EMBER_HOST=127.0.0.1", "-e", f"EMBER_PORT={port}", IMAGE,
            "serve", "--model", "/models/model.gguf", "--threads", "1", "--drain-timeout", "30s",
            *extra)
        self.assertEqual(status, 0, out)
        self.addCleanup(self.podman, "rm", "-f", name)
        return port, t0

    def http(self, port, method, path, body=None, timeout=30):
        import http.client
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
        c.request(method, path, body=json.dumps(body) if body else None,
                  headers={"Content-Type": "application/json"})
        r = c.getresponse()
        data = r.read()
        c.close()
        return r.status, data

    def wait_ready(self, port, name, timeout=60):
        deadline = time.time() + timeout
        while time.time() < deadline:
            try:
                if self.http(port, "GET", "/ready")[0] == 200:
                    return
            except OSError:
                time.sleep(0.05)
        _, logs = self.podman("logs", name)
        self.fail("ember in the container never became ready:\n" + logs[-3000:])

    def test_image_metadata(self):
        status, out = self.podman("image", "inspect", IMAGE)
        self.assertEqual(status, 0, out)
        info = json.loads(out)[0]
        config = info["Config"]
        self.assertEqual(config["User"], "10001:10001")
        self.assertEqual(config["StopSignal"], "SIGTERM")
        self.assertIn("/data", config["Volumes"])
        labels = config["Labels"]
        self.assertEqual(labels["org.opencontainers.image.version"], "0.1.0")
        self.assertRegex(labels["dev.ember.llama-cpp.commit"], r"^[0-9a-f]{7,40}$")
        self.assertIn("/ready", " ".join(info.get("Healthcheck", config.get("Healthcheck", {}))
                                         .get("Test", [])))
        print(f"\nimage {IMAGE}: {info['Size'] / 2**20:.0f} MiB, built in "
              f"{self.build_seconds:.0f} s", flush=True)

    def test_serves_as_non_root_and_drains_on_stop(self):
        # 10 ms per engine step: a 150-token request runs for ~1.5 s, long enough to be
        # running when the stop arrives.
        port, t0 = self.start("ember-image-test", "--debug-step-delay", "10ms")
        self.wait_ready(port, "ember-image-test")
        status, body = self.http(port, "POST", "/v1/completions",
                                 {"prompt": "Once upon a time", "max_tokens": 8, "temperature": 0})
        first = time.time() - t0
        self.assertEqual(status, 200, body)
        self.assertGreater(json.loads(body)["usage"]["completion_tokens"], 0)
        print(f"\ncontainer: podman run → first completion {first:.2f} s", flush=True)
        status, out = self.podman("exec", "ember-image-test", "id", "-u")
        self.assertEqual((status, out.strip()), (0, "10001"))
        # The root filesystem is read-only; /data (the volume) is writable and ember wrote it.
        status, out = self.podman("exec", "ember-image-test", "touch", "/opt/x")
        self.assertNotEqual(status, 0)
        self.assertIn("Read-only file system", out)
        self.assertTrue(os.path.exists(os.path.join(self.data, "ledger.sqlite")))
        status, out = self.podman("healthcheck", "run", "ember-image-test")
        self.assertEqual(status, 0, out)
        # A request streaming when `podman stop` sends SIGTERM still completes.
        import http.client
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        c.request("POST", "/v1/completions", body=json.dumps(
            {"prompt": "Once upon a time", "max_tokens": 150, "temperature": 0, "stream": True}),
            headers={"Content-Type": "application/json"})
        r = c.getresponse()
        self.assertEqual(r.status, 200)
        self.assertTrue(r.readline().startswith(b"data: "))  # generating
        stop = {}
        stopper = threading.Thread(
            target=lambda: stop.update(zip(("status", "out"), self.podman(
                "stop", "-t", "40", "ember-image-test"))))
        stopped_at = time.time()
        stopper.start()
        events = [line for line in r.read().decode().splitlines() if line.startswith("data: ")]
        finished_at = time.time()
        c.close()
        stopper.join(60)
        self.assertEqual(stop.get("status"), 0, stop)
        self.assertEqual(events[-1], "data: [DONE]")
        last = json.loads(events[-2][len("data: "):])
        self.assertIn(last["choices"][0]["finish_reason"], ("length", "stop"))
        self.assertGreater(finished_at - stopped_at, 0.2)  # it was still running at the stop
        status, out = self.podman("inspect", "--format", "{{.State.ExitCode}}", "ember-image-test")
        self.assertEqual(out.strip(), "0", out)


if __name__ == "__main__":
    unittest.main()
