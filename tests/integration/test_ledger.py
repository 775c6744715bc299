"""The usage ledger through the real binary (docs/finops.md): one record per admitted request
with exact integer costs, `ember cost report` and GET /v1/usage totals equal to the sum of the
records, machine intervals that add up, hard budgets that 100 concurrent requests cannot
overshoot (402), budgets restored after a restart, nothing lost or doubled after kill -9 beyond
the documented commit window (nothing at all with --ledger-sync full), and a full disk that
degrades metering without losing a record."""
import concurrent.futures
import http.server
import json
import os
import shutil
import sqlite3
import subprocess
import tempfile
import threading
import time
import unittest

import harness
from harness import EMBER_BIN, Server

MODEL_ID = "stories260K"
KEYS = {"acme": "ek_acmeacmeacmeacmeacmeacmeacme0000000001",
        "beta": "ek_betabetabetabetabetabetabeta0000000002",
        "capped": "ek_cappedcappedcappedcappedcapp0000000003",
        "soft": "ek_softsoftsoftsoftsoftsoftsoft0000000004"}
KEY_IDS = {"acme": "key_00000000000a", "beta": "key_00000000000b",
           "capped": "key_00000000000c", "soft": "key_00000000000d"}
ADMIN = "admin-secret-for-tests"
# Micro-dollars per million tokens and per hour, as the prices file below states them.
INPUT, CACHED, OUTPUT, HOURLY = 150_000, 75_000, 600_000, 3_060_000
PRICES = f"""
[models."{MODEL_ID}"]
input_per_mtok = 0.15
cached_input_per_mtok = 0.075
output_per_mtok = 0.60

[instance]
price_per_hour = 3.06
spot = false
"""


def write_tenants(data_dir, tenants):
    harness.write_tenants(data_dir, tenants, [(KEY_IDS[n], n, KEYS[n]) for n in tenants])


def auth(tenant):
    return {"Content-Type": "application/json", "Authorization": f"Bearer {KEYS[tenant]}"}


def price(tokens, per_mtok):
    """Round half up, as ember does: tokens x micro-dollars per Mtok / 10^6."""
    return (tokens * per_mtok + 500_000) // 1_000_000


def rows(data_dir, table, order):
    """Every row of a ledger table, as dicts, read-only (also while a server writes it)."""
    db = sqlite3.connect(f"file:{os.path.join(data_dir, 'ledger.sqlite')}?mode=ro", uri=True)
    db.row_factory = sqlite3.Row
    try:
        return [dict(r) for r in db.execute(f"SELECT * FROM {table} ORDER BY {order}")]
    finally:
        db.close()


def records(data_dir):
    return rows(data_dir, "usage", "finished_ns")


def intervals(data_dir):
    return rows(data_dir, "intervals", "start_ns")


def cost_report(data_dir, *args):
    out = subprocess.run([EMBER_BIN, "cost", "report", "--data-dir", data_dir, *args],
                         capture_output=True, text=True, timeout=60)
    return out


