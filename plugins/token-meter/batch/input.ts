/**
 * A batch input file, read as it is uploaded through a metered route (`POST /files`,
 * `purpose=batch`): what the meter will reserve when a batch is made of it. The provider runs
 * every line later, where no gateway can bound it, so each line must carry its own bound here:
 * a line the meter cannot bound, price or allow is refused at upload, naming the line.
 *
 * Pure (no PDK, no Redis): tested alone in test/unit/token-meter-batch-input.test.ts.
 */
import { estimateRequest } from '../../../lib/tokens/estimate';
import { countTextTokens } from '../../../lib/tokens/tokenize';
import type { TenantContext } from '../../../lib/tenant/context';
import type { TokenMeterConfig } from '../config';
import { kindOf, kindServes, priceOf } from '../pricing';
import { readMeteredRequest } from '../request-body';
import { invalidRequest } from '../refusals';
import { GatewayError, isGatewayError } from '../../../lib/http/errors';
import { sharedJsonObject } from '../../../lib/request/shared-keys';
import { MAX_JSON_DEPTH, nestsDeeperThan } from '../../../lib/request/json-depth';

/** The endpoints a batch line may call and the meter can bound (OpenAI's Batch API list). */
export const BATCH_ENDPOINTS = [
  '/v1/chat/completions',
  '/v1/responses',
  '/v1/completions',
  '/v1/embeddings',
] as const;
export type BatchEndpoint = (typeof BATCH_ENDPOINTS)[number];

/** OpenAI's own limit on the requests of one batch. */
export const MAX_BATCH_LINES = 50_000;

export const BATCH_INPUT_VERSION = 1;

/** What a batch input file asks for, summed over its lines. */
export interface BatchInputSummary {
  readonly v: typeof BATCH_INPUT_VERSION;
  readonly endpoint: BatchEndpoint;
  /** Every line names this model (the provider takes one model per file). */
  readonly model: string;
  readonly lines: number;
  /** The tokenizer's prompt count, summed. */
  readonly promptTokens: number;
  /** The largest one line's prompt count (it picks a long-context price). */
  readonly maxLinePromptTokens: number;
  /** Each line's bound (`max_tokens` × `n`; 0 for embeddings), summed. */
  readonly completionTokens: number;
}

/** What a line's checks need besides the line. */
export interface LineRules {
  readonly config: TokenMeterConfig;
  readonly ctx: TenantContext;
}

/** The refusal of one line, its 1-based number and field in the message and `param`. */
function lineError(line: number, e: GatewayError): GatewayError {
  const { param } = e.spec;
  return new GatewayError({
    ...e.spec,
    message: `line ${line} of the batch input file: ${e.spec.message}`,
    param: param ? `line ${line}: body.${param}` : `line ${line}`,
  });
}

function bad(line: number, code: string, message: string, param: string | null = null) {
  return lineError(line, invalidRequest(code, message, param));
}

const isRecord = (v: unknown): v is Record<string, unknown> =>
  typeof v === 'object' && v !== null && !Array.isArray(v);

/** Prompt text the chat-shaped estimate does not count: arrays of strings (embeddings, prompts). */
function listedTextTokens(body: Record<string, unknown>, model: string): number {
  let n = 0;
  for (const f of ['input', 'prompt']) {
    const v = body[f];
    if (!Array.isArray(v)) continue;
    for (const x of v) if (typeof x === 'string') n += countTextTokens(x, model);
  }
  return n;
}

/** Lines read between two yields to the event loop (see summariseBatchInput). */
export const LINES_PER_SLICE = 200;

/**
 * Reads every line of a batch input file (JSONL: `{custom_id, method, url, body}`) and sums what
 * it asks for; rejects with the 400 (or 403) of the first line the meter cannot take. The
 * tokenizer's work for a large file (up to 50,000 lines) is cut in slices of LINES_PER_SLICE
 * lines with a yield between them: the process serves every tenant's requests (the chain runs in
 * one), which must not wait seconds behind one tenant's upload.
 */
