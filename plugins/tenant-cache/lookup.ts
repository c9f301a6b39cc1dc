/**
 * The lookup of access: the exact entry first (one Redis round trip for it and the
 * generations in force), then, on an exact miss, the semantic cache when the plan has it on;
 * and the hit's answer. A miss or a `no-cache` bypass carries what log needs to store the
 * fresh answer (pending.ts). An unavailable Redis is a miss that stores nothing.
 */
import { untilFirstConnected } from '../../lib/redis/client';
import type { KongPdk } from '../../lib/pdk/kong';
import type { RequestScope } from '../../lib/request/scope';
import type { TenantContext } from '../../lib/tenant/context';
import { cacheKeyFor } from './cache-key';
import { readCacheable, type Bypass, type Cacheable } from './cacheable';
import { decodeEntry, type CachedResponse, type Generations } from './entry';
import { entryAlarm, redisUnavailable } from './errors';
import * as metrics from './metrics';
import type { Pending } from './pending';
import type { BypassReason } from './policy';
import type { Ready, StartUp } from './ready';
import { lookup } from './redis';
import { semanticScope, type SemanticRequest } from './semantic/key';
import { semanticHit, semanticQuestion } from './semantic/lookup';

export interface Hit {
  readonly status: 'hit';
  readonly match: 'exact' | 'semantic';
  readonly body: string;
  readonly contentType: string;
  readonly ageSeconds: number;
}

export type Outcome =
  | { status: 'bypass'; reason: BypassReason; pending?: Pending }
  | { status: 'miss'; reason: string; pending?: Pending }
  | Hit;

function hitOf(match: Hit['match'], r: CachedResponse): Hit {
  return {
    status: 'hit',
    match,
    body: r.body,
    contentType: r.contentType,
    ageSeconds: Math.max(0, Math.floor((Date.now() - r.createdAt) / 1000)),
  };
}

/** What log needs to store the answer under the generations just read. */
function pendingOf(
  ready: Ready,
  ctx: TenantContext,
  req: Cacheable,
  digest: string,
  question: SemanticRequest | null,
  gens: Generations,
): Pending {
  const { method, pathWithQuery, routeId, serviceId } = req.identity;
  const scope =
    question &&
    semanticScope(
      ctx,
      ready.keyring,
      { method, pathWithQuery, routeId, serviceId, context: question.context },
      gens,
    );
  return {
    v: 1,
    d: digest,
    kg: gens.knowledge,
    cg: gens.cache,
    // The model that serves the request: tenant-auth's decision on a tiered plan.
    m: ctx.model?.served ?? (req.body.model as string),
    ttl: req.policy.ttlSeconds,
    ...(scope && question ? { s: { sc: scope, q: question.question } } : {}),
  };
}

/** Hit, miss or bypass for this request, reading only what the decision needs. */
export async function decide(
  state: StartUp,
  k: KongPdk,
  scope: RequestScope,
  ctx: TenantContext,
  tenant: string,
): Promise<Outcome> {
  if (!state.ok) return { status: 'bypass', reason: 'no_master_key' };
  const ready = state.ready;
  const req = await readCacheable(ready.config, k, scope, ctx);
  if (req.status === 'bypass') return req satisfies Bypass;
  const key = cacheKeyFor(ctx, ready.keyring, ready.keyspace, req.identity);
  // The semantic cache: chat only, when the plan has it on and the request has a question.
  const question =
    req.policy.semantic && req.endpoint === 'chat'
      ? semanticQuestion(ready, req.body, tenant)
      : null;

  let found;
  try {
    await untilFirstConnected(ready.redis, ready.config.redis.timeout_ms);
    found = await lookup(ready.redis, ready.keyspace, ctx, key.redisKey);
  } catch (e) {
    redisUnavailable(e, 'lookup');
    // Nothing will be stored either: the store would most likely fail too.
    return req.wish === 'no_cache'
      ? { status: 'bypass', reason: 'no_cache' }
      : { status: 'miss', reason: 'redis_unavailable' };
  }
  const pending = pendingOf(ready, ctx, req, key.digest, question, found.generations);
  if (req.wish === 'no_cache') return { status: 'bypass', reason: 'no_cache', pending };
  const exactMiss = async (reason: string): Promise<Outcome> => {
    const similar =
      pending.s &&
      (await semanticHit(ready, k, ctx, tenant, pending.s, req.policy.similarityThreshold));
    return similar ? hitOf('semantic', similar) : { status: 'miss', reason, pending };
  };
  if (found.value === null) return exactMiss('absent');
  const forTenant = ready.keyring.forTenant(ctx);
  const entry = decodeEntry(forTenant, key.redisKey, found.generations, found.value);
  if (entry.kind === 'stale') return exactMiss('stale');
  if (entry.kind === 'forged') {
    await entryAlarm(k, tenant, ctx.tenantId);
    return exactMiss('decrypt_failed');
  }
  return hitOf('exact', entry.response);
}

/** Answers a hit from access: Kong sends it, the upstream is never called. */
export function answerHit(k: KongPdk, hit: Hit, tenant: string): void {
  metrics.servedBytes.inc({ tenant }, Buffer.byteLength(hit.body));
  void k.response.exit(200, hit.body, {
    'Content-Type': hit.contentType,
    'X-Cache-Status': 'HIT',
    Age: String(hit.ageSeconds),
    ...(hit.match === 'semantic' ? { 'X-Cache-Match': 'semantic' } : {}),
  });
}
