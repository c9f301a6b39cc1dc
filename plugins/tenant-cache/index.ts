/**
 * tenant-cache: an exact-match response cache whose every key holds the tenant, with cached
 * bodies encrypted under a per-tenant key. Hits are answered from `access` with
 * `kong.response.exit`; a cacheable miss turns on response buffering for that request only and
 * is stored from `log`. No `response` method: streams are never buffered by this plugin.
 * Redis down or slow is a miss (with a metric), never an error and never a wrong answer.
 *
 * PDK calls (each one IPC round trip with Kong), access:
 *   ctx.shared.get (TenantContext), request.getMethod, request.getPathWithQuery,
 *   request.getHeaders, request.getRawBody, router.getRoute, ctx.shared.set (status)
 *   hit:    + response.exit                                                          = 8
 *   miss:   + ctx.shared.set (pending store), service.request.enableBuffering
 *           + response.setHeader (X-Cache-Status, when status_header)                = 9 / 10
 *   bypass: fewer — it stops at the first read that decides it, + ctx.shared.set and
 *           response.setHeader (when status_header): 4 for a GET, 6 for a streamed chat.
 * log: ctx.shared.get (pending) = 1 when nothing is to be stored; a store adds ctx.shared.get
 *   (TenantContext), response.getStatus, response.getHeaders, service.response.getRawBody = 5.
 * The semantic cache (semantic.ts, off by default) adds no PDK call: after an exact miss it
 * looks up in Milvus under its own deadline (a hit exits like an exact hit, with
 * `X-Cache-Match: semantic`); its scope and question ride in the same pending value to log.
 */
import type { RedisClient } from '../../lib/redis/client';
import { CACHE_STATUS_KEY, CACHE_STATUS_SLOT, type CacheStatus } from '../../lib/cache/status';
import { serveMetrics } from '../../lib/metrics/registry';
import { bodyToBuffer, firstHeader, normaliseHeaderMap, type KongPdk } from '../../lib/pdk/kong';
import { guardPhase } from '../../lib/plugin/phase';
import { createRedis, untilFirstConnected } from '../../lib/redis/client';
import { isRedisUnavailable } from '../../lib/redis/errors';
import { createKeyspace, type Keyspace } from '../../lib/redis/keys';
import { readConfig } from '../../lib/schema/config';
import type { TenantContext } from '../../lib/tenant/context';
import { readRequest, readTenantContext } from '../../lib/tenant/read';
import { leaveForLog, takeForLog, type LogRecordSpec } from '../../lib/request/for-log';
import { slot, type RequestScope } from '../../lib/request/scope';
import { NotCanonicalisable, canonicalRequest } from './canonical';
import { cacheKeyFor } from './cache-key';
import { CacheKeyring, loadMasterSecret } from './crypto';
import { decodeEntry, encodeEntry, type CachedResponse, type Generations } from './entry';
import * as metrics from './metrics';
import {
  bodyVerdict,
  clientCacheControl,
  decodeBody,
  endpointOf,
  servedModelMatches,
  upstreamForbidsStore,
  type BypassReason,
  type SkipReason,
} from './policy';
import { Schema, checkConfig, planPolicy, type TenantCacheConfig } from './schema';
import { lookup, storeEntry } from './store';
import type { SemanticStore } from './semantic';
import { semanticStoreFor } from './semantic-runtime';
import {
  SCOPE_PATTERN,
  semanticRequest,
  semanticScope,
  type SemanticRequest,
} from './semantic-key';

export const Name = 'tenant-cache';
export const Version = '0.1.0';
/** After tenant-ratelimit (1000), before token-meter (800). */
export const Priority = 900;
export { Schema };

/** What access leaves for log on a cacheable miss (ctx.shared, versioned JSON). */
export const PENDING_KEY = 'tenant_cache_pending';

interface Pending {
  v: 1;
  /** The entry's digest; log rebuilds the Redis key from it and the TenantContext. */
  d: string;
  kg: string;
  cg: string;
  /** The model that will serve the request (the stored answer must come from it). */
  m: string;
  ttl: number;
  /** Semantic cache: the scope and the question, when the plan has it on. */
  s?: { sc: string; q: string };
}

