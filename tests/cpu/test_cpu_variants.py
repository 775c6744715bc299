"""ggml's CPU variants (docs/cpu.md) as an operator and a client see them: what `--version`
reports, forcing one with --cpu-variant or EMBER_CPU_VARIANT, refusing one that was not built
or that this CPU cannot run, and the variant in system_fingerprint and ember_build_info."""
import os
import re
import subprocess
import unittest

from e2e.test_generation import REFERENCE
from harness import EMBER_BIN, MODEL, Server, runnable_variants


def version():
    return subprocess.run([EMBER_BIN, "--version"], env={**os.environ, "EMBER_CPU_VARIANT": ""},
                          capture_output=True, text=True, check=True).stdout


def built_variants():
    m = re.search(r"^CPU variants: (.*) \((.*)\)$", version(), re.MULTILINE)
    return m.group(1).split() if m else []


def greedy(server):
    status, data, _ = server.post_json("/v1/completions", {
        "prompt": "Once upon a time", "max_tokens": 40, "temperature": 0})
    assert status == 200, data
    return data["choices"][0]["text"], data["system_fingerprint"]


def refused(*flags, env=None):
    """Runs `ember serve` expecting it to refuse to start; returns its stderr."""
    proc = subprocess.run([EMBER_BIN, "serve", "--model", MODEL, "--port", "0", *flags],
                          env={**os.environ, **(env or {})}, capture_output=True, text=True,
                          timeout=30)
    assert proc.returncode == 1, f"exit {proc.returncode}:\n{proc.stderr}"
    assert "listening on" not in proc.stderr, proc.stderr
    return proc.stderr


class CpuVariantTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.runs, cls.cpu = runnable_variants()
        cls.built = built_variants()
        if not cls.built:
            raise unittest.SkipTest("llama.cpp built without CPU variants")

    def test_version_names_the_build_and_the_variant_this_cpu_gets(self):
        out = version()
        self.assertRegex(out, r"^ember \d+\.\d+\.\d+\n")
        self.assertRegex(out, r"llama\.cpp [0-9a-f]{40} with \d+ ember patches:\n  0001-")
        self.assertIn("x64", self.built)
        self.assertIn("x64", self.runs, "the x86-64 baseline runs on every x86-64 CPU")
        self.assertTrue(set(self.runs) <= set(self.built))
        # the one it gets is the most capable it runs, listed first
        self.assertRegex(out, rf"; gets {re.escape(self.runs[0])}\n")

    def test_forced_baseline_serves_the_reference_text_and_says_so(self):
        baseline = self.runs[-1]
        server = Server("--cpu-variant", baseline)
        try:
            text, fingerprint = greedy(server)
            self.assertEqual(text, REFERENCE)
            self.assertTrue(server.wait_log(f"CPU variant {baseline} (forced by --cpu-variant"),
                            server.log_tail())
            self.assertEqual(server.metric("ember_build_info", {"cpu_variant": baseline}), 1.0)
        finally:
            server.stop()
        best = Server()
        try:
            best_text, best_fingerprint = greedy(best)
            self.assertEqual(best.metric("ember_build_info", {"cpu_variant": self.runs[0]}), 1.0)
            self.assertTrue(best.wait_log(f"CPU variant {self.runs[0]} (the best this CPU runs"))
        finally:
            best.stop()
        if baseline != self.runs[0]:
            self.assertNotEqual(fingerprint, best_fingerprint,
                                "other kernels, other numerics: never the same fingerprint")

    def test_variants_with_the_same_numerics_share_a_fingerprint_and_others_do_not(self):
        """stories260K (F32) computes bit-identically under the AVX-512 variants (docs/cpu.md,
        "Numerics"): one fingerprint for all of them, another for each of the rest."""
        runs = [v for v in ("zen4", "icelake", "skylakex", "haswell", "x64") if v in self.runs]
        if not {"skylakex", "haswell"} <= set(runs):
            self.skipTest(f"this CPU ({self.cpu}) runs neither AVX-512 nor AVX2 variants")
        seen = {}
        for variant in runs:
            server = Server("--cpu-variant", variant)
            try:
                seen[variant] = greedy(server)
            finally:
                server.stop()
        avx512 = [v for v in runs if v in ("zen4", "icelake", "skylakex")]
        self.assertEqual(len({seen[v][1] for v in avx512}), 1, seen)
        self.assertEqual(len({seen[v][0] for v in avx512}), 1, "same fingerprint, same text")
        others = [seen[v][1] for v in runs if v not in avx512]
        self.assertEqual(len(set(others + [seen[avx512[0]][1]])), len(others) + 1, seen)

    def test_replicas_with_the_same_variant_answer_with_the_same_fingerprint(self):
        fingerprints = []
        for _ in range(2):
            server = Server()
            try:
                fingerprints.append(greedy(server)[1])
            finally:
                server.stop()
        self.assertEqual(fingerprints[0], fingerprints[1])
        self.assertRegex(fingerprints[0], r"^fp_[0-9a-f]{16}$")

    def test_the_environment_variable_forces_a_variant_too(self):
        variant = self.runs[-1]
        os.environ["EMBER_CPU_VARIANT"] = variant
        try:
            server = Server()
        finally:
            del os.environ["EMBER_CPU_VARIANT"]
        try:
            self.assertEqual(server.metric("ember_build_info", {"cpu_variant": variant}), 1.0)
        finally:
            server.stop()

    def test_a_variant_this_cpu_cannot_run_is_refused_at_start_up(self):
        cannot = [v for v in self.built if v not in self.runs]
        if not cannot:
            self.skipTest(f"this CPU ({self.cpu}) runs every variant built")
        err = refused("--cpu-variant", cannot[-1])
        self.assertIn(f"--cpu-variant {cannot[-1]}: this CPU", err)
        self.assertIn("lacks instructions", err)
        self.assertIn(f"it can run: {', '.join(self.runs)}", err)
        err = refused(env={"EMBER_CPU_VARIANT": cannot[-1]})
        self.assertIn("lacks instructions", err)

    def test_an_unknown_variant_is_refused_with_the_names_built(self):
        err = refused("--cpu-variant", "pentium4")
        self.assertIn("--cpu-variant pentium4: no such CPU variant", err)
        self.assertIn(f"built: {', '.join(self.built)}", err)


if __name__ == "__main__":
    unittest.main()
