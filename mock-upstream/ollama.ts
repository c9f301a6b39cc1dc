/**
 * `POST /api/chat`: Ollama's chat API, for Kong's `ai-proxy` with provider `llama2` and
 * `llama2_format: ollama` (its `model.options.upstream_url` pointed here). It validates the
 * request as Ollama does — a `model` name, `messages` of roles `system`, `user`, `assistant` or
 * `tool` with string `content`, `stream` a boolean (Ollama streams when it is absent),
 * `options.num_predict` a number — and answers in Ollama's shapes: one JSON object with
 * `prompt_eval_count` and `eval_count` (what it counted), or, streamed, NDJSON
 * (`application/x-ndjson`): one object per token with `done: false`, then a last one with
 * `done: true` and the counts. There is no `usage` object anywhere: token-meter's usage reader
 * must read Ollama's own fields. The answer is the chat endpoint's (mockAnswerText), counted by
 * the same tokenizer, so a test can compare the ledger with what this "provider" counted.
 */
import { writeNdjson, type Endpoint, type EndpointContext } from './endpoint';
import { providerJsonObject } from './request-body';
import { contentDeltas, mockAnswerText } from './chat';
import { decodeTokens, encodeText } from '../lib/tokens/tokenize';

const COUNTING_MODEL = 'gpt-4o-mini';
/** What Ollama's chat template adds to the prompt per message (counted, as Ollama counts it). */
const TEMPLATE_TOKENS_PER_MESSAGE = 4;
const ROLES = new Set(['system', 'user', 'assistant', 'tool']);

class OllamaError extends Error {}

export interface OllamaRequest {
  model: string;
  messages: Array<{ role: string; content: string }>;
  numPredict: number | null;
  stream: boolean;
}

export function parseOllamaRequest(rawBody: Buffer): OllamaRequest {
  const body = providerJsonObject(rawBody, (m) => new OllamaError(m));
  const { model, messages, stream, options } = body;
  if (typeof model !== 'string' || model === '') throw new OllamaError('model is required');
  if (!Array.isArray(messages)) throw new OllamaError('messages must be an array');
  const turns = messages.map((m: unknown, i) => {
    const msg = m as { role?: unknown; content?: unknown } | null;
    if (!msg || typeof msg !== 'object') throw new OllamaError(`messages[${i}]: not an object`);
    if (typeof msg.role !== 'string' || !ROLES.has(msg.role))
      throw new OllamaError(`messages[${i}]: invalid role ${JSON.stringify(msg.role)}`);
    if (typeof msg.content !== 'string')
      throw new OllamaError(`messages[${i}]: content must be a string`);
    return { role: msg.role, content: msg.content };
  });
  if (stream !== undefined && typeof stream !== 'boolean')
    throw new OllamaError('stream must be a boolean');
  let numPredict: number | null = null;
  if (options !== undefined && options !== null) {
    if (typeof options !== 'object' || Array.isArray(options))
      throw new OllamaError('options must be an object');
    const n = (options as { num_predict?: unknown }).num_predict;
    if (n !== undefined && n !== null) {
      if (typeof n !== 'number' || !Number.isInteger(n))
        throw new OllamaError('options.num_predict must be an integer');
      numPredict = n;
    }
  }
  return { model, messages: turns, numPredict, stream: stream !== false };
}

