/**
 * `POST /v1/messages`: Anthropic's Messages API, for Kong's `ai-proxy` with provider
 * `anthropic` (its `model.options.upstream_url` pointed here). It validates the request as
 * Anthropic does — the `x-api-key` and `anthropic-version` headers, `model`, a positive integer
 * `max_tokens`, `messages` of roles `user` and `assistant` only (a `system` role is refused:
 * Anthropic takes the system prompt as the top-level `system` field), starting with `user` —
 * and answers in Anthropic's shapes: a `message` object, or the SSE events `message_start`
 * (with `usage.input_tokens`), `content_block_*`, `message_delta` (with `usage.output_tokens`)
 * and `message_stop`. The answer is the chat endpoint's (mockAnswerText), and the usage is
 * counted by the same tokenizer, so a test can compare the gateway's ledger with what this
 * "provider" billed (`onUsage`). Errors use Anthropic's body: `{"type":"error","error":{…}}`.
 */
import type { Endpoint, EndpointContext } from './endpoint';
import { providerJsonObject } from './request-body';
import { mockAnswerText, contentDeltas } from './chat';
import { decodeTokens, encodeText } from '../lib/tokens/tokenize';

/** The tokenizer the mock bills Anthropic models with (any fixed one will do for a stub). */
const BILLING_MODEL = 'gpt-4o-mini';
/** Anthropic's overhead per message and for the reply, as the stub bills it. */
const TOKENS_PER_MESSAGE = 3;
const REPLY_PRIMING_TOKENS = 3;

class AnthropicError extends Error {
  constructor(
    readonly status: number,
    readonly type: string,
    message: string,
  ) {
    super(message);
  }
}

const invalid = (message: string): AnthropicError =>
  new AnthropicError(400, 'invalid_request_error', message);

export interface AnthropicRequest {
  model: string;
  maxTokens: number;
  system: string;
  messages: Array<{ role: 'user' | 'assistant'; text: string }>;
  stream: boolean;
}

/** A content field's text: a string, or an array of `{type: "text", text}` blocks. */
function contentText(content: unknown, where: string): string {
  if (typeof content === 'string') return content;
  if (!Array.isArray(content)) throw invalid(`${where}: content must be a string or an array`);
  return content
    .map((b: unknown, i) => {
      const block = b as { type?: unknown; text?: unknown } | null;
      if (!block || typeof block !== 'object') throw invalid(`${where}.${i}: not an object`);
      if (block.type !== 'text' || typeof block.text !== 'string')
        throw invalid(`${where}.${i}: only text blocks are accepted by this stub`);
      return block.text;
    })
    .join('');
}

export function parseAnthropicRequest(
  headers: Record<string, string | string[] | undefined>,
  rawBody: Buffer,
): AnthropicRequest {
  if (!headers['x-api-key'])
    throw new AnthropicError(401, 'authentication_error', 'x-api-key header is required');
  if (!headers['anthropic-version']) throw invalid('anthropic-version: header is required');
  const body = providerJsonObject(rawBody, invalid);
  const { model, max_tokens: maxTokens, messages, system, stream } = body;
  if (typeof model !== 'string' || model === '') throw invalid('model: Field required');
  if (typeof maxTokens !== 'number' || !Number.isInteger(maxTokens) || maxTokens < 1)
    throw invalid('max_tokens: Field required (a positive integer)');
  if (!Array.isArray(messages) || messages.length === 0)
    throw invalid('messages: at least one message is required');
  const parsed = messages.map((m: unknown, i): AnthropicRequest['messages'][number] => {
    const msg = m as { role?: unknown; content?: unknown } | null;
    if (!msg || typeof msg !== 'object') throw invalid(`messages.${i}: not an object`);
    if (msg.role !== 'user' && msg.role !== 'assistant')
      throw invalid(
        `messages.${i}.role: Input should be 'user' or 'assistant' (got ${JSON.stringify(msg.role)}; the system prompt goes in the top-level system field)`,
      );
    return { role: msg.role, text: contentText(msg.content, `messages.${i}.content`) };
  });
  if (parsed[0]?.role !== 'user')
    throw invalid('messages: the first message must use the user role');
  if (stream !== undefined && typeof stream !== 'boolean')
    throw invalid('stream: must be a boolean');
  return {
    model,
    maxTokens,
    system: system === undefined ? '' : contentText(system, 'system'),
    messages: parsed,
    stream: stream === true,
  };
}

