"""`cmake --install` writes one relocatable directory (README "Install", docs/cpu.md): moved
elsewhere, its ember runs from it alone, with its own copy of libllama, ggml and every CPU
variant, and serves the real model."""
import os
import re
import shutil
import subprocess
import tempfile
import unittest

import harness
from e2e.test_generation import REFERENCE

BUILD_DIR = os.environ.get("EMBER_BUILD_DIR", "build/release")


class InstallTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="ember-install-")
        staged = os.path.join(cls.tmp, "staged")
        subprocess.run(["cmake", "--install", BUILD_DIR, "--prefix", staged], check=True,
                       capture_output=True)
        cls.root = os.path.join(cls.tmp, "moved", "elsewhere")
        os.makedirs(os.path.dirname(cls.root))
        shutil.move(staged, cls.root)  # relocated after installing: nothing may point back
        cls.ember = os.path.join(cls.root, "bin", "ember")

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def test_the_directory_holds_ember_its_libraries_and_every_variant(self):
        lib = os.path.join(self.root, "lib", "ember")
        files = sorted(os.listdir(lib))
        for name in ("libllama.so.0", "libggml.so.0", "libggml-base.so.0", "libgomp.so.1"):
            self.assertIn(name, files)
        variants = [f[len("libggml-cpu-"):-3] for f in files if f.startswith("libggml-cpu-")]
        out = subprocess.run([self.ember, "--version"], capture_output=True, text=True,
                             check=True).stdout
        m = re.search(r"^CPU variants: (.*) \((.*)\)$", out, re.MULTILINE)
        self.assertIsNotNone(m, out)
        self.assertEqual(sorted(m.group(1).split()), sorted(variants))
        self.assertEqual(os.path.realpath(m.group(2)), os.path.realpath(lib))
        dynamic = subprocess.run(["readelf", "-d", self.ember], capture_output=True, text=True,
                                 check=True).stdout
        self.assertIn("[$ORIGIN/../lib/ember]", dynamic)

    def test_the_moved_copy_serves_from_its_own_files(self):
        saved = harness.EMBER_BIN
        harness.EMBER_BIN = self.ember
        try:
            server = harness.Server()
        finally:
            harness.EMBER_BIN = saved
        try:
            status, data, _ = server.post_json("/v1/completions", {
                "prompt": "Once upon a time", "max_tokens": 40, "temperature": 0})
            self.assertEqual(status, 200, data)
            self.assertEqual(data["choices"][0]["text"], REFERENCE)
            with open(f"/proc/{server.proc.pid}/maps") as f:
                mapped = {line.split()[-1] for line in f if "/lib" in line and ".so" in line}
            ours = [p for p in mapped if "llama" in p or "ggml" in p or "gomp" in p]
            self.assertTrue(ours)
            outside = [p for p in ours if not p.startswith(os.path.realpath(self.root))]
            self.assertEqual(outside, [], "libraries loaded from outside the install directory")
        finally:
            server.stop()


if __name__ == "__main__":
    unittest.main()
