// The Vercel AI SDK's OpenAI provider against a running ember, the way an application using it
// calls a self-hosted OpenAI-compatible server.
//   node ai_sdk.mjs BASE_URL MODEL CHECK
// Exits 0 when CHECK passed; otherwise prints why and exits 1 (tests/clients/test_clients.py).
import assert from 'node:assert/strict';
import { createOpenAI } from '@ai-sdk/openai';
import { generateObject, generateText, streamText, tool } from 'ai';
import { z } from 'zod';
import { runCheck } from './run_check.mjs';

const [baseURL, model, check] = process.argv.slice(2);
const provider = createOpenAI({ baseURL, apiKey: 'unused' });
const prompt = 'Once upon a time';
// One tool the model must call, once; its input is checked against the zod schema by the SDK.
const requiredWeatherCall = {
  toolChoice: 'required', seed: 1,
  providerOptions: { openai: { parallelToolCalls: false } },
  tools: {
    get_weather: tool({
      description: 'The weather now',
      inputSchema: z.object({ city: z.string().max(12) }),
    }),
  },
};

const checks = {
  // provider.chat(): the Chat Completions API.
  async generate_text() {
    const r = await generateText({
      model: provider.chat(model), prompt, maxOutputTokens: 12, temperature: 0, maxRetries: 0,
    });
    assert.ok(r.text.length > 0, 'some text');
    assert.ok(['stop', 'length'].includes(r.finishReason), r.finishReason);
    assert.ok(r.usage.inputTokens > 0);
    assert.ok(r.usage.outputTokens > 0 && r.usage.outputTokens <= 12);
  },

  async stream_text() {
    const whole = await generateText({
      model: provider.chat(model), prompt, maxOutputTokens: 12, temperature: 0, maxRetries: 0,
    });
    const r = streamText({
      model: provider.chat(model), prompt, maxOutputTokens: 12, temperature: 0, maxRetries: 0,
    });
    let text = '';
    for await (const part of r.textStream) text += part;
    assert.equal(text, whole.text);
    const usage = await r.usage;
    assert.equal(usage.outputTokens, whole.usage.outputTokens);
  },

  // provider(model): the Responses API, the provider's default.
  async responses_text() {
    const r = await generateText({ model: provider(model), prompt, maxOutputTokens: 12, maxRetries: 0 });
    assert.ok(r.text.length > 0, 'some text');
    assert.equal(r.usage.outputTokens, 12);
    const s = streamText({ model: provider(model), prompt, maxOutputTokens: 12, temperature: 0, maxRetries: 0 });
    let text = '';
    for await (const part of s.textStream) text += part;
    assert.ok(text.length > 0);
  },

  // A tool the model must call, with its input checked against the zod schema by the SDK.
  async tool_call() {
    const r = await generateText({
      model: provider.chat(model), prompt: 'Weather in Paris?', maxOutputTokens: 300, maxRetries: 0,
      ...requiredWeatherCall,
    });
    assert.equal(r.toolCalls.length, 1, JSON.stringify(r.response?.body ?? r));
    assert.equal(r.toolCalls[0].toolName, 'get_weather');
    assert.equal(typeof r.toolCalls[0].input.city, 'string');
    assert.equal(r.finishReason, 'tool-calls');
  },

  // The same through the Responses API, streamed: the SDK turns the function_call item's
  // argument deltas into tool-input deltas and the finished item into the call.
  async responses_tool_stream() {
    const s = streamText({
      model: provider(model), prompt: 'Weather in Paris?', maxOutputTokens: 300, maxRetries: 0,
      ...requiredWeatherCall,
    });
    let deltas = 0;
    for await (const part of s.fullStream) {
      if (part.type === 'tool-input-delta') deltas += 1;
      if (part.type === 'error') throw part.error;
    }
    const calls = await s.toolCalls;
    assert.equal(calls.length, 1);
    assert.equal(calls[0].toolName, 'get_weather');
    assert.equal(typeof calls[0].input.city, 'string');
    assert.ok(deltas > 1, `${deltas} tool-input deltas`);
    assert.equal(await s.finishReason, 'tool-calls');
  },

  // generateObject: the SDK sends a JSON schema and validates what comes back with zod.
  async generate_object() {
    const r = await generateObject({
      model: provider.chat(model), prompt: 'A person', maxOutputTokens: 300, maxRetries: 0, seed: 2,
      schema: z.object({ name: z.string().max(10), age: z.number().int().min(0).max(120),
                         pet: z.enum(['cat', 'dog']) }),
    });
    assert.equal(typeof r.object.name, 'string');
    assert.ok(Number.isInteger(r.object.age));
  },

  // provider.completion(): the legacy Completions API.
  async completion() {
    const r = await generateText({
      model: provider.completion(model), prompt, maxOutputTokens: 8, temperature: 0,
      maxRetries: 0,
    });
    assert.ok(r.text.length > 0);
    assert.equal(r.usage.outputTokens, 8);
  },
};

await runCheck(checks, check);
