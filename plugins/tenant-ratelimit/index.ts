/**
 * tenant-ratelimit: performance isolation between tenants. Per-tenant limits (requests and
 * LLM tokens per minute, a concurrency cap) enforced cluster-wide in Redis, and weighted fair
 * queuing of the shared upstream's capacity, so one tenant's flood cannot raise another
 * tenant's latency. Runs right after tenant-auth; refuses to run without its TenantContext.
 *
 * PDK calls (each one IPC round trip with Kong):
 *   access: ctx.shared.get (TenantContext), ctx.shared.get (token estimate),
 *           ctx.shared.set (our record for log), response.setHeaders             = 4
 *           + request.getRawBody and ctx.shared.set when no estimate was published = 6
 *           + request.getHeader (the flex header) when flex is on, the tenant's plan may
 *             mark flex work and the body did not already say service_tier "flex"  = 5 / 7
 *           (response.setHeaders is skipped when there is no header to send)
 *           refusals: response.exit instead of ctx.shared.set + setHeaders
 *   log:    ctx.shared.get (our record), ctx.shared.get (observed usage)           = 2
 * Redis round trips (tenant_ratelimit_redis_round_trips_total, by phase), each a batch of
 * scripts written together on the one connection:
 *   access: 1 (tenant limits + fair-queue acquire together; the limits alone without a queue)
 *           + 1 when the limits refuse and a ticket was taken (its cancel)
 *   queue:  1 per poll while waiting, 1 for the claim of an announced grant, 1 to give up
 *           (a flex request waiting for its tenant's limits: 1 per retry, then 1 acquire)
 *   log:    1 (settle + release); 2 when the queue was busy, the tenant has a tokens limit
 *           and the upstream none: the seat then goes back before the usage is read
 * So the unqueued path (a free seat, nobody waiting) is 2: access 1, log 1.
 * With circuit-breaker on the route in the co-hosted chain process, the seat is left for it
 * (lib/request/seat.ts): access sends the limits alone, circuit-breaker's access the acquire
 * (and any wait): 3 on the unqueued path, none for the seat on a cache hit.
 */
import { randomUUID } from 'node:crypto';
import { GatewayError } from '../../lib/http/errors';
import { serveMetrics } from '../../lib/metrics/registry';
import { type KongPdk } from '../../lib/pdk/kong';
import { guardPhase } from '../../lib/plugin/phase';
import { createRedis, untilFirstConnected, type RedisClient } from '../../lib/redis/client';
import { isRedisUnavailable } from '../../lib/redis/errors';
import {
  acquireSeat,
  cancelSeat,
  claimSeat,
  releaseSeat,
  type AcquireResult,
  type ServiceClass,
  type UpstreamCapacity,
} from '../../lib/redis/fair-queue';
import { createKeyspace, type FairQueueKeys, type Keyspace } from '../../lib/redis/keys';
import {
  admitTenant,
  chargeableTokens,
  settleTenant,
  type AdmitDecision,
  type TenantLimits,
} from '../../lib/redis/tenant-limits';
import { readConfig } from '../../lib/schema/config';
import type { TenantContext } from '../../lib/tenant/context';
import { readRequest } from '../../lib/tenant/read';
import { leaveForLog, takeForLog, type LogRecordSpec } from '../../lib/request/for-log';
import { isChainProcess, slot, type RequestScope } from '../../lib/request/scope';
import {
  SEAT_HAND_OFF,
  forgetSeatTaker,
  hasSeatTaker,
  routeKeyOf,
  type SeatHandOff,
} from '../../lib/request/seat';
import { parseTenantId, type TenantId } from '../../lib/tenant/tenant-id';
import {
  loadEncodings,
  sharedEstimate,
  type EstimateOptions,
  type TokenEstimate,
} from '../../lib/tokens/estimate';
import { USAGE_KEY, decodeUsage } from '../../lib/tokens/usage';
import { grantListener, type GrantListener } from './grant-listener';
import {
  LOCAL_SCOPE,
  QUEUE_WAIT_HEADER,
  SCOPE_HEADER,
  SERVICE_CLASS_HEADER,
  rateLimitHeaders,
} from './headers';
import { resolveLimits } from './limits';
import { releasePlan } from './release-plan';
import { LocalNodeLimiter } from './local-limiter';
import * as metrics from './metrics';
import { nextLookMs } from './pacing';
import { Schema, checkConfig, type TenantRatelimitConfig } from './schema';

export const Name = 'tenant-ratelimit';
export const Version = '0.1.0';
/** Right after tenant-auth (1100), before the cache (900) and token-meter (800). */
export const Priority = 1000;
export { Schema };

/** What access leaves in kong.ctx.shared for log (versioned JSON). */
export const RECORD_KEY = 'tenant_ratelimit';

