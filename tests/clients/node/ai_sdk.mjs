// The Vercel AI SDK's OpenAI provider against a running ember, the way an application using it
// calls a self-hosted OpenAI-compatible server.
//   node ai_sdk.mjs BASE_URL MODEL CHECK
// Exits 0 when CHECK passed; otherwise prints why and exits 1 (tests/clients/test_clients.py).
import assert from 'node:assert/strict';
import { createOpenAI } from '@ai-sdk/openai';
import { generateText, streamText } from 'ai';
import { runCheck } from './run_check.mjs';

const [baseURL, model, check] = process.argv.slice(2);
const provider = createOpenAI({ baseURL, apiKey: 'unused' });
const prompt = 'Once upon a time';

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
