"""Tools, structured output and the Responses API through the real binary over HTTP, on the
tiny model with a real chat template (Qwen 2.5's, from llama.cpp's models/templates, given with
--chat-template-file): whatever the tiny model would write, a required or named call and a JSON
schema are enforced by constrained decoding, so every answer parses and validates
(docs/api.md, "Tools and structured output", "POST /v1/responses")."""
import json
import os
import unittest

from harness import Server

CHAT = "/v1/chat/completions"
TEMPLATES = os.environ.get("EMBER_LLAMA_TEMPLATES_DIR", "")
QWEN = os.path.join(TEMPLATES, "Qwen-Qwen2.5-7B-Instruct.jinja")
# A reasoning template: its generation prompt opens a <think> block the answer must close.
QWEN35 = os.path.join(TEMPLATES, "Qwen3.5-4B.jinja")
MESSAGES = [{"role": "user", "content": "What is the weather in Paris?"}]
WEATHER = {"type": "function", "function": {
    "name": "get_weather", "description": "The weather now",
    "parameters": {"type": "object", "properties": {"city": {"type": "string", "maxLength": 12}},
                   "required": ["city"]}}}
NOW = {"type": "function", "function": {"name": "now", "parameters": {"type": "object",
                                                                        "properties": {}}}}
PERSON = {"type": "object",
          "properties": {"name": {"type": "string", "maxLength": 10},
                         "age": {"type": "integer", "minimum": 0, "maximum": 120},
                         "pet": {"enum": ["cat", "dog", "none"]},
                         "tags": {"type": "array", "items": {"type": "string", "maxLength": 5},
                                  "maxItems": 3}},
          "required": ["name", "age", "pet"], "additionalProperties": False}
SEEDS = range(1, 6)


def validate(value, schema, where="$"):
    """The JSON Schema keywords the tests use: type, properties, required,
    additionalProperties false, maxLength, minimum, maximum, enum, items, maxItems."""
    kinds = {"object": dict, "string": str, "array": list, "boolean": bool}
    t = schema.get("type")
    if t == "integer":
        assert isinstance(value, int) and not isinstance(value, bool), f"{where}: {value!r}"
    elif t is not None:
        assert isinstance(value, kinds[t]), f"{where}: {value!r} is not {t}"
    if "enum" in schema:
        assert value in schema["enum"], f"{where}: {value!r} not in {schema['enum']}"
    if "maxLength" in schema:
        assert len(value) <= schema["maxLength"], f"{where}: {value!r} too long"
    if "minimum" in schema:
        assert value >= schema["minimum"], f"{where}: {value}"
    if "maximum" in schema:
        assert value <= schema["maximum"], f"{where}: {value}"
    if "maxItems" in schema:
        assert len(value) <= schema["maxItems"], f"{where}: {len(value)} items"
    if "items" in schema:
        for i, item in enumerate(value):
            validate(item, schema["items"], f"{where}[{i}]")
    for key in schema.get("required", []):
        assert key in value, f"{where}: no {key}"
    props = schema.get("properties", {})
    for key, item in (value.items() if isinstance(value, dict) else []):
        if schema.get("additionalProperties") is False:
            assert key in props, f"{where}: unexpected {key}"
        if key in props:
            validate(item, props[key], f"{where}.{key}")


