"""The repacked-weight cache (docs/coldstart.md) with the real binary and a Q4_0 model that
llama.cpp repacks: a cached load must give bit-identical output to a fresh one; corrupt,
truncated and stale cache files must be noticed and rebuilt, never used; racing processes
and a full disk must never leave a partial file or stop ember from serving."""
import glob
import os
import shutil
import subprocess
import tempfile
import threading
import time
import unittest

from harness import EMBER_BIN, Server

PROMPTS = ["Once upon a time", "The little dog", "In the morning the sun"]


def synth(path, seed):
    subprocess.run([EMBER_BIN, "model", "synth", "--shape", "tiny", "--type", "q4_0",
                    "--seed", str(seed), "-o", path], check=True, capture_output=True)


def outputs(server):
    texts = []
    for prompt in PROMPTS:
        status, body, _ = server.post_json("/v1/completions", {
            "prompt": prompt, "max_tokens": 48, "temperature": 0})
        assert status == 200, body
        texts.append(body["choices"][0]["text"])
    return texts


class RepackCacheTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="ember-repack-")
        cls.model = os.path.join(cls.tmp, "tiny-q4_0.gguf")
        synth(cls.model, 1)
        server = Server(model=cls.model)  # no --data-dir: no cache, repacked on load
        try:
            cls.reference = outputs(server)
        finally:
            server.stop()

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def setUp(self):
        self.data = tempfile.mkdtemp(prefix="data-", dir=self.tmp)

    def cache_files(self):
        return sorted(glob.glob(os.path.join(self.data, "cache", "repack-*.bin")))

    def temporaries(self):
        return glob.glob(os.path.join(self.data, "cache", "**", "*.tmp.*"), recursive=True)

    def serve(self, *extra, model=None):
        return Server("--data-dir", self.data, *extra, model=model or self.model)

    def populate(self):
        """First start with an empty cache: repacks, serves, writes the cache in the background."""
        server = self.serve()
        try:
            self.assertTrue(server.wait_log("repack cache: wrote", 60), server.log_tail())
            self.assertEqual(outputs(server), self.reference)
        finally:
            server.stop()
        files = self.cache_files()
        self.assertGreaterEqual(len(files), 1)
        return files

    def assert_hit(self):
        server = self.serve()
        try:
            self.assertTrue(any(" 0 repacked now" in line for line in server.log),
                            server.log_tail())
            self.assertEqual(outputs(server), self.reference)
        finally:
            server.stop()

    def test_cached_load_gives_bit_identical_output(self):
        self.populate()
        self.assertEqual(self.temporaries(), [])
        self.assert_hit()

    def corrupt_and_check(self, mutate, reason):
        files = self.populate()
        mutate(files[0])
        server = self.serve()
        try:
            self.assertTrue(any(reason in line for line in server.log),
                            f"expected '{reason}':\n{server.log_tail()}")
            self.assertEqual(outputs(server), self.reference)
            self.assertTrue(server.wait_log("repack cache: wrote", 60), server.log_tail())
        finally:
            server.stop()
        self.assert_hit()  # rebuilt

    def test_corrupt_payload_is_detected_and_rebuilt(self):
        def flip(path):
            with open(path, "r+b") as f:
                f.seek(os.path.getsize(path) // 2)
                byte = f.read(1)
                f.seek(-1, os.SEEK_CUR)
                f.write(bytes([byte[0] ^ 0x40]))
        self.corrupt_and_check(flip, "corrupt (its content does not match its hash)")

    def test_corrupt_header_is_detected_and_rebuilt(self):
        def scribble(path):
            with open(path, "r+b") as f:
                f.seek(60)  # inside the identity string
                f.write(b"XXXX")
        self.corrupt_and_check(scribble, "corrupt header")

    def test_truncated_file_is_detected_and_rebuilt(self):
        self.corrupt_and_check(lambda p: os.truncate(p, os.path.getsize(p) - 4096),
                               "truncated or wrong size")

    def test_changed_model_file_is_not_served_from_the_old_cache(self):
        old = self.populate()
        other = os.path.join(self.tmp, "other-q4_0.gguf")
        synth(other, 2)
        fresh = Server(model=other)
        try:
            expected = outputs(fresh)
        finally:
            fresh.stop()
        self.assertNotEqual(expected, self.reference)
        shutil.copyfile(other, self.model + ".new")
        os.replace(self.model + ".new", self.model)  # same path, new content
        try:
            server = self.serve()
            try:
                self.assertFalse(any(" 0 repacked now" in l for l in server.log), server.log_tail())
                self.assertEqual(outputs(server), expected)
                self.assertTrue(server.wait_log("repack cache: wrote", 60), server.log_tail())
            finally:
                server.stop()
            self.assertTrue(all(not os.path.exists(p) for p in old), "old version's files removed")
        finally:
            synth(self.model, 1)

    def test_two_processes_racing_to_write_the_cache(self):
        servers = [None, None]

        def start(i):
            servers[i] = self.serve()

        threads = [threading.Thread(target=start, args=(i,)) for i in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        try:
            for s in servers:
                self.assertEqual(outputs(s), self.reference)
            for s in servers:
                self.assertTrue(s.wait_log("repack cache: wrote", 60), s.log_tail())
        finally:
            for s in servers:
                if s:
                    s.stop()
        self.assertEqual(self.temporaries(), [])
        self.assert_hit()

    def test_cache_size_cap_evicts_other_models_least_recently_used_first(self):
        other = os.path.join(self.tmp, "tiny-q4_0-other.gguf")
        if not os.path.exists(other):
            synth(other, 2)
        # Populate the cache with the other model, then age its files.
        server = self.serve(model=other)
        try:
            self.assertTrue(server.wait_log("repack cache: wrote", 60), server.log_tail())
        finally:
            server.stop()
        old_files = self.cache_files()
        self.assertGreaterEqual(len(old_files), 1)
        for f in old_files:
            os.utime(f, (time.time() - 86400, time.time() - 86400))
        size = sum(os.path.getsize(f) for f in old_files)
        # A cap that holds one model's files but not two: the other model's go.
        server = self.serve("--cache-max-size", str(size + size // 2))
        try:
            self.assertTrue(server.wait_log("repack cache: wrote", 60), server.log_tail())
            self.assertTrue(any("deleted the least recently used" in line for line in server.log),
                            server.log_tail())
            self.assertEqual(outputs(server), self.reference)
        finally:
            server.stop()
        files = self.cache_files()
        self.assertTrue(files)
        self.assertFalse(set(files) & set(old_files))
        self.assert_hit()

    def test_full_disk_leaves_no_partial_file(self):
        small = os.path.join(self.data, "cache")
        os.makedirs(small)
        mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", small],
                                 capture_output=True, text=True)
        if mounted.returncode != 0:
            self.skipTest("cannot mount a 64 KiB tmpfs here (needs root): " +
                          mounted.stderr.strip())
        try:
            # Without a free-space floor the space check before writing still refuses (the
            # posix_fallocate that reserves the space is the second line of defence, for a
            # disk that fills between the check and the write); the default floor (1 GiB
            # free) says so.
            for args, reason in ((["--cache-min-free", "0"], "0 MiB must stay free"),
                                 ([], "1024 MiB must stay free")):
                server = self.serve(*args)
                try:
                    self.assertTrue(server.wait_log("repack cache: not writing", 60),
                                    server.log_tail())
                    self.assertTrue(any(reason in line for line in server.log), server.log_tail())
                    self.assertEqual(outputs(server), self.reference)
                    self.assertEqual(server.get("/ready")[0], 200)
                finally:
                    server.stop()
                self.assertEqual(self.cache_files(), [])
                self.assertEqual(self.temporaries(), [])
        finally:
            subprocess.run(["umount", small], check=False)


if __name__ == "__main__":
    unittest.main()
