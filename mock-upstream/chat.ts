/**
 * `POST /v1/chat/completions`: a deterministic answer that depends on the input (so cache tests
 * can tell answers apart), OpenAI's response and SSE stream shapes, usage from a real tokenizer.
 */
import { parseChatRequest, type ChatRequest } from './chat-request';
import type { Endpoint, EndpointContext } from './endpoint';
import { requireJsonObject } from './request-body';
import { sendJsonAnswer } from './json-answer';
import { countChatPromptTokens, decodeTokens, encodeText } from '../lib/tokens/tokenize';

const ANSWER_PREFIX = 'mock answer to: ';
const QUOTED_CHARS = 200;
const SYSTEM_FINGERPRINT = 'fp_mock';
/** A `cut` failure: how long what was written has to leave before the reset. */
const CUT_FLUSH_MS = 50;

export interface ChatUsage {
  prompt_tokens: number;
  completion_tokens: number;
  total_tokens: number;
  prompt_tokens_details: { cached_tokens: number };
  completion_tokens_details: { reasoning_tokens: number };
}

/** The full answer the mock gives to a request, before any max_tokens truncation. */
export function mockAnswerText(lastUserText: string): string {
  // Cut by code points, not UTF-16 units, so an emoji is never split in half.
  return ANSWER_PREFIX + Array.from(lastUserText).slice(0, QUOTED_CHARS).join('');
}

interface Completion {
  /** The completion's tokens, one entry per generated token. */
  tokens: number[];
  content: string;
  finishReason: 'stop' | 'length';
  usage: ChatUsage;
}

function complete(request: ChatRequest): Completion {
  const full = encodeText(mockAnswerText(request.lastUserText), request.model);
  const truncated = request.maxTokens !== undefined && full.length > request.maxTokens;
  const tokens = truncated ? full.slice(0, request.maxTokens) : full;
  const promptTokens = countChatPromptTokens(request.messages, request.model);
  return {
    tokens,
    content: decodeTokens(tokens, request.model).text,
    finishReason: truncated ? 'length' : 'stop',
    usage: {
      prompt_tokens: promptTokens,
      completion_tokens: tokens.length,
      total_tokens: promptTokens + tokens.length,
      prompt_tokens_details: { cached_tokens: 0 },
      completion_tokens_details: { reasoning_tokens: 0 },
    },
  };
}

/**
 * The content split into deltas of one token each, except where a token ends inside a
 * multi-byte character: those are held back until the character is whole, as OpenAI does.
 */
export function contentDeltas(tokens: readonly number[], model: string): string[] {
  const deltas: string[] = [];
  let emitted = '';
  for (let i = 1; i <= tokens.length; i++) {
    const prefix = decodeTokens(tokens.slice(0, i), model);
    if (prefix.endsMidCharacter && i < tokens.length) continue;
    deltas.push(prefix.text.slice(emitted.length));
    emitted = prefix.text;
  }
  return deltas;
}

/**
 * One request of a batch (`/v1/chat/completions` in a batch input line): the answer the chat
 * endpoint would give, for the batch's output file, and its usage. Throws on a body the chat
 * endpoint refuses.
 */
export function batchChatAnswer(
  body: Record<string, unknown>,
  id: string,
): { body: Record<string, unknown>; usage: ChatUsage } {
  const request = parseChatRequest(body);
  const c = complete(request);
  return { body: completionBody(id, request, c), usage: c.usage };
}

/** OpenAI's `chat.completion` object of an answer (`id` after `chatcmpl-`). */
function completionBody(id: string, request: ChatRequest, c: Completion): Record<string, unknown> {
  return {
    id: `chatcmpl-${id}`,
    object: 'chat.completion',
    created: Math.floor(Date.now() / 1000),
    model: request.model,
    choices: [
      {
        index: 0,
        message: { role: 'assistant', content: c.content, refusal: null },
        logprobs: null,
        finish_reason: c.finishReason,
      },
    ],
    usage: c.usage,
    system_fingerprint: SYSTEM_FINGERPRINT,
  };
}

function sendCompletion(ctx: EndpointContext, request: ChatRequest, c: Completion): void {
  const body = completionBody(ctx.requestId, request, c);
  if (ctx.cutAfterEvents !== undefined) {
    // The whole length announced, half the bytes sent, then a reset: a body cut short.
    const bytes = Buffer.from(JSON.stringify(body));
    ctx.res.writeHead(200, {
      'content-type': 'application/json',
      'content-length': String(bytes.length),
      'x-request-id': ctx.requestId,
    });
    // A reset discards what the kernel has not sent yet: let the half go out first.
    ctx.res.write(bytes.subarray(0, Math.floor(bytes.length / 2)), () => {
      setTimeout(() => ctx.req.socket.resetAndDestroy(), CUT_FLUSH_MS);
    });
    return;
  }
  sendJsonAnswer(ctx, body, { 'x-request-id': ctx.requestId });
  ctx.onUsage?.(c.usage);
}

async function streamCompletion(
  ctx: EndpointContext,
  request: ChatRequest,
  c: Completion,
): Promise<void> {
  const { res } = ctx;
  res.writeHead(200, {
    'content-type': 'text/event-stream; charset=utf-8',
    'cache-control': 'no-cache',
    connection: 'keep-alive',
    'x-request-id': ctx.requestId,
  });
  const base = {
    id: `chatcmpl-${ctx.requestId}`,
    object: 'chat.completion.chunk',
    created: Math.floor(Date.now() / 1000),
    model: request.model,
    system_fingerprint: SYSTEM_FINGERPRINT,
  };
  // With include_usage, OpenAI puts `"usage": null` on every chunk but the last.
  const usageField = request.includeUsage ? { usage: null } : {};
  const choiceChunk = (delta: object, finishReason: string | null): string =>
    JSON.stringify({
      ...base,
      choices: [{ index: 0, delta, logprobs: null, finish_reason: finishReason }],
      ...usageField,
    });

  const events: string[] = [choiceChunk({ role: 'assistant', content: '', refusal: null }, null)];
  for (const delta of contentDeltas(c.tokens, request.model)) {
    events.push(choiceChunk({ content: delta }, null));
  }
  events.push(choiceChunk({}, c.finishReason));
  if (request.includeUsage) events.push(JSON.stringify({ ...base, choices: [], usage: c.usage }));
  events.push('[DONE]');

  for (const [i, event] of events.entries()) {
    if (i > 0 && ctx.knobs.streamChunkDelayMs > 0) {
      if (!(await ctx.pause(ctx.knobs.streamChunkDelayMs))) return;
    }
    if (i === ctx.cutAfterEvents) {
      // An upstream dying mid-stream: a reset, no final event, no [DONE]. A reset discards
      // what the kernel has not sent yet: the events before it go out first.
      await ctx.pause(CUT_FLUSH_MS);
      ctx.req.socket.resetAndDestroy();
      return;
    }
    res.write(`data: ${event}\n\n`);
  }
  res.end();
  if (request.includeUsage) ctx.onUsage?.(c.usage);
}

export const chatCompletions: Endpoint = async (ctx) => {
  const request = parseChatRequest(requireJsonObject(ctx.rawBody));
  const completion = complete(request);
  if (request.stream) await streamCompletion(ctx, request, completion);
  else sendCompletion(ctx, request, completion);
};
