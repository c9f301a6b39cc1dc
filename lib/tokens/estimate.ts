/**
 * The one token estimate of a request, made before the upstream call and shared by every
 * plugin that needs it (`tenant-ratelimit` for tokens per minute and fair-queue width,
 * `token-meter` for budget reservations). The first plugin that needs it computes it from the
 * body it already read and publishes it in `kong.ctx.shared` under `ESTIMATE_KEY`; the later
 * ones read it back (one `ctx.shared.get`) instead of reading and tokenizing the body again.
 *
 * The estimate is deliberately a worst case for the completion: `max_tokens` (or
 * `max_completion_tokens`, or the caller's default) times `n`, since a budget check that
 * assumed a short answer would let a long one overshoot.
 */
import type { KongPdk } from '../pdk/kong';
import { slot, type RequestScope } from '../request/scope';
import { isChainProcess } from '../request/scope-store';
import type { CountableMessage } from './tokenize';
import { countPromptOffThread } from './count-pool';
import { countPrompt, type PromptToCount } from './prompt';
import { SHARED_KEYS, sharedJsonObject } from '../request/shared-keys';
import type { TenantId } from '../tenant/tenant-id';

export { loadEncodings } from './tokenize';
export { warmCountPool } from './count-pool';

export const ESTIMATE_KEY = SHARED_KEYS.tokenEstimate.key;
export const ESTIMATE_VERSION = 1;

/** Where the prompt count came from. */
export type EstimateSource =
  /** counted with the model family's BPE tokenizer */
  | 'tokenizer'
  /** no usable body (empty, not JSON, unknown shape): the configured floor was used */
  | 'default';

export interface TokenEstimate {
  readonly v: typeof ESTIMATE_VERSION;
  /** The `model` the client asked for, '' when absent. */
  readonly model: string;
  readonly promptTokens: number;
  /** Completion tokens budgeted: per-choice max × n, after caps. */
  readonly completionTokens: number;
  /** promptTokens + completionTokens. */
  readonly totalTokens: number;
  /** Choices asked for (`n`, 1 when absent). */
  readonly n: number;
  readonly stream: boolean;
  readonly source: EstimateSource;
  /**
   * The body's `service_tier` (OpenAI: `auto`, `default`, `flex`, `priority`), read here so
   * that the plugins scheduling by it need not read the body again: the string as sent, ''
   * when the field is present but not a string, null when absent (or no JSON body).
   */
  readonly serviceTier: string | null;
}

export interface EstimateOptions {
  /** Completion tokens assumed when the request sets no `max_tokens`. */
  defaultMaxTokens: number;
  /** Upper bound for a client's `max_tokens`: an absurd value cannot reserve the world. */
  maxTokensCap: number;
  /** Prompt tokens assumed when the body cannot be counted. */
  unknownPromptTokens: number;
  /** Upper bound for `n`. */
  maxChoices: number;
}

export const DEFAULT_ESTIMATE_OPTIONS: EstimateOptions = {
  defaultMaxTokens: 1024,
  maxTokensCap: 32768,
  unknownPromptTokens: 256,
  maxChoices: 16,
};

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function positiveInt(v: unknown): number | undefined {
  return typeof v === 'number' && Number.isFinite(v) && v >= 1 ? Math.floor(v) : undefined;
}

/** Text of a content value: string, or an array of parts whose text parts count. */
function contentText(content: unknown): string {
  if (typeof content === 'string') return content;
  if (!Array.isArray(content)) return '';
  let text = '';
  for (const part of content) {
    if (isRecord(part) && typeof part.text === 'string') text += part.text;
    else if (typeof part === 'string') text += part;
  }
  return text;
}

/** Messages of a Chat Completions body, or of a Responses API `input` (string or items). */
function countableMessages(body: Record<string, unknown>): CountableMessage[] | undefined {
  const toMessage = (m: unknown): CountableMessage | undefined => {
    if (!isRecord(m)) return undefined;
    const role = typeof m.role === 'string' ? m.role : 'user';
    // Tool calls and function arguments are prompt tokens too on the next turn.
    const extra = m.tool_calls !== undefined ? JSON.stringify(m.tool_calls) : '';
    const msg: CountableMessage = { role, text: contentText(m.content) + extra };
    if (typeof m.name === 'string') msg.name = m.name;
    return msg;
  };
  if (Array.isArray(body.messages)) {
    return body.messages.map(toMessage).filter((m): m is CountableMessage => m !== undefined);
  }
  if (typeof body.input === 'string') return [{ role: 'user', text: body.input }];
  if (Array.isArray(body.input)) {
    return body.input.map(toMessage).filter((m): m is CountableMessage => m !== undefined);
  }
  if (typeof body.prompt === 'string') return [{ role: 'user', text: body.prompt }];
  return undefined;
}

/**
 * A body's `service_tier`, as `TokenEstimate.serviceTier` holds it: for a plugin that needs it
 * before (or without) the estimate's count.
 */
export function serviceTierOf(body: unknown): string | null {
  const rec = isRecord(body) ? body : undefined;
  if (!rec || !Object.prototype.hasOwnProperty.call(rec, 'service_tier')) return null;
  const v = rec.service_tier;
  if (v === null || v === undefined) return null;
  return typeof v === 'string' ? v : '';
}

/** An estimate but for its prompt count, and what that count is made of (none: no messages). */
interface EstimateParts {
  readonly rest: Omit<TokenEstimate, 'promptTokens' | 'totalTokens' | 'source'>;
  readonly prompt: PromptToCount | undefined;
  readonly unknownPromptTokens: number;
}

