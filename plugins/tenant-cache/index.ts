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
 */
import type { RedisClient } from '../../lib/redis/client';
import { CACHE_STATUS_KEY, type CacheStatus } from '../../lib/cache/status';
import { serveMetrics } from '../../lib/metrics/registry';
import { bodyToBuffer, firstHeader, normaliseHeaderMap, type KongPdk } from '../../lib/pdk/kong';
import { guardPhase } from '../../lib/plugin/phase';
import { createRedis, waitForRedis } from '../../lib/redis/client';
import { isRedisUnavailable } from '../../lib/redis/errors';
import { createKeyspace, type Keyspace } from '../../lib/redis/keys';
import { readConfig } from '../../lib/schema/config';
import type { TenantContext } from '../../lib/tenant/context';
import { readTenantContext } from '../../lib/tenant/read';
import { NotCanonicalisable, canonicalRequest } from './canonical';
import { cacheKeyFor } from './cache-key';
import { CacheKeyring, loadMasterSecret } from './crypto';
import { decodeEntry, encodeEntry, type Generations } from './entry';
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
      typeof p.ttl === 'number'
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

/** Clients that have been connected once: before that, a lookup waits for the connection. */
const everReady = new WeakSet<RedisClient>();

async function readyClient(client: RedisClient, ms: number): Promise<void> {
  if (client.isReady) {
    everReady.add(client);
    return;
  }
  // During an outage, fail at once; only the very first connection is worth a short wait.
  if (everReady.has(client)) return;
  await waitForRedis(client, ms).catch(() => undefined);
}

type Outcome =
  | { status: 'bypass'; reason: BypassReason; pending?: Pending }
  | { status: 'miss'; reason: string; pending?: Pending }
  | { status: 'hit'; body: string; contentType: string; ageSeconds: number };

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
      serveMetrics(this.config.metrics_port, this.config.metrics_host, (e) => {
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
      const ctx = await readTenantContext(k, Name);
      const labels = metrics.tenantLabels(this.config.metrics_max_tenants);
      const tenant = labels.label(ctx.tenantId);
      const outcome = await this.decide(k, ctx, tenant);
      const reason = outcome.status === 'hit' ? 'hit' : outcome.reason;
      metrics.lookups.inc({ tenant, status: outcome.status, reason });
      await k.ctx.shared.set(CACHE_STATUS_KEY, outcome.status satisfies CacheStatus);
      if (outcome.status === 'hit') {
        metrics.servedBytes.inc({ tenant }, Buffer.byteLength(outcome.body));
        void k.response.exit(200, outcome.body, {
          'Content-Type': outcome.contentType,
          'X-Cache-Status': 'HIT',
          Age: String(outcome.ageSeconds),
        });
        return;
      }
      if (outcome.pending) {
        await k.ctx.shared.set(PENDING_KEY, JSON.stringify(outcome.pending));
        await k.service.request.enableBuffering();
      }
      if (this.config.status_header) {
        await k.response.setHeader('X-Cache-Status', outcome.status === 'miss' ? 'MISS' : 'BYPASS');
      }
    });
  }

  /** Reads what the decision needs, in order, stopping at the first read that decides it. */
  private async decide(k: KongPdk, ctx: TenantContext, tenant: string): Promise<Outcome> {
    if (!this.keyring || !this.keyspace || !this.redis) {
      return { status: 'bypass', reason: 'no_master_key' };
    }
    const policy = planPolicy(this.config, ctx.plan);
    if (!policy.enabled) return { status: 'bypass', reason: 'plan_disabled' };
    if ((await k.request.getMethod()) !== 'POST') return { status: 'bypass', reason: 'method' };
    const pathWithQuery = await k.request.getPathWithQuery();
    const endpoint = endpointOf(pathWithQuery, this.config.cache_embeddings);
    if (!endpoint) return { status: 'bypass', reason: 'endpoint' };
    const headers = normaliseHeaderMap(await k.request.getHeaders());
    const wish = clientCacheControl(headers);
    if (wish === 'no_store') return { status: 'bypass', reason: 'no_store' };

    const max = this.config.max_body_bytes;
    const raw = await k.request.getRawBody(max);
    if (raw === null || raw === undefined) return { status: 'bypass', reason: 'too_large' };
    const bytes = bodyToBuffer(raw);
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
    const pendingFor = (gens: Generations): Pending => ({
      v: 1,
      d: key.digest,
      kg: gens.knowledge,
      cg: gens.cache,
      // The model that serves the request: tenant-auth's decision on a tiered plan.
      m: ctx.model?.served ?? (parsed.body.model as string),
      ttl: policy.ttlSeconds,
    });

    let found;
    try {
      await readyClient(this.redis, this.config.redis_timeout_ms);
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
    if (found.value === null) return { status: 'miss', reason: 'absent', pending };
    const entry = decodeEntry(
      this.keyring.forTenant(ctx),
      key.redisKey,
      found.generations,
      found.value,
    );
    if (entry.kind === 'stale') return { status: 'miss', reason: 'stale', pending };
    if (entry.kind === 'forged') {
      metrics.decryptAlarms.inc({ tenant });
      await k.log.err(
        `tenant-cache: ALARM: an entry under tenant ${ctx.tenantId}'s key failed authentication; served as a miss`,
      );
      return { status: 'miss', reason: 'decrypt_failed', pending };
    }
    const ageSeconds = Math.max(0, Math.floor((Date.now() - entry.response.createdAt) / 1000));
    return {
      status: 'hit',
      body: entry.response.body,
      contentType: entry.response.contentType,
      ageSeconds,
    };
  }

  async log(kong: unknown): Promise<void> {
    await guardPhase(kong, Name, 'log', async (k) => {
      // Nothing here may throw: an error in log would reach guardPhase, whose refusal
      // (kong.response.exit) is a Lua error after the response was sent.
      let tenant = 'unknown';
      try {
        const pending = decodePending(await k.ctx.shared.get(PENDING_KEY));
        if (!pending || !this.keyring || !this.keyspace || !this.redis) return;
        const ctx = await readTenantContext(k, Name);
        tenant = metrics.tenantLabels(this.config.metrics_max_tenants).label(ctx.tenantId);
        const outcome = await this.store(k, ctx, pending, tenant);
        metrics.stores.inc({ tenant, outcome });
      } catch (e) {
        metrics.stores.inc({ tenant, outcome: 'error' satisfies SkipReason });
        const detail = e instanceof Error ? e.message : String(e);
        await k.log.err(`tenant-cache log: not stored: ${detail}`).catch(() => undefined);
      }
    });
  }

  private async store(
    k: KongPdk,
    ctx: TenantContext,
    pending: Pending,
    tenant: string,
  ): Promise<SkipReason | 'stored'> {
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
    const value = encodeEntry(
      this.keyring.forTenant(ctx),
      redisKey,
      { knowledge: pending.kg, cache: pending.cg },
      {
        createdAt: Date.now(),
        contentType: jsonContentType(firstHeader(headers, 'content-type')),
        model: served as string,
        body: text,
      },
    );
    try {
      await storeEntry(this.redis, redisKey, value, pending.ttl);
    } catch (e) {
      if (!isRedisUnavailable(e)) throw e;
      metrics.redisFailures.inc({ op: 'store' });
      return 'redis_unavailable';
    }
    metrics.storedBytes.inc({ tenant }, body.length);
    return 'stored';
  }
}