type Scope = 'cluster' | 'local';

interface Record1 {
  v: 1;
  tenant: string;
  lease: string;
  scope: Scope;
  /** Tokens charged to the tenant's bucket (the estimate, capped at its burst). */
  charged: number;
  /** Tokens charged to the upstream's bucket (the estimate). */
  width: number;
  seat: Scope | null;
  limits: TenantLimits;
  /**
   * The queue had waiters when this request was admitted (or it waited itself): log then
   * hands the seat back before reading the usage, so the next waiter does not wait for a PDK
   * call. Absent in records of earlier versions.
   */
  busy?: boolean;
  /**
   * The seat was left for circuit-breaker (lib/request/seat.ts): `left`, then `asked` once
   * circuit-breaker ran for the request (whether or not its upstream needed a seat).
   */
  handOff?: 'left' | 'asked';
}

/** What admission decided, carried to wherever the seat is taken. */
interface Ticket {
  readonly ctx: TenantContext;
  readonly lease: string;
  readonly width: number;
  readonly charged: number;
  readonly limits: TenantLimits;
  /** Where the tenant's lease was taken. */
  readonly scope: Scope;
  readonly tenantLabel: string;
  readonly serviceClass: ServiceClass;
  readonly started: number;
  readonly deadline: number;
  readonly limitWaited: boolean;
  readonly decision: AdmitDecision;
  /** The record log reads, as last left. */
  record: Record1;
}

interface SeatOutcome {
  readonly seat: Scope | null;
  readonly queued: boolean;
  /** The queue had waiters, or the request waited: log hands the seat back first. */
  readonly busy: boolean;
}

/** Where a batch of Redis calls was sent from (tenant_ratelimit_redis_round_trips_total). */
type TripPhase = 'access' | 'queue' | 'log';

/** What the access phase's first round trip brought back from the fair queue. */
type FirstAcquire =
  | { readonly ok: true; readonly result: AcquireResult }
  | { readonly ok: false; readonly error: unknown };

const MISCONFIGURED = new GatewayError({
  status: 500,
  type: 'server_error',
  code: 'plugin_misconfigured',
  message: 'tenant-ratelimit is misconfigured on this route; the request was not forwarded',
});

const UNAVAILABLE = new GatewayError({
  status: 503,
  type: 'service_unavailable',
  code: 'ratelimit_unavailable',
  message: 'rate limiting is temporarily unavailable; the request was not forwarded',
  retryAfterSeconds: 1,
});

const REFUSAL_CODES = {
  requests: 'tenant_requests_per_minute_exceeded',
  tokens: 'tenant_tokens_per_minute_exceeded',
  concurrency: 'tenant_concurrency_exceeded',
} as const;

const REFUSAL_TEXT = {
  requests: 'your requests per minute',
  tokens: 'your LLM tokens per minute',
  concurrency: 'your concurrent requests',
} as const;

/** Per-node limiter state lives for the process, shared by every instance (Kong recreates them). */
const localLimiter = new LocalNodeLimiter();

function tooMany(
  d: AdmitDecision,
  limits: TenantLimits,
  scope: Scope,
  extra: Record<string, string>,
): GatewayError {
  const by = d.refusedBy ?? 'requests';
  const headers: Record<string, string> = { ...rateLimitHeaders(limits, d), ...extra };
  if (scope === 'local') headers[SCOPE_HEADER] = LOCAL_SCOPE;
  return new GatewayError({
    status: 429,
    type: 'rate_limit_error',
    code: REFUSAL_CODES[by],
    message: `you have exceeded ${REFUSAL_TEXT[by]} limit; retry after the time in Retry-After`,
    retryAfterSeconds: Math.max(1, Math.ceil(d.retryAfterMs / 1000)),
    headers,
  });
}

function saturated(
  retryAfterSeconds: number,
  scope: Scope,
  serviceClass: ServiceClass,
): GatewayError {
  const headers: Record<string, string> = { [SERVICE_CLASS_HEADER]: serviceClass };
  if (scope === 'local') headers[SCOPE_HEADER] = LOCAL_SCOPE;
  return new GatewayError({
    status: 503,
    type: 'service_unavailable',
    code: 'upstream_saturated',
    message:
      'the upstream is at capacity for all tenants and no seat freed up in time; try again later',
    retryAfterSeconds,
    headers,
  });
}

/** `service_tier` values forwarded upstream; anything else is refused before it gets there. */
const SERVICE_TIERS = new Set(['auto', 'default', 'flex']);

function unsupportedServiceTier(value: string): GatewayError {
  return new GatewayError({
    status: 400,
    type: 'invalid_request_error',
    code: 'unsupported_service_tier',
    param: 'service_tier',
    message: `service_tier ${JSON.stringify(value)} is not available through this gateway; use "auto", "default" or "flex" (non-urgent work)`,
  });
}

