"""logprobs through the real binary and the real model over HTTP: the chat and legacy
completions shapes, streamed and not, and the 400s for bad values (docs/api.md,
"Log-probabilities")."""
import json
import math
import unittest

from harness import Server

CHAT = "/v1/chat/completions"
COMPLETIONS = "/v1/completions"
MESSAGES = [{"role": "user", "content": "Tell me a story about a cat."}]


class LogprobsTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.server = Server("--parallel", "2", "--ctx-size", "1024")

    @classmethod
    def tearDownClass(cls):
        cls.server.stop()

    def assertChatEntry(self, entry, n_top):
        self.assertEqual(set(entry), {"token", "logprob", "bytes", "top_logprobs"})
        self.assertIsInstance(entry["token"], str)
        self.assertLessEqual(entry["logprob"], 0.0)
        self.assertTrue(all(isinstance(b, int) and 0 <= b < 256 for b in entry["bytes"]))
        self.assertEqual(bytes(entry["bytes"]).decode("utf-8", "replace"), entry["token"])
        self.assertEqual(len(entry["top_logprobs"]), n_top)
        for alt in entry["top_logprobs"]:
            self.assertEqual(set(alt), {"token", "logprob", "bytes"})
        probs = [alt["logprob"] for alt in entry["top_logprobs"]]
        self.assertEqual(probs, sorted(probs, reverse=True))
        self.assertLessEqual(sum(math.exp(p) for p in probs), 1.0 + 1e-4)

    def assertClose(self, a, b):
        """Log-probabilities of the same tokens from two requests: the second may reuse the
        first's KV cells (prompt cache), computed in another batch shape, so the last digits
        of the logits may differ outside deterministic mode."""
        self.assertEqual(len(a), len(b))
        for x, y in zip(a, b):
            self.assertAlmostEqual(x, y, delta=1e-3)

    def test_chat_greedy_shape_and_tokens_spell_the_content(self):
        status, body, _ = self.server.post_json(CHAT, {
            "messages": MESSAGES, "max_tokens": 24, "temperature": 0, "logprobs": True,
            "top_logprobs": 3})
        self.assertEqual(status, 200, body)
        choice = body["choices"][0]
        self.assertEqual(set(choice["logprobs"]), {"content", "refusal"})
        self.assertIsNone(choice["logprobs"]["refusal"])
        content = choice["logprobs"]["content"]
        self.assertGreater(len(content), 0)
        for entry in content:
            self.assertChatEntry(entry, 3)
            # Greedy: the chosen token is the most likely one of the reported distribution.
            self.assertEqual(entry["top_logprobs"][0]["token"], entry["token"])
            self.assertEqual(entry["top_logprobs"][0]["logprob"], entry["logprob"])
        spelled = b"".join(bytes(e["bytes"]) for e in content).decode("utf-8", "replace")
        self.assertEqual(spelled, choice["message"]["content"])
        if choice["finish_reason"] == "length":
            self.assertEqual(len(content), body["usage"]["completion_tokens"])

    def test_chat_streamed_matches_the_body(self):
        request = {"messages": MESSAGES, "max_tokens": 24, "temperature": 0, "logprobs": True,
                   "top_logprobs": 2}
        status, body, _ = self.server.post_json(CHAT, request)
        self.assertEqual(status, 200, body)
        status, events, done = self.server.stream(CHAT, dict(request, stream=True))
        self.assertEqual(status, 200)
        self.assertTrue(done)
        self.assertIsNone(events[0]["choices"][0]["logprobs"], "the role chunk")
        self.assertIsNone(events[-1]["choices"][0]["logprobs"], "the finishing chunk")
        text, entries = "", []
        for event in events[1:-1]:
            choice = event["choices"][0]
            self.assertIsNone(choice["logprobs"]["refusal"])
            text += choice["delta"].get("content", "")
            entries += choice["logprobs"]["content"]
        self.assertEqual(text, body["choices"][0]["message"]["content"])
        whole = body["choices"][0]["logprobs"]["content"]
        self.assertEqual([e["token"] for e in entries], [e["token"] for e in whole])
        self.assertEqual([[a["token"] for a in e["top_logprobs"]] for e in entries],
                         [[a["token"] for a in e["top_logprobs"]] for e in whole])
        self.assertClose([e["logprob"] for e in entries], [e["logprob"] for e in whole])
        spelled = b"".join(bytes(e["bytes"]) for e in entries).decode("utf-8", "replace")
        self.assertEqual(spelled, text)

    def test_completions_legacy_shape_streamed_and_not(self):
        request = {"prompt": "Once upon a time", "max_tokens": 20, "temperature": 0.8,
                   "seed": 7, "logprobs": 2}
        status, body, _ = self.server.post_json(COMPLETIONS, request)
        self.assertEqual(status, 200, body)
        choice = body["choices"][0]
        lp = choice["logprobs"]
        self.assertEqual(set(lp), {"tokens", "token_logprobs", "top_logprobs", "text_offset"})
        n = len(lp["tokens"])
        self.assertGreater(n, 0)
        self.assertEqual([len(lp[k]) for k in ("token_logprobs", "top_logprobs", "text_offset")],
                         [n, n, n])
        self.assertEqual("".join(lp["tokens"]), choice["text"])
        offset = 0
        for token, logprob, top, at in zip(lp["tokens"], lp["token_logprobs"], lp["top_logprobs"],
                                           lp["text_offset"]):
            self.assertEqual(at, offset)
            offset += len(token.encode())
            self.assertLessEqual(logprob, 0.0)
            # The two alternatives, plus the sampled token when it is not one of them.
            self.assertIn(len(top), (2, 3))
            self.assertIn(token, top)
            self.assertEqual(top[token], logprob)
        status, events, done = self.server.stream(COMPLETIONS, dict(request, stream=True))
        self.assertTrue(done)
        merged = {"tokens": [], "token_logprobs": [], "top_logprobs": [], "text_offset": []}
        text = ""
        for event in events:
            choice = event["choices"][0]
            text += choice["text"]
            if choice["logprobs"] is not None:
                for key in merged:
                    merged[key] += choice["logprobs"][key]
        self.assertEqual(text, body["choices"][0]["text"], "the same seed, the same text")
        for key in ("tokens", "text_offset"):
            self.assertEqual(merged[key], lp[key])
        self.assertEqual([sorted(m) for m in merged["top_logprobs"]],
                         [sorted(m) for m in lp["top_logprobs"]])
        self.assertClose(merged["token_logprobs"], lp["token_logprobs"])

    def test_seeded_output_is_the_same_with_and_without_logprobs(self):
        for path, extra in ((COMPLETIONS, {"prompt": "The dog"}), (CHAT, {"messages": MESSAGES})):
            request = dict(extra, max_tokens=32, temperature=0.9, top_p=0.9, seed=42)
            _, plain, _ = self.server.post_json(path, request)
            with_lp = dict(request, logprobs=True if path == CHAT else 5)
            if path == CHAT:
                with_lp["top_logprobs"] = 20
            _, asked, _ = self.server.post_json(path, with_lp)
            key = "text" if path == COMPLETIONS else "message"
            self.assertEqual(plain["choices"][0][key], asked["choices"][0][key], path)
            self.assertIsNone(plain["choices"][0]["logprobs"])
            self.assertIsNotNone(asked["choices"][0]["logprobs"])

    def test_bad_values_are_400_naming_the_param(self):
        cases = [
            (CHAT, {"logprobs": True, "top_logprobs": 21}, "top_logprobs"),
            (CHAT, {"logprobs": True, "top_logprobs": -1}, "top_logprobs"),
            (CHAT, {"top_logprobs": 2}, "top_logprobs"),
            (CHAT, {"logprobs": False, "top_logprobs": 2}, "top_logprobs"),
            (CHAT, {"logprobs": True, "top_logprobs": "2"}, "top_logprobs"),
            (CHAT, {"logprobs": "yes"}, "logprobs"),
            (COMPLETIONS, {"logprobs": 6}, "logprobs"),
            (COMPLETIONS, {"logprobs": -1}, "logprobs"),
            (COMPLETIONS, {"logprobs": True}, "logprobs"),
        ]
        for path, fields, param in cases:
            base = {"messages": MESSAGES} if path == CHAT else {"prompt": "Hi"}
            status, body, _ = self.server.post(path, dict(base, max_tokens=2, **fields))
            self.assertEqual(status, 400, (path, fields, body))
            error = json.loads(body)["error"]
            self.assertEqual(error["param"], param, (path, fields))
            self.assertEqual(error["type"], "invalid_request_error")
        status, body, _ = self.server.post_json(CHAT, {"messages": MESSAGES, "max_tokens": 2})
        self.assertEqual(status, 200)
        self.assertIsNone(body["choices"][0]["logprobs"])


if __name__ == "__main__":
    unittest.main()
