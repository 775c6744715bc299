"""`ember bench coldstart` against the real ember binary and the real model: every run starts
`ember serve`, and the report holds what each run measured."""
import json
import os
import subprocess
import unittest

from harness import EMBER_BIN, MODEL


def coldstart(*args, timeout=120):
    return subprocess.run([EMBER_BIN, "bench", "coldstart", *args], capture_output=True,
                          text=True, timeout=timeout)


class ColdStartBenchTest(unittest.TestCase):
    def test_two_runs_report_ready_first_token_phases_and_rss(self):
        result = coldstart("--model", MODEL, "--runs", "2", "--threads", "1", "--ctx-size", "1024",
                           "--parallel", "2",
                           "--decode-tokens", "64", "--json")  # 8 could arrive in one read
        self.assertEqual(result.returncode, 0, result.stderr)
        report = json.loads(result.stdout)
        self.assertEqual(report["failed_runs"], 0)
        self.assertEqual(list(report["servers"]), ["ember"])
        ember = report["servers"]["ember"]
        self.assertEqual(ember["runs_ok"], 2)
        self.assertEqual(len(ember["runs"]), 2)
        for run in ember["runs"]:
            self.assertTrue(run["ok"], run)
            self.assertGreater(run["exec_to_ready_s"], 0)
            self.assertLessEqual(run["exec_to_ready_s"], run["exec_to_first_token_s"])
            self.assertLess(run["exec_to_first_token_s"], 60)
            self.assertGreater(run["peak_rss_mib"], 0)
            self.assertGreater(run["decode_tokens_per_s"], 0)
            for phase in ("metadata", "weights", "context", "total"):
                self.assertGreater(run["phases_s"].get(phase, 0), 0, run["phases_s"])
            self.assertTrue(all(v >= 0 for v in run["phases_s"].values()), run["phases_s"])
            # ember's own total is part of what the benchmark sees from outside.
            self.assertLessEqual(run["phases_s"]["total"], run["exec_to_ready_s"])
        median = ember["median"]
        ready = sorted(r["exec_to_ready_s"] for r in ember["runs"])
        self.assertAlmostEqual(median["exec_to_ready_s"], sum(ready) / 2, places=5)

    def test_table_and_passthrough_flags(self):
        result = coldstart("--model", MODEL, "--runs", "1", "--threads", "1", "--",
                           "--model-id", "tiny")
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertRegex(result.stdout, r"\n  ember +1/1 +\d+\.\d +\d+\.\d +\d+\.\d +- *\n")
        self.assertIn("ember phases, median ms: ", result.stdout)
        # What follows -- reaches `ember serve`, which rejects a flag it does not know.
        result = coldstart("--model", MODEL, "--runs", "1", "--", "--no-such-flag")
        self.assertEqual(result.returncode, 1, result.stderr)
        self.assertIn("ember run 1: ", result.stdout)
        self.assertIn("--no-such-flag", result.stdout)

    def test_missing_model_is_a_clear_error(self):
        result = coldstart("--model", "/nonexistent/model.gguf")
        self.assertEqual(result.returncode, 2)
        self.assertIn("model file not found: /nonexistent/model.gguf", result.stderr)
        self.assertEqual(result.stdout, "")

    def test_a_server_that_fails_to_start_fails_the_run_with_its_output(self):
        result = coldstart("--model", MODEL, "--runs", "1", "--json", "--ember-arg=--ctx-size=-5")
        self.assertEqual(result.returncode, 1, result.stderr)
        report = json.loads(result.stdout)
        self.assertEqual(report["failed_runs"], 1)
        run = report["servers"]["ember"]["runs"][0]
        self.assertFalse(run["ok"])
        self.assertIn("exited with status", run["error"])
        self.assertIn("--ctx-size", run["error"])  # ember serve's own complaint


if __name__ == "__main__":
    unittest.main()
