/**
 * A captured request and its outcome (issue 23): what `npm run replay` loads, sends again
 * and turns into an eval case. Built in two halves on two sides of the response:
 *
 * - the **draft**, in tenant-auth's access phase: the request headers and body exactly as the
 *   tenant sent them (before persona, tier or budget rewrites), minus every credential;
 * - the **outcome**, in token-meter's log phase: status, model requested and served, cache
 *   and budget state, usage, and the answer (the raw response prefix the answer snippet kept).
 *
 * The record is JSON, sealed per tenant (crypto.ts) before it reaches Redis (store.ts).
 */
import type { HeaderMap } from '../pdk/kong';
import { AUTH_IDENTITY_HEADERS, isGatewayOwnedHeader } from '../tenant/headers';

export const CAPTURE_RECORD_VERSION = 1;

/** Never captured, whatever the configuration says: credentials and session state. */
const ALWAYS_SECRET = new Set([
  'authorization',
  'proxy-authorization',
  'apikey',
  'api-key',
  'x-api-key',
  'cookie',
  'set-cookie',
]);

/**
 * Names that look like a credential are dropped too: a deployment may authenticate with a
 * header nobody listed (`x-acme-token`); losing a harmless header beats storing a key.
 */
const SECRET_LOOKING = /auth|token|secret|passw|session|cookie|(^|-)key$|api-?key|signature/i;

/** Headers that describe one connection, not the request: never replayed, so not kept. */
const HOP_BY_HOP = new Set([
  'host',
  'connection',
  'keep-alive',
  'transfer-encoding',
  'content-length',
  'te',
  'trailer',
  'upgrade',
  'expect',
]);

export function isSecretHeader(name: string, extra: ReadonlySet<string> = new Set()): boolean {
  const n = name.toLowerCase();
  return ALWAYS_SECRET.has(n) || extra.has(n) || SECRET_LOOKING.test(n);
}

/**
 * The headers worth keeping: what the tenant sent, so neither a credential (of any spelling),
 * nor hop-by-hop, nor what the gateway itself adds or owns (Kong's auth plugins' identity
 * headers, `X-Tenant-*`: set before tenant-auth runs, or stripped by it).
 */
export function capturableHeaders(
  headers: HeaderMap,
  extraSecret: ReadonlySet<string> = new Set(),
): Record<string, string[]> {
  const out: Record<string, string[]> = {};
  for (const [name, values] of Object.entries(headers)) {
    const n = name.toLowerCase();
    if (HOP_BY_HOP.has(n) || isSecretHeader(n, extraSecret)) continue;
    const dashed = n.replace(/_/g, '-');
    if (AUTH_IDENTITY_HEADERS.includes(dashed) || isGatewayOwnedHeader(n, new Set())) continue;
    out[n] = values.map(String);
  }
  return out;
}

/** tenant-auth's half: the request as the tenant sent it. */
export interface CaptureDraft {
  readonly headers: Record<string, string[]>;
  /** The body as sent (UTF-8 text, or base64 when it was not text); null when none was read. */
  readonly body: string | null;
  readonly bodyEncoding: 'utf8' | 'base64';
  /** The body's size in bytes (it may be larger than what is kept). */
  readonly bodyBytes: number;
}

export function draftFrom(headers: Record<string, string[]>, body: Buffer | null): CaptureDraft {
  if (body === null) return { headers, body: null, bodyEncoding: 'utf8', bodyBytes: 0 };
  const text = body.toString('utf8');
  const isText = Buffer.from(text, 'utf8').equals(body);
  return {
    headers,
    body: isText ? text : body.toString('base64'),
    bodyEncoding: isText ? 'utf8' : 'base64',
    bodyBytes: body.length,
  };
}

export function encodeDraft(d: CaptureDraft): string {
  return JSON.stringify(d);
}

type Obj = Record<string, unknown>;
const isObj = (v: unknown): v is Obj => typeof v === 'object' && v !== null && !Array.isArray(v);

function isHeaderRecord(v: unknown): v is Record<string, string[]> {
  return (
    isObj(v) &&
    Object.values(v).every((x) => Array.isArray(x) && x.every((s) => typeof s === 'string'))
  );
}

/** undefined for anything that is not a draft (the value crossed a process boundary). */
export function decodeDraft(raw: unknown): CaptureDraft | undefined {
  if (typeof raw !== 'string' || raw.length < 2 || raw[0] !== '{') return undefined;
  let v: unknown;
  try {
    v = JSON.parse(raw);
  } catch {
    return undefined;
  }
  if (!isObj(v) || !isHeaderRecord(v.headers)) return undefined;
  if (v.body !== null && typeof v.body !== 'string') return undefined;
  if (v.bodyEncoding !== 'utf8' && v.bodyEncoding !== 'base64') return undefined;
  if (typeof v.bodyBytes !== 'number') return undefined;
  return {
    headers: v.headers,
    body: v.body,
    bodyEncoding: v.bodyEncoding,
    bodyBytes: v.bodyBytes,
  };
}

export interface CapturedUsage {
  readonly promptTokens: number;
  readonly completionTokens: number;
  readonly totalTokens: number;
  readonly cachedTokens: number;
}