function decodePending(raw: unknown): Pending | null {
  if (typeof raw !== 'string') return null;
  try {
    const p = JSON.parse(raw) as Partial<Pending>;
    if (
      p.v === 1 &&
      typeof p.d === 'string' &&
      typeof p.kg === 'string' &&
      typeof p.cg === 'string' &&
      typeof p.m === 'string' &&
      typeof p.ttl === 'number' &&
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
  return null;
}

/** The upstream's JSON content type, kept for the replay; anything else becomes plain JSON. */
function jsonContentType(ct: string | undefined): string {
  return ct && /^application\/json(\s*;\s*charset=[\w-]+)?$/i.test(ct.trim())
    ? ct.trim()
    : 'application/json';
}

function hitOf(match: 'exact' | 'semantic', r: CachedResponse): Outcome {
  return {
    status: 'hit',
    match,
    body: r.body,
    contentType: r.contentType,
    ageSeconds: Math.max(0, Math.floor((Date.now() - r.createdAt) / 1000)),
  };
}

type Outcome =
  | { status: 'bypass'; reason: BypassReason; pending?: Pending }
  | { status: 'miss'; reason: string; pending?: Pending }
  | {
      status: 'hit';
      match: 'exact' | 'semantic';
      body: string;
      contentType: string;
      ageSeconds: number;
    };

/** Access's record for log on a cacheable miss: in the request's scope, else ctx.shared. */
const PENDING: LogRecordSpec<Pending> = {
  plugin: Name,
  // Last in the chain's log phase: a store (and a semantic store's embedding) frees nothing.
  order: 2,
  slot: slot<Pending>(PENDING_KEY),
  sharedKey: PENDING_KEY,
  encode: (p) => JSON.stringify(p),
  decode: (raw) => decodePending(raw) ?? undefined,
};

export class Plugin {
  private readonly config: TenantCacheConfig;
  private readonly keyspace: Keyspace | null = null;
  private readonly keyring: CacheKeyring | null = null;
  private readonly redis: RedisClient | null = null;
  /** Why this instance cannot cache; every request then bypasses it. */
  private readonly misconfigured: string | null = null;

  /** Never throws: an unusable config (or no master secret) makes every request bypass. */
  constructor(raw: unknown) {
    this.config = readConfig<TenantCacheConfig>(Schema, raw);
    try {
      checkConfig(this.config);
      this.keyspace = createKeyspace(this.config.key_namespace);
      const { secret } = loadMasterSecret({
        env: this.config.master_key_env,
        file: this.config.master_key_file,
        ephemeral: this.config.ephemeral_key_when_missing,
      });
      this.keyring = new CacheKeyring(secret);
      this.redis = createRedis({
        url: this.config.redis_url,
        commandTimeoutMs: this.config.redis_timeout_ms,
      });
      serveMetrics('tenant-cache', this.config.metrics_port, this.config.metrics_host, (e) => {
        process.stderr.write(
          `tenant-cache: metrics endpoint ${this.config.metrics_host}:${this.config.metrics_port} failed: ${e.message}\n`,
        );
      });
    } catch (e) {
      this.misconfigured = e instanceof Error ? e.message : String(e);
      process.stderr.write(`tenant-cache: caching disabled: ${this.misconfigured}\n`);
    }
  }

  async access(kong: unknown): Promise<void> {
    await guardPhase(kong, Name, 'access', async (k) => {
      // Fails closed: no tenant, no cache read, no proxying.
      const { tenant: ctx, scope } = await readRequest(k, Name);
      const labels = metrics.tenantLabels(this.config.metrics_max_tenants);
      const tenant = labels.label(ctx.tenantId);
      const outcome = await this.decide(k, scope, ctx, tenant);
      const reason =
        outcome.status === 'hit'
          ? outcome.match === 'exact'
            ? 'hit'
            : 'semantic'
          : outcome.reason;
      metrics.lookups.inc({ tenant, status: outcome.status, reason });
      await k.ctx.shared.set(CACHE_STATUS_KEY, outcome.status satisfies CacheStatus);
      scope.set(CACHE_STATUS_SLOT, outcome.status);
      if (outcome.status === 'hit') {
        metrics.servedBytes.inc({ tenant }, Buffer.byteLength(outcome.body));
        void k.response.exit(200, outcome.body, {
          'Content-Type': outcome.contentType,
          'X-Cache-Status': 'HIT',
          Age: String(outcome.ageSeconds),
          ...(outcome.match === 'semantic' ? { 'X-Cache-Match': 'semantic' } : {}),
        });
        return;
      }
      if (outcome.pending) {
        await leaveForLog(k, scope, PENDING, outcome.pending, (lk, pending, sc) =>
          this.storeLogged(lk, pending, sc),
        );
        await k.service.request.enableBuffering();
      }
      if (this.config.status_header) {
        await k.response.setHeader('X-Cache-Status', outcome.status === 'miss' ? 'MISS' : 'BYPASS');
      }
    });
  }

  /** Reads what the decision needs, in order, stopping at the first read that decides it. */
  private async decide(
    k: KongPdk,
    scope: RequestScope,
    ctx: TenantContext,
    tenant: string,
  ): Promise<Outcome> {
    if (!this.keyring || !this.keyspace || !this.redis) {
      return { status: 'bypass', reason: 'no_master_key' };
    }
    const policy = planPolicy(this.config, ctx.plan);
    if (!policy.enabled) return { status: 'bypass', reason: 'plan_disabled' };
    if ((await scope.method(k)) !== 'POST') return { status: 'bypass', reason: 'method' };
    const pathWithQuery = await scope.pathWithQuery(k);
    const endpoint = endpointOf(pathWithQuery, this.config.cache_embeddings);
    if (!endpoint) return { status: 'bypass', reason: 'endpoint' };
    const headers = await scope.headers(k);
    const wish = clientCacheControl(headers);
    if (wish === 'no_store') return { status: 'bypass', reason: 'no_store' };

    const max = this.config.max_body_bytes;
    const bytes = await scope.rawBody(k, max);
    if (bytes === null) return { status: 'bypass', reason: 'too_large' };
    if (bytes.length > max) return { status: 'bypass', reason: 'too_large' };
    let parsed;
    try {
      parsed = canonicalRequest(bytes.toString('utf8'));
    } catch (e) {
      if (e instanceof NotCanonicalisable) return { status: 'bypass', reason: e.reason };
      if (e instanceof RangeError) return { status: 'bypass', reason: 'too_deep' };
      throw e;
    }
    const verdict = bodyVerdict(endpoint, parsed.body, policy);
    if (verdict) return { status: 'bypass', reason: verdict };

    const route = await k.router.getRoute();
    if (!route?.id) return { status: 'bypass', reason: 'no_route' };
    const key = cacheKeyFor(ctx, this.keyring, this.keyspace, {
      method: 'POST',
      pathWithQuery,
      routeId: route.id,
      serviceId: route.service?.id ?? '',
      canonicalBody: parsed.canonical,
    });
    // The semantic cache: chat only, when the plan has it on and the request has a question.
    let question: SemanticRequest | null = null;
    if (policy.semantic && endpoint === 'chat') {
      const q = semanticRequest(parsed.body, this.config.semantic.max_question_chars);
      if (typeof q === 'string') metrics.semanticLookups.inc({ tenant, outcome: q });
      else question = q;
    }
    const keyring = this.keyring;
    const scopeFor = (gens: Generations): string | null =>
      question &&
      semanticScope(
        ctx,
        keyring,
        {
          method: 'POST',
          pathWithQuery,
          routeId: route.id,
          serviceId: route.service?.id ?? '',
          context: question.context,
        },
        gens,
      );
    const pendingFor = (gens: Generations): Pending => {
      const scope = scopeFor(gens);
      return {
        v: 1,
        d: key.digest,
        kg: gens.knowledge,
        cg: gens.cache,
        // The model that serves the request: tenant-auth's decision on a tiered plan.
        m: ctx.model?.served ?? (parsed.body.model as string),
        ttl: policy.ttlSeconds,
        ...(scope && question ? { s: { sc: scope, q: question.question } } : {}),
      };
    };

    let found;
    try {
      await untilFirstConnected(this.redis, this.config.redis_timeout_ms);
      found = await lookup(this.redis, this.keyspace, ctx, key.redisKey);
    } catch (e) {
      if (!isRedisUnavailable(e)) throw e;
      metrics.redisFailures.inc({ op: 'lookup' });
      // Nothing will be stored either: the store would most likely fail too.
      return wish === 'no_cache'
        ? { status: 'bypass', reason: 'no_cache' }
        : { status: 'miss', reason: 'redis_unavailable' };
    }
    // no-cache: do not answer from the cache, but the fresh answer refreshes it.
    if (wish === 'no_cache') {
      return { status: 'bypass', reason: 'no_cache', pending: pendingFor(found.generations) };
    }
    const pending = pendingFor(found.generations);
    const exactMiss = async (reason: string): Promise<Outcome> => {
      if (pending.s) {
        const hit = await this.semanticLookup(
          k,
          ctx,
          tenant,
          pending.s,
          policy.similarityThreshold,
        );
        if (hit) return hit;
      }
      return { status: 'miss', reason, pending };
    };
    if (found.value === null) return exactMiss('absent');
    const entry = decodeEntry(
      this.keyring.forTenant(ctx),
      key.redisKey,
      found.generations,
      found.value,
    );
    if (entry.kind === 'stale') return exactMiss('stale');
    if (entry.kind === 'forged') {
      metrics.decryptAlarms.inc({ tenant });
      await k.log.err(
        `tenant-cache: ALARM: an entry under tenant ${ctx.tenantId}'s key failed authentication; served as a miss`,
      );
      return exactMiss('decrypt_failed');
    }
    return hitOf('exact', entry.response);
  }

  /**
   * The semantic lookup after an exact miss, under its own deadline. Anything but a verified
   * hit of the tenant's own scope is a miss (null), with a metric; nothing here is an error.
   */
  private async semanticLookup(
    k: KongPdk,
    ctx: TenantContext,
    tenant: string,
    s: { sc: string; q: string },
    threshold: number,
  ): Promise<Outcome | null> {
    if (!this.keyring || !this.keyspace || !this.redis) return null;
    const c = this.config.semantic;
    let store: SemanticStore | undefined;
    const keys = this.keyring.forTenant(ctx);
    let result;
    try {
      const { withinDeadline } = await import('./semantic');
      result = await withinDeadline(
        (async () => {
          store = await semanticStoreFor(c, this.redis as RedisClient, this.keyspace as Keyspace);
          return store.lookup(ctx, keys, s.sc, s.q, threshold, Date.now());
        })(),
        c.lookup_timeout_ms,
        'semantic lookup',
      );
    } catch (e) {
      const { isSemanticUnavailable } = await import('./semantic');
      const outcome = isSemanticUnavailable(e) && e.kind === 'timeout' ? 'timeout' : 'unavailable';
      metrics.semanticLookups.inc({ tenant, outcome });
      return null;
    }
    if (result.similarity !== null) {
      metrics.semanticSimilarity.observe({ tenant }, result.similarity);
    }
    switch (result.kind) {
      case 'hit':
        metrics.semanticLookups.inc({ tenant, outcome: 'hit' });
        return hitOf('semantic', result.response);
      case 'miss':
        metrics.semanticLookups.inc({
          tenant,
          outcome: result.similarity === null ? 'miss' : 'below_threshold',
        });
        return null;
      case 'stale':
        metrics.semanticLookups.inc({ tenant, outcome: 'stale' });
        return null;
      case 'forged':
        metrics.semanticLookups.inc({ tenant, outcome: 'alarm' });
        metrics.decryptAlarms.inc({ tenant });
        await k.log.err(`tenant-cache: ALARM: semantic cache: ${result.detail}; served as a miss`);
        return null;
    }
  }

  async log(kong: unknown): Promise<void> {
    await guardPhase(kong, Name, 'log', async (k) => {
      // Nothing here may throw: an error in log would reach guardPhase, whose refusal
      // (kong.response.exit) is a Lua error after the response was sent.
      let taken;
      try {
        taken = await takeForLog(k, PENDING);
        taken.done();
      } catch (e) {
        const detail = e instanceof Error ? e.message : String(e);
        await k.log.err(`tenant-cache log: not stored: ${detail}`).catch(() => undefined);
        return;
      }
      if (taken.record) await this.storeLogged(k, taken.record, taken.scope);
    });
  }

  /** Stores the answer a miss left pending (its own log phase, or the chain's). Never throws. */
  private async storeLogged(
    k: KongPdk,
    pending: Pending,
    scope: RequestScope | undefined,
  ): Promise<void> {
    let tenant = 'unknown';
    try {
      if (!this.keyring || !this.keyspace || !this.redis) return;
      const ctx = scope?.tenant ?? (await readTenantContext(k, Name));
      tenant = metrics.tenantLabels(this.config.metrics_max_tenants).label(ctx.tenantId);
      const stored = await this.store(k, ctx, pending, tenant);
      const outcome = typeof stored === 'string' ? stored : 'stored';
      metrics.stores.inc({ tenant, outcome });
      if (typeof stored !== 'string' && pending.s) {
        await this.semanticStore(ctx, tenant, pending, pending.s, stored);
      }
    } catch (e) {
      metrics.stores.inc({ tenant, outcome: 'error' satisfies SkipReason });
      const detail = e instanceof Error ? e.message : String(e);
      await k.log.err(`tenant-cache log: not stored: ${detail}`).catch(() => undefined);
    }
  }

  private async store(
    k: KongPdk,
    ctx: TenantContext,
    pending: Pending,
    tenant: string,
  ): Promise<SkipReason | CachedResponse> {
    if (!this.keyring || !this.keyspace || !this.redis) return 'error';
    // In log these read the snapshot Kong saved (plugin_servers/plugin.lua): safe in the timer.
    if ((await k.response.getStatus()) !== 200) return 'status';
    const headers = normaliseHeaderMap(await k.response.getHeaders());
    if (upstreamForbidsStore(headers)) return 'no_store';
    // Buffering was enabled in access for this request, so the buffered body is there.
    const raw = bodyToBuffer(await k.service.response.getRawBody());
    const max = this.config.max_entry_bytes;
    const body = decodeBody(raw, firstHeader(headers, 'content-encoding'), max);
    if (body === 'encoding' || body === 'too_large') return body;
    const text = body.toString('utf8');
    let json: unknown;
    try {
      json = JSON.parse(text);
    } catch {
      return 'not_json';
    }
    if (json === null || typeof json !== 'object' || Array.isArray(json)) return 'not_json';
    const served = (json as Record<string, unknown>).model;
    if (!servedModelMatches(pending.m, served)) return 'model_mismatch';

    const redisKey = this.keyspace.cacheEntry(ctx.tenantId, pending.d);
    const response: CachedResponse = {
      createdAt: Date.now(),
      contentType: jsonContentType(firstHeader(headers, 'content-type')),
      model: served as string,
      body: text,
    };
    const value = encodeEntry(
      this.keyring.forTenant(ctx),
      redisKey,
      { knowledge: pending.kg, cache: pending.cg },
      response,
    );
    try {
      await storeEntry(this.redis, redisKey, value, pending.ttl);
    } catch (e) {
      if (!isRedisUnavailable(e)) throw e;
      metrics.redisFailures.inc({ op: 'store' });
      return 'redis_unavailable';
    }
    metrics.storedBytes.inc({ tenant }, body.length);
    return response;
  }

  /** Stores the answer the exact cache just stored in the semantic cache too; never throws. */
  private async semanticStore(
    ctx: TenantContext,
    tenant: string,
    pending: Pending,
    s: { sc: string; q: string },
    response: CachedResponse,
  ): Promise<void> {
    if (!this.keyring || !this.keyspace || !this.redis) return;
    const c = this.config.semantic;
    const keys = this.keyring.forTenant(ctx);
    const { withinDeadline, isSemanticUnavailable } = await import('./semantic');
    try {
      const outcome = await withinDeadline(
        (async () => {
          const store = await semanticStoreFor(
            c,
            this.redis as RedisClient,
            this.keyspace as Keyspace,
          );
          return store.store(
            ctx,
            keys,
            s.sc,
            s.q,
            response,
            pending.ttl,
            c.max_entries_per_tenant,
            Date.now(),
          );
        })(),
        c.store_timeout_ms,
        'semantic store',
      );
      metrics.semanticStores.inc({ tenant, outcome });
    } catch (e) {
      const outcome = isSemanticUnavailable(e) && e.kind === 'timeout' ? 'timeout' : 'unavailable';
      metrics.semanticStores.inc({ tenant, outcome });
    }
  }
}
