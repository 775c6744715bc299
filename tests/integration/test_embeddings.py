"""POST /v1/embeddings through the real binary and the real model (docs/api.md): every input
shape, base64 equal to the float answer bit for bit, usage equal to /tokenize's counts, the
limits, generation alongside, and one ledger record per HTTP request."""
import base64
import json
import math
import os
import shutil
import sqlite3
import struct
import tempfile
import threading
import time
import unittest

from harness import MODEL, Server, post_bytes, raw_socket

MODEL_ID = "stories260K"

# GGUF value types and their fixed sizes (strings and arrays are read separately).
_FIXED = {0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8}


def with_uint32_key(src, dst, key, value):
    """Copies the GGUF file `src` to `dst` with one more metadata key, a uint32."""
    with open(src, "rb") as f:
        data = f.read()
    magic, version, n_tensors, n_kv = struct.unpack_from("<4sIQQ", data, 0)
    assert magic == b"GGUF" and version >= 2, (magic, version)
    off = 24
    alignment = 32

    def string(o):
        (n,) = struct.unpack_from("<Q", data, o)
        return data[o + 8:o + 8 + n].decode(), o + 8 + n

    def skip_value(t, o):
        if t == 8:
            return string(o)[1]
        if t == 9:
            et, n = struct.unpack_from("<IQ", data, o)
            o += 12
            for _ in range(n):
                o = skip_value(et, o)
            return o
        return o + _FIXED[t]

    for _ in range(n_kv):
        name, off = string(off)
        (t,) = struct.unpack_from("<I", data, off)
        off += 4
        if name == "general.alignment":
            (alignment,) = struct.unpack_from("<I", data, off)
        off = skip_value(t, off)
    kv_end = off
    for _ in range(n_tensors):
        _, off = string(off)
        (n_dims,) = struct.unpack_from("<I", data, off)
        off += 4 + 8 * n_dims + 4 + 8
    infos_end = off
    data_start = (infos_end + alignment - 1) // alignment * alignment
    key_bytes = key.encode()
    new_kv = struct.pack("<Q", len(key_bytes)) + key_bytes + struct.pack("<II", 4, value)
    header = (struct.pack("<4sIQQ", magic, version, n_tensors, n_kv + 1) + data[24:kv_end] +
              new_kv + data[kv_end:infos_end])
    header += b"\0" * (-len(header) % alignment)
    with open(dst, "wb") as f:
        f.write(header + data[data_start:])


def floats(b64):
    raw = base64.b64decode(b64)
    return list(struct.unpack(f"<{len(raw) // 4}f", raw))


def bits(vector):
    return struct.pack(f"<{len(vector)}f", *vector)


class EmbeddingsTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        # Deterministic: an input's vector is the same bits whatever shares its steps.
        cls.server = Server("--parallel", "4", "--ctx-size", "1024", "--deterministic")

    @classmethod
    def tearDownClass(cls):
        cls.server.stop()

    def embed(self, body, expected_status=200):
        status, resp, _ = self.server.post_json("/v1/embeddings", body)
        self.assertEqual(status, expected_status, resp)
        return resp

    def tokens(self, text):
        status, resp, _ = self.server.post_json("/tokenize", {"content": text})
        self.assertEqual(status, 200, resp)
        return resp["tokens"]

    def assertUnit(self, vector):
        self.assertAlmostEqual(math.sqrt(sum(x * x for x in vector)), 1.0, places=5)

    def assertError(self, body, param, says=""):
        resp = self.embed(body, 400)
        self.assertEqual(resp["error"]["type"], "invalid_request_error", resp)
        self.assertEqual(resp["error"]["param"], param, resp)
        self.assertIn(says, resp["error"]["message"])

    def test_every_input_shape_gives_the_same_vectors(self):
        texts = ["Once upon a time", "The little dog ran home", "Lily"]
        ids = [self.tokens(t) for t in texts]
        one = self.embed({"model": MODEL_ID, "input": texts[0]})
        self.assertEqual(one["object"], "list")
        self.assertEqual(one["model"], MODEL_ID)
        self.assertEqual(len(one["data"]), 1)
        self.assertEqual(one["data"][0]["object"], "embedding")
        self.assertEqual(one["data"][0]["index"], 0)
        vector = one["data"][0]["embedding"]
        self.assertEqual(len(vector), 64)  # stories260K's n_embd
        self.assertUnit(vector)
        self.assertEqual(one["usage"], {"prompt_tokens": len(ids[0]), "total_tokens": len(ids[0])})

        many = self.embed({"model": MODEL_ID, "input": texts})
        token_one = self.embed({"model": MODEL_ID, "input": ids[0]})
        token_many = self.embed({"model": MODEL_ID, "input": ids})
        for resp in (many, token_many):
            self.assertEqual([d["index"] for d in resp["data"]], [0, 1, 2])
            self.assertEqual(resp["usage"]["prompt_tokens"], sum(len(i) for i in ids))
            self.assertEqual(resp["usage"]["total_tokens"], sum(len(i) for i in ids))
        self.assertEqual(token_one["usage"]["prompt_tokens"], len(ids[0]))
        # Text and its tokens, alone or beside other inputs: the same bits.
        self.assertEqual(bits(token_one["data"][0]["embedding"]), bits(vector))
        for i in range(3):
            self.assertEqual(bits(many["data"][i]["embedding"]),
                             bits(token_many["data"][i]["embedding"]), i)
        self.assertEqual(bits(many["data"][0]["embedding"]), bits(vector))
        # Different inputs, different vectors.
        self.assertNotEqual(many["data"][0]["embedding"], many["data"][1]["embedding"])
        self.assertNotEqual(many["data"][1]["embedding"], many["data"][2]["embedding"])

    def test_base64_decodes_to_the_float_answer_bit_for_bit(self):
        texts = ["Once upon a time", "a big red ball"]
        as_float = self.embed({"input": texts, "encoding_format": "float"})
        as_b64 = self.embed({"input": texts, "encoding_format": "base64"})
        self.assertEqual(as_b64["usage"], as_float["usage"])
        for f, b in zip(as_float["data"], as_b64["data"]):
            self.assertIsInstance(b["embedding"], str)
            decoded = floats(b["embedding"])
            self.assertEqual(len(decoded), 64)
            self.assertEqual(bits(decoded), bits(f["embedding"]))

    def test_dimensions_only_at_the_models_size(self):
        ok = self.embed({"input": "hi", "dimensions": 64})
        self.assertEqual(len(ok["data"][0]["embedding"]), 64)
        self.assertError({"input": "hi", "dimensions": 32}, "dimensions", "64")
        card = json.loads(self.server.get("/v1/models")[1])["data"][0]
        self.assertEqual(card["embedding_dimensions"], 64)
        self.assertNotIn("embedding_only", card)  # a generative model answers both

    def test_limits_and_bad_values_are_400_naming_the_param(self):
        self.assertError({"input": ""}, "input", "empty")
        self.assertError({"input": []}, "input", "empty")
        self.assertError({"input": ["a", ""]}, "input", "input[1]")
        self.assertError({"input": [[1, 2], []]}, "input", "input[1]")
        self.assertError({"input": [1, 512]}, "input", "vocabulary")  # vocab is 512
        self.assertError({"input": ["x"] * 2049}, "input", "2048")
        self.assertError({"input": [[1] * 257]}, "input", "context")  # 256 per sequence
        self.assertEqual(len(self.embed({"input": [[1] * 256]})["data"]), 1)  # the whole context
        self.assertError({"input": "x", "encoding_format": "int8"}, "encoding_format")
        self.assertError({"input": "x", "temperature": 0}, "temperature", "unrecognized")
        self.assertError({"input": 3}, "input")
        status, resp, _ = self.server.post_json("/v1/embeddings", {"input": "x", "model": "nope"})
        self.assertEqual(status, 404, resp)
        status, resp, _ = self.server.post("/v1/embeddings", "{not json")
        self.assertEqual(status, 400, resp)

    def test_the_input_limit_itself_is_served(self):
        resp = self.embed({"input": ["a"] * 2048}, 200)
        self.assertEqual(len(resp["data"]), 2048)
        self.assertEqual([d["index"] for d in resp["data"]], list(range(2048)))
        self.assertEqual(resp["usage"]["prompt_tokens"], 2048 * len(self.tokens("a")))
        first = bits(resp["data"][0]["embedding"])
        self.assertTrue(all(bits(d["embedding"]) == first for d in resp["data"]))

    def test_generation_runs_beside_embeddings_and_after(self):
        results = {}

        def generate():
            results["gen"] = self.server.post_json(
                "/v1/completions", {"prompt": "Once upon a time", "max_tokens": 40,
                                    "temperature": 0})

        t = threading.Thread(target=generate)
        t.start()
        resp = self.embed({"input": [f"story number {i}" for i in range(40)]})
        t.join(60)
        self.assertEqual(len(resp["data"]), 40)
        status, gen, _ = results["gen"]
        self.assertEqual(status, 200, gen)
        self.assertEqual(gen["usage"]["completion_tokens"], 40)
        status, after, _ = self.server.post_json(
            "/v1/chat/completions", {"messages": [{"role": "user", "content": "Hi"}],
                                     "max_tokens": 5})
        self.assertEqual(status, 200, after)
        self.assertEqual(after["usage"]["completion_tokens"], 5)
        self.assertGreaterEqual(
            self.server.metric("ember_http_requests_total",
                               {"endpoint": "/v1/embeddings", "status": "200"}), 1)