// The BPE vocabularies (~0.7 s of CPU) are built when the plugin server loads this module,
// before it listens: built later, from a constructor or the first request, they block the
// event loop while the first requests' Redis commands run against their timeout (503s).
loadEncodings();

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, Math.max(0, ms)));

function isRecord1(o: unknown): o is Record1 {
  if (o === null || typeof o !== 'object') return false;
  const r = o as Partial<Record1>;
  return (
    r.v === 1 &&
    typeof r.tenant === 'string' &&
    typeof r.lease === 'string' &&
    (r.scope === 'cluster' || r.scope === 'local') &&
    typeof r.charged === 'number' &&
    typeof r.width === 'number' &&
    typeof r.limits === 'object' &&
    r.limits !== null &&
    (r.busy === undefined || typeof r.busy === 'boolean') &&
    (r.handOff === undefined || r.handOff === 'left' || r.handOff === 'asked')
  );
}

/** Access's record for log: kept in the request's scope, else in kong.ctx.shared. */
const RECORD: LogRecordSpec<Record1> = {
  plugin: Name,
  // First in the chain's log phase: the seat and the lease may be what another request waits for.
  order: 0,
  slot: slot<Record1>(RECORD_KEY),
  sharedKey: RECORD_KEY,
  encode: (r) => JSON.stringify(r),
  decode: (raw) => {
    if (typeof raw !== 'string') return undefined;
    const parsed: unknown = JSON.parse(raw);
    return isRecord1(parsed) ? parsed : undefined;
  },
};

export class Plugin {
  private readonly config: TenantRatelimitConfig;
  private readonly misconfigured: string | null = null;
  private readonly redis: RedisClient | null = null;
  private readonly keys: Keyspace | null = null;
  private readonly queueKeys: FairQueueKeys | null = null;
  private readonly capacity: UpstreamCapacity;
  private readonly estimateOptions: Partial<EstimateOptions>;
  /** The route and service this instance is configured on (lib/request/seat.ts). */
  private readonly routeKey: string;

  /** Never throws: an unusable config makes every request a 500 plugin_misconfigured. */
  constructor(raw: unknown) {
    this.config = readConfig<TenantRatelimitConfig>(Schema, raw);
    this.routeKey = routeKeyOf(raw);
    const q = this.config.queue;
    this.capacity = {
      maxConcurrent: q.max_concurrent,
      tokensPerMinute: q.tokens_per_minute,
      tokenBurst: q.token_burst ?? q.tokens_per_minute,
      seatLeaseMs: q.seat_ttl_seconds * 1000,
      heartbeatMs: Math.max(2000, 4 * q.poll_interval_ms),
      // Never all seats: a flex request must be able to run when nothing urgent waits.
      flexReserve: Math.min(this.config.flex.reserved_seats, Math.max(0, q.max_concurrent - 1)),
    };
    const e = this.config.estimate;
    this.estimateOptions = {
      defaultMaxTokens: e.default_max_tokens,
      maxTokensCap: e.max_tokens_cap,
      unknownPromptTokens: e.unknown_prompt_tokens,
    };
    try {
      checkConfig(this.config);
      this.keys = createKeyspace(this.config.redis.key_namespace);
      this.queueKeys = this.keys.fairQueue(q.upstream);
      this.redis = createRedis({
        url: this.config.redis.url,
        commandTimeoutMs: this.config.redis.command_timeout_ms,
        log: (m) => process.stderr.write(`tenant-ratelimit: ${m}\n`),
      });
      // Subscribed before the first wait, so no early grant announcement is missed.
      if (this.queueEnabled) this.listener().start();
      serveMetrics(
        'tenant-ratelimit',
        this.config.metrics_port,
        this.config.metrics_host,
        (err) => {
          process.stderr.write(
            `tenant-ratelimit: metrics endpoint ${this.config.metrics_host}:${this.config.metrics_port} failed: ${err.message}\n`,
          );
        },
      );
    } catch (err) {
      this.misconfigured = err instanceof Error ? err.message : String(err);
    }
  }

  private listener(): GrantListener {
    return grantListener(
      this.redis as RedisClient,
      (this.queueKeys as FairQueueKeys).channel,
      (m) => process.stderr.write(`tenant-ratelimit: ${m}\n`),
    );
  }

  private get queueEnabled(): boolean {
    return this.capacity.maxConcurrent > 0 || this.capacity.tokensPerMinute > 0;
  }

  private label(tenant: TenantId): string {
    return metrics.tenantLabels(this.config.metrics_max_tenants).label(tenant);
  }

