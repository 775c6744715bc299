"""The official `openai` Python client against a running ember.

    venv/bin/python openai_py.py BASE_URL MODEL CHECK

Run with the venv scripts/clients.sh installs (not the test runner's interpreter). Exits 0 when
CHECK passed; otherwise prints why and exits 1 (tests/clients/test_clients.py)."""
import math
import json
import sys

import openai
import pydantic

base_url, model, check = sys.argv[1:4]
client = openai.OpenAI(base_url=base_url, api_key="unused", max_retries=0, timeout=60)
messages = [{"role": "user", "content": "Once upon a time"}]


def chat():
    r = client.chat.completions.create(model=model, messages=messages, max_tokens=12,
                                       temperature=0)
    assert r.object == "chat.completion", r.object
    assert r.model == model
    c = r.choices[0]
    assert c.message.role == "assistant"
    assert c.message.content, "some text"
    assert c.finish_reason in ("stop", "length"), c.finish_reason
    assert 0 < r.usage.completion_tokens <= 12
    assert r.usage.total_tokens == r.usage.prompt_tokens + r.usage.completion_tokens


def chat_stream():
    whole = client.chat.completions.create(model=model, messages=messages, max_tokens=16,
                                           temperature=0)
    text, usage = "", None
    with client.chat.completions.create(model=model, messages=messages, max_tokens=16,
                                        temperature=0, stream=True,
                                        stream_options={"include_usage": True}) as stream:
        for chunk in stream:
            if chunk.usage:
                usage = chunk.usage
            for c in chunk.choices:
                text += c.delta.content or ""
    assert text == whole.choices[0].message.content, (text, whole.choices[0].message.content)
    # cached_tokens may differ: the second request can reuse the first one's prompt cells.
    assert (usage.prompt_tokens, usage.completion_tokens) == (
        whole.usage.prompt_tokens, whole.usage.completion_tokens), (usage, whole.usage)


def chat_logprobs():
    r = client.chat.completions.create(model=model, messages=messages, max_tokens=8,
                                       temperature=0, logprobs=True, top_logprobs=3)
    content = r.choices[0].logprobs.content
    assert len(content) == 8, len(content)
    assert "".join(t.token for t in content) == r.choices[0].message.content
    for t in content:
        assert t.logprob <= 0
        assert [a.token for a in t.top_logprobs][0] == t.token


WEATHER = {"type": "function", "function": {
    "name": "get_weather", "description": "The weather now",
    "parameters": {"type": "object", "properties": {"city": {"type": "string", "maxLength": 12}},
                   "required": ["city"]}}}


def tools_required():
    r = client.chat.completions.create(
        model=model, messages=[{"role": "user", "content": "Weather in Paris?"}], max_tokens=300,
        tools=[WEATHER], tool_choice="required", parallel_tool_calls=False, seed=1)
    c = r.choices[0]
    assert c.finish_reason == "tool_calls", c
    call = c.message.tool_calls[0]
    assert call.function.name == "get_weather"
    assert isinstance(json.loads(call.function.arguments)["city"], str)


def structured_parse():
    # The client's own parse(): a pydantic model as a strict json_schema, read back into it.
    class Person(pydantic.BaseModel):
        name: pydantic.constr(max_length=10)
        age: pydantic.conint(ge=0, le=120)

    r = client.chat.completions.parse(model=model, messages=messages, max_tokens=300, seed=2,
                                      response_format=Person)
    person = r.choices[0].message.parsed
    assert isinstance(person, Person), r.choices[0].message
    assert 0 <= person.age <= 120


def responses():
    r = client.responses.create(model=model, input="Once upon a time", max_output_tokens=10)
    assert r.output_text, r
    assert r.usage.output_tokens == 10


def responses_tools_stream():
    # The client's Responses stream helper files every event under its output_index.
    tools = [{"type": "function", "name": "get_weather", "strict": False,
              "parameters": {"type": "object", "required": ["city"],
                             "properties": {"city": {"type": "string", "maxLength": 12}}}}]
    deltas = []
    with client.responses.stream(model=model, input="Weather in Paris?", tools=tools,
                                 tool_choice="required", parallel_tool_calls=False,
                                 max_output_tokens=300) as stream:
        for event in stream:
            if event.type == "response.function_call_arguments.delta":
                deltas.append(event.delta)
        final = stream.get_final_response()
    calls = [o for o in final.output if o.type == "function_call"]
    assert len(calls) == 1, final.output
    assert calls[0].name == "get_weather" and calls[0].status == "completed", calls[0]
    assert len(deltas) > 1, deltas
    assert "".join(deltas) == calls[0].arguments, (deltas, calls[0].arguments)
    assert isinstance(json.loads(calls[0].arguments)["city"], str)


def completions():
    r = client.completions.create(model=model, prompt="Once upon a time", max_tokens=10,
                                  temperature=0)
    assert r.object == "text_completion"
    assert r.usage.completion_tokens == 10


def errors():
    try:
        client.chat.completions.create(model=model, messages=messages, max_tokens=4,
                                       temperature=7)
        raise AssertionError("temperature 7 was accepted")
    except openai.BadRequestError as e:
        assert e.status_code == 400
        assert e.param == "temperature", e.param
    try:
        client.chat.completions.create(model="no-such-model", messages=messages, max_tokens=4)
        raise AssertionError("an unknown model was accepted")
    except openai.NotFoundError as e:
        assert e.code == "model_not_found", e.code


def embeddings():
    # Without encoding_format the client asks for base64 and decodes it into floats itself.
    size = next(m for m in client.models.list().data if m.id == model).model_extra[
        "embedding_dimensions"]
    inputs = ["Once upon a time", "The end"]
    r = client.embeddings.create(model=model, input=inputs)
    plain = client.embeddings.create(model=model, input=inputs, encoding_format="float")
    assert r.object == "list" and r.model == model, r
    assert [d.index for d in r.data] == [0, 1]
    for d, p in zip(r.data, plain.data):
        assert len(d.embedding) == size, (len(d.embedding), size)
        norm = math.sqrt(sum(x * x for x in d.embedding))
        assert abs(norm - 1) < 1e-5, norm
        # Not bit-for-bit: the second request reuses the first one's cells (prompt cache).
        assert all(abs(x - y) < 1e-4 for x, y in zip(d.embedding, p.embedding))
    assert r.data[0].embedding != r.data[1].embedding
    assert r.usage.prompt_tokens > 0 and r.usage.total_tokens == r.usage.prompt_tokens


def models():
    assert [m.id for m in client.models.list()] == [model]


CHECKS = {f.__name__: f for f in (chat, chat_stream, chat_logprobs, completions, embeddings,
                                   errors, models, tools_required, structured_parse, responses,
                                   responses_tools_stream)}

if __name__ == "__main__":
    if check not in CHECKS:
        print(f"unknown check {check}; known: {', '.join(CHECKS)}", file=sys.stderr)
        sys.exit(2)
    CHECKS[check]()