class EmbeddingModelTest(unittest.TestCase):
    """stories260K with `llama.pooling_type = 1` (mean) added to its metadata: llama.cpp then
    treats it as an embedding model, as it would a BERT or nomic-embed GGUF."""

    @classmethod
    def setUpClass(cls):
        cls.dir = tempfile.mkdtemp(prefix="ember-embed-model-")
        path = os.path.join(cls.dir, "stories-mean.gguf")
        with_uint32_key(MODEL, path, "llama.pooling_type", 1)
        cls.server = Server("--parallel", "2", "--ctx-size", "512", "--batch-size", "32",
                            model=path)

    @classmethod
    def tearDownClass(cls):
        cls.server.stop()
        shutil.rmtree(cls.dir, ignore_errors=True)

    def test_models_reports_an_embedding_model(self):
        status, body, _ = self.server.get("/v1/models")
        card = json.loads(body)["data"][0]
        self.assertEqual(card["id"], "stories-mean")
        self.assertIs(card.get("embedding_only"), True)
        self.assertEqual(card["embedding_dimensions"], 64)

    def test_pooled_vectors(self):
        texts = ["Once upon a time", "The little dog ran home", "Lily"]
        status, resp, _ = self.server.post_json("/v1/embeddings", {"input": texts})
        self.assertEqual(status, 200, resp)
        vectors = [d["embedding"] for d in resp["data"]]
        for v in vectors:
            self.assertEqual(len(v), 64)
            self.assertAlmostEqual(math.sqrt(sum(x * x for x in v)), 1.0, places=5)
        self.assertNotEqual(vectors[0], vectors[1])
        # Again, alone: the input is pooled whole, never from a cached prefix.
        status, again, _ = self.server.post_json("/v1/embeddings", {"input": texts[0]})
        self.assertEqual(status, 200, again)
        for x, y in zip(again["data"][0]["embedding"], vectors[0]):
            self.assertAlmostEqual(x, y, places=5)
        counts = [len(self.server.post_json("/tokenize", {"content": t})[1]["tokens"])
                  for t in texts]
        self.assertEqual(resp["usage"]["prompt_tokens"], sum(counts))

    def test_input_longer_than_a_step_is_400(self):
        status, resp, _ = self.server.post_json("/v1/embeddings", {"input": [[1] * 33]})
        self.assertEqual(status, 400, resp)
        self.assertEqual(resp["error"]["param"], "input")
        self.assertIn("batch size", resp["error"]["message"])
        status, resp, _ = self.server.post_json("/v1/embeddings", {"input": [[1] * 32]})
        self.assertEqual(status, 200, resp)

    def test_generation_is_refused(self):
        for path, body in (("/v1/completions", {"prompt": "Hi", "max_tokens": 3}),
                           ("/v1/chat/completions",
                            {"messages": [{"role": "user", "content": "Hi"}]})):
            status, resp, _ = self.server.post_json(path, body)
            self.assertEqual(status, 400, resp)
            self.assertEqual(resp["error"]["param"], "model")
            self.assertIn("embedding model", resp["error"]["message"])