  async access(kong: unknown): Promise<void> {
    let tenantLabel = '';
    const classOf: { value: ServiceClass | 'none' } = { value: 'none' };
    await guardPhase(
      kong,
      Name,
      'access',
      async (k) => {
        if (this.misconfigured !== null) {
          void k.log.err(`tenant-ratelimit is misconfigured, refusing: ${this.misconfigured}`);
          throw MISCONFIGURED;
        }
        const { tenant: ctx, scope } = await readRequest(k, Name);
        tenantLabel = this.label(ctx.tenantId);
        await this.admit(k, scope, ctx, tenantLabel, classOf);
      },
      {
        onRefusal: (e) =>
          metrics.rejected.inc({
            tenant: tenantLabel || 'none',
            class: classOf.value,
            reason: e.code,
          }),
      },
    );
  }

  /**
   * Urgent (the default) or flex: the body's `service_tier` (read once, in the shared
   * estimate) or the configured header, for tenants whose plan may mark flex work. Nothing a
   * client sends promotes a request: an unknown tier is refused, other header values ignored.
   */
  private async serviceClass(
    kong: KongPdk,
    request: RequestScope,
    ctx: TenantContext,
    estimate: TokenEstimate,
  ): Promise<ServiceClass> {
    const tier = estimate.serviceTier;
    if (tier !== null && !SERVICE_TIERS.has(tier)) throw unsupportedServiceTier(tier);
    const f = this.config.flex;
    if (!f.enabled) return 'urgent';
    if (f.allowed_plans !== null && !f.allowed_plans.includes(ctx.plan)) return 'urgent';
    if (tier === 'flex') return 'flex';
    if (f.header === null) return 'urgent';
    const v = await request.header(kong, f.header);
    return typeof v === 'string' && v.trim().toLowerCase() === f.header_value.toLowerCase()
      ? 'flex'
      : 'urgent';
  }

  private async admit(
    kong: KongPdk,
    request: RequestScope,
    ctx: TenantContext,
    tenantLabel: string,
    classOf: { value: ServiceClass | 'none' },
  ): Promise<void> {
    const redis = this.redis as RedisClient;
    const keys = this.keys as Keyspace;
    // The instance (and its client) is created by the first request: its first connection
    // gets one command deadline instead of a 503 "client is offline".
    await untilFirstConnected(redis, this.config.redis.command_timeout_ms);
    const estimate = await sharedEstimate(
      kong,
      request,
      () => request.jsonBody(kong),
      this.estimateOptions,
    );
    const serviceClass = await this.serviceClass(kong, request, ctx, estimate);
    classOf.value = serviceClass;
    const flex = serviceClass === 'flex';
    const limits = resolveLimits(this.config, ctx);
    const lease = randomUUID();
    const started = Date.now();
    const maxWaitMs = flex ? this.config.flex.max_wait_ms : this.config.queue.max_wait_ms;
    const deadline = started + maxWaitMs;
    const leaseTtlMs = maxWaitMs + this.capacity.seatLeaseMs;
    const width = Math.max(1, estimate.totalTokens);

    let scope = 'cluster' as Scope;
    const handOff = this.handsOffSeat(request);
    const decide = async (): Promise<AdmitDecision> => {
      if (scope === 'cluster') {
        try {
          this.trip('access');
          return await admitTenant(redis, keys, ctx.tenantId, limits, width, lease, leaseTtlMs);
        } catch (err) {
          scope = this.onRedisError(kong, err, 'access');
        }
      }
      metrics.localDecisions.inc({ tenant: tenantLabel });
      return localLimiter.admit(ctx.tenantId, limits, width, lease, leaseTtlMs);
    };
    // One round trip: the tenant's limits and the fair queue's acquire are written together
    // on the one connection (two scripts: their keys live in different hash-tag slots, a
    // tenant's `{t:..}` and the upstream's `{q:..}`, so no one script may touch both on Redis
    // Cluster). When the limits refuse, the ticket is cancelled: one more round trip, on the
    // refused path only.
    let first: FirstAcquire | null = null;
    const firstDecision = async (): Promise<AdmitDecision> => {
      if (!this.queueEnabled || handOff) return decide();
      this.trip('access');
      const [admitted, acquired] = await Promise.allSettled([
        admitTenant(redis, keys, ctx.tenantId, limits, width, lease, leaseTtlMs),
        this.acquire(ctx, lease, width, serviceClass),
      ]);
      first =
        acquired.status === 'fulfilled'
          ? { ok: true, result: acquired.value }
          : { ok: false, error: acquired.reason };
      if (admitted.status === 'fulfilled') return admitted.value;
      // Redis failed for the limits: the per-node limiter decides, and the per-node seats
      // follow; a ticket that did reach the queue is handed back.
      if (acquired.status === 'fulfilled') {
        void this.cancelTicket(ctx, lease, serviceClass, width, acquired.value.tags);
      }
      first = null;
      scope = this.onRedisError(kong, admitted.reason, 'access');
      metrics.localDecisions.inc({ tenant: tenantLabel });
      return localLimiter.admit(ctx.tenantId, limits, width, lease, leaseTtlMs);
    };
    let decision = await firstDecision();
    const sent = first as FirstAcquire | null;
    if (!decision.allowed) {
      // Refused by its own limits: the request never runs, its place or seat goes back.
      first = null;
      if (sent?.ok === true) {
        await this.cancelTicket(ctx, lease, serviceClass, width, sent.result.tags);
      }
    }
    let limitWaited = false;
    // Flex work near its tenant's per-minute limits waits for them rather than taking a 429;
    // a concurrency refusal has no time after which it clears, so it is never waited for.
    while (
      !decision.allowed &&
      flex &&
      this.config.flex.wait_for_tenant_limits &&
      decision.refusedBy !== 'concurrency' &&
      Date.now() + decision.retryAfterMs < deadline
    ) {
      await sleep(Math.max(20, decision.retryAfterMs));
      limitWaited = true;
      decision = await decide();
    }
    if (!decision.allowed) {
      throw tooMany(
        decision,
        limits,
        scope,
        this.config.flex.enabled ? { [SERVICE_CLASS_HEADER]: serviceClass } : {},
      );
    }
    metrics.inFlight.set({ tenant: tenantLabel }, decision.inFlight);
    const charged = chargeableTokens(limits, width);
    const acquired = first as FirstAcquire | null;

    const record: Record1 = {
      v: 1,
      tenant: ctx.tenantId,
      lease,
      scope,
      charged,
      width,
      seat: this.queueEnabled && !handOff ? scope : null,
      limits,
      busy:
        acquired === null ||
        !acquired.ok ||
        !acquired.result.granted ||
        acquired.result.waiting > 0,
      ...(handOff ? { handOff: 'left' as const } : {}),
    };
    // Left before any wait, so that a granted request goes on with one PDK call (the
    // headers). If the wait ends in a refusal, log settles again: a no-op (lease gone,
    // correction 0) and the release of a ticket no longer queued.
    await leaveForLog(kong, request, RECORD, record, this.releaseLogged);

    const ticket: Ticket = {
      ctx,
      lease,
      width,
      charged,
      limits,
      scope,
      tenantLabel,
      serviceClass,
      started,
      deadline,
      limitWaited,
      decision,
      record,
    };
    if (handOff) {
      // circuit-breaker takes the seat once it has chosen the upstream (lib/request/seat.ts).
      request.set(SEAT_HAND_OFF, this.seatHandOff(request, ticket));
      const headers = this.admissionHeaders(ticket, null, scope === 'local', true);
      if (Object.keys(headers).length > 0) await kong.response.setHeaders(headers);
      return;
    }
    const outcome = this.queueEnabled
      ? await this.seatOrRefusal(kong, ticket, acquired)
      : { seat: null, queued: false, busy: record.busy === true };
    await this.admitted(kong, request, ticket, outcome, true);
  }