export interface AnthropicUsage {
  input_tokens: number;
  output_tokens: number;
}

function complete(r: AnthropicRequest): {
  tokens: number[];
  text: string;
  stop: string;
  usage: AnthropicUsage;
} {
  const lastUser = [...r.messages].reverse().find((m) => m.role === 'user')?.text ?? '';
  const full = encodeText(mockAnswerText(lastUser), BILLING_MODEL);
  const truncated = full.length > r.maxTokens;
  const tokens = truncated ? full.slice(0, r.maxTokens) : full;
  let input = REPLY_PRIMING_TOKENS + (r.system ? encodeText(r.system, BILLING_MODEL).length : 0);
  for (const m of r.messages)
    input += TOKENS_PER_MESSAGE + encodeText(m.text, BILLING_MODEL).length;
  return {
    tokens,
    text: decodeTokens(tokens, BILLING_MODEL).text,
    stop: truncated ? 'max_tokens' : 'end_turn',
    usage: { input_tokens: input, output_tokens: tokens.length },
  };
}

function sendError(ctx: EndpointContext, e: AnthropicError): void {
  const body = JSON.stringify({ type: 'error', error: { type: e.type, message: e.message } });
  ctx.res.writeHead(e.status, { 'content-type': 'application/json', 'request-id': ctx.requestId });
  ctx.res.end(body);
}

export const anthropicMessages: Endpoint = async (ctx) => {
  let request: AnthropicRequest;
  try {
    request = parseAnthropicRequest(ctx.req.headers, ctx.rawBody);
  } catch (e) {
    if (e instanceof AnthropicError) return sendError(ctx, e);
    throw e;
  }
  const c = complete(request);
  const id = `msg_mock_${ctx.requestId}`;
  const billed = { prompt_tokens: c.usage.input_tokens, completion_tokens: c.usage.output_tokens };
  if (!request.stream) {
    const body = {
      id,
      type: 'message',
      role: 'assistant',
      model: request.model,
      content: [{ type: 'text', text: c.text }],
      stop_reason: c.stop,
      stop_sequence: null,
      usage: c.usage,
    };
    ctx.res.writeHead(200, { 'content-type': 'application/json', 'request-id': ctx.requestId });
    ctx.res.end(JSON.stringify(body));
    ctx.onUsage?.(billed);
    return;
  }
  ctx.res.writeHead(200, {
    'content-type': 'text/event-stream; charset=utf-8',
    'cache-control': 'no-cache',
    connection: 'keep-alive',
    'request-id': ctx.requestId,
  });
  const events: Array<[string, object]> = [
    [
      'message_start',
      {
        type: 'message_start',
        message: {
          id,
          type: 'message',
          role: 'assistant',
          model: request.model,
          content: [],
          stop_reason: null,
          stop_sequence: null,
          usage: { input_tokens: c.usage.input_tokens, output_tokens: 1 },
        },
      },
    ],
    [
      'content_block_start',
      { type: 'content_block_start', index: 0, content_block: { type: 'text', text: '' } },
    ],
    ['ping', { type: 'ping' }],
    ...contentDeltas(c.tokens, BILLING_MODEL).map((text): [string, object] => [
      'content_block_delta',
      { type: 'content_block_delta', index: 0, delta: { type: 'text_delta', text } },
    ]),
    ['content_block_stop', { type: 'content_block_stop', index: 0 }],
    [
      'message_delta',
      {
        type: 'message_delta',
        delta: { stop_reason: c.stop, stop_sequence: null },
        usage: { output_tokens: c.usage.output_tokens },
      },
    ],
    ['message_stop', { type: 'message_stop' }],
  ];
  for (const [i, [event, data]] of events.entries()) {
    if (
      i > 0 &&
      ctx.knobs.streamChunkDelayMs > 0 &&
      !(await ctx.pause(ctx.knobs.streamChunkDelayMs))
    )
      return;
    ctx.res.write(`event: ${event}\ndata: ${JSON.stringify(data)}\n\n`);
  }
  ctx.res.end();
  ctx.onUsage?.(billed);
};
