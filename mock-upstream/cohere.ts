/**
 * `POST /v1/chat`: Cohere's Chat API v1, for Kong's `ai-proxy` with provider `cohere` (its
 * `model.options.upstream_url` pointed here). It validates the request as Cohere does — a
 * Bearer key, `message` (the last turn, a non-empty string), `chat_history` turns of roles
 * `USER`, `CHATBOT` or `SYSTEM` with a string `message`, and no OpenAI `messages` array — and
 * answers in Cohere's shapes: a JSON object with `meta.billed_units` (what Cohere bills) and
 * `meta.tokens` (which also count its prompt template: larger), or, streamed, one JSON object
 * per line: `stream-start`, `text-generation` events and `stream-end` with the whole response.
 * The answer is the chat endpoint's (mockAnswerText), counted by the same tokenizer, so a test
 * can compare the gateway's ledger with what this "provider" billed (`onUsage`).
 */
import { writeNdjson, type Endpoint, type EndpointContext } from './endpoint';
import { providerJsonObject } from './request-body';
import { contentDeltas, mockAnswerText } from './chat';
import { decodeTokens, encodeText } from '../lib/tokens/tokenize';

const BILLING_MODEL = 'gpt-4o-mini';
/** What Cohere's prompt template adds to `tokens.input_tokens` (never billed). */
const TEMPLATE_TOKENS = 57;

class CohereError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
  }
}

const invalid = (message: string): CohereError =>
  new CohereError(400, `invalid request: ${message}`);

export interface CohereRequest {
  model: string;
  message: string;
  history: Array<{ role: string; message: string }>;
  maxTokens: number | null;
  stream: boolean;
}

export function parseCohereRequest(
  headers: Record<string, string | string[] | undefined>,
  rawBody: Buffer,
): CohereRequest {
  const auth = headers.authorization;
  if (typeof auth !== 'string' || !/^Bearer \S+$/.test(auth))
    throw new CohereError(401, 'invalid api token');
  const body = providerJsonObject(rawBody, invalid);
  if ('messages' in body && body.messages !== null)
    throw invalid(
      'messages is not a valid field: the last turn goes in message, the rest in chat_history',
    );
  const { message, chat_history: history, model, max_tokens: maxTokens, stream } = body;
  if (typeof message !== 'string' || message === '')
    throw invalid('message must be a non-empty string');
  if (history !== undefined && !Array.isArray(history))
    throw invalid('chat_history must be an array');
  const turns = ((history as unknown[] | undefined) ?? []).map((t: unknown, i) => {
    const turn = t as { role?: unknown; message?: unknown } | null;
    if (!turn || typeof turn !== 'object') throw invalid(`chat_history[${i}]: not an object`);
    if (turn.role !== 'USER' && turn.role !== 'CHATBOT' && turn.role !== 'SYSTEM')
      throw invalid(
        `chat_history[${i}].role must be USER, CHATBOT or SYSTEM (got ${JSON.stringify(turn.role)})`,
      );
    if (typeof turn.message !== 'string')
      throw invalid(`chat_history[${i}].message must be a string`);
    return { role: turn.role, message: turn.message };
  });
  if (
    maxTokens !== undefined &&
    maxTokens !== null &&
    (typeof maxTokens !== 'number' || maxTokens < 1)
  )
    throw invalid('max_tokens must be a positive integer');
  if (stream !== undefined && typeof stream !== 'boolean')
    throw invalid('stream must be a boolean');
  return {
    model: typeof model === 'string' ? model : 'command-r',
    message,
    history: turns,
    maxTokens: typeof maxTokens === 'number' ? maxTokens : null,
    stream: stream === true,
  };
}

function sendError(ctx: EndpointContext, e: CohereError): void {
  ctx.res.writeHead(e.status, { 'content-type': 'application/json' });
  ctx.res.end(JSON.stringify({ message: e.message }));
}

export const cohereChat: Endpoint = async (ctx) => {
  let r: CohereRequest;
  try {
    r = parseCohereRequest(ctx.req.headers, ctx.rawBody);
  } catch (e) {
    if (e instanceof CohereError) return sendError(ctx, e);
    throw e;
  }
  const full = encodeText(mockAnswerText(r.message), BILLING_MODEL);
  const tokens =
    r.maxTokens !== null && full.length > r.maxTokens ? full.slice(0, r.maxTokens) : full;
  const text = decodeTokens(tokens, BILLING_MODEL).text;
  let input = encodeText(r.message, BILLING_MODEL).length;
  for (const t of r.history) input += encodeText(t.message, BILLING_MODEL).length;
  const billed = { input_tokens: input, output_tokens: tokens.length };
  const response = {
    response_id: `resp-${ctx.requestId}`,
    text,
    generation_id: `gen-${ctx.requestId}`,
    chat_history: [
      ...r.history,
      { role: 'USER', message: r.message },
      { role: 'CHATBOT', message: text },
    ],
    finish_reason: tokens.length < full.length ? 'MAX_TOKENS' : 'COMPLETE',
    meta: {
      api_version: { version: '1' },
      billed_units: billed,
      tokens: { input_tokens: input + TEMPLATE_TOKENS, output_tokens: tokens.length },
    },
  };
  const onUsage = () =>
    ctx.onUsage?.({ prompt_tokens: billed.input_tokens, completion_tokens: billed.output_tokens });
  if (!r.stream) {
    ctx.res.writeHead(200, { 'content-type': 'application/json' });
    ctx.res.end(JSON.stringify(response));
    onUsage();
    return;
  }
  ctx.res.writeHead(200, { 'content-type': 'application/stream+json' });
  const events: object[] = [
    { is_finished: false, event_type: 'stream-start', generation_id: response.generation_id },
    ...contentDeltas(tokens, BILLING_MODEL).map((t) => ({
      is_finished: false,
      event_type: 'text-generation',
      text: t,
    })),
    {
      is_finished: true,
      event_type: 'stream-end',
      response,
      finish_reason: response.finish_reason,
    },
  ];
  if (await writeNdjson(ctx, events)) onUsage();
};