  /**
   * Whether this request's seat is left for circuit-breaker: a queue to wait in, the co-hosted
   * chain process, a scope circuit-breaker will find, and circuit-breaker seen on this route.
   */
  private handsOffSeat(request: RequestScope): boolean {
    return this.queueEnabled && isChainProcess() && request.findable && hasSeatTaker(this.routeKey);
  }

  /** A seat for the ticket, or the 503 `upstream_saturated` (its charge given back). */
  private async seatOrRefusal(
    kong: KongPdk,
    t: Ticket,
    first: FirstAcquire | null,
  ): Promise<SeatOutcome> {
    const outcome = await this.takeSeat(
      kong,
      t.ctx,
      t.lease,
      t.width,
      t.scope,
      t.tenantLabel,
      t.serviceClass,
      t.deadline,
      first,
    );
    if (outcome.seat === null) {
      // Never ran: the lease and the whole charge go back.
      if (t.scope === 'cluster') this.trip('queue');
      await this.settle(t.ctx.tenantId, t.limits, t.lease, -t.charged, t.scope, 'queue');
      throw saturated(outcome.retryAfterSeconds, outcome.scope, t.serviceClass);
    }
    return { seat: outcome.seat, queued: outcome.queued, busy: outcome.busy };
  }

  /** Metrics, the record log reads and the response headers of an admitted request. */
  private async admitted(
    kong: KongPdk,
    request: RequestScope,
    t: Ticket,
    outcome: SeatOutcome,
    withLimits: boolean,
  ): Promise<void> {
    const { seat, queued } = outcome;
    // Waited for capacity (and, flex work, for its tenant's limits).
    const waitedMs = queued || t.limitWaited ? Date.now() - t.started : 0;
    if (seat !== null || t.limitWaited) {
      metrics.queueWait.observe({ tenant: t.tenantLabel, class: t.serviceClass }, waitedMs / 1000);
    }
    // The tenant's lease stays where it was taken (record.scope); only the seat may move.
    const localNode = t.scope === 'local' || seat === 'local';
    metrics.admitted.inc({
      tenant: t.tenantLabel,
      class: t.serviceClass,
      queued: waitedMs > 0 ? 'yes' : 'no',
      scope: localNode ? LOCAL_SCOPE : 'cluster',
    });
    if (seat !== t.record.seat || outcome.busy !== t.record.busy) {
      // The seat was taken after the record was left (circuit-breaker took it), or Redis
      // failed during the wait and the per-node limiter gave it: log must know.
      t.record = { ...t.record, seat, busy: outcome.busy };
      await leaveForLog(kong, request, RECORD, t.record, this.releaseLogged);
    }
    const headers = this.admissionHeaders(
      t,
      seat !== null || t.limitWaited ? waitedMs : null,
      localNode,
      withLimits,
    );
    if (Object.keys(headers).length > 0) await kong.response.setHeaders(headers);
  }