function estimateParts(body: unknown, options: Partial<EstimateOptions>): EstimateParts {
  const o = { ...DEFAULT_ESTIMATE_OPTIONS, ...options };
  const rec = isRecord(body) ? body : undefined;
  const model = rec && typeof rec.model === 'string' ? rec.model : '';
  const n = Math.min(o.maxChoices, positiveInt(rec?.n) ?? 1);
  const asked =
    positiveInt(rec?.max_completion_tokens) ??
    positiveInt(rec?.max_tokens) ??
    positiveInt(rec?.max_output_tokens);
  const perChoice = Math.min(o.maxTokensCap, asked ?? o.defaultMaxTokens);
  const messages = rec ? countableMessages(rec) : undefined;
  let prompt: PromptToCount | undefined;
  if (messages && messages.length > 0) {
    // Tool definitions are sent to the model as part of the prompt.
    prompt = Array.isArray(rec?.tools)
      ? { model, messages, tools: JSON.stringify(rec.tools) }
      : { model, messages };
  }
  return {
    rest: {
      v: ESTIMATE_VERSION,
      model,
      completionTokens: perChoice * n,
      n,
      stream: rec?.stream === true,
      serviceTier: serviceTierOf(rec),
    },
    prompt,
    unknownPromptTokens: o.unknownPromptTokens,
  };
}

/** The estimate of `parts` with the prompt's count (undefined: it had none to count). */
function withPromptCount(parts: EstimateParts, counted: number | undefined): TokenEstimate {
  const promptTokens = counted ?? parts.unknownPromptTokens;
  return Object.freeze({
    ...parts.rest,
    promptTokens,
    totalTokens: promptTokens + parts.rest.completionTokens,
    source: counted === undefined ? 'default' : 'tokenizer',
  });
}

/**
 * Estimates a request from its parsed JSON body (`undefined` when there is none or it is not
 * JSON). Never throws: every request gets a defined cost.
 */
export function estimateRequest(
  body: unknown,
  options: Partial<EstimateOptions> = {},
): TokenEstimate {
  const parts = estimateParts(body, options);
  return withPromptCount(parts, parts.prompt ? countPrompt(parts.prompt) : undefined);
}

/**
 * `estimateRequest`, with a long prompt counted on the counting thread (count-pool.ts), so the
 * plugin server's thread serves other requests meanwhile. The same estimate.
 */
export async function estimateRequestOffThread(
  body: unknown,
  options: Partial<EstimateOptions> = {},
  tenant = '',
): Promise<TokenEstimate> {
  const parts = estimateParts(body, options);
  return withPromptCount(
    parts,
    parts.prompt ? await countPromptOffThread(parts.prompt, tenant) : undefined,
  );
}

export function encodeEstimate(e: TokenEstimate): string {
  return JSON.stringify(e);
}

/** The estimate another plugin published, or undefined when absent or not ours. */
export function decodeEstimate(raw: unknown): TokenEstimate | undefined {
  const o = sharedJsonObject(raw);
  if (!o || o.v !== ESTIMATE_VERSION) return undefined;
  const nums = ['promptTokens', 'completionTokens', 'totalTokens', 'n'] as const;
  if (
    !nums.every((k) => typeof o[k] === 'number' && Number.isFinite(o[k]) && (o[k] as number) >= 0)
  )
    return undefined;
  if (typeof o.model !== 'string' || typeof o.stream !== 'boolean') return undefined;
  if (o.source !== 'tokenizer' && o.source !== 'default') return undefined;
  // Published before the field existed: absent means no service tier.
  if (o.serviceTier === undefined) o.serviceTier = null;
  if (o.serviceTier !== null && typeof o.serviceTier !== 'string') return undefined;
  return Object.freeze(o as unknown as TokenEstimate);
}

const ESTIMATE_SLOT = slot<TokenEstimate>('token_estimate');

/** The estimate an earlier plugin of this process made for the request, if any. */
export function keptEstimate(scope: RequestScope): TokenEstimate | undefined {
  return scope.get(ESTIMATE_SLOT);
}

/**
 * The request's estimate, made once per request with the options of the first plugin that
 * needs it: from the request's scope when an earlier plugin of this process made it (no PDK
 * call); else, outside the co-hosted chain process, the one an earlier plugin published in
 * `kong.ctx.shared` (one call); else computed from `readBody()` and kept for the plugins
 * after (published in `kong.ctx.shared` too, outside the chain process: one call). A long
 * prompt is counted in `tenant`'s turn on the counting thread (count-pool.ts).
 * `readBody` is only called when the estimate is made here.
 */
export async function sharedEstimate(
  kong: KongPdk,
  scope: RequestScope,
  tenant: TenantId,
  readBody: () => Promise<unknown>,
  options: Partial<EstimateOptions> = {},
): Promise<TokenEstimate> {
  const kept = scope.get(ESTIMATE_SLOT);
  if (kept) return kept;
  const publish = !isChainProcess();
  const published = publish ? decodeEstimate(await kong.ctx.shared.get(ESTIMATE_KEY)) : undefined;
  if (published) {
    scope.set(ESTIMATE_SLOT, published);
    return published;
  }
  const estimate = await estimateRequestOffThread(await readBody(), options, tenant);
  scope.set(ESTIMATE_SLOT, estimate);
  if (publish) await kong.ctx.shared.set(ESTIMATE_KEY, encodeEstimate(estimate));
  return estimate;
}
