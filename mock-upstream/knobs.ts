/**
 * The knobs that shape how the mock upstream behaves, their defaults, and their validation.
 * Knobs arrive from tests (in process) and from `POST /__mock/config` (out of process), so they
 * are validated up front with the bad value in the message, before any of them is applied.
 */

/** An injected failure, applied to a request before it is answered. */
export interface FailureSpec {
  /**
   * - `status`: answer at once with `status` and an OpenAI-style error body (or `body` verbatim);
   * - `reset`: destroy the socket without a response (the client sees ECONNRESET);
   * - `timeout`: never answer; the socket stays open until the client gives up or `close()`;
   * - `cut`: answer 200 as usual, then reset the socket part-way: a stream after `afterEvents`
   *   SSE events, a JSON body after half its bytes (an upstream dying mid-answer).
   */
  mode: 'status' | 'reset' | 'timeout' | 'cut';
  /** HTTP status for mode `status` (default 500). */
  status?: number;
  /** Response body for mode `status`, sent verbatim as JSON content (default: OpenAI-style error). */
  body?: string;
  /**
   * Share of eligible requests that fail, 0..1 (default 1). Deterministic, not random: the
   * failures are spread evenly (rate 0.25 fails every 4th eligible request), so tests repeat.
   */
  rate?: number;
  /** Fail only the next N requests that the rate selects, then stop failing. */
  count?: number;
  /** Only requests whose path starts with this prefix are eligible (default: all). */
  pathPrefix?: string;
  /** Mode `cut`: SSE events sent before the reset (default 2: the role chunk and one delta). */
  afterEvents?: number;
}

export interface MockKnobs {
  /** Added before answering, while holding a capacity slot (default 0). */
  latencyMs: number;
  /** Max concurrent requests being served; 0 = unlimited (default 0). */
  capacity: number;
  /**
   * Request starts per second the upstream grants, all clients together (a provider's
   * requests-per-minute quota ÷ 60); 0 = no rate quota (default 0). Unlike `capacity` it
   * limits when requests start, not how many are in service.
   */
  ratePerSecond: number;
  /** Starts the rate quota grants at once after a quiet spell (bucket size, default 1). */
  rateBurst: number;
  /**
   * Beyond capacity or the rate quota: wait FIFO for a slot or a start (like a GPU, or a
   * provider that holds requests) or answer 429 (default 'queue').
   */
  overCapacity: 'queue' | 'reject';
  /** Injected failures (default null). */
  failure: FailureSpec | null;
  /** Dimension of `/v1/embeddings` vectors unless the request asks for `dimensions` (default 64). */
  embeddingDim: number;
  /**
   * Extra: pause between SSE chunks of a streamed answer (default 0), so a stream's chunks
   * arrive as separate writes and time-to-first-token differs from total time.
   */
  streamChunkDelayMs: number;
  /**
   * Extra: the provider key this upstream demands as `Authorization: Bearer <key>` (default
   * null: none). Any other credential, or none, gets OpenAI's 401 `invalid_api_key`.
   */
  apiKey: string | null;
  /**
   * Extra: non-streamed JSON answers (chat completions, embeddings) gzip-compressed when the
   * request's `Accept-Encoding` accepts gzip, as OpenAI answers (default false: always plain).
   */
  gzipJson: boolean;
}

export const DEFAULT_KNOBS: Readonly<MockKnobs> = Object.freeze({
  latencyMs: 0,
  capacity: 0,
  ratePerSecond: 0,
  rateBurst: 1,
  overCapacity: 'queue',
  failure: null,
  embeddingDim: 64,
  streamChunkDelayMs: 0,
  apiKey: null,
  gzipJson: false,
});

const MAX_EMBEDDING_DIM = 8192;

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function show(v: unknown): string {
  return JSON.stringify(v) ?? String(v);
}

function nonNegativeNumber(name: string, v: unknown): number {
  if (typeof v !== 'number' || !Number.isFinite(v) || v < 0) {
    throw new RangeError(`${name} must be a finite number >= 0, got ${show(v)}`);
  }
  return v;
}

function nonNegativeInteger(name: string, v: unknown): number {
  if (!Number.isSafeInteger(v) || (v as number) < 0) {
    throw new RangeError(`${name} must be an integer >= 0, got ${show(v)}`);
  }
  return v as number;
}

