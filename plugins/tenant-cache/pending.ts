/**
 * What access leaves for log on a cacheable miss: the entry to write and how. Kept in the
 * request's scope (no PDK call), else in `kong.ctx.shared` as versioned JSON
 * (lib/request/for-log.ts); read back through one codec that refuses any other shape. The
 * Redis key is not in it: log rebuilds it from the digest and the TenantContext, so a value
 * planted in ctx.shared cannot point a store at another tenant's key.
 */
import type { LogRecordSpec } from '../../lib/request/for-log';
import { slot } from '../../lib/request/scope';
import { SCOPE_PATTERN } from './semantic/key';
import { SHARED_KEYS } from '../../lib/request/shared-keys';

export const PLUGIN_NAME = 'tenant-cache';

/** The `kong.ctx.shared` key of the pending store when the request's scope cannot be found. */
export const PENDING_KEY = SHARED_KEYS.cachePending.key;

/** The semantic cache's share: the scope and the question, when the plan has it on. */
export interface SemanticPending {
  sc: string;
  q: string;
}

export interface Pending {
  v: 1;
  /** The entry's digest; log rebuilds the Redis key from it and the TenantContext. */
  d: string;
  kg: string;
  cg: string;
  /** The model that will serve the request (the stored answer must come from it). */
  m: string;
  ttl: number;
  s?: SemanticPending;
  /** The route (capture.ts learns per route whether it keeps answers). */
  rt?: string;
  /** Buffered by Kong (its route not yet seen keeping answers, capture.ts): the store may ask for the body. */
  b?: 1;
}

/** The pending store, or undefined for anything else (another version, another writer). */
export function decodePending(raw: unknown): Pending | undefined {
  if (typeof raw !== 'string') return undefined;
  try {
    const p = JSON.parse(raw) as Partial<Pending>;
    if (
      p.v === 1 &&
      typeof p.d === 'string' &&
      typeof p.kg === 'string' &&
      typeof p.cg === 'string' &&
      typeof p.m === 'string' &&
      typeof p.ttl === 'number' &&
      (p.b === undefined || p.b === 1) &&
      (p.rt === undefined || typeof p.rt === 'string') &&
      (p.s === undefined ||
        (typeof p.s === 'object' &&
          p.s !== null &&
          typeof p.s.sc === 'string' &&
          SCOPE_PATTERN.test(p.s.sc) &&
          typeof p.s.q === 'string'))
    ) {
      return p as Pending;
    }
  } catch {
    // not ours
  }
  return undefined;
}

/** Access's record for log on a cacheable miss: in the request's scope, else ctx.shared. */
export const PENDING: LogRecordSpec<Pending> = {
  plugin: PLUGIN_NAME,
  // Last in the chain's log phase: a store (and a semantic store's embedding) frees nothing.
  order: 2,
  slot: slot<Pending>(PENDING_KEY),
  sharedKey: PENDING_KEY,
  encode: (p) => JSON.stringify(p),
  decode: decodePending,
};