  private admissionHeaders(
    t: Ticket,
    waitedMs: number | null,
    localNode: boolean,
    withLimits: boolean,
  ): Record<string, string> {
    const headers: Record<string, string> =
      withLimits && this.config.ratelimit_headers ? rateLimitHeaders(t.limits, t.decision) : {};
    if (waitedMs !== null) headers[QUEUE_WAIT_HEADER] = String(Math.round(waitedMs));
    if (localNode) headers[SCOPE_HEADER] = LOCAL_SCOPE;
    if (this.config.flex.enabled) headers[SERVICE_CLASS_HEADER] = t.serviceClass;
    return headers;
  }

  /**
   * The seat left for circuit-breaker: taken on the upstream it routes to when that is the
   * upstream this queue describes (`queue.upstream`, or the route's own service), not at all
   * for another (a tenant's own deployment). Taken once; the log phase releases it.
   */
  private seatHandOff(request: RequestScope, t: Ticket): SeatHandOff {
    let asked = false;
    return {
      take: async (kong, target) => {
        if (asked) return;
        asked = true;
        t.record = { ...t.record, handOff: 'asked' };
        if (!(target.service || target.label === this.config.queue.upstream)) {
          metrics.seatHandOffs.inc({ outcome: 'other_upstream' });
          await leaveForLog(kong, request, RECORD, t.record, this.releaseLogged);
          return;
        }
        let outcome: SeatOutcome;
        try {
          outcome = await this.seatOrRefusal(kong, t, null);
          metrics.seatHandOffs.inc({ outcome: 'seated' });
        } catch (err) {
          if (err instanceof GatewayError) {
            metrics.seatHandOffs.inc({ outcome: 'saturated' });
            metrics.rejected.inc({
              tenant: t.tenantLabel,
              class: t.serviceClass,
              reason: err.code,
            });
          }
          throw err;
        }
        await this.admitted(kong, request, t, outcome, false);
      },
    };
  }

  /** Counts one batch of Redis calls written together (one round trip). */
  private trip(phase: TripPhase): void {
    metrics.redisRoundTrips.inc({ phase });
  }

  /** One fair-queue acquire (enter, or poll); the caller counts the round trip. */
  private async acquire(
    ctx: TenantContext,
    ticket: string,
    width: number,
    serviceClass: ServiceClass,
  ): Promise<AcquireResult> {
    const r = await acquireSeat(
      this.redis as RedisClient,
      this.queueKeys as FairQueueKeys,
      this.capacity,
      ticket,
      ctx.tenantId,
      ctx.policy.weight,
      width,
      serviceClass,
    );
    metrics.seatsInUse.set({ upstream: this.config.queue.upstream }, r.seatsInUse);
    return r;
  }

  /** Undoes the first round trip's acquire of a request that will not run; never throws. */
  private async cancelTicket(
    ctx: TenantContext,
    ticket: string,
    serviceClass: ServiceClass,
    width: number,
    tags: string,
  ): Promise<void> {
    this.trip('access');
    try {
      const r = await cancelSeat(
        this.redis as RedisClient,
        this.queueKeys as FairQueueKeys,
        this.capacity,
        ticket,
        ctx.tenantId,
        serviceClass,
        width,
        tags,
      );
      this.wakeGranted(r.grantedIds);
      metrics.seatsInUse.set({ upstream: this.config.queue.upstream }, r.seatsInUse);
    } catch {
      // Left to the ticket's heartbeat (a waiter) or its lease (a seat).
      metrics.redisErrors.inc({ phase: 'access' });
    }
  }

  /** Waiters of this process learn of their grant now, not a pub/sub round trip later. */
  private wakeGranted(ids: readonly string[]): void {
    if (ids.length === 0) return;
    const listener = this.listener();
    for (const id of ids) listener.wake(id);
  }