export async function summariseBatchInput(
  file: Buffer,
  rules: LineRules,
): Promise<BatchInputSummary> {
  const { config: c } = rules;
  const text = file.toString('utf8');
  let endpoint: BatchEndpoint | null = null;
  let model: string | null = null;
  let lines = 0;
  let prompt = 0;
  let maxLinePrompt = 0;
  let completion = 0;
  const ids = new Set<string>();
  let at = 0;
  let number = 0;
  while (at < text.length) {
    const nl = text.indexOf('\n', at);
    const raw = text.slice(at, nl < 0 ? text.length : nl).trim();
    at = nl < 0 ? text.length : nl + 1;
    number += 1;
    if (raw === '') continue;
    lines += 1;
    if (lines % LINES_PER_SLICE === 0) await new Promise((r) => setImmediate(r));
    if (lines > MAX_BATCH_LINES) {
      throw bad(number, 'batch_too_large', `a batch holds at most ${MAX_BATCH_LINES} requests`);
    }
    let line: unknown;
    try {
      line = JSON.parse(raw);
    } catch {
      throw bad(number, 'invalid_batch_line', 'not a JSON object');
    }
    if (!isRecord(line)) throw bad(number, 'invalid_batch_line', 'not a JSON object');
    if (nestsDeeperThan(line, MAX_JSON_DEPTH)) {
      throw bad(
        number,
        'invalid_batch_line',
        `nests objects and arrays more than ${MAX_JSON_DEPTH} levels deep`,
      );
    }
    if (typeof line.custom_id !== 'string' || line.custom_id === '') {
      throw bad(number, 'invalid_batch_line', '`custom_id` must be a non-empty string');
    }
    if (ids.has(line.custom_id)) {
      throw bad(number, 'invalid_batch_line', `\`custom_id\` '${line.custom_id}' is used twice`);
    }
    ids.add(line.custom_id);
    if (line.method !== 'POST') throw bad(number, 'invalid_batch_line', '`method` must be POST');
    const url = line.url;
    if (typeof url !== 'string' || !(BATCH_ENDPOINTS as readonly string[]).includes(url)) {
      throw bad(
        number,
        'batch_endpoint_not_metered',
        `\`url\` must be one of ${BATCH_ENDPOINTS.join(', ')}: the meter bounds only those`,
      );
    }
    if (endpoint !== null && url !== endpoint) {
      throw bad(
        number,
        'invalid_batch_line',
        `every line must call ${endpoint}, as the first does`,
      );
    }
    endpoint = url as BatchEndpoint;
    if (!isRecord(line.body)) throw bad(number, 'invalid_batch_line', '`body` must be an object');
    const body = line.body;
    let req;
    try {
      req = readMeteredRequest(
        Buffer.alloc(1),
        url,
        {
          maxTokensCap: c.max_tokens_cap,
          maxChoices: c.max_choices,
        },
        () => body,
      );
    } catch (e) {
      throw isGatewayError(e) ? lineError(number, e) : e;
    }
    if (model !== null && req.model !== model) {
      throw bad(
        number,
        'invalid_batch_line',
        `every line must name the model '${model}', as the first does`,
        'model',
      );
    }
    model = req.model;
    if (body.stream === true) {
      throw bad(number, 'invalid_batch_line', 'a batch request cannot stream', 'stream');
    }
    if (!req.promptOnly && req.askedMaxTokens === undefined) {
      throw bad(
        number,
        'batch_line_unbounded',
        'a batch request on a metered route must set its completion bound (`max_completion_tokens`, `max_tokens` or `max_output_tokens`): the provider runs it later, where the gateway cannot bound it',
        'max_tokens',
      );
    }
    const linePrompt =
      estimateRequest(body, {
        maxTokensCap: c.max_tokens_cap,
        maxChoices: c.max_choices,
        defaultMaxTokens: c.default_max_tokens,
      }).promptTokens + listedTextTokens(body, req.model);
    prompt += linePrompt;
    maxLinePrompt = Math.max(maxLinePrompt, linePrompt);
    completion += req.promptOnly ? 0 : (req.askedMaxTokens ?? 0) * req.n;
  }
  if (endpoint === null || model === null) {
    throw invalidRequest('empty_batch_input', 'the batch input file holds no request', 'file');
  }
  checkModel(model, endpoint, rules);
  return {
    v: BATCH_INPUT_VERSION,
    endpoint,
    model,
    lines,
    promptTokens: prompt,
    maxLinePromptTokens: maxLinePrompt,
    completionTokens: completion,
  };
}

/** The file's model: priced, of a kind that serves its endpoint, inside the tenant's tier. */
function checkModel(model: string, endpoint: BatchEndpoint, { config, ctx }: LineRules): void {
  const where = (e: GatewayError) => lineError(1, e);
  if (!priceOf(config, model)) {
    throw where(
      invalidRequest(
        'model_not_priced',
        `the model '${model}' has no price on this gateway`,
        'model',
      ),
    );
  }
  const kind = kindOf(config, model);
  if (!kindServes(kind, endpoint === '/v1/embeddings')) {
    throw where(
      invalidRequest(
        'model_not_supported',
        `the model '${model}' does not serve ${endpoint}`,
        'model',
      ),
    );
  }
  const tier = ctx.policy.models;
  if (tier.length > 0 && !tier.includes(model)) {
    throw where(
      new GatewayError({
        status: 403,
        type: 'permission_error',
        code: 'model_not_allowed',
        message: `the model '${model}' is not in your plan's tier; a batch cannot be rewritten to another model`,
        param: 'model',
      }),
    );
  }
}

/** Decodes a summary stored in Redis; undefined for anything else. */
export function decodeSummary(raw: unknown): BatchInputSummary | undefined {
  const s = sharedJsonObject(raw);
  if (!s || s.v !== BATCH_INPUT_VERSION) return undefined;
  const count = (v: unknown) => typeof v === 'number' && Number.isInteger(v) && v >= 0;
  if (
    typeof s.endpoint !== 'string' ||
    !(BATCH_ENDPOINTS as readonly string[]).includes(s.endpoint) ||
    typeof s.model !== 'string' ||
    !count(s.lines) ||
    !count(s.promptTokens) ||
    !count(s.maxLinePromptTokens) ||
    !count(s.completionTokens)
  ) {
    return undefined;
  }
  return s as unknown as BatchInputSummary;
}