class EmbeddingsCancellationTest(unittest.TestCase):
    def test_a_client_that_leaves_cancels_every_input(self):
        # 10 ms per step, 2 slots, 200 inputs of ~100 tokens (one step each at batch 512): about
        # 1 s of work if it all ran; the client leaves after the first inputs are running.
        data_dir = tempfile.mkdtemp(prefix="ember-embed-cancel-")
        server = Server("--parallel", "2", "--ctx-size", "512", "--debug-step-delay", "10ms",
                        "--data-dir", data_dir)
        try:
            s = raw_socket(server.port)
            body = json.dumps({"input": [[5 + i % 7] * 100 for i in range(200)]}).encode()
            s.sendall(post_bytes("/v1/embeddings", body))
            deadline = time.time() + 10
            while (server.metric("ember_num_requests_running") or 0) < 1:
                self.assertLess(time.time(), deadline, "no input ever ran")
                time.sleep(0.005)
            s.close()
            self.assertTrue(server.wait_metric("ember_num_requests_running", 0, timeout=2))
            self.assertEqual(server.metric("ember_num_requests_waiting"), 0)
            # The inputs that had been queued were cancelled, the rest never submitted: far
            # fewer than 200 sequences finished, none of them after the client left.
            aborted = server.metric("ember_request_success_total", {"finished_reason": "abort"})
            finished = server.metric("ember_request_success_total", {"finished_reason": "stop"})
            self.assertGreaterEqual(aborted, 1)
            self.assertLess((finished or 0) + aborted, 50)
            self.assertEqual(server.metric("ember_requests_cancelled_total"), 1)
            # Generation still runs.
            status, resp, _ = server.post_json("/v1/completions", {"prompt": "Hi", "max_tokens": 3})
            self.assertEqual(status, 200, resp)
        finally:
            server.stop()
        try:
            db = sqlite3.connect(f"file:{os.path.join(data_dir, 'ledger.sqlite')}?mode=ro",
                                 uri=True)
            db.row_factory = sqlite3.Row
            rows = [dict(r) for r in db.execute(
                "SELECT * FROM usage WHERE endpoint = '/v1/embeddings'")]
            db.close()
            self.assertEqual(len(rows), 1, rows)
            self.assertEqual(rows[0]["outcome"], "client_gone")
            self.assertEqual(rows[0]["finish_reason"], "cancelled")
            self.assertEqual(rows[0]["completion_tokens"], 0)
            # Billed: the inputs that reached the scheduler (queued or run), not the rest.
            self.assertEqual(rows[0]["prompt_tokens"] % 100, 0)
            self.assertEqual(rows[0]["prompt_tokens"] // 100, (finished or 0) + aborted)
        finally:
            shutil.rmtree(data_dir, ignore_errors=True)


class EmbeddingsLedgerTest(unittest.TestCase):
    def test_one_record_per_request_with_no_completion_tokens(self):
        data_dir = tempfile.mkdtemp(prefix="ember-embed-ledger-")
        try:
            server = Server("--parallel", "2", "--ctx-size", "512", "--data-dir", data_dir)
            try:
                texts = ["Once upon a time", "there was a cat", "who liked milk"]
                status, resp, _ = server.post_json("/v1/embeddings", {"input": texts})
                self.assertEqual(status, 200, resp)
                counts = [len(server.post_json("/tokenize", {"content": t})[1]["tokens"])
                          for t in texts]
                self.assertEqual(resp["usage"]["prompt_tokens"], sum(counts))
                status, bad, _ = server.post_json("/v1/embeddings", {"input": ""})
                self.assertEqual(status, 400, bad)
            finally:
                server.stop()
            db = sqlite3.connect(f"file:{os.path.join(data_dir, 'ledger.sqlite')}?mode=ro",
                                 uri=True)
            db.row_factory = sqlite3.Row
            rows = [dict(r) for r in db.execute("SELECT * FROM usage")]
            db.close()
            self.assertEqual(len(rows), 1, rows)  # one for the request, none for the 400
            r = rows[0]
            self.assertEqual(r["endpoint"], "/v1/embeddings")
            self.assertEqual(r["outcome"], "finished")
            self.assertEqual(r["http_status"], 200)
            self.assertEqual(r["prompt_tokens"], sum(counts))
            self.assertEqual(r["completion_tokens"], 0)
            self.assertGreater(r["engine_ns"], 0)
            self.assertTrue(r["request_id"].startswith("embd-"), r["request_id"])
        finally:
            shutil.rmtree(data_dir, ignore_errors=True)


if __name__ == "__main__":
    unittest.main()