/** token-meter's half: what the tenant got back. */
export interface CapturedOutcome {
  readonly status: number;
  readonly modelRequested: string | null;
  readonly modelServed: string | null;
  /** `X-Cache-Status` as the client saw it (HIT, MISS, BYPASS), null without tenant-cache. */
  readonly cacheStatus: string | null;
  /** `X-Budget-State` (ok, fallback, clamp, unchecked, exhausted). */
  readonly budgetState: string | null;
  readonly usage: CapturedUsage | null;
  /** Whether the answer was a stream (SSE). */
  readonly stream: boolean;
  /** The answer's text (a completion's message, a stream's deltas), or an error's message. */
  readonly answer: string | null;
  /** `error.code` of an OpenAI-style error body. */
  readonly errorCode: string | null;
  /** The answer was cut (the snippet's or the configured bound). */
  readonly answerTruncated: boolean;
}

export interface CaptureRecord {
  readonly v: typeof CAPTURE_RECORD_VERSION;
  readonly tenant: string;
  readonly plan: string;
  readonly requestId: string;
  /** ms since the epoch. */
  readonly capturedAt: number;
  readonly request: {
    readonly method: string;
    /** Path and query string as the client sent them. */
    readonly path: string;
  } & CaptureDraft;
  /** Why the body was not kept (over the configured bound), when it was not. */
  readonly bodyOmitted: 'too_large' | null;
  readonly outcome: CapturedOutcome;
}

/** Validates a decrypted record (written by this code, but checked like any input). */
export function parseCaptureRecord(raw: string): CaptureRecord | undefined {
  let v: unknown;
  try {
    v = JSON.parse(raw);
  } catch {
    return undefined;
  }
  if (!isObj(v) || v.v !== CAPTURE_RECORD_VERSION) return undefined;
  if (typeof v.tenant !== 'string' || typeof v.requestId !== 'string') return undefined;
  if (typeof v.plan !== 'string' || typeof v.capturedAt !== 'number') return undefined;
  const r = v.request;
  if (!isObj(r) || typeof r.method !== 'string' || typeof r.path !== 'string') return undefined;
  const draft = decodeDraft(JSON.stringify(r));
  if (!draft) return undefined;
  const o = v.outcome;
  if (!isObj(o) || typeof o.status !== 'number') return undefined;
  return v as unknown as CaptureRecord;
}

/** What an answer's raw bytes say: its text, its error code, whether it was a stream. */
export interface ReadAnswer {
  readonly text: string | null;
  readonly errorCode: string | null;
  readonly stream: boolean;
  readonly model: string | null;
}

function messageText(content: unknown): string | null {
  if (typeof content === 'string') return content;
  if (Array.isArray(content)) {
    const parts = content
      .map((p) => (isObj(p) && typeof p.text === 'string' ? p.text : ''))
      .filter((s) => s.length > 0);
    return parts.length > 0 ? parts.join('') : null;
  }
  return null;
}

/**
 * Reads a response body (possibly cut short): a chat completion's first message, a stream's
 * concatenated deltas, an embedding's shape, or an OpenAI-style error's message and code.
 */
export function readAnswer(raw: string): ReadAnswer {
  const trimmed = raw.trimStart();
  if (trimmed.startsWith('data:')) {
    let text = '';
    let model: string | null = null;
    let errorCode: string | null = null;
    for (const line of trimmed.split('\n')) {
      if (!line.startsWith('data:')) continue;
      const data = line.slice(5).trim();
      if (data === '[DONE]' || data === '') continue;
      try {
        const ev = JSON.parse(data) as unknown;
        if (!isObj(ev)) continue;
        if (typeof ev.model === 'string') model ??= ev.model;
        if (isObj(ev.error) && typeof ev.error.code === 'string') errorCode = ev.error.code;
        const choices = Array.isArray(ev.choices) ? ev.choices : [];
        const first: unknown = choices[0];
        if (isObj(first) && isObj(first.delta) && typeof first.delta.content === 'string') {
          text += first.delta.content;
        }
      } catch {
        // the last event may be cut short
      }
    }
    return { text, errorCode, stream: true, model };
  }
  let v: unknown;
  try {
    v = JSON.parse(trimmed);
  } catch {
    return {
      text: trimmed.length > 0 ? trimmed : null,
      errorCode: null,
      stream: false,
      model: null,
    };
  }
  if (!isObj(v)) return { text: null, errorCode: null, stream: false, model: null };
  const model = typeof v.model === 'string' ? v.model : null;
  if (isObj(v.error)) {
    const e = v.error;
    return {
      text: typeof e.message === 'string' ? e.message : null,
      errorCode: typeof e.code === 'string' ? e.code : null,
      stream: false,
      model,
    };
  }
  const choices = Array.isArray(v.choices) ? v.choices : [];
  const first: unknown = choices[0];
  if (isObj(first) && isObj(first.message)) {
    return { text: messageText(first.message.content), errorCode: null, stream: false, model };
  }
  if (isObj(first) && typeof first.text === 'string') {
    return { text: first.text, errorCode: null, stream: false, model };
  }
  if (Array.isArray(v.data)) {
    return { text: `(${v.data.length} embedding(s))`, errorCode: null, stream: false, model };
  }
  return { text: null, errorCode: null, stream: false, model };
}