class LedgerTest(unittest.TestCase):
    """Records, costs, reports and intervals: one server, stopped gracefully at the end."""

    @classmethod
    def setUpClass(cls):
        cls.dir = tempfile.mkdtemp(prefix="ember-ledger-")
        write_tenants(cls.dir, {"acme": {"weight": 1}, "beta": {"weight": 1}})
        cls.prices = os.path.join(cls.dir, "prices.toml")
        with open(cls.prices, "w") as f:
            f.write(PRICES)
        cls.server = Server("--parallel", "4", "--ctx-size", "1024", "--data-dir", cls.dir,
                            "--prices", cls.prices, "--ledger-interval", "200ms",
                            "--admin-key", ADMIN)
        cls.expected_ids = set()
        for i in range(6):
            tenant = "acme" if i % 3 else "beta"
            body = {"model": MODEL_ID, "prompt": f"Once upon a time {i}", "max_tokens": 5 + i}
            status, resp, _ = cls.server.request("POST", "/v1/completions", json.dumps(body),
                                                 headers=auth(tenant))
            assert status == 200, resp
            cls.expected_ids.add(json.loads(resp)["id"])
        status, events, done = cls.server.stream(
            "/v1/chat/completions",
            {"model": MODEL_ID, "messages": [{"role": "user", "content": "Hi"}],
             "max_tokens": 7, "stream": True}, headers=auth("acme"))
        assert status == 200 and done, events
        cls.expected_ids.add(events[0]["id"])
        # Not billed: a client error and an unknown key.
        cls.invalid = cls.server.request("POST", "/v1/completions",
                                         json.dumps({"model": MODEL_ID, "prompt": "x",
                                                     "max_tokens": -3}), headers=auth("acme"))
        cls.unknown = cls.server.request("POST", "/v1/completions",
                                         json.dumps({"model": MODEL_ID, "prompt": "x"}),
                                         headers={"Authorization": "Bearer ek_nope"})
        time.sleep(0.5)  # a few intervals
        _, cls.usage_body, _ = cls.server.request(
            "GET", "/v1/usage?by=tenant", headers={"Authorization": f"Bearer {ADMIN}"})
        cls.usage_no_key = cls.server.request("GET", "/v1/usage")
        cls.usage_bad_by = cls.server.request("GET", "/v1/usage?by=planet",
                                              headers={"Authorization": f"Bearer {ADMIN}"})
        cls.metrics = cls.server.get("/metrics")[1].decode()
        cls.server.stop()
        cls.records = records(cls.dir)

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.dir, ignore_errors=True)

    def test_one_record_per_admitted_request_and_none_for_refusals(self):
        self.assertEqual(self.invalid[0], 400)
        self.assertEqual(self.unknown[0], 401)
        ids = [r["request_id"] for r in self.records]
        self.assertEqual(len(ids), len(set(ids)))
        self.assertEqual(set(ids), self.expected_ids)
        self.assertEqual(sorted({r["tenant"] for r in self.records}), ["acme", "beta"])
        for r in self.records:
            self.assertEqual(r["key_id"], KEY_IDS[r["tenant"]])
            self.assertEqual(r["model"], MODEL_ID)
            self.assertEqual(r["outcome"], "finished")
            self.assertEqual(r["http_status"], 200)
            self.assertLessEqual(r["arrival_ns"], r["admitted_ns"])
            self.assertLessEqual(r["admitted_ns"], r["first_token_ns"])
            self.assertLessEqual(r["first_token_ns"], r["finished_ns"])
            self.assertGreater(r["prompt_tokens"], 0)
            self.assertGreater(r["completion_tokens"], 0)
            self.assertGreater(r["engine_ns"], 0)

    def test_costs_are_exact_integers_at_list_price(self):
        for r in self.records:
            uncached = r["prompt_tokens"] - r["cached_prompt_tokens"]
            self.assertEqual(r["input_cost"], price(uncached, INPUT), r)
            self.assertEqual(r["cached_input_cost"], price(r["cached_prompt_tokens"], CACHED), r)
            self.assertEqual(r["output_cost"], price(r["completion_tokens"], OUTPUT), r)
            self.assertEqual(r["infra_cost"],
                             (r["engine_ns"] * HOURLY + 1_800_000_000_000) // 3_600_000_000_000)

    def test_report_totals_equal_the_sum_of_the_records(self):
        out = cost_report(self.dir, "--by", "tenant,model", "--format", "json")
        self.assertEqual(out.returncode, 0, out.stderr)
        report = json.loads(out.stdout)
        rows = report["rows"]
        self.assertEqual(sorted(r["tenant"] for r in rows), ["acme", "beta"])
        cost = sum(r["input_cost"] + r["cached_input_cost"] + r["output_cost"]
                   for r in self.records)
        self.assertEqual(report["total"]["cost_microdollars"], cost)
        self.assertEqual(sum(r["cost_microdollars"] for r in rows), cost)
        self.assertEqual(report["total"]["requests"], len(self.records))
        for field in ("prompt_tokens", "cached_prompt_tokens", "completion_tokens"):
            self.assertEqual(report["total"][field], sum(r[field] for r in self.records))
        for tenant in ("acme", "beta"):
            row = next(r for r in rows if r["tenant"] == tenant)
            mine = [r for r in self.records if r["tenant"] == tenant]
            self.assertEqual(row["requests"], len(mine))
            self.assertEqual(row["completion_tokens"], sum(r["completion_tokens"] for r in mine))
        for fmt in ("table", "csv"):
            out = cost_report(self.dir, "--by", "tenant", "--format", fmt)
            self.assertEqual(out.returncode, 0, out.stderr)
            self.assertIn("acme", out.stdout)
        bad = cost_report(self.dir, "--by", "planet")
        self.assertEqual(bad.returncode, 2)
        self.assertIn("planet", bad.stderr)
        missing = cost_report(os.path.join(self.dir, "nope"))
        self.assertEqual(missing.returncode, 1)
        self.assertIn("no usage ledger", missing.stderr)

    def test_usage_endpoint_is_the_report_for_admins_only(self):
        usage = json.loads(self.usage_body)
        self.assertEqual(usage["total"]["requests"], len(self.records))
        self.assertEqual(usage["total"]["cost_microdollars"],
                         sum(r["input_cost"] + r["cached_input_cost"] + r["output_cost"]
                             for r in self.records))
        self.assertEqual(self.usage_no_key[0], 401)
        self.assertEqual(self.usage_bad_by[0], 400)

    def test_intervals_split_the_machine_cost_exactly(self):
        ivs = intervals(self.dir)
        self.assertGreaterEqual(len(ivs), 2)
        for iv in ivs:
            wall = iv["end_ns"] - iv["start_ns"]
            self.assertEqual(iv["busy_ns"] + iv["cold_start_ns"] + iv["idle_ns"], wall, iv)
            machine = (wall * iv["price_per_hour"] + 1_800_000_000_000) // 3_600_000_000_000
            self.assertEqual(iv["busy_cost"] + iv["cold_start_cost"] + iv["idle_cost"], machine)
            self.assertEqual(iv["price_per_hour"], HOURLY)
        # Contiguous: each period starts where the last ended.
        for a, b in zip(ivs, ivs[1:]):
            self.assertEqual(a["end_ns"], b["start_ns"])
        self.assertEqual(sum(iv["requests"] for iv in ivs), len(self.records))
        self.assertGreater(sum(iv["cold_start_ns"] for iv in ivs), 0)  # the model load
        self.assertGreater(sum(iv["busy_ns"] for iv in ivs), 0)

    def test_cost_metrics(self):
        out_cost = sum(r["output_cost"] for r in self.records if r["tenant"] == "acme")
        line = next(l for l in self.metrics.splitlines()
                    if l.startswith("ember_cost_microdollars_total{") and 'tenant="acme"' in l
                    and 'kind="output"' in l)
        self.assertEqual(float(line.split()[-1]), out_cost)
        self.assertIn("ember_ledger_unrecorded_records 0", self.metrics)


def burst(server, tenant, n, max_tokens):
    """n concurrent non-streamed requests; returns [(status, body)]."""
    def one(i):
        body = {"model": MODEL_ID, "prompt": f"Once upon a time {i}", "max_tokens": max_tokens}
        status, resp, _ = server.request("POST", "/v1/completions", json.dumps(body),
                                         headers=auth(tenant), timeout=120)
        return status, resp
    with concurrent.futures.ThreadPoolExecutor(max_workers=n) as pool:
        return list(pool.map(one, range(n)))


class BudgetTest(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="ember-budget-")
        # $1 per output token, input free: a request with max_tokens 8 reserves exactly $8.
        self.prices = os.path.join(self.dir, "prices.toml")
        with open(self.prices, "w") as f:
            f.write(f'[models."{MODEL_ID}"]\ninput_per_mtok = 0\noutput_per_mtok = 1000000\n')
        write_tenants(self.dir, {"capped": {"hard_budget": 80, "budget_window": "month"},
                                 "soft": {"soft_budget": 5, "budget_window": "day"}})
        self.args = ("--parallel", "4", "--ctx-size", "1024", "--data-dir", self.dir,
                     "--prices", self.prices, "--queue-size", "128")

    def tearDown(self):
        shutil.rmtree(self.dir, ignore_errors=True)

    def test_100_concurrent_requests_cannot_spend_past_a_hard_budget(self):
        server = Server(*self.args)
        try:
            results = burst(server, "capped", 100, 8)
            ok = [r for r in results if r[0] == 200]
            refused = [r for r in results if r[0] == 402]
            self.assertEqual(len(ok) + len(refused), 100, [r for r in results
                                                           if r[0] not in (200, 402)][:3])
            self.assertGreaterEqual(len(ok), 10)
            self.assertGreaterEqual(len(refused), 50)
            err = json.loads(refused[0][1])["error"]
            self.assertEqual(err["code"], "budget_exceeded")
            self.assertIn("capped", err["message"])
            self.assertIn("$80.00", err["message"])
            self.assertIn("resets at", err["message"])
        finally:
            server.stop()
        rows = records(self.dir)
        self.assertEqual(len(rows), len(ok))  # refusals are not billed
        spent = sum(r["output_cost"] + r["input_cost"] for r in rows)
        self.assertLessEqual(spent, 80_000_000)
        # After a restart the budget still stands: restored from the ledger.
        server = Server(*self.args)
        try:
            status, body, _ = server.request(
                "POST", "/v1/completions",
                json.dumps({"model": MODEL_ID, "prompt": "Once", "max_tokens": 8}),
                headers=auth("capped"))
            self.assertEqual(status, 402 if spent + 8_000_000 > 80_000_000 else 200, body)
        finally:
            server.stop()

    def test_a_soft_budget_warns_once_and_never_refuses(self):
        notices = []

        class Hook(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                notices.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args):
                pass
        hook = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Hook)
        threading.Thread(target=hook.serve_forever, daemon=True).start()
        self.addCleanup(hook.shutdown)
        server = Server(*self.args, "--budget-webhook",
                        f"http://127.0.0.1:{hook.server_address[1]}/budget")
        try:
            results = burst(server, "soft", 4, 4)
            self.assertEqual([r[0] for r in results], [200] * 4)
            results = burst(server, "soft", 4, 4)
            self.assertEqual([r[0] for r in results], [200] * 4)
            self.assertTrue(server.wait_log("reached its soft day budget of $5.00"))
            self.assertEqual(server.metric("ember_budget_crossings_total",
                                           {"tenant": "soft", "budget": "soft"}), 1)
            self.assertTrue(server.wait_metric("ember_budget_webhook_delivered", 1))
        finally:
            server.stop()
        self.assertEqual(len(notices), 1, notices)
        self.assertEqual(notices[0]["tenant"], "soft")
        self.assertEqual(notices[0]["budget"], "soft")
        self.assertEqual(notices[0]["budget_microdollars"], 5_000_000)
        self.assertGreaterEqual(notices[0]["spent_microdollars"], 5_000_000)
        self.assertTrue(notices[0]["resets_at"].endswith("T00:00:00Z"))


