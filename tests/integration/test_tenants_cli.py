"""`ember tenants` and `ember keys` against a real --data-dir: the command-line contract that
scripts outside the project rely on (issue 13), exit codes, and that no key or key hash is ever
printed after `keys create`."""
import hashlib
import json
import os
import re
import shutil
import subprocess
import tempfile
import unittest

from harness import EMBER_BIN


class TenantsCliTest(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="ember_tenants_")
        self.data = os.path.join(self.dir, "data")  # created by the first edit
        self.file = os.path.join(self.data, "tenants.toml")

    def tearDown(self):
        shutil.rmtree(self.dir, ignore_errors=True)

    def ember(self, *args, env=None, data_dir=True):
        full_env = {k: v for k, v in os.environ.items() if k != "EMBER_DATA_DIR"}
        full_env.update(env or {})
        extra = ["--data-dir", self.data] if data_dir else []
        return subprocess.run([EMBER_BIN, *args, *extra], capture_output=True, text=True,
                              env=full_env, timeout=30)

    def ok(self, *args, **kwargs):
        r = self.ember(*args, **kwargs)
        self.assertEqual(r.returncode, 0, r.stderr)
        return r.stdout

    def tenants(self):
        return {t["name"]: t for t in json.loads(self.ok("tenants", "list", "--json"))}

    def test_add_set_list_remove(self):
        self.ok("tenants", "add", "acme", "--weight", "2", "--priority", "batch", "--rpm", "600",
                "--input-tpm", "100000", "--output-tpm", "20000", "--max-concurrent", "8",
                "--max-queued", "16", "--max-tokens", "512", "--display-name", 'Acme "Corp" ü')
        self.ok("tenants", "add", "beta.team")
        acme = self.tenants()["acme"]
        self.assertEqual(acme, {
            "name": "acme", "display_name": 'Acme "Corp" ü', "weight": 2.0, "priority": "batch",
            "enabled": True, "rpm": 600, "input_tpm": 100000, "output_tpm": 20000,
            "max_concurrent": 8, "max_queued": 16, "max_tokens": 512, "models": {}})
        self.assertEqual(self.tenants()["beta.team"], {
            "name": "beta.team", "display_name": "", "weight": 1.0, "priority": "interactive",
            "enabled": True, "models": {}})

        self.ok("tenants", "set", "acme", "--disabled", "--weight", "0.5", "--rpm", "60",
                "--clear", "max-tokens", "--priority", "interactive")
        self.ok("tenants", "set", "acme", "--model", "stories260K", "--output-tpm", "5000")
        acme = self.tenants()["acme"]
        self.assertFalse(acme["enabled"])
        self.assertEqual((acme["weight"], acme["rpm"], acme["priority"]), (0.5, 60, "interactive"))
        self.assertNotIn("max_tokens", acme)
        self.assertEqual(acme["models"], {"stories260K": {"output_tpm": 5000}})
        self.ok("tenants", "set", "acme", "--enabled", "--model", "stories260K", "--clear", "all")
        acme = self.tenants()["acme"]
        self.assertTrue(acme["enabled"])
        self.assertEqual(acme["models"], {})
        self.assertEqual(acme["rpm"], 60)  # --model confines --clear to the model's limits

        table = self.ok("tenants", "list")
        self.assertRegex(table, r"(?m)^acme\s+0\.5\s+interactive\s+enabled\s+0\s+rpm=60 ")
        self.assertRegex(table, r"(?m)^beta\.team\s+1\s+interactive\s+enabled\s+0\s+-$")

        self.ok("keys", "create", "--tenant", "acme")
        self.ok("keys", "create", "--tenant", "acme")
        out = self.ok("tenants", "remove", "acme")
        self.assertIn("2 keys", out)
        self.assertEqual(list(self.tenants()), ["beta.team"])
        self.assertEqual(json.loads(self.ok("keys", "list", "--json")), [])

    def test_keys_create_list_revoke(self):
        self.ok("tenants", "add", "acme")
        out = self.ok("keys", "create", "--tenant", "acme")
        lines = out.splitlines()
        self.assertGreaterEqual(len(lines), 2)
        self.assertIn("shown once", out)
        key = lines[-1]
        self.assertRegex(key, r"^ek_[0-9A-Za-z]{40}$")
        digest = hashlib.sha256(key.encode()).hexdigest()

        listed = json.loads(self.ok("keys", "list", "--json"))
        self.assertEqual(len(listed), 1)
        self.assertEqual(set(listed[0]), {"id", "tenant", "created"})
        self.assertRegex(listed[0]["id"], r"^key_[0-9a-f]{12}$")
        self.assertEqual(listed[0]["tenant"], "acme")
        self.assertIsInstance(listed[0]["created"], int)
        self.assertIn(listed[0]["id"], lines[0])  # the id is named where the key is shown

        # The store holds the key's SHA-256 and never the key; nothing else shows either.
        with open(self.file) as f:
            stored = f.read()
        self.assertIn(digest, stored)
        self.assertNotIn(key, stored)
        for args in (["keys", "list"], ["keys", "list", "--json"], ["tenants", "list"],
                     ["tenants", "list", "--json"]):
            r = self.ember(*args)
            self.assertEqual(r.returncode, 0, r.stderr)
            for secret in (key, digest):
                self.assertNotIn(secret, r.stdout + r.stderr, args)

        second = self.ok("keys", "create", "--tenant", "acme").splitlines()[-1]
        self.assertNotEqual(second, key)
        self.ok("keys", "revoke", listed[0]["id"])
        remaining = json.loads(self.ok("keys", "list", "--json"))
        self.assertEqual(len(remaining), 1)
        self.assertNotEqual(remaining[0]["id"], listed[0]["id"])
        with open(self.file) as f:
            self.assertNotIn(digest, f.read())

        r = self.ember("keys", "revoke", listed[0]["id"])
        self.assertEqual(r.returncode, 1)
        self.assertIn(listed[0]["id"], r.stderr)

    def test_exit_codes(self):
        self.ok("tenants", "add", "acme")
        cases = [
            (1, ["tenants", "add", "acme"], "exists"),
            (1, ["tenants", "set", "nobody", "--rpm", "5"], "nobody"),
            (1, ["tenants", "remove", "nobody"], "nobody"),
            (1, ["keys", "create", "--tenant", "nobody"], "nobody"),
            (1, ["keys", "revoke", "key_000000000000"], "key_000000000000"),
            (2, ["tenants", "set", "acme", "--rpm", "0"], "--clear rpm"),
            (2, ["tenants", "set", "acme", "--max-tokens", "many"], "--max-tokens"),
            (2, ["tenants", "set", "acme", "--weight", "0"], "--weight"),
            (2, ["tenants", "set", "acme", "--priority", "urgent"], "--priority"),
            (2, ["tenants", "set", "acme", "--enabled", "--disabled"], "contradict"),
            (2, ["tenants", "set", "acme", "--clear", "speed"], "speed"),
            (2, ["tenants", "add", "Not_Valid"], "invalid tenant name"),
            (2, ["tenants", "add"], "name"),
            (2, ["tenants", "add", "x", "--no-such-flag"], "--no-such-flag"),
            (2, ["keys", "create"], "--tenant"),
        ]
        for code, args, needle in cases:
            r = self.ember(*args)
            self.assertEqual(r.returncode, code, (args, r.stderr))
            self.assertIn(needle, r.stderr, args)
        self.assertEqual(list(self.tenants()), ["acme"])  # nothing above changed the store

    def test_data_dir_from_the_environment_or_a_clear_error(self):
        r = self.ember("tenants", "list", data_dir=False)
        self.assertEqual(r.returncode, 2)
        self.assertIn("--data-dir", r.stderr)
        self.assertIn("EMBER_DATA_DIR", r.stderr)
        r = self.ember("keys", "create", "--tenant", "x", data_dir=False)
        self.assertEqual(r.returncode, 2)
        r = self.ember("tenants", "add", "envtenant", data_dir=False,
                       env={"EMBER_DATA_DIR": self.data})
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("envtenant", self.tenants())

    def test_missing_store_lists_nothing(self):
        self.assertEqual(json.loads(self.ok("tenants", "list", "--json")), [])
        self.assertEqual(json.loads(self.ok("keys", "list", "--json")), [])
        self.assertFalse(os.path.exists(self.file))  # reading creates nothing

    def test_hand_edited_file_with_an_unknown_field_names_file_and_line(self):
        self.ok("tenants", "add", "acme", "--rpm", "5")
        with open(self.file) as f:
            lines = f.read().splitlines()
        at = lines.index("rpm = 5")
        lines.insert(at + 1, "requests_per_minute = 5")
        with open(self.file, "w") as f:
            f.write("\n".join(lines) + "\n")
        r = self.ember("tenants", "list")
        self.assertEqual(r.returncode, 1)
        self.assertIn(f"{self.file}:{at + 2}: unknown key \"requests_per_minute\"", r.stderr)
        self.assertEqual(r.stdout, "")
        # An edit refuses to build on a broken file rather than overwrite it.
        r = self.ember("tenants", "set", "acme", "--rpm", "6")
        self.assertEqual(r.returncode, 1)
        self.assertIn(f"{self.file}:{at + 2}:", r.stderr)
        with open(self.file) as f:
            self.assertIn("requests_per_minute", f.read())

    def test_hand_edited_file_with_a_syntax_error_names_file_and_line(self):
        os.makedirs(self.data)
        with open(self.file, "w") as f:
            f.write("# hand-written\n[tenants.acme]\nweight = \n")
        r = self.ember("tenants", "list", "--json")
        self.assertEqual(r.returncode, 1)
        self.assertRegex(r.stderr, re.escape(self.file) + r":3: ")


if __name__ == "__main__":
    unittest.main()
