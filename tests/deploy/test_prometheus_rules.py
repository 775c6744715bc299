"""deploy/prometheus: the rules load (promtool check rules) and do what they say on input
series shaped like ember's /metrics (promtool test rules, deploy/prometheus/tests/)."""
import glob
import os
import tempfile
import unittest

from deploy.deploy_tools import DEPLOY, run, tool

RULES = [os.path.join(DEPLOY, "prometheus", f) for f in ("recording.yml", "alerts.yml")]


class PrometheusRulesTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.promtool = tool("promtool")

    def test_rules_are_valid(self):
        status, out = run(self.promtool, "check", "rules", *RULES)
        self.assertEqual(status, 0, out)
        self.assertIn("SUCCESS: 21 rules found", out)
        self.assertIn("SUCCESS: 10 rules found", out)

    def test_rule_unit_tests_pass(self):
        tests = sorted(glob.glob(os.path.join(DEPLOY, "prometheus", "tests", "*.yml")))
        self.assertTrue(tests)
        status, out = run(self.promtool, "test", "rules", *tests)
        self.assertEqual(status, 0, out)
        self.assertNotIn("FAILED", out)

    def test_a_wrong_expectation_fails(self):
        # The harness itself can fail: the same input with a wrong expected rate.
        with open(os.path.join(DEPLOY, "prometheus", "tests", "rules_test.yml")) as f:
            text = f.read()
        self.assertIn("            value: 15\n", text)
        text = text.replace("../recording.yml", RULES[0]).replace("../alerts.yml", RULES[1])
        with tempfile.NamedTemporaryFile("w", suffix=".yml") as bad:
            bad.write(text.replace("            value: 15\n", "            value: 16\n", 1))
            bad.flush()
            status, out = run(self.promtool, "test", "rules", bad.name)
        self.assertNotEqual(status, 0, out)
        self.assertIn("job_model_name:ember_generation_tokens:rate1m", out)


if __name__ == "__main__":
    unittest.main()
