"""deploy/compose with podman-compose: the stack comes up from the project's compose.yaml,
Prometheus scrapes ember over the stack's network with deploy/prometheus's rules, and a
recording rule returns a value after a short load; `down` drains and removes it.

The images are local (no registry here): ember's from scripts/image.sh, and Prometheus's
made for the test from it and Debian's prometheus binary
(scripts/deploy_tools.sh). Published ports are bound to 127.0.0.1."""
import json
import os
import shutil
import subprocess
import tempfile
import time
import unittest
import urllib.parse
import urllib.request

from deploy.deploy_tools import DEPLOY, run, tool
from deploy_image import test_image  # a module, so its test case does not run twice
from harness import MODEL

PROMETHEUS_IMAGE = "localhost/ember-test-prometheus:2.42.0"


class ComposeTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        # Builds the ember image and writes the podman configuration.
        test_image.ImageTest.setUpClass.__func__(cls)
        ctx = os.path.join(cls.tmp, "prometheus-image")
        os.mkdir(ctx)
        shutil.copy(tool("prometheus"), os.path.join(ctx, "prometheus"))
        with open(os.path.join(ctx, "Containerfile"), "w") as f:
            f.write(f"FROM {test_image.IMAGE}\nCOPY prometheus /bin/prometheus\nUSER 0\n"
                    'HEALTHCHECK NONE\nWORKDIR /prometheus\nENTRYPOINT ["/bin/prometheus"]\n'
                    "CMD []\n")
        status, out = run("podman", "build", "-t", PROMETHEUS_IMAGE, ctx, env=cls.env)
        assert status == 0, out
        cls.ember_port, cls.prom_port = test_image.free_port(), test_image.free_port()
        cls.project = f"embertest{os.getpid()}"
        cls.env_file = os.path.join(cls.tmp, "compose.env")
        with open(os.path.join(DEPLOY, "compose", ".env")) as f:
            settings = dict(l.strip().split("=", 1) for l in f if "=" in l and not l.startswith("#"))
        settings.update(EMBER_IMAGE=test_image.IMAGE, PROMETHEUS_IMAGE=PROMETHEUS_IMAGE,
                        EMBER_MODELS_DIR=cls.models, EMBER_BIND="127.0.0.1",
                        EMBER_PORT=str(cls.ember_port), PROMETHEUS_PORT=str(cls.prom_port),
                        EMBER_PARALLEL="2")
        with open(cls.env_file, "w") as f:
            f.writelines(f"{k}={v}\n" for k, v in settings.items())
        cls.compose = [tool("podman-compose"), "--env-file", cls.env_file, "-p", cls.project,
                       "-f", os.path.join(DEPLOY, "compose", "compose.yaml")]
        status, out = run(*cls.compose, "up", "-d", env=cls.env)
        if status != 0:
            cls.down()
            raise AssertionError("podman-compose up failed:\n" + out[-4000:])

    @classmethod
    def down(cls):
        run(*cls.compose, "down", "-v", env=cls.env)

    @classmethod
    def tearDownClass(cls):
        cls.down()
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def query(self, promql):
        url = (f"http://127.0.0.1:{self.prom_port}/api/v1/query?"
               + urllib.parse.urlencode({"query": promql}))
        with urllib.request.urlopen(url, timeout=10) as r:
            return [(s["metric"], float(s["value"][1])) for s in json.load(r)["data"]["result"]]

    def test_stack_serves_and_prometheus_records_ttft(self):
        deadline = time.time() + 90
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.ember_port}/ready",
                                            timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if time.time() > deadline:
                _, logs = run(*self.compose, "logs", env=self.env)
                self.fail("ember in the Compose stack never became ready:\n" + logs[-3000:])
            time.sleep(0.5)
        # Prometheus scrapes ember before the load, so the load shows as an increase.
        deadline = time.time() + 60
        while time.time() < deadline:
            try:
                if [v for _, v in self.query('up{job="ember"}') if v == 1]:
                    break
            except OSError:
                pass
            time.sleep(0.5)
        else:
            self.fail("Prometheus never scraped ember in the Compose stack")
        served = 0
        for _ in range(24):
            req = urllib.request.Request(
                f"http://127.0.0.1:{self.ember_port}/v1/completions",
                data=json.dumps({"prompt": "Once upon a time", "max_tokens": 16}).encode(),
                headers={"Content-Type": "application/json"})
            with urllib.request.urlopen(req, timeout=30) as r:
                served += json.load(r)["usage"]["completion_tokens"]
        self.assertGreater(served, 0)
        deadline, last = time.time() + 60, None
        while time.time() < deadline:
            try:
                last = (self.query("job_model_name:ember_time_to_first_token_seconds:p50_rate1m"),
                        self.query('sum(ember_generation_tokens_total{job="ember"})'))
            except OSError:
                last = None
            if last and last[0] and last[0][0][1] > 0 and last[1] and last[1][0][1] == served:
                break
            time.sleep(1)
        self.assertTrue(last and last[0], f"no TTFT recording: {last}")
        labels, p50 = last[0][0]
        self.assertEqual(labels["model_name"], "model")
        self.assertGreater(p50, 0)
        self.assertEqual(last[1][0][1], served)


if __name__ == "__main__":
    unittest.main()
