import type { ExecutionContext } from 'ava';
import { startMockUpstream, type MockUpstream, type StartOptions } from '../../mock-upstream/index';

/** Starts a mock on an ephemeral loopback port and closes it when the test ends. */
export async function startMock(
  t: ExecutionContext,
  opts: StartOptions = {},
): Promise<MockUpstream> {
  const mock = await startMockUpstream({ host: '127.0.0.1', port: 0, ...opts });
  t.teardown(() => mock.close());
  return mock;
}

export interface JsonReply {
  status: number;
  headers: Headers;
  body: unknown;
}

export async function postJson(
  url: string,
  body: unknown,
  signal?: AbortSignal,
): Promise<JsonReply> {
  const res = await fetch(url, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: typeof body === 'string' ? body : JSON.stringify(body),
    signal,
  });
  return { status: res.status, headers: res.headers, body: await res.json() };
}

export async function getJson(url: string): Promise<JsonReply> {
  const res = await fetch(url);
  return { status: res.status, headers: res.headers, body: await res.json() };
}

/** Polls until `ready()` holds; the tests use it to order events, never to measure time. */
export async function until(ready: () => boolean, what: string): Promise<void> {
  for (let i = 0; i < 2000; i++) {
    if (ready()) return;
    await new Promise((r) => setTimeout(r, 5));
  }
  throw new Error(`timed out waiting for ${what}`);
}

// Minimal shapes of OpenAI answers, for reading test results without `any`.
export interface ChatCompletion {
  id: string;
  object: string;
  model: string;
  choices: Array<{
    index: number;
    message: { role: string; content: string };
    finish_reason: string;
  }>;
  usage: { prompt_tokens: number; completion_tokens: number; total_tokens: number };
}

export interface ChatChunk {
  object: string;
  model: string;
  choices: Array<{
    index: number;
    delta: { role?: string; content?: string };
    finish_reason: string | null;
  }>;
  usage?: ChatCompletion['usage'] | null;
}

export interface OpenAIError {
  error: { message: string; type: string; param: string | null; code: string | null };
}

export interface EmbeddingList {
  object: string;
  model: string;
  data: Array<{ object: string; index: number; embedding: number[] | string }>;
  usage: { prompt_tokens: number; total_tokens: number };
}
