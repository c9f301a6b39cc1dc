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
import { readRequest } from '../../lib/tenant/read';
import type { TenantId } from '../../lib/tenant/tenant-id';
import { cacheKeyFor } from './cache-key';
import { readCacheable, type Bypass, type Cacheable } from './cacheable';
import { decodeEntry, type CachedResponse, type Generations } from './entry';
import { entryAlarm, redisUnavailable } from './errors';
import * as metrics from './metrics';
import { PLUGIN_NAME, type Pending } from './pending';
import type { BypassReason } from './policy';
import type { Ready, StartUp } from './ready';
import { lookup, type Lookup } from './redis';
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
    rt: routeId,
    ...(scope && question ? { s: { sc: scope, q: question.question } } : {}),
  };
}

/** What the exact lookup needs, and its reply (or why Redis gave none), started once. */
interface Looked {
  readonly status: 'looked';
  readonly req: Cacheable;
  readonly key: ReturnType<typeof cacheKeyFor>;
  readonly question: SemanticRequest | null;
  readonly found: Promise<{ ok: true; value: Lookup } | { ok: false; error: unknown }>;
}

/** The request's cacheability and key, with its exact lookup under way. Writes nothing. */
async function prepare(
  ready: Ready,
  k: KongPdk,
  scope: RequestScope,
  ctx: TenantContext,
  tenant: string,
): Promise<Looked | Bypass> {
  const req = await readCacheable(ready.config, k, scope, ctx);
  if (req.status === 'bypass') return req satisfies Bypass;
  const key = cacheKeyFor(ctx, ready.keyring, ready.keyspace, req.identity);
  // The semantic cache: chat only, when the plan has it on and the request has a question.
  const question =
    req.policy.semantic && req.endpoint === 'chat'
      ? semanticQuestion(ready, req.body, tenant)
      : null;
  const found = untilFirstConnected(ready.redis, ready.config.redis.timeout_ms)
    .then(() => lookup(ready.redis, ready.keyspace, ctx, key.redisKey))
    .then(
      (value) => ({ ok: true as const, value }),
      (error: unknown) => ({ ok: false as const, error }),
    );
  return { status: 'looked', req, key, question, found };
}

/**
 * Lookups started early, by event (the `kong` object of one access phase): tenant-cache's
 * `early` in the co-hosted chain, before tenant-ratelimit's admission. Only this request's own
 * access can take its entry (the key is its event), and the entry goes with the event.
 */
const started = new WeakMap<object, Promise<Looked | Bypass>>();

/** Starts this request's exact lookup (read-only) for its access to take. */
export function startEarly(state: StartUp, k: KongPdk, labels: (id: TenantId) => string): void {
  if (!state.ok) return;
  const ready = state.ready;
  const early = readRequest(k, PLUGIN_NAME).then(({ tenant: ctx, scope }) =>
    prepare(ready, k, scope, ctx, labels(ctx.tenantId)),
  );
  // Access takes it (and then sees its error) or does the work itself.
  early.catch(() => undefined);
  started.set(k, early);
}

async function takeEarly(k: KongPdk): Promise<Looked | Bypass | undefined> {
  const early = started.get(k);
  if (!early) return undefined;
  started.delete(k);
  return early.catch(() => undefined);
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
  const looked = (await takeEarly(k)) ?? (await prepare(ready, k, scope, ctx, tenant));
  if (looked.status === 'bypass') return looked;
  const { req, key, question } = looked;
  const reply = await looked.found;
  if (!reply.ok) {
    redisUnavailable(reply.error, 'lookup');
    // Nothing will be stored either: the store would most likely fail too.
    return req.wish === 'no_cache'
      ? { status: 'bypass', reason: 'no_cache' }
      : { status: 'miss', reason: 'redis_unavailable' };
  }
  const found = reply.value;
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