/** Validates a failure spec from untrusted input; returns a copy. */
export function parseFailureSpec(v: unknown): FailureSpec | null {
  if (v === null) return null;
  if (!isRecord(v)) throw new RangeError(`failure must be an object or null, got ${show(v)}`);
  const { mode, status, body, rate, count, pathPrefix, afterEvents } = v;
  if (mode !== 'status' && mode !== 'reset' && mode !== 'timeout' && mode !== 'cut') {
    throw new RangeError(
      `failure.mode must be 'status', 'reset', 'timeout' or 'cut', got ${show(mode)}`,
    );
  }
  const spec: FailureSpec = { mode };
  if (status !== undefined) {
    if (!Number.isInteger(status) || (status as number) < 100 || (status as number) > 599) {
      throw new RangeError(`failure.status must be an integer 100..599, got ${show(status)}`);
    }
    spec.status = status as number;
  }
  if (body !== undefined) {
    if (typeof body !== 'string') throw new RangeError(`failure.body must be a string`);
    spec.body = body;
  }
  if (rate !== undefined) {
    if (typeof rate !== 'number' || !(rate >= 0 && rate <= 1)) {
      throw new RangeError(`failure.rate must be a number 0..1, got ${show(rate)}`);
    }
    spec.rate = rate;
  }
  if (count !== undefined) {
    if (!Number.isSafeInteger(count) || (count as number) < 1) {
      throw new RangeError(`failure.count must be an integer >= 1, got ${show(count)}`);
    }
    spec.count = count as number;
  }
  if (pathPrefix !== undefined) {
    if (typeof pathPrefix !== 'string') {
      throw new RangeError(`failure.pathPrefix must be a string, got ${show(pathPrefix)}`);
    }
    spec.pathPrefix = pathPrefix;
  }
  if (afterEvents !== undefined) {
    if (!Number.isSafeInteger(afterEvents) || (afterEvents as number) < 1) {
      throw new RangeError(`failure.afterEvents must be an integer >= 1, got ${show(afterEvents)}`);
    }
    spec.afterEvents = afterEvents as number;
  }
  return spec;
}

/**
 * Validates a partial set of knobs from untrusted input (unknown keys are refused, so a typo
 * in a benchmark script fails loudly instead of silently doing nothing).
 */
export function parseKnobs(v: unknown): Partial<MockKnobs> {
  if (!isRecord(v)) throw new RangeError(`knobs must be an object, got ${show(v)}`);
  const out: Partial<MockKnobs> = {};
  for (const [key, value] of Object.entries(v)) {
    if (value === undefined) continue;
    switch (key) {
      case 'latencyMs':
        out.latencyMs = nonNegativeNumber(key, value);
        break;
      case 'streamChunkDelayMs':
        out.streamChunkDelayMs = nonNegativeNumber(key, value);
        break;
      case 'capacity':
        out.capacity = nonNegativeInteger(key, value);
        break;
      case 'ratePerSecond':
        out.ratePerSecond = nonNegativeNumber(key, value);
        break;
      case 'rateBurst': {
        const burst = nonNegativeInteger(key, value);
        if (burst < 1) throw new RangeError(`rateBurst must be an integer >= 1, got ${burst}`);
        out.rateBurst = burst;
        break;
      }
      case 'apiKey':
        if (value !== null && (typeof value !== 'string' || value.length === 0)) {
          throw new RangeError(`apiKey must be a non-empty string or null, got ${show(value)}`);
        }
        out.apiKey = value;
        break;
      case 'gzipJson':
        if (typeof value !== 'boolean') {
          throw new RangeError(`gzipJson must be true or false, got ${show(value)}`);
        }
        out.gzipJson = value;
        break;
      case 'overCapacity':
        if (value !== 'queue' && value !== 'reject') {
          throw new RangeError(`overCapacity must be 'queue' or 'reject', got ${show(value)}`);
        }
        out.overCapacity = value;
        break;
      case 'failure':
        out.failure = parseFailureSpec(value);
        break;
      case 'embeddingDim': {
        const dim = nonNegativeInteger(key, value);
        if (dim < 1 || dim > MAX_EMBEDDING_DIM) {
          throw new RangeError(`embeddingDim must be 1..${MAX_EMBEDDING_DIM}, got ${dim}`);
        }
        out.embeddingDim = dim;
        break;
      }
      default:
        throw new RangeError(`unknown knob ${show(key)}`);
    }
  }
  return out;
}
