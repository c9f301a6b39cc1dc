/**
 * What is cached, on purpose. Pure functions over what access and log read, so each rule has
 * a unit test.
 *
 * Looked up and stored: POST `…/chat/completions` with `temperature` at or below the plan's
 * `max_temperature` (absent means 1, OpenAI's default) and not streamed; POST `…/embeddings`
 * (deterministic) when `cache_embeddings` is on. Streamed requests (`"stream": true`) bypass
 * the cache: they are neither served from it nor stored (a stored whole answer replayed as one
 * SSE burst would not be the stream the client asked for).
 *
 * Stored from log only when: status 200, a JSON body that parses, no `Cache-Control: no-store`
 * or `private` from the upstream, the body within `max_entry_bytes` after decompression, and
 * the served model is the one asked for (a budget downgrade must not be replayed later).
 */
import { brotliDecompressSync, gunzipSync, inflateSync } from 'node:zlib';
import { firstHeader, type HeaderMap } from '../../lib/pdk/kong';
import type { PlanPolicy } from './schema';

export type Endpoint = 'chat' | 'embeddings';

export type BypassReason =
  | 'method'
  | 'endpoint'
  | 'no_store'
  | 'no_cache'
  | 'stream'
  | 'not_deterministic'
  | 'no_model'
  | 'not_json'
  | 'not_object'
  | 'duplicate_keys'
  | 'too_deep'
  | 'too_large'
  | 'plan_disabled'
  | 'no_route'
  | 'no_master_key';

export type SkipReason =
  | 'status'
  | 'no_store'
  | 'encoding'
  | 'too_large'
  | 'not_json'
  | 'model_mismatch'
  | 'redis_unavailable'
  | 'no_answer'
  | 'error';

export function endpointOf(pathWithQuery: string, cacheEmbeddings: boolean): Endpoint | null {
  const path = pathWithQuery.split('?')[0] ?? '';
  if (path.endsWith('/chat/completions')) return 'chat';
  if (cacheEmbeddings && path.endsWith('/embeddings')) return 'embeddings';
  return null;
}

function directives(value: string | undefined): Set<string> {
  const out = new Set<string>();
  for (const part of (value ?? '').split(',')) {
    const d = part.trim().toLowerCase().split('=')[0]?.trim();
    if (d) out.add(d);
  }
  return out;
}

/**
 * The client's wishes: `no-store` (neither read nor write the cache), `no-cache` or
 * `max-age=0` or `Pragma: no-cache` (do not answer from the cache; a fresh answer may refresh
 * it).
 */
export function clientCacheControl(headers: HeaderMap): 'no_store' | 'no_cache' | null {
  const cc = directives((headers['cache-control'] ?? []).join(','));
  if (cc.has('no-store')) return 'no_store';
  const maxAge0 = (headers['cache-control'] ?? []).some((v) => /max-age\s*=\s*0\b/i.test(v));
  if (cc.has('no-cache') || maxAge0) return 'no_cache';
  if (directives(firstHeader(headers, 'pragma')).has('no-cache')) return 'no_cache';
  return null;
}

/** Why this request body is not cacheable under `policy`, or null when it is. */
export function bodyVerdict(
  endpoint: Endpoint,
  body: Record<string, unknown>,
  policy: PlanPolicy,
): BypassReason | null {
  if (typeof body.model !== 'string' || body.model === '') return 'no_model';
  if (endpoint === 'embeddings') return null;
  if (body.stream === true) return 'stream';
  const t = body.temperature;
  const temperature = t === undefined || t === null ? 1 : t;
  if (typeof temperature !== 'number' || !(temperature <= policy.maxTemperature)) {
    return 'not_deterministic';
  }
  return null;
}

/** An upstream `Cache-Control` that forbids keeping the answer. */
export function upstreamForbidsStore(headers: HeaderMap): boolean {
  const cc = directives((headers['cache-control'] ?? []).join(','));
  return cc.has('no-store') || cc.has('private');
}

const SNAPSHOT = /^-\d{4}-\d{2}-\d{2}$/;

/**
 * True when `served` is the model asked for: the same name, or its dated snapshot
 * (`gpt-4o` served as `gpt-4o-2024-08-06`). `gpt-4o-mini` is not `gpt-4o`.
 */
export function servedModelMatches(asked: string, served: unknown): boolean {
  if (typeof served !== 'string') return false;
  if (served === asked) return true;
  return served.startsWith(asked) && SNAPSHOT.test(served.slice(asked.length));
}

/**
 * The body as the client would read it decoded: gzip, deflate and br are undone (bounded by
 * `max`); any other encoding is not stored.
 */
export function decodeBody(
  raw: Buffer,
  contentEncoding: string | undefined,
  max: number,
): Buffer | 'encoding' | 'too_large' {
  const enc = (contentEncoding ?? 'identity').trim().toLowerCase();
  try {
    let out: Buffer;
    if (enc === '' || enc === 'identity') out = raw;
    else if (enc === 'gzip' || enc === 'x-gzip')
      out = gunzipSync(raw, { maxOutputLength: max + 1 });
    else if (enc === 'deflate') out = inflateSync(raw, { maxOutputLength: max + 1 });
    else if (enc === 'br') out = brotliDecompressSync(raw, { maxOutputLength: max + 1 });
    else return 'encoding';
    return out.length > max ? 'too_large' : out;
  } catch (e) {
    // zlib refuses output past maxOutputLength with a RangeError.
    return e instanceof RangeError ? 'too_large' : 'encoding';
  }
}