class CrashTest(unittest.TestCase):
    """kill -9 under load: what was acknowledged is in the ledger, except (normal sync) what
    was acknowledged within the last commit window; nothing twice."""

    WINDOW_S = 0.1  # the group-commit interval (docs/finops.md)

    def run_and_kill(self, *extra):
        data = tempfile.mkdtemp(prefix="ember-crash-")
        self.addCleanup(shutil.rmtree, data, True)
        server = Server("--parallel", "4", "--ctx-size", "1024", "--data-dir", data, *extra)
        acked, lock, stop = [], threading.Lock(), threading.Event()

        def client(k):
            i = 0
            while not stop.is_set():
                i += 1
                try:
                    status, body, _ = server.request(
                        "POST", "/v1/completions",
                        json.dumps({"model": MODEL_ID, "prompt": f"Once {k} {i}",
                                    "max_tokens": 4}), timeout=10)
                except OSError:
                    return
                if status == 200:
                    with lock:
                        acked.append((json.loads(body)["id"], time.monotonic()))
        threads = [threading.Thread(target=client, args=(k,)) for k in range(6)]
        for t in threads:
            t.start()
        time.sleep(2.0)
        killed_at = time.monotonic()
        server.kill()  # SIGKILL
        stop.set()
        for t in threads:
            t.join(15)
        self.assertGreater(len(acked), 20)
        stored = records(data)
        ids = [r["request_id"] for r in stored]
        self.assertEqual(len(ids), len(set(ids)))
        lost = [(i, t) for i, t in acked if i not in set(ids)]
        out = cost_report(data, "--format", "json")
        self.assertEqual(out.returncode, 0, out.stderr)
        self.assertEqual(json.loads(out.stdout)["total"]["requests"], len(stored))
        return acked, lost, killed_at, data

    def test_normal_sync_loses_at_most_the_last_commit_window(self):
        acked, lost, killed_at, _ = self.run_and_kill()
        # The bound is the commit window plus the time a commit takes; a loaded CI machine gets
        # a generous margin on top, which still catches a ledger that loses older records.
        for _, t in lost:
            self.assertGreater(t, killed_at - self.WINDOW_S - 0.4, (len(lost), len(acked)))

    def test_full_sync_loses_nothing_acknowledged(self):
        acked, lost, _, data = self.run_and_kill("--ledger-sync", "full")
        self.assertEqual(lost, [], f"{len(lost)} of {len(acked)} acknowledged requests lost")
        # The next start opens the same ledger and appends to it.
        server = Server("--data-dir", data)
        server.request("POST", "/v1/completions",
                       json.dumps({"model": MODEL_ID, "prompt": "Once", "max_tokens": 2}))
        server.stop()
        self.assertEqual(len(records(data)), len({r["request_id"] for r in records(data)}))