export const ollamaChat: Endpoint = async (ctx: EndpointContext) => {
  let r: OllamaRequest;
  try {
    r = parseOllamaRequest(ctx.rawBody);
  } catch (e) {
    if (!(e instanceof OllamaError)) throw e;
    ctx.res.writeHead(400, { 'content-type': 'application/json' });
    ctx.res.end(JSON.stringify({ error: e.message }));
    return;
  }
  const lastUser = [...r.messages].reverse().find((m) => m.role === 'user')?.content ?? '';
  const full = encodeText(mockAnswerText(lastUser), COUNTING_MODEL);
  const capped = r.numPredict !== null && r.numPredict >= 0 && full.length > r.numPredict;
  const tokens = capped ? full.slice(0, r.numPredict ?? 0) : full;
  const content = decodeTokens(tokens, COUNTING_MODEL).text;
  let prompt = 0;
  for (const m of r.messages)
    prompt += encodeText(m.content, COUNTING_MODEL).length + TEMPLATE_TOKENS_PER_MESSAGE;
  const createdAt = new Date().toISOString();
  const last = {
    model: r.model,
    created_at: createdAt,
    message: { role: 'assistant', content: r.stream ? '' : content },
    done_reason: capped ? 'length' : 'stop',
    done: true,
    total_duration: 5_000_000,
    load_duration: 1_000_000,
    prompt_eval_count: prompt,
    prompt_eval_duration: 1_000_000,
    eval_count: tokens.length,
    eval_duration: 3_000_000,
  };
  const onUsage = () => ctx.onUsage?.({ prompt_tokens: prompt, completion_tokens: tokens.length });
  if (!r.stream) {
    ctx.res.writeHead(200, { 'content-type': 'application/json; charset=utf-8' });
    ctx.res.end(JSON.stringify(last));
    onUsage();
    return;
  }
  ctx.res.writeHead(200, { 'content-type': 'application/x-ndjson' });
  const lines = [
    ...contentDeltas(tokens, COUNTING_MODEL).map((delta) => ({
      model: r.model,
      created_at: createdAt,
      message: { role: 'assistant', content: delta },
      done: false,
    })),
    last,
  ];
  if (await writeNdjson(ctx, lines)) onUsage();
};

/**
 * `POST /generate`: a llama2 "raw" endpoint (Kong's `ai-proxy` with provider `llama2` and
 * `llama2_format: raw`: `{inputs, parameters}` in, `{data: [{generated_text}]}` out, the prompt
 * echoed before `[/INST]` as such servers do). It reports **no usage at all**: what the gateway
 * bills is an estimate. It still records what it generated per tenant (`usage()`), so a test can
 * show the estimate is never below it.
 */
export const llamaRawGenerate: Endpoint = async (ctx: EndpointContext) => {
  let inputs: string;
  let maxNew: number | null = null;
  try {
    const body = providerJsonObject(ctx.rawBody, (m) => new OllamaError(m));
    if (typeof body.inputs !== 'string' || body.inputs === '')
      throw new OllamaError('inputs must be a non-empty string');
    inputs = body.inputs;
    const params = body.parameters as { max_new_tokens?: unknown } | undefined;
    if (params !== undefined && (typeof params !== 'object' || params === null))
      throw new OllamaError('parameters must be an object');
    const n = params?.max_new_tokens;
    if (n !== undefined && n !== null) {
      if (typeof n !== 'number' || !Number.isInteger(n) || n < 1)
        throw new OllamaError('parameters.max_new_tokens must be a positive integer');
      maxNew = n;
    }
  } catch (e) {
    if (!(e instanceof OllamaError)) throw e;
    ctx.res.writeHead(400, { 'content-type': 'application/json' });
    ctx.res.end(JSON.stringify({ error: e.message }));
    return;
  }
  const question = inputs.split('[/INST]')[0]?.split('<</SYS>>').at(-1)?.trim() ?? inputs;
  const full = encodeText(mockAnswerText(question), COUNTING_MODEL);
  const tokens = maxNew !== null && full.length > maxNew ? full.slice(0, maxNew) : full;
  const answer = decodeTokens(tokens, COUNTING_MODEL).text;
  ctx.res.writeHead(200, { 'content-type': 'application/json' });
  ctx.res.end(JSON.stringify({ data: [{ generated_text: `${inputs} [/INST] ${answer}` }] }));
  ctx.onUsage?.({
    prompt_tokens: encodeText(inputs, COUNTING_MODEL).length,
    completion_tokens: tokens.length,
  });
};
