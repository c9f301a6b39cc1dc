/**
 * `POST /model/{modelId}/converse` and `/converse-stream`: Bedrock's Converse API, for Kong's
 * `ai-proxy` with provider `bedrock` (its `model.options.upstream_url` pointed here). It
 * validates the request as Bedrock does — a SigV4 `Authorization` and `X-Amz-Date`, `messages`
 * of roles `user` and `assistant` only whose content is a list of `{text}` blocks, the system
 * prompt apart in `system` — and answers in Bedrock's shapes: a JSON object with `usage`
 * (`inputTokens`, `outputTokens`, `totalTokens`), or ConverseStream's binary event stream
 * (messageStart, contentBlockDelta…, contentBlockStop, messageStop, metadata with the usage).
 * With `upstream_url` set, Kong 3.9.3 sends a streamed request to the same URL as a plain one,
 * so besides the `-stream` path a request marked `x-mock-bedrock-stream: 1` is streamed.
 * The answer and its count are the chat endpoint's (mockAnswerText, one tokenizer), so a test
 * can compare the gateway's ledger with what this "provider" billed (`onUsage`).
 */
import type { Endpoint, EndpointContext } from './endpoint';
import { providerJsonObject } from './request-body';
import { eventStreamMessage } from './aws-eventstream';
import { contentDeltas, mockAnswerText } from './chat';
import { decodeTokens, encodeText } from '../lib/tokens/tokenize';

const BILLING_MODEL = 'gpt-4o-mini';

class BedrockError extends Error {
  constructor(
    readonly status: number,
    readonly type: string,
    message: string,
  ) {
    super(message);
  }
}

const invalid = (message: string): BedrockError =>
  new BedrockError(400, 'ValidationException', message);

interface Turn {
  role: 'user' | 'assistant';
  text: string;
}

export interface BedrockRequest {
  system: string;
  messages: Turn[];
  maxTokens: number | null;
}

function blocksText(content: unknown, where: string): string {
  if (!Array.isArray(content)) throw invalid(`${where}: content must be a list of blocks`);
  return content
    .map((b: unknown, i) => {
      const block = b as { text?: unknown } | null;
      if (!block || typeof block.text !== 'string')
        throw invalid(`${where}.${i}: only text blocks are accepted by this stub`);
      return block.text;
    })
    .join('');
}

export function parseBedrockRequest(
  headers: Record<string, string | string[] | undefined>,
  rawBody: Buffer,
): BedrockRequest {
  const auth = headers.authorization;
  if (typeof auth !== 'string' || !auth.startsWith('AWS4-HMAC-SHA256 Credential='))
    throw new BedrockError(403, 'UnrecognizedClientException', 'a SigV4 Authorization is required');
  if (!headers['x-amz-date'])
    throw new BedrockError(403, 'UnrecognizedClientException', 'X-Amz-Date is required');
  const body = providerJsonObject(rawBody, invalid);
  const { messages, system, inferenceConfig } = body;
  if (!Array.isArray(messages) || messages.length === 0)
    throw invalid('messages: at least one message is required');
  const turns = messages.map((m: unknown, i): Turn => {
    const msg = m as { role?: unknown; content?: unknown } | null;
    if (!msg || (msg.role !== 'user' && msg.role !== 'assistant'))
      throw invalid(`messages.${i}.role: must be user or assistant`);
    return { role: msg.role, text: blocksText(msg.content, `messages.${i}.content`) };
  });
  const maxTokens = (inferenceConfig as { maxTokens?: unknown } | undefined)?.maxTokens;
  if (maxTokens !== undefined && (typeof maxTokens !== 'number' || maxTokens < 1))
    throw invalid('inferenceConfig.maxTokens: must be a positive integer');
  return {
    system: system === undefined ? '' : blocksText(system, 'system'),
    messages: turns,
    maxTokens: typeof maxTokens === 'number' ? maxTokens : null,
  };
}

function sendError(ctx: EndpointContext, e: BedrockError): void {
  ctx.res.writeHead(e.status, {
    'content-type': 'application/json',
    'x-amzn-errortype': e.type,
  });
  ctx.res.end(JSON.stringify({ message: e.message }));
}

export const bedrockConverse: Endpoint = async (ctx) => {
  let r: BedrockRequest;
  try {
    r = parseBedrockRequest(ctx.req.headers, ctx.rawBody);
  } catch (e) {
    if (e instanceof BedrockError) return sendError(ctx, e);
    throw e;
  }
  const lastUser = [...r.messages].reverse().find((m) => m.role === 'user')?.text ?? '';
  const full = encodeText(mockAnswerText(lastUser), BILLING_MODEL);
  const tokens =
    r.maxTokens !== null && full.length > r.maxTokens ? full.slice(0, r.maxTokens) : full;
  const stop = tokens.length < full.length ? 'max_tokens' : 'end_turn';
  let input = r.system ? encodeText(r.system, BILLING_MODEL).length : 0;
  for (const m of r.messages) input += encodeText(m.text, BILLING_MODEL).length;
  const usage = {
    inputTokens: input,
    outputTokens: tokens.length,
    totalTokens: input + tokens.length,
  };
  const billed = { prompt_tokens: usage.inputTokens, completion_tokens: usage.outputTokens };
  const stream =
    (ctx.req.url ?? '').split('?')[0]?.endsWith('/converse-stream') ||
    ctx.req.headers['x-mock-bedrock-stream'] === '1';
  if (!stream) {
    ctx.res.writeHead(200, { 'content-type': 'application/json' });
    ctx.res.end(
      JSON.stringify({
        output: {
          message: {
            role: 'assistant',
            content: [{ text: decodeTokens(tokens, BILLING_MODEL).text }],
          },
        },
        stopReason: stop,
        usage,
        metrics: { latencyMs: 12 },
      }),
    );
    ctx.onUsage?.(billed);
    return;
  }
  ctx.res.writeHead(200, { 'content-type': 'application/vnd.amazon.eventstream' });
  const events: Array<[string, object]> = [
    ['messageStart', { role: 'assistant' }],
    ...contentDeltas(tokens, BILLING_MODEL).map((text): [string, object] => [
      'contentBlockDelta',
      { contentBlockIndex: 0, delta: { text } },
    ]),
    ['contentBlockStop', { contentBlockIndex: 0 }],
    ['messageStop', { stopReason: stop }],
    ['metadata', { usage, metrics: { latencyMs: 12 } }],
  ];
  for (const [i, [type, payload]] of events.entries()) {
    if (
      i > 0 &&
      ctx.knobs.streamChunkDelayMs > 0 &&
      !(await ctx.pause(ctx.knobs.streamChunkDelayMs))
    )
      return;
    ctx.res.write(eventStreamMessage(type, payload));
  }
  ctx.res.end();
  ctx.onUsage?.(billed);
};