class SpotTest(unittest.TestCase):
    def test_a_spot_interruption_is_recorded_and_priced_against_on_demand(self):
        data = tempfile.mkdtemp(prefix="ember-spot-")
        self.addCleanup(shutil.rmtree, data, True)
        prices = os.path.join(data, "prices.toml")
        with open(prices, "w") as f:
            f.write('[instance]\nprice_per_hour = 1.00\nspot = true\n'
                    'on_demand_price_per_hour = 3.00\nname = "c7i.2xlarge"\n'
                    'interruption_notice_seconds = 10\n')
        server = Server("--data-dir", data, "--prices", prices, "--ledger-interval", "200ms",
                        "--drain-timeout", "20s")
        # The drain must end within the notice, less 5 s for the flush and the exit.
        self.assertTrue(server.wait_log("the drain after SIGTERM is bounded to 5000 ms"))
        status, _, _ = server.request("POST", "/v1/completions", json.dumps(
            {"model": MODEL_ID, "prompt": "Once", "max_tokens": 3}))
        self.assertEqual(status, 200)
        time.sleep(0.5)
        server.stop()  # SIGTERM: on a spot instance, the interruption notice
        out = cost_report(data, "--format", "json")
        self.assertEqual(out.returncode, 0, out.stderr)
        m = json.loads(out.stdout)["machine"]
        self.assertEqual(m["spot_interruptions"], 1)
        self.assertGreater(m["spot_seconds"], 0.4)
        self.assertEqual(m["spot_seconds"], m["wall_seconds"])
        # On-demand would have cost three times as much, to each interval's rounding.
        n = len(intervals(data))
        self.assertAlmostEqual(m["on_demand_equivalent_microdollars"],
                               3 * m["spot_microdollars"], delta=2 * n)
        self.assertTrue(all(r["spot"] == 1 for r in records(data)))
        advice = subprocess.run([EMBER_BIN, "cost", "advise", "--data-dir", data, "--window",
                                 "1h", "--instances", os.path.join(
                                     os.path.dirname(__file__), "..", "..", "docs", "examples",
                                     "instances.toml"), "--format", "json"],
                                capture_output=True, text=True, timeout=60)
        self.assertEqual(advice.returncode, 0, advice.stderr)
        kinds = [r["kind"] for r in json.loads(advice.stdout)["recommendations"]]
        self.assertTrue(kinds, advice.stdout)
        self.assertNotIn("spot", kinds)  # it already runs on spot