  /** Applies on_redis_error: `local` goes on with the per-node limiter, `refuse` answers 503. */
  private onRedisError(kong: KongPdk, err: unknown, phase: string): Scope {
    if (!isRedisUnavailable(err)) throw err;
    metrics.redisErrors.inc({ phase });
    if (this.config.on_redis_error === 'refuse') {
      void kong.log.warn(`tenant-ratelimit: Redis unavailable, refusing: ${String(err)}`);
      throw UNAVAILABLE;
    }
    return 'local';
  }

  /**
   * A seat of the shared upstream: at once, after a fair wait, or null (gave up). `first` is
   * the acquire sent with the tenant limits (null when none was: Redis failed, or flex work
   * waited for its limits).
   */
  private async takeSeat(
    kong: KongPdk,
    ctx: TenantContext,
    ticket: string,
    width: number,
    scope: Scope,
    tenantLabel: string,
    serviceClass: ServiceClass,
    deadline: number,
    first: FirstAcquire | null,
  ): Promise<{
    seat: Scope | null;
    queued: boolean;
    busy: boolean;
    retryAfterSeconds: number;
    scope: Scope;
  }> {
    if (scope === 'cluster') {
      try {
        if (first !== null && !first.ok) throw first.error;
        const granted = await this.waitInQueue(
          ctx,
          ticket,
          width,
          tenantLabel,
          serviceClass,
          deadline,
          first?.result ?? null,
        );
        if (granted !== null) {
          return {
            seat: 'cluster',
            queued: granted.queued,
            busy: granted.queued || granted.waiting > 0,
            retryAfterSeconds: 0,
            scope,
          };
        }
        return {
          seat: null,
          queued: true,
          busy: true,
          retryAfterSeconds: Math.max(1, Math.ceil(this.config.queue.max_wait_ms / 2000)),
          scope,
        };
      } catch (err) {
        scope = this.onRedisError(kong, err, 'queue');
      }
    }
    metrics.localDecisions.inc({ tenant: tenantLabel });
    const q = this.config.queue;
    // Only a concurrency capacity has a per-node share; a tokens capacity has none.
    const all = q.local_max_concurrent ?? q.max_concurrent;
    const max =
      serviceClass === 'flex' && all > 1
        ? Math.max(1, all - Math.min(this.config.flex.reserved_seats, all - 1))
        : all;
    if (max === 0 || localLimiter.takeSeat(ticket, max, this.capacity.seatLeaseMs)) {
      return { seat: 'local', queued: false, busy: false, retryAfterSeconds: 0, scope: 'local' };
    }
    return { seat: null, queued: false, busy: false, retryAfterSeconds: 1, scope: 'local' };
  }

  /**
   * Waits in the fair queue until granted (`queued`: after a wait; `waiting`: others waiting
   * when it was granted at once); null at the deadline (it left the queue). `first`: the
   * acquire already sent, if any.
   */
  private async waitInQueue(
    ctx: TenantContext,
    ticket: string,
    width: number,
    tenantLabel: string,
    serviceClass: ServiceClass,
    deadline: number,
    first: AcquireResult | null,
  ): Promise<{ queued: boolean; waiting: number } | null> {
    const redis = this.redis as RedisClient;
    const qk = this.queueKeys as FairQueueKeys;
    const q = this.config.queue;
    const poll = (): Promise<AcquireResult> => {
      this.trip('queue');
      return this.acquire(ctx, ticket, width, serviceClass);
    };
    let r = first ?? (await poll());
    if (r.granted) return { queued: false, waiting: r.waiting };

    const listener = this.listener();
    listener.start();
    const labels = { tenant: tenantLabel, class: serviceClass };
    metrics.waiting.inc(labels);
    try {
      for (;;) {
        const left = deadline - Date.now();
        if (left <= 0) break;
        const sleepMs = nextLookMs(r, width, this.capacity, q.poll_interval_ms, left);
        const announced = await listener.wait(ticket, sleepMs);
        if (announced) {
          // The seat is ours (a claim window); the claim that makes it a full lease goes out
          // without holding the request back. A claim that comes too late (the window passed,
          // the seat went on) changes nothing in the queue: the request goes on without a
          // seat, counted in tenant_ratelimit_late_claims_total.
          this.trip('queue');
          claimSeat(redis, qk, this.capacity, ticket).then(
            (claim) => {
              if (!claim.claimed) {
                metrics.lateClaims.inc({ upstream: q.upstream });
                process.stderr.write(`tenant-ratelimit: seat claim of ${ticket} came too late\n`);
              }
            },
            () => metrics.redisErrors.inc({ phase: 'queue' }),
          );
          return { queued: true, waiting: 0 };
        }
        r = await poll();
        if (r.granted) {
          return { queued: true, waiting: 0 };
        }
      }
    } finally {
      metrics.waiting.dec(labels);
    }
    // Gave up: leave the queue (or hand back a seat granted in the last instant).
    this.trip('queue');
    await releaseSeat(redis, qk, this.capacity, ticket).then(
      (rel) => this.wakeGranted(rel.grantedIds),
      () => undefined,
    );
    return null;
  }

