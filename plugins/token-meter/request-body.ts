/**
 * What the meter needs from a request body, and the rewrites it makes to it: every request
 * leaves with a bounded completion (`max_tokens` set or clamped, so the reservation is a true
 * worst case), streamed requests ask for usage (`stream_options.include_usage`), and a
 * downgraded request names the model that will serve it.
 */
import { invalidRequest } from './refusals';
import { parseJsonOrUndefined } from '../../lib/request/json-depth';

export type JsonObject = Record<string, unknown>;

const MAX_FIELDS = ['max_completion_tokens', 'max_tokens', 'max_output_tokens'] as const;

export interface MeteredRequest {
  readonly body: JsonObject;
  readonly model: string;
  readonly n: number;
  readonly stream: boolean;
  /** The request produces no completion (embeddings). */
  readonly promptOnly: boolean;
  /** Completion tokens per choice the client asked for, undefined when it set none. */
  readonly askedMaxTokens: number | undefined;
}

function isRecord(v: unknown): v is JsonObject {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function parseOrUndefined(raw: Buffer): unknown {
  return parseJsonOrUndefined(raw.toString('utf8'));
}

/** Parses and checks the body of a metered request; throws a 400 (refusals.ts). */
export function readMeteredRequest(
  raw: Buffer,
  path: string,
  limits: { maxTokensCap: number; maxChoices: number },
  /** The body parsed (once per request: the request's scope); undefined when not JSON. */
  parse: (raw: Buffer) => unknown = parseOrUndefined,
): MeteredRequest {
  if (raw.length === 0) {
    throw invalidRequest('invalid_request_body', 'a JSON body naming a model is required');
  }
  const body = parse(raw);
  if (body === undefined) {
    throw invalidRequest('invalid_request_body', 'the request body is not valid JSON');
  }
  if (!isRecord(body))
    throw invalidRequest('invalid_request_body', 'the body must be a JSON object');
  if (typeof body.model !== 'string' || body.model === '') {
    throw invalidRequest('missing_model', 'you must provide a model parameter', 'model');
  }
  let n = 1;
  if (body.n !== undefined && body.n !== null) {
    if (typeof body.n !== 'number' || !Number.isInteger(body.n) || body.n < 1) {
      throw invalidRequest('invalid_n', '`n` must be a positive integer', 'n');
    }
    if (body.n > limits.maxChoices) {
      throw invalidRequest('n_too_large', `\`n\` may be at most ${limits.maxChoices}`, 'n');
    }
    n = body.n;
  }
  let asked: number | undefined;
  for (const f of MAX_FIELDS) {
    const v = body[f];
    if (v === undefined || v === null) continue;
    if (typeof v !== 'number' || !Number.isInteger(v) || v < 1) {
      throw invalidRequest('invalid_max_tokens', `\`${f}\` must be a positive integer`, f);
    }
    if (v > limits.maxTokensCap) {
      throw invalidRequest(
        'max_tokens_too_large',
        `\`${f}\` may be at most ${limits.maxTokensCap} on this gateway`,
        f,
      );
    }
    asked = asked === undefined ? v : Math.min(asked, v);
  }
  return {
    body,
    model: body.model,
    n,
    stream: body.stream === true,
    promptOnly: /\/embeddings\/?$/.test(path),
    askedMaxTokens: asked,
  };
}

/** Models that refuse `max_tokens` and take `max_completion_tokens` (OpenAI reasoning models). */
function usesMaxCompletionTokens(model: string): boolean {
  return /^(o\d|gpt-5)/.test(model);
}

/**
 * The body to forward: model served, completion bound per choice, usage asked for on
 * streams. Returns null when nothing changed (the client's bytes are forwarded).
 */
export function rewriteBody(
  req: MeteredRequest,
  servedModel: string,
  maxTokensPerChoice: number,
): string | null {
  const body: JsonObject = { ...req.body };
  let changed = false;
  if (servedModel !== req.model) {
    body.model = servedModel;
    changed = true;
  }
  if (!req.promptOnly) {
    const present = MAX_FIELDS.filter((f) => body[f] !== undefined && body[f] !== null);
    if (present.length === 0) {
      const name =
        body.input !== undefined && body.messages === undefined
          ? 'max_output_tokens'
          : usesMaxCompletionTokens(servedModel)
            ? 'max_completion_tokens'
            : 'max_tokens';
      body[name] = maxTokensPerChoice;
      changed = true;
    }
    for (const f of present) {
      if (body[f] !== maxTokensPerChoice) {
        body[f] = maxTokensPerChoice;
        changed = true;
      }
    }
  }
  // Chat and legacy completions need it; the Responses API (`input`) reports usage in its
  // final `response.completed` event anyway and has no such option.
  if (req.stream && !req.promptOnly && body.input === undefined) {
    const opts = isRecord(body.stream_options) ? body.stream_options : {};
    if (opts.include_usage !== true) {
      body.stream_options = { ...opts, include_usage: true };
      changed = true;
    }
  }
  return changed ? JSON.stringify(body) : null;
}