class ForeignFileTest(unittest.TestCase):
    def test_a_foreign_or_corrupt_ledger_stops_startup_and_is_left_alone(self):
        for content in (b"not a database at all" * 100, None):
            data = tempfile.mkdtemp(prefix="ember-foreign-")
            self.addCleanup(shutil.rmtree, data, True)
            path = os.path.join(data, "ledger.sqlite")
            if content is None:  # another application's SQLite database
                db = sqlite3.connect(path)
                db.execute("CREATE TABLE mine (x)")
                db.execute("INSERT INTO mine VALUES (42)")
                db.commit()
                db.close()
            else:
                with open(path, "wb") as f:
                    f.write(content)
            before = open(path, "rb").read()
            proc = subprocess.run([EMBER_BIN, "serve", "--model", os.environ.get(
                "EMBER_TEST_MODEL", "../shared/models/stories260K.gguf"), "--port", "0",
                "--data-dir", data], capture_output=True, text=True, timeout=60)
            self.assertEqual(proc.returncode, 1, proc.stderr)
            self.assertIn("ledger.sqlite", proc.stderr)
            self.assertEqual(open(path, "rb").read(), before)


class FullDiskTest(unittest.TestCase):
    """The data directory on a tiny tmpfs of the test's own, filled up: ember keeps answering,
    says so in /ready and the metric, and writes every record once space returns."""

    def setUp(self):
        self.mnt = tempfile.mkdtemp(prefix="ember-fulldisk-")
        self.addCleanup(shutil.rmtree, self.mnt, True)
        r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", self.mnt],
                           capture_output=True, text=True)
        if r.returncode != 0:
            self.skipTest(f"cannot mount a tmpfs here (needs root / CAP_SYS_ADMIN): "
                          f"{r.stderr.strip()}")
        self.addCleanup(subprocess.run, ["umount", "-l", self.mnt])

    def fill(self):
        path = os.path.join(self.mnt, "filler")
        with open(path, "wb") as f:
            try:
                while True:
                    f.write(b"\0" * 65536)
                    f.flush()
            except OSError:
                pass
        return path

    def test_records_wait_in_memory_and_are_written_once_space_returns(self):
        server = Server("--parallel", "2", "--ctx-size", "512", "--data-dir", self.mnt,
                        "--cache-min-free", "0")
        try:
            def one(i):
                status, _, _ = server.request(
                    "POST", "/v1/completions",
                    json.dumps({"model": MODEL_ID, "prompt": f"Once {i}", "max_tokens": 3}))
                return status
            self.assertEqual([one(i) for i in range(3)], [200] * 3)
            time.sleep(0.3)
            filler = self.fill()
            statuses = [one(i) for i in range(3, 40)]
            self.assertEqual(statuses, [200] * 37)  # ember answers throughout
            # The writer's next commit fails: /ready says so (still 200) and the records wait.
            deadline = time.time() + 10
            while time.time() < deadline and server.metric("ember_ledger_healthy") != 0:
                time.sleep(0.05)
            self.assertEqual(server.metric("ember_ledger_healthy"), 0)
            self.assertGreater(server.metric("ember_ledger_unrecorded_records"), 0)
            status, body, _ = server.get("/ready")
            self.assertEqual(status, 200)
            self.assertIn("not yet written", json.loads(body)["ledger"])
            self.assertEqual(one(40), 200)  # still serving
            os.unlink(filler)
            self.assertTrue(server.wait_metric("ember_ledger_unrecorded_records", 0, timeout=30),
                            server.log_tail())
            status, body, _ = server.get("/ready")
            self.assertEqual(json.loads(body), {"status": "ready"})
        finally:
            server.stop()
        rows = records(self.mnt)
        self.assertEqual(len(rows), 41)
        self.assertEqual(len({r["request_id"] for r in rows}), 41)


if __name__ == "__main__":
    unittest.main()
