"""A real Prometheus scraping a real ember under a short load, with deploy/prometheus's rules
loaded: the recording rules and the autoscaling query return values, and what Prometheus
scraped agrees with what the clients were served.

Prometheus gets its own temporary configuration (scrape 127.0.0.1 every second, rules every
second, the target labelled job="ember", namespace="default" the way the chart's ServiceMonitor
labels a release "ember" in namespace "default") and storage; all traffic stays on 127.0.0.1.
The autoscaling queries are taken from the chart's rendered KEDA ScaledObject, so the PromQL
tested here is the PromQL deployed."""
import json
import os
import re
import shutil
import socket
import subprocess
import tempfile
import threading
import time
import unittest
import urllib.parse
import urllib.request

from deploy.deploy_tools import DEPLOY, tool
from deploy.test_helm_chart import find, helm_template
from harness import Server

MODEL_ID = "stories260K"
JOB = "ember"
NAMESPACE = "default"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Prometheus:
    def __init__(self, target_port, workdir):
        self.port = free_port()
        config = os.path.join(workdir, "prometheus.yml")
        rules = [os.path.join(DEPLOY, "prometheus", f) for f in ("recording.yml", "alerts.yml")]
        with open(config, "w") as f:
            json.dump({  # JSON is YAML
                "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
                "rule_files": rules,
                "scrape_configs": [{
                    "job_name": JOB,
                    "static_configs": [{"targets": [f"127.0.0.1:{target_port}"],
                                        "labels": {"namespace": NAMESPACE}}],
                }],
            }, f)
        self.log = open(os.path.join(workdir, "prometheus.log"), "w+")
        self.proc = subprocess.Popen(
            [tool("prometheus"), f"--config.file={config}",
             f"--storage.tsdb.path={os.path.join(workdir, 'data')}",
             f"--web.listen-address=127.0.0.1:{self.port}"],
            stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.time() + 60
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("prometheus exited:\n" + self.log_text())
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/-/ready", timeout=2):
                    return
            except OSError:
                time.sleep(0.2)
        raise RuntimeError("prometheus never became ready:\n" + self.log_text())

    def log_text(self):
        self.log.seek(0)
        return self.log.read()[-4000:]

    def query(self, promql):
        """The instant vector of `promql` now: a list of (labels, float value)."""
        url = (f"http://127.0.0.1:{self.port}/api/v1/query?"
               + urllib.parse.urlencode({"query": promql}))
        with urllib.request.urlopen(url, timeout=10) as r:
            body = json.load(r)
        assert body["status"] == "success", body
        return [(s["metric"], float(s["value"][1])) for s in body["data"]["result"]]

    def wait_value(self, promql, accept, timeout=60):
        """Polls until one sample of `promql` satisfies accept(value); returns that sample."""
        deadline, last = time.time() + timeout, None
        while time.time() < deadline:
            last = self.query(promql)
            for labels, value in last:
                if accept(value):
                    return labels, value
            time.sleep(0.5)
        raise AssertionError(f"{promql}: no accepted value in {timeout}s, last {last}")

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()


def load(server, clients=8, min_seconds=4.0, max_requests=120):
    """Small completions from `clients` threads until min_seconds have passed (bounded by
    max_requests): with one slot, most of them wait. Returns the completion tokens served."""
    served, lock, sent = [], threading.Lock(), [0]
    start = time.time()

    def client():
        while True:
            with lock:
                if sent[0] >= max_requests or (time.time() - start > min_seconds and sent[0] >= 24):
                    return
                sent[0] += 1
            status, body, _ = server.post_json("/v1/completions", {
                "model": MODEL_ID, "prompt": "Once upon a time", "max_tokens": 24,
                "temperature": 0})
            assert status == 200, body
            with lock:
                served.append(body["usage"]["completion_tokens"])

    threads = [threading.Thread(target=client) for _ in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return served


class PrometheusLiveTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="ember-prom-")
        # One slot, room in the queue and 10 ms per engine step (stories260K alone decodes in
        # well under a millisecond, so requests would rarely be seen waiting): concurrent
        # clients wait, which the autoscaling signal must see.
        cls.server = Server("--parallel", "1", "--queue-size", "32", "--model-id", MODEL_ID,
                            "--debug-step-delay", "10ms")
        try:
            cls.prom = Prometheus(cls.server.port, cls.tmp)
        except Exception:
            cls.server.stop()
            raise
        cls.prom.wait_value(f'up{{job="{JOB}"}}', lambda v: v == 1)
        cls.served = load(cls.server)

    @classmethod
    def tearDownClass(cls):
        cls.prom.stop()
        cls.server.stop()
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def test_scraped_tokens_equal_tokens_served(self):
        total = sum(self.served)
        self.assertGreater(total, 0)
        labels, value = self.prom.wait_value(
            f'sum(ember_generation_tokens_total{{job="{JOB}",model_name="{MODEL_ID}"}})',
            lambda v: v == total)
        self.assertEqual(value, total)

    def test_token_rate_recording_rule(self):
        # Over the last 5 minutes: the load lasts seconds, so a 1-minute rate falls back to 0
        # a minute after it.
        labels, value = self.prom.wait_value(
            f'max_over_time(job_model_name:ember_generation_tokens:rate1m{{job="{JOB}"}}[5m])',
            lambda v: v > 0)
        self.assertEqual(labels["model_name"], MODEL_ID)
        self.assertEqual(labels["namespace"], NAMESPACE)

    def test_ttft_percentile_recording_rule(self):
        # A time in seconds, not NaN (no data) and inside the histogram's range.
        labels, value = self.prom.wait_value(
            'max_over_time(job_model_name:ember_time_to_first_token_seconds:p99_rate1m'
            f'{{job="{JOB}"}}[5m])', lambda v: 0 < v <= 60)
        self.assertEqual(labels["model_name"], MODEL_ID)
        _, itl = self.prom.wait_value(
            'max_over_time(job_model_name:ember_inter_token_latency_seconds:p50_rate1m'
            f'{{job="{JOB}"}}[5m])', lambda v: 0 < v <= 60)

    def test_autoscaling_signal_saw_the_queue(self):
        # The signal the autoscalers read (deploy/helm/ember), over the load: requests waited.
        labels, value = self.prom.wait_value(
            'max_over_time(job_model_name:ember_num_requests_waiting:avg1m'
            f'{{namespace="{NAMESPACE}",job="{JOB}",model_name="{MODEL_ID}"}}[5m])',
            lambda v: v > 0)
        self.assertGreater(value, 0)
        # ... and the queue drains once the load ends: the raw gauge is back to 0.
        self.prom.wait_value(f'job_model_name:ember_num_requests_waiting:sum{{job="{JOB}"}}',
                             lambda v: v == 0)

    def test_chart_autoscaling_queries_return_the_load(self):
        status, out, docs = helm_template({"autoscaling": {"keda": {"enabled": True}}},
                                          namespace=NAMESPACE, release=JOB)
        self.assertEqual(status, 0, out)
        triggers = {t["name"]: t["metadata"] for t in find(docs, "ScaledObject")[0]["spec"]["triggers"]}
        waiting = triggers["requests-waiting"]["query"]
        kv = triggers["kv-cache-usage"]["query"]
        # Each returns one series for this deployment ...
        self.assertEqual(len(self.prom.wait_value(waiting, lambda v: v >= 0)), 2)
        _, usage = self.prom.wait_value(kv, lambda v: 0 <= v <= 1)
        # ... and the waiting query saw the backlog the load made: one slot and 8 clients
        # keep 7 requests waiting, which the raw gauge shows and the 1-minute average spreads.
        _, peak = self.prom.wait_value(f"max_over_time(({waiting})[5m:1s])", lambda v: v > 0)
        _, raw = self.prom.wait_value(
            f'max_over_time(ember_num_requests_waiting{{job="{JOB}"}}[5m])', lambda v: v >= 4)
        self.assertLessEqual(peak, raw)

    def test_dashboard_queries_run(self):
        # deploy/grafana/ember.json: every panel's PromQL is valid against this Prometheus,
        # names only recording rules that exist, and the per-model panels show this ember.
        with open(os.path.join(DEPLOY, "grafana", "ember.json")) as f:
            dashboard = json.load(f)
        with open(os.path.join(DEPLOY, "prometheus", "recording.yml")) as f:
            recorded = set(re.findall(r"record: (\S+)", f.read()))
        for panel in dashboard["panels"]:
            for target in panel["targets"]:
                expr = target["expr"].replace("$namespace", ".*").replace("$job", ".*")
                with self.subTest(panel=panel["title"], expr=expr):
                    for name in re.findall(r"[a-z_]+:[a-z_0-9:]+", expr):
                        self.assertIn(name, recorded)
                    if "tenant" in expr:  # no tenants in this server: valid, but empty
                        self.prom.query(expr)
                        continue
                    labels, _ = self.prom.wait_value(expr, lambda v: True)
                    self.assertEqual(labels.get("job", JOB), JOB)


if __name__ == "__main__":
    unittest.main()
