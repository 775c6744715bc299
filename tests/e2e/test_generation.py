"""Real model (stories260K) through libllama: text, streaming, usage."""
import unittest

from harness import Server

REFERENCE = (", there was a little girl named Lily. She loved to play outside in the park. "
             "One day, she saw a big, red ball.")


class GenerationTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.server = Server("--parallel", "4", "--ctx-size", "2048")

    @classmethod
    def tearDownClass(cls):
        cls.server.stop()

    def complete(self, **body):
        body.setdefault("prompt", "Once upon a time")
        body.setdefault("temperature", 0)
        status, data, _ = self.server.post_json("/v1/completions", body)
        self.assertEqual(status, 200, data)
        return data

    def test_greedy_text_matches_llama_cpp_reference(self):
        data = self.complete(max_tokens=40)
        self.assertEqual(data["choices"][0]["text"], REFERENCE)
        self.assertEqual(data["choices"][0]["finish_reason"], "length")
        self.assertEqual(data["object"], "text_completion")
        self.assertEqual(data["model"], "stories260K")

    def test_usage_equals_tokenizer_counts(self):
        status, tok, _ = self.server.post_json("/tokenize", {"content": "Once upon a time"})
        self.assertEqual(status, 200)
        data = self.complete(max_tokens=25)
        usage = data["usage"]
        self.assertEqual(usage["prompt_tokens"], len(tok["tokens"]))
        self.assertEqual(usage["completion_tokens"], 25)
        self.assertEqual(usage["total_tokens"], len(tok["tokens"]) + 25)

    def test_token_id_prompt_gives_same_text_as_string_prompt(self):
        _, tok, _ = self.server.post_json("/tokenize", {"content": "Once upon a time"})
        by_ids = self.complete(prompt=tok["tokens"], max_tokens=40)
        self.assertEqual(by_ids["choices"][0]["text"], REFERENCE)

    def test_stream_reassembles_to_non_streamed_text(self):
        plain = self.complete(max_tokens=60)
        status, events, done = self.server.stream("/v1/completions", {
            "prompt": "Once upon a time", "max_tokens": 60, "temperature": 0, "stream": True,
            "stream_options": {"include_usage": True}})
        self.assertEqual(status, 200)
        self.assertTrue(done, "stream must end with data: [DONE]")
        text = "".join(e["choices"][0]["text"] for e in events if e["choices"])
        self.assertEqual(text, plain["choices"][0]["text"])
        finals = [e for e in events if e["choices"] and e["choices"][0]["finish_reason"]]
        self.assertEqual([e["choices"][0]["finish_reason"] for e in finals], ["length"])
        self.assertEqual(events[-1]["choices"], [])
        self.assertEqual(events[-1]["usage"], plain["usage"])

    def test_chat_stream_matches_non_streamed(self):
        body = {"messages": [{"role": "system", "content": "Tell a story."},
                             {"role": "user", "content": "A cat and a dog"}],
                "max_tokens": 30, "temperature": 0}
        status, plain, _ = self.server.post_json("/v1/chat/completions", body)
        self.assertEqual(status, 200, plain)
        self.assertEqual(plain["object"], "chat.completion")
        self.assertEqual(plain["choices"][0]["message"]["role"], "assistant")
        status, events, done = self.server.stream("/v1/chat/completions", dict(body, stream=True))
        self.assertTrue(done)
        self.assertEqual(events[0]["choices"][0]["delta"].get("role"), "assistant")
        text = "".join(e["choices"][0]["delta"].get("content", "") for e in events)
        self.assertEqual(text, plain["choices"][0]["message"]["content"])
        self.assertNotIn("usage", [k for k, v in events[-1].items() if v is not None])

    def test_stop_string_cuts_output(self):
        data = self.complete(max_tokens=40, stop=["Lily"])
        self.assertEqual(data["choices"][0]["text"], ", there was a little girl named ")
        self.assertEqual(data["choices"][0]["finish_reason"], "stop")

    def test_seeded_sampling_is_reproducible(self):
        a = self.complete(max_tokens=30, temperature=0.9, seed=1234)
        b = self.complete(max_tokens=30, temperature=0.9, seed=1234)
        self.assertEqual(a["choices"][0]["text"], b["choices"][0]["text"])

    def test_second_chat_turn_reuses_the_first_turns_cells(self):
        first = [{"role": "system", "content": "Tell a story about a cat and a dog."},
                 {"role": "user", "content": "Once upon a time there was a cat named Tom."}]
        status, one, _ = self.server.post_json(
            "/v1/chat/completions", {"messages": first, "max_tokens": 20, "temperature": 0})
        self.assertEqual(status, 200, one)
        # Earlier tests' prompts share at most the BOS token with this conversation.
        self.assertLessEqual(one["usage"]["prompt_tokens_details"]["cached_tokens"], 1)
        second = first + [one["choices"][0]["message"],
                          {"role": "user", "content": "What did the dog do next?"}]
        status, two, _ = self.server.post_json(
            "/v1/chat/completions", {"messages": second, "max_tokens": 20, "temperature": 0})
        self.assertEqual(status, 200, two)
        # The whole first prompt is a shared prefix of the second one.
        self.assertGreaterEqual(two["usage"]["prompt_tokens_details"]["cached_tokens"],
                                one["usage"]["prompt_tokens"] - 1)
        self.assertLess(two["usage"]["prompt_tokens_details"]["cached_tokens"],
                        two["usage"]["prompt_tokens"])

    def test_concurrent_greedy_requests_all_complete_with_reference(self):
        import concurrent.futures
        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            texts = list(pool.map(lambda _: self.complete(max_tokens=40)["choices"][0]["text"],
                                  range(8)))
        self.assertEqual(texts, [REFERENCE] * 8)


if __name__ == "__main__":
    unittest.main()