@unittest.skipUnless(os.path.exists(QWEN), f"no chat template at {QWEN}")
class ToolsTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.server = Server("--parallel", "2", "--ctx-size", "4096", "--chat-template-file", QWEN)

    @classmethod
    def tearDownClass(cls):
        cls.server.stop()

    def chat(self, **body):
        status, r, _ = self.server.post_json(CHAT, {"messages": MESSAGES, "max_tokens": 300,
                                                    **body})
        self.assertEqual(status, 200, r)
        return r

    def assertWeatherCall(self, call):
        self.assertEqual(call["type"], "function")
        self.assertTrue(call["id"].startswith("call_"), call)
        self.assertEqual(call["function"]["name"], "get_weather")
        validate(json.loads(call["function"]["arguments"]),
                 WEATHER["function"]["parameters"])

    def test_required_call_is_valid_on_every_seed(self):
        for seed in SEEDS:
            r = self.chat(tools=[WEATHER], tool_choice="required", parallel_tool_calls=False,
                          seed=seed, temperature=1.0)
            choice = r["choices"][0]
            self.assertEqual(choice["finish_reason"], "tool_calls", (seed, choice))
            self.assertIsNone(choice["message"]["content"])
            self.assertEqual(len(choice["message"]["tool_calls"]), 1)
            self.assertWeatherCall(choice["message"]["tool_calls"][0])

    def test_named_choice_calls_that_function_only(self):
        for seed in SEEDS:
            r = self.chat(tools=[NOW, WEATHER], parallel_tool_calls=False, seed=seed,
                          tool_choice={"type": "function", "function": {"name": "get_weather"}})
            calls = r["choices"][0]["message"]["tool_calls"]
            self.assertEqual(r["choices"][0]["finish_reason"], "tool_calls")
            self.assertEqual([c["function"]["name"] for c in calls], ["get_weather"])
            self.assertWeatherCall(calls[0])

    def test_tool_choice_none_never_calls(self):
        r = self.chat(tools=[WEATHER], tool_choice="none", max_tokens=40, seed=1)
        choice = r["choices"][0]
        self.assertNotIn("tool_calls", choice["message"])
        self.assertIn(choice["finish_reason"], ("stop", "length"))

    def test_streamed_call_equals_the_whole_one(self):
        body = dict(tools=[WEATHER], tool_choice="required", parallel_tool_calls=False, seed=7,
                    temperature=1.0)
        whole = self.chat(**body)["choices"][0]["message"]["tool_calls"][0]
        status, events, done = self.server.stream(
            CHAT, {"messages": MESSAGES, "max_tokens": 300, "stream": True, **body})
        self.assertEqual(status, 200)
        self.assertTrue(done)
        fragments = [tc for e in events for c in e["choices"]
                     for tc in c["delta"].get("tool_calls", [])]
        self.assertGreater(len(fragments), 2, "the arguments arrive in pieces")
        first = fragments[0]
        self.assertEqual((first["index"], first["type"], first["function"]["name"]),
                         (0, "function", "get_weather"))
        self.assertTrue(all("id" not in f for f in fragments[1:]))
        arguments = "".join(f["function"]["arguments"] for f in fragments)
        self.assertEqual(arguments, whole["function"]["arguments"])
        finish = [c["finish_reason"] for e in events for c in e["choices"] if c["finish_reason"]]
        self.assertEqual(finish, ["tool_calls"])
        self.assertFalse(any(c["delta"].get("content") for e in events for c in e["choices"]),
                         "no call text leaks into content")

    def test_a_template_without_reasoning_leaves_the_output_as_it_was(self):
        body = {"messages": MESSAGES, "max_tokens": 30, "seed": 4}
        message = self.chat(**body)["choices"][0]["message"]
        self.assertNotIn("reasoning_content", message)
        status, events, _ = self.server.stream(CHAT, {**body, "stream": True})
        self.assertEqual(status, 200)
        deltas = [c["delta"] for e in events for c in e["choices"]]
        self.assertFalse(any("reasoning_content" in d for d in deltas))
        self.assertEqual("".join(d.get("content") or "" for d in deltas), message["content"])

    def test_history_with_calls_and_results_renders(self):
        history = MESSAGES + [
            {"role": "assistant", "content": None, "tool_calls": [
                {"id": "call_1", "type": "function",
                 "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'}}]},
            {"role": "tool", "tool_call_id": "call_1", "content": "18C and sunny"}]
        status, r, _ = self.server.post_json(CHAT, {"messages": history, "tools": [WEATHER],
                                                    "max_tokens": 8, "seed": 1})
        self.assertEqual(status, 200, r)
        self.assertIn(r["choices"][0]["finish_reason"], ("stop", "length", "tool_calls"))

    def test_json_schema_output_validates_on_every_seed(self):
        fmt = {"type": "json_schema", "json_schema": {"name": "person", "schema": PERSON,
                                                      "strict": True}}
        for seed in SEEDS:
            r = self.chat(response_format=fmt, seed=seed, temperature=1.0)
            choice = r["choices"][0]
            self.assertEqual(choice["finish_reason"], "stop", (seed, choice))
            validate(json.loads(choice["message"]["content"]), PERSON)

    def test_a_schema_alone_is_enforced_by_the_engine_the_build_reports(self):
        # ember_build_info says what enforces JSON schemas; with llguidance, Qwen 2.5's answer
        # under a schema is the bare value (its template adds nothing the value needs), so the
        # content starts with '{' on every seed, where the template's grammar allows blank
        # lines or a ```json fence first.
        status, body, _ = self.server.get("/metrics")
        self.assertEqual(status, 200)
        text = body.decode()
        engine = [line for line in text.splitlines() if line.startswith("ember_build_info{")]
        self.assertEqual(len(engine), 1, text)
        self.assertIn('json_schema_engine="', engine[0])
        if 'json_schema_engine="gbnf"' in engine[0]:
            self.skipTest("a build without llguidance")
        self.assertIn('json_schema_engine="llguidance ', engine[0])
        fmt = {"type": "json_schema", "json_schema": {"name": "person", "schema": PERSON}}
        for seed in SEEDS:
            content = self.chat(response_format=fmt, seed=seed)["choices"][0]["message"]["content"]
            self.assertTrue(content.startswith("{"), (seed, content))
            validate(json.loads(content), PERSON)

    def test_json_object_output_is_an_object(self):
        for seed in SEEDS:
            r = self.chat(response_format={"type": "json_object"}, seed=seed, max_tokens=400)
            content = r["choices"][0]["message"]["content"]
            if r["choices"][0]["finish_reason"] == "stop":
                self.assertIsInstance(json.loads(content), dict)
            else:  # cut by max_tokens: what there is is the start of an object
                self.assertTrue(content.lstrip().startswith("{"), content)

    def test_unenforceable_schema_keyword_is_a_400_naming_it(self):
        schema = {"type": "object", "properties": {"a": {"not": {"type": "string"}}}}
        status, r, _ = self.server.post_json(CHAT, {
            "messages": MESSAGES, "response_format": {
                "type": "json_schema", "json_schema": {"name": "x", "schema": schema}}})
        self.assertEqual(status, 400, r)
        self.assertIn("not", r["error"]["message"])
        self.assertEqual(r["error"]["param"], "response_format")

    def test_responses_text_and_stream(self):
        status, r, _ = self.server.post_json("/v1/responses", {
            "input": "Hello", "instructions": "Be brief.", "max_output_tokens": 10, "seed": 1})
        self.assertEqual(status, 200, r)
        self.assertEqual(r["object"], "response")
        self.assertIn(r["status"], ("completed", "incomplete"))
        text = r["output"][0]["content"][0]["text"]
        if r["status"] == "incomplete":
            self.assertEqual(r["incomplete_details"], {"reason": "max_output_tokens"})
            self.assertEqual(r["usage"]["output_tokens"], 10)
        conn = self.server.conn()
        conn.request("POST", "/v1/responses", body=json.dumps({
            "input": "Hello", "instructions": "Be brief.", "max_output_tokens": 10, "seed": 1,
            "stream": True}), headers={"Content-Type": "application/json"})
        resp = conn.getresponse()
        self.assertEqual(resp.status, 200)
        names, deltas, last = [], "", None
        for raw in resp:
            line = raw.decode().rstrip("\n")
            if line.startswith("event: "):
                names.append(line[7:])
            elif line.startswith("data: "):
                data = json.loads(line[6:])
                self.assertEqual(data["sequence_number"], len(names) - 1)
                if data["type"] == "response.output_text.delta":
                    deltas += data["delta"]
                last = data
        conn.close()
        self.assertEqual(names[:2], ["response.created", "response.in_progress"])
        self.assertIn(names[-1], ("response.completed", "response.incomplete"))
        self.assertEqual(deltas, text, "the same seed gives the same text streamed")
        self.assertEqual(last["response"]["output"][0]["content"][0]["text"], text)

    def test_responses_function_call_and_its_output(self):
        tools = [{"type": "function", "name": "get_weather",
                  "parameters": WEATHER["function"]["parameters"]}]
        status, r, _ = self.server.post_json("/v1/responses", {
            "input": "Weather in Paris?", "tools": tools, "tool_choice": "required",
            "parallel_tool_calls": False, "max_output_tokens": 300, "seed": 2})
        self.assertEqual(status, 200, r)
        calls = [o for o in r["output"] if o["type"] == "function_call"]
        self.assertEqual(len(calls), 1, r["output"])
        self.assertEqual(calls[0]["name"], "get_weather")
        validate(json.loads(calls[0]["arguments"]), WEATHER["function"]["parameters"])
        # The call and its output go back as input items.
        status, r, _ = self.server.post_json("/v1/responses", {
            "input": [{"role": "user", "content": "Weather in Paris?"},
                      {"type": "function_call", "call_id": calls[0]["call_id"],
                       "name": "get_weather", "arguments": calls[0]["arguments"]},
                      {"type": "function_call_output", "call_id": calls[0]["call_id"],
                       "output": "18C"}],
            "tools": tools, "max_output_tokens": 8, "seed": 2})
        self.assertEqual(status, 200, r)


    def responses_stream(self, body):
        """The data objects of a streamed /v1/responses request, each checked against its
        SSE event name."""
        conn = self.server.conn()
        conn.request("POST", "/v1/responses", body=json.dumps({**body, "stream": True}),
                     headers={"Content-Type": "application/json"})
        resp = conn.getresponse()
        self.assertEqual(resp.status, 200)
        events, name = [], None
        for raw in resp:
            line = raw.decode().rstrip("\n")
            if line.startswith("event: "):
                name = line[7:]
            elif line.startswith("data: "):
                data = json.loads(line[6:])
                self.assertEqual(data["type"], name)
                events.append(data)
        conn.close()
        return events

    def test_responses_streamed_call_arrives_as_it_forms(self):
        tools = [{"type": "function", "name": "get_weather",
                  "parameters": WEATHER["function"]["parameters"]}]
        body = {"input": "Weather in Paris?", "tools": tools, "tool_choice": "required",
                "parallel_tool_calls": False, "max_output_tokens": 300, "seed": 3}
        events = self.responses_stream(body)
        names = [e["type"] for e in events]
        self.assertEqual([e["sequence_number"] for e in events], list(range(len(events))))
        self.assertEqual(names[-1], "response.completed")
        output = events[-1]["response"]["output"]
        calls = [(i, o) for i, o in enumerate(output) if o["type"] == "function_call"]
        self.assertEqual(len(calls), 1, output)
        index, call = calls[0]
        self.assertEqual(call["status"], "completed")
        added = [e for e in events if e["type"] == "response.output_item.added"
                 and e["output_index"] == index]
        self.assertEqual(len(added), 1)
        self.assertEqual((added[0]["item"]["id"], added[0]["item"]["name"],
                          added[0]["item"]["arguments"], added[0]["item"]["status"]),
                         (call["id"], "get_weather", "", "in_progress"))
        deltas = [e for e in events if e["type"] == "response.function_call_arguments.delta"]
        self.assertGreater(len(deltas), 1, "the arguments arrive as they form, not at the end")
        self.assertTrue(all((d["output_index"], d["item_id"]) == (index, call["id"])
                            for d in deltas))
        arguments = "".join(d["delta"] for d in deltas)
        self.assertEqual(arguments, call["arguments"])
        validate(json.loads(arguments), WEATHER["function"]["parameters"])
        # Added, then the deltas, then done, as OpenAI orders them.
        first_delta = names.index("response.function_call_arguments.delta")
        self.assertLess(names.index("response.output_item.added"), first_delta)
        done = names.index("response.function_call_arguments.done")
        self.assertGreater(done, len(names) - 1 - names[::-1].index(
            "response.function_call_arguments.delta"))
        self.assertEqual(events[done]["arguments"], call["arguments"])
        # The same request unstreamed makes the same call.
        status, r, _ = self.server.post_json("/v1/responses", body)
        self.assertEqual(status, 200, r)
        whole = [o for o in r["output"] if o["type"] == "function_call"]
        self.assertEqual([c["arguments"] for c in whole], [call["arguments"]])


@unittest.skipUnless(os.path.exists(QWEN), f"no chat template at {QWEN}")
class ToolChoicesTest(unittest.TestCase):
    """n > 1 with tools: each choice's output is read apart (docs/api.md, "Several choices")."""
    BODY = {"messages": MESSAGES, "tools": [WEATHER], "tool_choice": "required",
            "parallel_tool_calls": False, "max_tokens": 300, "n": 3, "seed": 5,
            "temperature": 1.0}

    @classmethod
    def setUpClass(cls):
        cls.server = Server("--parallel", "3", "--ctx-size", "6144", "--chat-template-file", QWEN)

    @classmethod
    def tearDownClass(cls):
        cls.server.stop()

    def assertWeatherCall(self, call):
        self.assertEqual(call["type"], "function")
        self.assertTrue(call["id"].startswith("call_"), call)
        self.assertEqual(call["function"]["name"], "get_weather")
        validate(json.loads(call["function"]["arguments"]), WEATHER["function"]["parameters"])

    def whole(self):
        status, r, _ = self.server.post_json(CHAT, self.BODY)
        self.assertEqual(status, 200, r)
        self.assertEqual([c["index"] for c in r["choices"]], [0, 1, 2])
        return r["choices"]

    def test_each_choice_makes_its_own_call(self):
        choices = self.whole()
        for c in choices:
            self.assertEqual(c["finish_reason"], "tool_calls", c)
            self.assertIsNone(c["message"]["content"])
            self.assertEqual(len(c["message"]["tool_calls"]), 1, c)
            self.assertWeatherCall(c["message"]["tool_calls"][0])
        ids = {c["message"]["tool_calls"][0]["id"] for c in choices}
        self.assertEqual(len(ids), 3, "call ids are unique across the choices")

    def test_streamed_choices_each_stream_their_call(self):
        whole = self.whole()
        status, events, done = self.server.stream(CHAT, {**self.BODY, "stream": True})
        self.assertEqual(status, 200, events)
        self.assertTrue(done)
        ids = set()
        for i in range(3):
            deltas = [c for e in events for c in e["choices"] if c["index"] == i]
            fragments = [tc for c in deltas for tc in c["delta"].get("tool_calls", [])]
            self.assertGreater(len(fragments), 2, f"choice {i}: the arguments arrive in pieces")
            first = fragments[0]
            self.assertEqual((first["index"], first["type"], first["function"]["name"]),
                             (0, "function", "get_weather"))
            self.assertTrue(all("id" not in f for f in fragments[1:]))
            ids.add(first["id"])
            arguments = "".join(f["function"]["arguments"] for f in fragments)
            self.assertEqual(arguments,
                             whole[i]["message"]["tool_calls"][0]["function"]["arguments"],
                             f"choice {i}: the same seed gives the same call streamed")
            validate(json.loads(arguments), WEATHER["function"]["parameters"])
            self.assertEqual([c["finish_reason"] for c in deltas if c["finish_reason"]],
                             ["tool_calls"])
            self.assertFalse(any(c["delta"].get("content") for c in deltas),
                             f"choice {i}: no call text leaks into content")
        self.assertEqual(len(ids), 3, "call ids are unique across the choices")


@unittest.skipUnless(os.path.exists(QWEN35), f"no chat template at {QWEN35}")
class ReasoningTest(unittest.TestCase):
    """Qwen 3.5's template opens the answer with <think>: what the model writes in the block
    comes back as reasoning_content (a reasoning item on /v1/responses), apart from the content.
    The tiny model never closes the block, so all it writes is reasoning."""
    BODY = {"messages": MESSAGES, "max_tokens": 24, "seed": 3}

    @classmethod
    def setUpClass(cls):
        cls.server = Server("--parallel", "2", "--ctx-size", "4096", "--chat-template-file",
                            QWEN35)

    @classmethod
    def tearDownClass(cls):
        cls.server.stop()

    def reasoning(self):
        status, r, _ = self.server.post_json(CHAT, self.BODY)
        self.assertEqual(status, 200, r)
        message = r["choices"][0]["message"]
        self.assertTrue(message.get("reasoning_content"), message)
        self.assertEqual(message["content"], "", "the block is not content")
        self.assertNotIn("<think>", message["reasoning_content"])
        return message["reasoning_content"]

    def test_chat_returns_the_block_as_reasoning_content(self):
        whole = self.reasoning()
        status, events, done = self.server.stream(CHAT, {**self.BODY, "stream": True})
        self.assertEqual(status, 200, events)
        self.assertTrue(done)
        deltas = [c["delta"] for e in events for c in e["choices"]]
        self.assertEqual("".join(d.get("reasoning_content", "") for d in deltas), whole,
                         "the same seed streams the same reasoning")
        self.assertEqual("".join(d.get("content") or "" for d in deltas), "")
        status, r, _ = self.server.post_json(CHAT, {**self.BODY, "n": 2})
        self.assertEqual(status, 200, r)
        for c in r["choices"]:
            self.assertTrue(c["message"]["reasoning_content"], c)
            self.assertEqual(c["message"]["content"], "")

    def test_responses_return_a_reasoning_item(self):
        whole = self.reasoning()
        body = {"input": MESSAGES[0]["content"], "max_output_tokens": 24, "seed": 3}
        status, r, _ = self.server.post_json("/v1/responses", body)
        self.assertEqual(status, 200, r)
        item = r["output"][0]
        self.assertEqual((item["type"], item["summary"], item["content"][0]["type"]),
                         ("reasoning", [], "reasoning_text"))
        self.assertEqual(item["content"][0]["text"], whole, "the same prompt and seed as chat")
        conn = self.server.conn()
        conn.request("POST", "/v1/responses", body=json.dumps({**body, "stream": True}),
                     headers={"Content-Type": "application/json"})
        resp = conn.getresponse()
        self.assertEqual(resp.status, 200)
        events = [json.loads(line[6:]) for line in (raw.decode() for raw in resp)
                  if line.startswith("data: ")]
        conn.close()
        self.assertEqual([e["sequence_number"] for e in events], list(range(len(events))))
        streamed = "".join(e["delta"] for e in events if e["type"] == "response.reasoning_text.delta")
        self.assertEqual(streamed, whole)
        final = events[-1]["response"]["output"]
        self.assertEqual(final[0]["type"], "reasoning")
        self.assertEqual(final[0]["content"][0]["text"], whole)
        # Sent back as input (as clients send a whole output back), the item is accepted.
        status, r, _ = self.server.post_json("/v1/responses", {
            "input": [{"role": "user", "content": MESSAGES[0]["content"]}, final[0],
                      {"role": "user", "content": "And in Rome?"}], "max_output_tokens": 4})
        self.assertEqual(status, 200, r)


class ToolsWithoutATemplateTest(unittest.TestCase):
    """stories260K has no chat template: tools are refused, a JSON schema still constrains."""

    @classmethod
    def setUpClass(cls):
        cls.server = Server("--parallel", "1")

    @classmethod
    def tearDownClass(cls):
        cls.server.stop()

    def test_completions_take_a_response_format_too(self):
        # ember's extension: the legacy endpoint's continuation is constrained the same way.
        fmt = {"type": "json_schema", "json_schema": {"name": "person", "schema": PERSON}}
        status, r, _ = self.server.post_json("/v1/completions", {
            "prompt": "A person:", "response_format": fmt, "seed": 4, "max_tokens": 300})
        self.assertEqual(status, 200, r)
        self.assertEqual(r["choices"][0]["finish_reason"], "stop", r)
        validate(json.loads(r["choices"][0]["text"]), PERSON)

    def test_tools_need_a_template(self):
        status, r, _ = self.server.post_json(CHAT, {"messages": MESSAGES, "tools": [WEATHER]})
        self.assertEqual(status, 400, r)
        self.assertEqual(r["error"]["param"], "tools")
        self.assertIn("--chat-template-file", r["error"]["message"])

    def test_json_schema_without_a_template(self):
        fmt = {"type": "json_schema", "json_schema": {"name": "person", "schema": PERSON}}
        for seed in (1, 2, 3):
            status, r, _ = self.server.post_json(CHAT, {
                "messages": MESSAGES, "response_format": fmt, "seed": seed, "max_tokens": 300})
            self.assertEqual(status, 200, r)
            self.assertEqual(r["choices"][0]["finish_reason"], "stop", r)
            validate(json.loads(r["choices"][0]["message"]["content"]), PERSON)


if __name__ == "__main__":
    unittest.main()
