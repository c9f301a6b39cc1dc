/**
 * What one cache entry holds in Redis, and how it is checked on the way out.
 *
 * Value: `tc1.<key id>.<knowledge gen>.<cache gen>.<base64(iv ‖ ciphertext ‖ tag)>`.
 * The generations are in clear so that an entry from an older generation is recognised as
 * stale (an ordinary miss) without an alarm; they are also bound into the GCM associated data
 * with the tenant, the key id and the entry's own Redis key, so changing any of them, or
 * moving the value under another key or tenant, makes decryption fail (an alarm, and a miss).
 */
import type { RedisKey } from '../../lib/redis/keys';
import { createHash } from 'node:crypto';
import { open, seal, type TenantCacheKeys } from './crypto';

const FORMAT = 'tc1';

export interface CachedResponse {
  /** ms since the epoch, when the upstream answered. */
  readonly createdAt: number;
  readonly contentType: string;
  /** The model that served it (equal to the one asked for). */
  readonly model: string;
  /** The decoded (uncompressed) body. */
  readonly body: string;
}

export interface Generations {
  readonly knowledge: string;
  readonly cache: string;
}

/** What is sealed of an answer, in an entry and in a semantic row alike. */
export function responsePlaintext(response: CachedResponse): Buffer {
  return Buffer.from(
    JSON.stringify({
      c: response.createdAt,
      t: response.contentType,
      m: response.model,
      b: response.body,
    }),
    'utf8',
  );
}

/** The answer an opened plaintext holds, or null for anything else (then forged). */
export function responseOf(plain: Buffer): CachedResponse | null {
  let o: unknown;
  try {
    o = JSON.parse(plain.toString('utf8'));
  } catch {
    return null;
  }
  if (o === null || typeof o !== 'object') return null;
  const { c, t, m, b } = o as Record<string, unknown>;
  if (typeof c !== 'number' || typeof t !== 'string' || typeof m !== 'string') return null;
  return typeof b === 'string' ? { createdAt: c, contentType: t, model: m, body: b } : null;
}

const GEN_PATTERN = /^[A-Za-z0-9_-]{1,64}$/;

/** A generation as read from Redis, in a form safe inside the value: absent is "0". */
export function generation(raw: string | null | undefined): string {
  if (raw === null || raw === undefined || raw === '') return '0';
  if (GEN_PATTERN.test(raw)) return raw;
  return `h${createHash('sha256').update(raw).digest('hex').slice(0, 32)}`;
}

function aad(keys: TenantCacheKeys, key: RedisKey, gens: Generations): string {
  return [FORMAT, keys.tenantId, keys.keyId, key, gens.knowledge, gens.cache].join('|');
}

export function encodeEntry(
  keys: TenantCacheKeys,
  key: RedisKey,
  gens: Generations,
  response: CachedResponse,
): string {
  const sealed = seal(keys, aad(keys, key, gens), responsePlaintext(response));
  return [FORMAT, keys.keyId, gens.knowledge, gens.cache, sealed.toString('base64')].join('.');
}

export type EntryVerdict =
  | { kind: 'hit'; response: CachedResponse }
  /** Written under other generations, another key id or format: an ordinary miss. */
  | { kind: 'stale' }
  /** Authentication failed: not sealed by this tenant for this key. An alarm. */
  | { kind: 'forged' };

export function decodeEntry(
  keys: TenantCacheKeys,
  key: RedisKey,
  gens: Generations,
  value: string,
): EntryVerdict {
  const parts = value.split('.');
  if (parts.length !== 5 || parts[0] !== FORMAT) return { kind: 'forged' };
  const [, keyId, knowledge, cache, b64] = parts as [string, string, string, string, string];
  if (keyId !== keys.keyId || knowledge !== gens.knowledge || cache !== gens.cache) {
    return { kind: 'stale' };
  }
  const plain = open(keys, aad(keys, key, gens), Buffer.from(b64, 'base64'));
  const response = plain === null ? null : responseOf(plain);
  return response === null ? { kind: 'forged' } : { kind: 'hit', response };
}
