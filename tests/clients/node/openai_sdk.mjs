// The official `openai` npm client against a running ember: the calls an application makes,
// with the shapes and errors the client itself checks.
//   node openai_sdk.mjs BASE_URL MODEL CHECK
// Exits 0 when CHECK passed; otherwise prints why and exits 1 (tests/clients/test_clients.py).
import assert from 'node:assert/strict';
import OpenAI from 'openai';
import { runCheck } from './run_check.mjs';

const [baseURL, model, check] = process.argv.slice(2);
const client = new OpenAI({ baseURL, apiKey: 'unused', maxRetries: 0, timeout: 60_000 });
const messages = [{ role: 'user', content: 'Once upon a time' }];
const WEATHER = {
  type: 'function',
  function: {
    name: 'get_weather', description: 'The weather now',
    parameters: { type: 'object', properties: { city: { type: 'string', maxLength: 12 } }, required: ['city'] },
  },
};
const PERSON = {
  type: 'object', additionalProperties: false, required: ['name', 'age', 'pet'],
  properties: {
    name: { type: 'string', maxLength: 10 }, age: { type: 'integer', minimum: 0, maximum: 120 },
    pet: { enum: ['cat', 'dog'] },
  },
};

const checks = {
  async models() {
    const ids = [];
    for await (const m of client.models.list()) ids.push(m.id);
    assert.deepEqual(ids, [model]);
  },

  async chat() {
    const r = await client.chat.completions.create({
      model, messages, max_tokens: 12, temperature: 0,
    });
    assert.equal(r.object, 'chat.completion');
    assert.match(r.id, /^chatcmpl-/);
    assert.equal(r.model, model);
    assert.equal(r.choices.length, 1);
    const [c] = r.choices;
    assert.equal(c.index, 0);
    assert.equal(c.message.role, 'assistant');
    assert.equal(typeof c.message.content, 'string');
    assert.ok(c.message.content.length > 0, 'some text');
    assert.ok(['stop', 'length'].includes(c.finish_reason), c.finish_reason);
    assert.ok(r.usage.prompt_tokens > 0);
    assert.ok(r.usage.completion_tokens > 0 && r.usage.completion_tokens <= 12);
    assert.equal(r.usage.total_tokens, r.usage.prompt_tokens + r.usage.completion_tokens);
    assert.ok(r.system_fingerprint, 'system_fingerprint');
  },

  // A streamed answer, put together from its deltas, is the answer the same greedy request
  // gets whole; the last chunk carries the usage when asked for.
  async chat_stream() {
    const whole = await client.chat.completions.create({
      model, messages, max_tokens: 16, temperature: 0,
    });
    const stream = await client.chat.completions.create({
      model, messages, max_tokens: 16, temperature: 0, stream: true,
      stream_options: { include_usage: true },
    });
    let text = '', finish = null, usage = null, chunks = 0;
    for await (const chunk of stream) {
      chunks++;
      assert.equal(chunk.object, 'chat.completion.chunk');
      if (chunk.usage) usage = chunk.usage;
      for (const c of chunk.choices) {
        text += c.delta.content ?? '';
        if (c.finish_reason) finish = c.finish_reason;
      }
    }
    assert.ok(chunks > 2, `${chunks} chunks`);
    assert.equal(text, whole.choices[0].message.content);
    assert.equal(finish, whole.choices[0].finish_reason);
    // cached_tokens may differ: the second request can reuse the first one's prompt cells.
    assert.equal(usage.prompt_tokens, whole.usage.prompt_tokens);
    assert.equal(usage.completion_tokens, whole.usage.completion_tokens);
  },

  // The helper that accumulates a streamed answer (stream.finalChatCompletion()).
  async chat_stream_helper() {
    const runner = client.chat.completions.stream({
      model, messages, max_tokens: 8, temperature: 0, stream_options: { include_usage: true },
    });
    const done = await runner.finalChatCompletion();
    assert.ok(done.choices[0].message.content.length > 0);
    assert.equal(done.usage.completion_tokens, 8);
  },

  // logprobs: one entry per generated token with its alternatives, in the client's types.
  async chat_logprobs() {
    const r = await client.chat.completions.create({
      model, messages, max_tokens: 8, temperature: 0, logprobs: true, top_logprobs: 3,
    });
    const { content } = r.choices[0].logprobs;
    assert.equal(r.choices[0].finish_reason, 'length');
    assert.equal(content.length, 8);
    assert.equal(content.map((t) => t.token).join(''), r.choices[0].message.content);
    for (const t of content) {
      assert.ok(t.logprob <= 0);
      assert.equal(t.top_logprobs.length, 3);
      assert.equal(t.top_logprobs[0].token, t.token, 'greedy picks the most likely token');
      assert.deepEqual(t.bytes, [...Buffer.from(t.token, 'utf8')]);
    }
  },

  // Tools: a required call, parsed by the client into tool_calls, arguments valid JSON.
  async tools_required() {
    const r = await client.chat.completions.create({
      model, messages: [{ role: 'user', content: 'Weather in Paris?' }], max_tokens: 300,
      tools: [WEATHER], tool_choice: 'required', parallel_tool_calls: false, seed: 1,
    });
    const [c] = r.choices;
    assert.equal(c.finish_reason, 'tool_calls');
    assert.equal(c.message.tool_calls.length, 1);
    const call = c.message.tool_calls[0];
    assert.equal(call.type, 'function');
    assert.equal(call.function.name, 'get_weather');
    assert.equal(typeof JSON.parse(call.function.arguments).city, 'string');
  },

  // Streamed tool calls put together by the client's own stream helper.
  async tools_stream() {
    const runner = client.chat.completions.stream({
      model, messages: [{ role: 'user', content: 'Weather in Paris?' }], max_tokens: 300,
      tools: [WEATHER], tool_choice: { type: 'function', function: { name: 'get_weather' } },
      parallel_tool_calls: false, seed: 2,
    });
    const done = await runner.finalChatCompletion();
    const call = done.choices[0].message.tool_calls[0];
    assert.equal(call.function.name, 'get_weather');
    assert.equal(typeof JSON.parse(call.function.arguments).city, 'string');
    assert.equal(done.choices[0].finish_reason, 'tool_calls');
  },

  async response_format() {
    const r = await client.chat.completions.create({
      model, messages, max_tokens: 300, seed: 3,
      response_format: { type: 'json_schema', json_schema: { name: 'person', strict: true, schema: PERSON } },
    });
    const person = JSON.parse(r.choices[0].message.content);
    assert.equal(typeof person.name, 'string');
    assert.ok(Number.isInteger(person.age));
    assert.ok(['cat', 'dog'].includes(person.pet));
  },

  async responses() {
    const r = await client.responses.create({
      model, input: 'Once upon a time', instructions: 'Be brief.', max_output_tokens: 10,
    });
    assert.equal(r.object, 'response');
    assert.ok(r.output_text.length > 0, 'the SDK reads output_text');
    assert.equal(r.usage.output_tokens, 10);
    const stream = await client.responses.create({
      model, input: 'Once upon a time', max_output_tokens: 10, stream: true,
    });
    let text = '', completed = null;
    for await (const event of stream) {
      if (event.type === 'response.output_text.delta') text += event.delta;
      if (event.type === 'response.completed' || event.type === 'response.incomplete') {
        completed = event.response;
      }
    }
    assert.ok(completed, 'the stream ends with the Response');
    assert.equal(text, completed.output[0].content[0].text);
  },

  async responses_tools() {
    const r = await client.responses.create({
      model, input: 'Weather in Paris?', max_output_tokens: 300, tool_choice: 'required',
      parallel_tool_calls: false,
      tools: [{ type: 'function', name: 'get_weather', parameters: WEATHER.function.parameters, strict: false }],
    });
    const call = r.output.find((o) => o.type === 'function_call');
    assert.ok(call, JSON.stringify(r.output));
    assert.equal(call.name, 'get_weather');
    assert.equal(typeof JSON.parse(call.arguments).city, 'string');
  },

  // A streamed call put together by the client's own Responses stream helper, which files
  // every event under its output_index (and throws on an index it has not seen added).
  async responses_tools_stream() {
    const stream = client.responses.stream({
      model, input: 'Weather in Paris?', max_output_tokens: 300, tool_choice: 'required',
      parallel_tool_calls: false, seed: 4,
      tools: [{ type: 'function', name: 'get_weather', parameters: WEATHER.function.parameters, strict: false }],
    });
    const deltas = [];
    stream.on('response.function_call_arguments.delta', (e) => deltas.push(e.delta));
    const done = await stream.finalResponse();
    const call = done.output.find((o) => o.type === 'function_call');
    assert.ok(call, JSON.stringify(done.output));
    assert.equal(call.name, 'get_weather');
    assert.equal(call.status, 'completed');
    assert.ok(deltas.length > 1, `the arguments arrive in pieces: ${JSON.stringify(deltas)}`);
    assert.equal(deltas.join(''), call.arguments);
    assert.equal(typeof JSON.parse(call.arguments).city, 'string');
  },

  async completions() {
    const r = await client.completions.create({
      model, prompt: 'Once upon a time', max_tokens: 10, temperature: 0,
    });
    assert.equal(r.object, 'text_completion');
    assert.equal(r.choices.length, 1);
    assert.equal(typeof r.choices[0].text, 'string');
    assert.equal(r.usage.completion_tokens, 10);
  },

  async completions_stream() {
    const whole = await client.completions.create({
      model, prompt: 'Once upon a time', max_tokens: 10, temperature: 0,
    });
    const stream = await client.completions.create({
      model, prompt: 'Once upon a time', max_tokens: 10, temperature: 0, stream: true,
    });
    let text = '';
    for await (const chunk of stream) text += chunk.choices[0]?.text ?? '';
    assert.equal(text, whole.choices[0].text);
  },

  // embeddings.create asks for base64 when not told otherwise and decodes it itself: the
  // vectors it hands back have the size /v1/models reports and unit norm, and equal the ones
  // asked for as floats.
  async embeddings() {
    let size = 0;
    for await (const m of client.models.list()) if (m.id === model) size = m.embedding_dimensions;
    assert.ok(size > 0, `embedding_dimensions ${size}`);
    const input = ['Once upon a time', 'The end'];
    const r = await client.embeddings.create({ model, input });
    assert.equal(r.object, 'list');
    assert.equal(r.model, model);
    assert.equal(r.data.length, 2);
    const floats = await client.embeddings.create({ model, input, encoding_format: 'float' });
    for (const [i, d] of r.data.entries()) {
      assert.equal(d.object, 'embedding');
      assert.equal(d.index, i);
      assert.equal(d.embedding.length, size);
      const norm = Math.sqrt(d.embedding.reduce((a, x) => a + x * x, 0));
      assert.ok(Math.abs(norm - 1) < 1e-5, `norm ${norm}`);
      // Not bit-for-bit: the second request reuses the first one's cells (prompt cache).
      const other = floats.data[i].embedding;
      assert.ok(d.embedding.every((x, j) => Math.abs(x - other[j]) < 1e-4), 'float == base64');
    }
    assert.notDeepEqual(r.data[0].embedding, r.data[1].embedding);
    assert.ok(r.usage.prompt_tokens > 0);
    assert.equal(r.usage.total_tokens, r.usage.prompt_tokens);
  },

  // n = 2: the client parses both choices, whole and streamed (chunks of the two choices
  // interleave, each naming its index), and usage sums them.
  async choices() {
    const r = await client.chat.completions.create({
      model, messages, max_tokens: 8, n: 2, temperature: 1, seed: 7,
    });
    assert.equal(r.choices.length, 2);
    assert.deepEqual(r.choices.map((c) => c.index), [0, 1]);
    for (const c of r.choices) {
      assert.equal(c.message.role, 'assistant');
      assert.equal(typeof c.message.content, 'string');
      assert.ok(['stop', 'length'].includes(c.finish_reason), c.finish_reason);
    }
    assert.ok(r.usage.completion_tokens <= 16);
    const stream = await client.chat.completions.create({
      model, messages, max_tokens: 8, n: 2, temperature: 1, seed: 7, stream: true,
    });
    const texts = ['', ''];
    const finishes = [null, null];
    for await (const chunk of stream) {
      for (const c of chunk.choices) {
        texts[c.index] += c.delta.content ?? '';
        if (c.finish_reason) finishes[c.index] = c.finish_reason;
      }
    }
    assert.deepEqual(texts, r.choices.map((c) => c.message.content));
    assert.deepEqual(finishes, r.choices.map((c) => c.finish_reason));
  },

  // A client's mistake is the client's typed error with the server's message, not a 500.
  async errors() {
    await assert.rejects(
      client.chat.completions.create({ model, messages, max_tokens: 4, temperature: 7 }),
      (e) => e instanceof OpenAI.BadRequestError && e.status === 400 && e.param === 'temperature' &&
        /temperature/.test(e.message));
    await assert.rejects(
      client.chat.completions.create({ model: 'no-such-model', messages, max_tokens: 4 }),
      (e) => e instanceof OpenAI.NotFoundError && e.code === 'model_not_found');
  },
};

await runCheck(checks, check);