  /** Ends a tenant lease and corrects its charge; Redis trouble is left to the lease TTL. */
  private async settle(
    tenant: TenantId,
    limits: TenantLimits,
    lease: string,
    correction: number,
    scope: Scope,
    phase: TripPhase,
  ): Promise<void> {
    if (scope === 'local') {
      localLimiter.settle(tenant, limits, lease, correction);
      return;
    }
    try {
      await settleTenant(
        this.redis as RedisClient,
        this.keys as Keyspace,
        tenant,
        limits,
        lease,
        correction,
      );
    } catch {
      metrics.redisErrors.inc({ phase });
    }
  }

  async log(kong: unknown): Promise<void> {
    await guardPhase(kong, Name, 'log', async (k) => {
      try {
        await this.release(k);
      } catch (err) {
        // Never let an error reach guardPhase here: a response.exit in log is not allowed.
        void k.log.err(`tenant-ratelimit log: ${err instanceof Error ? err.message : String(err)}`);
      }
    });
  }

  /** The log work for a record, run by the chain's log phase in the co-hosted process. */
  private readonly releaseLogged = (kong: KongPdk, record: Record1): Promise<void> =>
    this.releaseRecord(kong, record);

  private async release(kong: KongPdk): Promise<void> {
    if (this.misconfigured !== null) return;
    const taken = await takeForLog(kong, RECORD);
    try {
      await this.releaseRecord(kong, taken.record);
    } finally {
      taken.done();
    }
  }

  private async releaseRecord(kong: KongPdk, parsed: Record1 | undefined): Promise<void> {
    if (parsed === undefined) return; // refused before admission: nothing to release
    const tenant = parseTenantId(parsed.tenant);
    const plan = releasePlan({
      seat: parsed.seat,
      lease: parsed.scope,
      busy: parsed.busy,
      tenantTokens: parsed.limits.tokensPerMinute > 0,
      upstreamTokens: this.capacity.tokensPerMinute > 0,
    });
    const jobs: Array<Promise<unknown>> = [];
    if (plan.early.seat || plan.early.lease) this.trip('log');
    if (plan.early.seat) jobs.push(this.releaseClusterSeat(parsed.lease, 0));
    if (plan.early.lease) {
      jobs.push(this.settle(tenant, parsed.limits, parsed.lease, 0, 'cluster', 'log'));
    }
    if (parsed.handOff === 'left' && (await kong.response.getSource()) === 'service') {
      // Proxied, but circuit-breaker never asked for the seat left for it: it is no longer on
      // this route. Later requests take their seat here again (lib/request/seat.ts).
      forgetSeatTaker(this.routeKey);
      metrics.unseatedRequests.inc();
      void kong.log.warn(
        'tenant-ratelimit: circuit-breaker no longer takes the seat on this route; taking it at admission again',
      );
    }
    const usage = decodeUsage(await kong.ctx.shared.get(USAGE_KEY));
    const label = this.label(tenant);
    let correction = 0;
    let upstreamCorrection = 0;
    if (usage) {
      correction = usage.totalTokens - parsed.charged;
      upstreamCorrection = usage.totalTokens - parsed.width;
      metrics.usageCorrections.inc({ tenant: label, kind: correction < 0 ? 'refund' : 'charge' });
    } else {
      metrics.usageCorrections.inc({ tenant: label, kind: 'estimate_kept' });
    }
    if (plan.late.seat || plan.late.lease) this.trip('log');
    if (parsed.scope === 'local' || plan.late.lease) {
      jobs.push(this.settle(tenant, parsed.limits, parsed.lease, correction, parsed.scope, 'log'));
    }
    if (parsed.seat === 'local') localLimiter.releaseSeat(parsed.lease);
    if (plan.late.seat) jobs.push(this.releaseClusterSeat(parsed.lease, upstreamCorrection));
    await Promise.all(jobs);
  }

  private releaseClusterSeat(ticket: string, correction: number): Promise<void> {
    return releaseSeat(
      this.redis as RedisClient,
      this.queueKeys as FairQueueKeys,
      this.capacity,
      ticket,
      correction,
    ).then(
      (r) => {
        this.wakeGranted(r.grantedIds);
        metrics.seatsInUse.set({ upstream: this.config.queue.upstream }, r.seatsInUse);
      },
      () => void metrics.redisErrors.inc({ phase: 'log' }),
    );
  }
}
