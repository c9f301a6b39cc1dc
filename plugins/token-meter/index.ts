/**
 * token-meter: every token attributed to its tenant, budgets checked before the call, never a
 * silent overage. In access it reserves the request's worst case in Redis atomically (the
 * ladder: preferred model, plan fallback, clamped max_tokens, or a 429), bounds the request
 * to what it reserved and asks streams for their usage. In log it settles exactly once per
 * request id from the usage Kong's post-function read in body_filter (usage-snippet.lua), and
 * appends the ledger entry; Redis outages spool locally and replay. It also answers the
 * tenant's showback endpoints from its own ledger.
 *
 * PDK calls (each one IPC round trip with Kong):
 *   access, metered POST: ctx.shared.get (tenant), request.getMethod, request.getPath,
 *     request.getRawBody, ctx.shared.get (estimate) [+ ctx.shared.set when no earlier plugin
 *     published it], nginx.getVar (request id), ctx.shared.set (state),
 *     [service.request.setRawBody when the body changes], response.setHeaders   = 8 to 10
 *   access, showback GET: ctx.shared.get, getMethod, getPathWithQuery, response.exit = 4
 *   access, other methods: ctx.shared.get, getMethod                               = 2
 *   log: ctx.shared.get ×3 (tenant, state, usage), response.getStatus               = 4
 *     (no state: + ctx.shared.get cache status; a cache hit: + the saved log facts, batched,
 *     or log.serialize where kong.yml's log snippet is not on the route, + estimate)
 */
import { recordCapture } from '../../lib/capture/recorder'; // capture (issue 23)
import { GatewayError } from '../../lib/http/errors';
import { serveMetrics } from '../../lib/metrics/registry';
import { type KongPdk } from '../../lib/pdk/kong';
import { readServedFacts, sourceOf } from '../../lib/pluginserver/log-facts';
import { guardPhase } from '../../lib/plugin/phase';
import { createRedis, waitForRedis, type RedisClient } from '../../lib/redis/client';
import { RedisDeadlineError } from '../../lib/redis/client';
import { isRedisUnavailable } from '../../lib/redis/errors';
import { createKeyspace, type Keyspace } from '../../lib/redis/keys';
import { readConfig } from '../../lib/schema/config';
import type { TenantContext } from '../../lib/tenant/context';
import type { TenantId } from '../../lib/tenant/tenant-id';
import { modelHeaders } from '../../lib/tenant/headers';
import { findRequest, readRequest } from '../../lib/tenant/read';
import { CACHE_STATUS_KEY, CACHE_STATUS_SLOT, decodeCacheStatus } from '../../lib/cache/status';
import type { RequestScope } from '../../lib/request/scope';
import type * as EstimateModule from '../../lib/tokens/estimate';
import { decodeUsage, USAGE_KEY } from '../../lib/tokens/usage';
import {
  reserveBudget,
  settleBudget,
  type BudgetCaps,
  type Settlement,
  type SweepResult,
} from './budget';
import { ExpirySweeper } from './expiry';
import { ladder, type LadderStep } from './ladder';
import { ledgerFields, readLedger, Spool, spoolSettler, type LedgerEntry } from './ledger';
import * as metrics from './metrics';
import { periodAt, periodsBetween, type PeriodWindow } from './period';
import {
  atLength,
  costOf,
  kindOf,
  kindServes,
  NANO_USD_PER_USD,
  priceOf,
  wrongKind,
  type TokenPrice,
} from './pricing';
import { readMeteredRequest, rewriteBody } from './request-body';
import { Schema, checkConfig, type TokenMeterConfig } from './schema';
import { parseShowbackQuery, showbackKind, showbackPage } from './showback';
import { decodeMeterState, encodeMeterState, METER_STATE_KEY, type MeterState } from './state';

export const Name = 'token-meter';
export const Version = '0.1.0';
/** After tenant-cache (900: a cache hit never reaches us), before retrieval-injector (700). */
export const Priority = 800;
export { Schema };

/** Set by tenant-cache when it served the request from its cache. */

/** Largest body read; bigger requests are refused 413 (tenant-auth bounds them earlier). */
const MAX_BODY_BYTES = 8 * 1024 * 1024;

const MISCONFIGURED = new GatewayError({
  status: 500,
  type: 'server_error',
  code: 'plugin_misconfigured',
  message: 'token-meter is misconfigured on this route; the request was not forwarded',
});

interface ResolvedBudget {
  readonly caps: BudgetCaps;
  readonly softThreshold: number;
  readonly allowDowngrade: boolean;
  readonly allowClamp: boolean;
  readonly minClampTokens: number;
  readonly defaultMaxTokens: number;
}

/**
 * The estimate module and its BPE vocabularies (~0.7 s of CPU to build) are loaded after
 * start-up, not at require time, so the plugin server answers Kong's query and starts
 * listening at once (under load a slow start-up is a failed start). Usually tenant-ratelimit
 * has already published the estimate and the vocabularies are never used here.
 */
let estimateModule: Promise<typeof EstimateModule> | undefined;
function estimates(): Promise<typeof EstimateModule> {
  estimateModule ??= import('../../lib/tokens/estimate');
  return estimateModule;
}

/** One replay timer per process, whatever the number of instances. */
let replayTimer: NodeJS.Timeout | undefined;

/**
 * One sweeper of expired reservations per (Redis, key namespace) in this process, whatever the
 * number of instances (an instance is recreated after 60 s idle; the sweeper lives on).
 */
const sweepers = new Map<string, ExpirySweeper>();

export class Plugin {
  private readonly config: TokenMeterConfig;
  private readonly misconfigured: string | null = null;
  private readonly keys: Keyspace;
  private readonly spool: Spool;
  private redisClient: RedisClient | null = null;
  private sweeper: ExpirySweeper | null = null;

  constructor(raw: unknown) {
    this.config = readConfig<TokenMeterConfig>(Schema, raw);
    this.keys = createKeyspace('kta');
    this.spool = new Spool(this.config.spool_dir);
    try {
      checkConfig(this.config);
      this.keys = createKeyspace(this.config.key_namespace);
      serveMetrics('token-meter', this.config.metrics_port, this.config.metrics_host, (e) => {
        process.stderr.write(`token-meter: metrics endpoint failed: ${e.message}\n`);
      });
      this.startReplay();
      this.startSweeper();
      this.redis(); // connect now, not on the first request
      setTimeout(() => void estimates().then((m) => m.loadEncodings()), 0).unref();
    } catch (e) {
      this.misconfigured = e instanceof Error ? e.message : String(e);
    }
  }

  private redis(): RedisClient {
    this.redisClient ??= createRedis({
      url: this.config.redis_url,
      commandTimeoutMs: this.config.redis_timeout_ms,
    });
    return this.redisClient;
  }

  /**
   * The client, given up to one command deadline to finish connecting: the first requests
   * after a plugin server starts (or Redis comes back) must not be refused for a connection
   * that is a few milliseconds from ready. Past the deadline, the call fails as unavailable.
   */
  private async readyRedis(): Promise<RedisClient> {
    const redis = this.redis();
    if (!redis.isReady) {
      await waitForRedis(redis, this.config.redis_timeout_ms).catch(() => undefined);
    }
    return redis;
  }

  private startReplay(): void {
    if (replayTimer) return;
    const run = async (): Promise<void> => {
      if (this.spool.pending().length === 0) return;
      const r = await this.spool.replay(spoolSettler(this.redis(), this.keys));
      metrics.replayed.inc({ result: 'settled' }, r.settled);
      metrics.replayed.inc({ result: 'duplicate' }, r.duplicate);
      metrics.replayed.inc({ result: 'failed' }, r.failed);
    };
    replayTimer = setInterval(() => {
      run().catch((e: unknown) =>
        process.stderr.write(`token-meter: replay failed: ${String(e)}\n`),
      );
    }, this.config.replay_interval_seconds * 1000);
    replayTimer.unref();
  }

  private startSweeper(): void {
    const c = this.config;
    const k = `${c.redis_url}\u0000${c.key_namespace}`;
    let sweeper = sweepers.get(k);
    if (!sweeper) {
      sweeper = new ExpirySweeper({
        redis: () => this.redis(),
        keys: this.keys,
        reservationTtlMs: c.reservation_ttl_seconds * 1000,
        minTtlMs: c.ledger_retention_days * 86_400_000,
        intervalMs: c.expiry_sweep_interval_seconds * 1000,
        onSettled: (tenant, r) => this.countExpired(tenant, r),
        hold: () => this.spool.pending().length > 0,
        onError: (e) =>
          process.stderr.write(`token-meter: sweep of expired reservations failed: ${String(e)}\n`),
      });
      sweepers.set(k, sweeper);
      sweeper.start();
    }
    this.sweeper = sweeper;
  }

  /** Reservations billed by expiry: counted per tenant (the ledger has each entry). */
  private countExpired(tenant: TenantId, r: Pick<SweepResult, 'settled'>): void {
    metrics.expiredSettlements.inc(
      { tenant: metrics.tenantLabels(this.config.metrics_max_tenants).label(tenant) },
      r.settled,
    );
  }

  async access(kong: unknown): Promise<void> {
    await guardPhase(
      kong,
      Name,
      'access',
      async (k) => {
        if (this.misconfigured !== null) {
          void k.log.err(`token-meter is misconfigured, refusing: ${this.misconfigured}`);
          throw MISCONFIGURED;
        }
        const { tenant: ctx, scope } = await readRequest(k, Name);
        const method = await scope.method(k);
        if (method === 'POST') return this.meter(k, scope, ctx);
        if ((method === 'GET' || method === 'HEAD') && this.config.showback) {
          const pathWithQuery = await scope.pathWithQuery(k);
          const q = pathWithQuery.indexOf('?');
          const path = q < 0 ? pathWithQuery : pathWithQuery.slice(0, q);
          const kind = showbackKind(path);
          if (kind) await this.showback(k, ctx, kind, q < 0 ? '' : pathWithQuery.slice(q + 1));
        }
      },
      { onRefusal: (e) => metrics.refusals.inc({ reason: e.code, status: String(e.status) }) },
    );
  }

  private resolveBudget(ctx: TenantContext): ResolvedBudget | null {
    const plan = Object.prototype.hasOwnProperty.call(this.config.plans, ctx.plan)
      ? this.config.plans[ctx.plan]
      : undefined;
    if (!plan) {
      if (this.config.unlisted_plan === 'meter_only') {
        return {
          caps: { tokens: null, cost: null },
          softThreshold: 1,
          allowDowngrade: false,
          allowClamp: false,
          minClampTokens: 1,
          defaultMaxTokens: this.config.default_max_tokens,
        };
      }
      return null;
    }
    const o = Object.prototype.hasOwnProperty.call(this.config.tenants, ctx.tenantId)
      ? this.config.tenants[ctx.tenantId]
      : undefined;
    const tokens = o?.budget_tokens ?? plan.budget_tokens;
    const usd = o?.budget_usd ?? plan.budget_usd;
    return {
      caps: { tokens, cost: usd === null ? null : Math.floor(usd * NANO_USD_PER_USD) },
      softThreshold: o?.soft_threshold ?? plan.soft_threshold,
      allowDowngrade: plan.allow_downgrade,
      allowClamp: plan.allow_clamp,
      minClampTokens: plan.min_clamp_tokens,
      defaultMaxTokens: plan.default_max_tokens ?? this.config.default_max_tokens,
    };
  }

  private async meter(kong: KongPdk, scope: RequestScope, ctx: TenantContext): Promise<void> {
    const c = this.config;
    const budget = this.resolveBudget(ctx);
    if (!budget) {
      void kong.log.err(`token-meter: plan '${ctx.plan}' has no budget and unlisted_plan=refuse`);
      throw MISCONFIGURED;
    }
    const path = await scope.path(kong);
    const raw = await scope.rawBody(kong, MAX_BODY_BYTES);
    if (raw === null) {
      throw new GatewayError({
        status: 413,
        type: 'invalid_request_error',
        code: 'request_too_large',
        message: `request bodies over ${MAX_BODY_BYTES} bytes are not metered here`,
      });
    }
    const req = readMeteredRequest(
      raw,
      path,
      { maxTokensCap: c.max_tokens_cap, maxChoices: c.max_choices },
      (b) => scope.json(b),
    );
    const { sharedEstimate } = await estimates();
    const estimate = await sharedEstimate(kong, scope, () => Promise.resolve(req.body), {
      defaultMaxTokens: budget.defaultMaxTokens,
      maxTokensCap: c.max_tokens_cap,
      maxChoices: c.max_choices,
    });
    // tenant-auth decided the model on a tiered plan and wrote it into the body: price what
    // will be served, report what the client asked for.
    const tierModel = ctx.model?.served ?? req.model;
    const modelAsked = ctx.model ? ctx.model.requested : req.model;
    if (ctx.model && ctx.model.served !== req.model) {
      void kong.log.warn(
        `token-meter: the body names '${req.model}' but tenant-auth serves '${ctx.model.served}'; metering and sending the latter`,
      );
    }
    const askedPrice = priceOf(c, tierModel);
    if (!askedPrice) {
      throw new GatewayError({
        status: 400,
        type: 'invalid_request_error',
        code: 'model_not_priced',
        message: `the model '${tierModel}' has no price on this gateway`,
        param: 'model',
      });
    }
    // The model's declared kind: an embedding model never generates, a generation model never
    // embeds (the price table says which; tenant-auth also refuses names that say `embed`).
    const kind = kindOf(c, tierModel);
    if (kind !== null && !kindServes(kind, req.promptOnly)) throw wrongKind(tierModel, kind);
    // The downgrade ladder stays inside the tenant's tier: a fallback outside it is not used.
    const tier = ctx.policy.models;
    const fallbackModel =
      ctx.policy.fallbackModel !== null &&
      (tier.length === 0 || tier.includes(ctx.policy.fallbackModel))
        ? ctx.policy.fallbackModel
        : null;
    const fallbackPrice =
      budget.allowDowngrade &&
      fallbackModel !== null &&
      fallbackModel !== tierModel &&
      kindServes(kindOf(c, fallbackModel), req.promptOnly)
        ? priceOf(c, fallbackModel)
        : undefined;
    const perChoice = req.promptOnly ? 0 : (req.askedMaxTokens ?? budget.defaultMaxTokens);
    const steps = ladder({
      askedModel: tierModel,
      askedPrice,
      fallback:
        fallbackModel !== null && fallbackPrice
          ? { model: fallbackModel, price: fallbackPrice }
          : null,
      allowClamp: budget.allowClamp,
      minClampTokens: budget.minClampTokens,
      softThreshold: budget.softThreshold,
      promptTokens: estimate.promptTokens + c.context_headroom_tokens,
      choices: req.n,
      maxTokensPerChoice: perChoice,
    });
    const requestId = await scope.requestId(kong);
    if (requestId === '') throw new Error('no kong_request_id');
    const now = Date.now();
    const period = periodAt(c.period, now);

    let step: LadderStep;
    let units: number;
    let reserved: boolean;
    let remaining: { tokens: number | null; cost: number | null } = { tokens: null, cost: null };
    try {
      const r = await reserveBudget(await this.readyRedis(), this.keys, ctx.tenantId, period.id, {
        requestId,
        ttlMs: c.reservation_ttl_seconds * 1000,
        keyTtlMs: this.keyTtlMs(period, now),
        caps: budget.caps,
        candidates: steps.map((s) => s.candidate),
        // What the log phase would bill with no usage, should it never run (see expiry.ts).
        expiry: {
          modelAsked,
          promptTokens: estimate.promptTokens,
          completionPerUnit: req.n,
          stream: req.stream,
          candidates: steps.map((s) => ({
            model: s.model,
            downgrade: s.downgrade,
            price: atLength(s.price, estimate.promptTokens),
          })),
        },
      });
      if (r.expiredSettled > 0) this.countExpired(ctx.tenantId, { settled: r.expiredSettled });
      this.sweeper?.noteReserve(ctx.tenantId, period.id, now);
      if (r.chosen === 'duplicate') throw new Error(`request id ${requestId} reserved twice`);
      const chosen = r.chosen >= 0 ? steps[r.chosen] : undefined;
      if (!chosen) throw this.exhausted(ctx, period, budget.caps, r.totals, now);
      step = chosen;
      units = r.units;
      reserved = true;
      const t = r.totals;
      remaining = {
        tokens:
          budget.caps.tokens === null ? null : budget.caps.tokens - t.usedTokens - t.reservedTokens,
        cost: budget.caps.cost === null ? null : budget.caps.cost - t.usedCost - t.reservedCost,
      };
    } catch (e) {
      if (!isRedisUnavailable(e)) throw e;
      if (c.on_redis_unavailable === 'refuse') {
        if (e instanceof RedisDeadlineError) {
          // The script may still run (only its reply was late): release this request id, or
          // its reservation would hold the tenant's budget until its TTL. Written after the
          // reserve on the same connection (the same slot), so Redis runs it after the script;
          // spooled like any settlement if Redis stays away.
          void this.commit(ctx, period.id, period.endMs, {
            requestId,
            tokens: 0,
            cost: 0,
            ttlMs: 0,
            ledger: null,
          }).catch(() => undefined);
          metrics.lateReleases.inc();
        }
        throw new GatewayError({
          status: 503,
          type: 'service_unavailable',
          code: 'budget_unavailable',
          message: 'the budget store is unavailable; the request was not forwarded',
          retryAfterSeconds: 2,
        });
      }
      // spool mode: serve unchecked at the requested bound, settle later from the spool.
      step = steps[0] as LadderStep;
      units = perChoice;
      reserved = false;
    }

    const state: MeterState = {
      v: 1,
      requestId,
      tenant: ctx.tenantId,
      period: period.id,
      periodEndMs: period.endMs,
      modelAsked,
      modelServed: step.model,
      downgrade: step.downgrade,
      stream: req.stream,
      promptTokens: estimate.promptTokens,
      maxTokensPerChoice: units,
      n: req.n,
      price: step.price,
      reserved,
    };
    await kong.ctx.shared.set(METER_STATE_KEY, encodeMeterState(state));
    const newBody = rewriteBody(req, step.model, units);
    if (newBody !== null) await scope.setBody(kong, newBody);

    const labels = metrics.tenantLabels(c.metrics_max_tenants);
    if (step.downgrade !== 'none') {
      metrics.downgrades.inc({ tenant: labels.label(ctx.tenantId), kind: step.downgrade });
    }
    const headers: Record<string, string> = {
      'X-Budget-State': !reserved ? 'unchecked' : step.downgrade === 'none' ? 'ok' : step.downgrade,
      ...modelHeaders(modelAsked, step.model),
      'X-Budget-Reset': new Date(period.endMs).toISOString(),
    };
    if (remaining.tokens !== null) headers['X-Budget-Remaining-Tokens'] = String(remaining.tokens);
    if (remaining.cost !== null) {
      headers['X-Budget-Remaining-Usd'] = (remaining.cost / NANO_USD_PER_USD).toFixed(6);
    }
    await kong.response.setHeaders(headers);
  }

  /** TTL of a period's keys: to its end, plus the ledger retention. */
  private keyTtlMs(period: PeriodWindow, now: number): number {
    return Math.max(1000, period.endMs - now) + this.config.ledger_retention_days * 86_400_000;
  }

  /** The hard cap: one typed error; the numbers are the tenant's own (it is the caller). */
  private exhausted(
    ctx: TenantContext,
    period: PeriodWindow,
    caps: BudgetCaps,
    t: { usedTokens: number; reservedTokens: number; usedCost: number; reservedCost: number },
    now: number,
  ): GatewayError {
    const parts: string[] = [];
    if (caps.tokens !== null) {
      parts.push(`${t.usedTokens} of ${caps.tokens} tokens used, ${t.reservedTokens} in flight`);
    }
    if (caps.cost !== null) {
      parts.push(
        `$${(t.usedCost / NANO_USD_PER_USD).toFixed(4)} of $${(caps.cost / NANO_USD_PER_USD).toFixed(2)} spent`,
      );
    }
    const reset = new Date(period.endMs).toISOString();
    metrics.budgetRefusals.inc({
      tenant: metrics.tenantLabels(this.config.metrics_max_tenants).label(ctx.tenantId),
    });
    return new GatewayError({
      status: 429,
      type: 'insufficient_quota',
      code: 'budget_exhausted',
      message: `the ${this.config.period}ly budget of tenant ${ctx.tenantId} does not cover this request (${parts.join('; ')}); it resets at ${reset}`,
      retryAfterSeconds: Math.ceil((period.endMs - now) / 1000),
      headers: { 'X-Budget-State': 'exhausted', 'X-Budget-Reset': reset },
    });
  }

  private async showback(
    kong: KongPdk,
    ctx: TenantContext,
    kind: 'usage' | 'costs',
    rawQuery: string,
  ): Promise<void> {
    const q = parseShowbackQuery(kind, rawQuery);
    const entries = [];
    // Reservations that can still be open are in the current period or, for one TTL after a
    // period's end, the previous one: those are swept first (one script call each), so the page
    // shows a request whose log never ran as soon as its reservation has expired.
    const now = Date.now();
    const open = new Set([
      periodAt(this.config.period, now).id,
      periodAt(this.config.period, now - this.config.reservation_ttl_seconds * 1000).id,
    ]);
    for (const p of periodsBetween(this.config.period, q.startMs, q.endMs)) {
      try {
        if (open.has(p.id)) await this.sweeper?.sweepNow(ctx.tenantId, [p.id]);
        entries.push(
          ...(await readLedger(
            await this.readyRedis(),
            this.keys,
            ctx.tenantId,
            p.id,
            q.startMs,
            q.endMs,
          )),
        );
      } catch (e) {
        if (!isRedisUnavailable(e)) throw e;
        throw new GatewayError({
          status: 503,
          type: 'service_unavailable',
          code: 'ledger_unavailable',
          message: 'the usage ledger is unavailable; try again shortly',
          retryAfterSeconds: 2,
        });
      }
    }
    void kong.response.exit(200, JSON.stringify(showbackPage(q, entries)), {
      'Content-Type': 'application/json',
      'Cache-Control': 'no-store',
    });
  }

  async log(kong: unknown): Promise<void> {
    await guardPhase(kong, Name, 'log', (k) => this.settle(k), { afterResponse: true });
  }

  private async settle(kong: KongPdk): Promise<void> {
    if (this.misconfigured !== null) return;
    // The tenant first, from the request's scope when this process has it: a request refused
    // before tenant-auth published a context (its 400s) has none, and is no error here.
    const request = await findRequest(kong, Name);
    if (!request) return;
    const { tenant: ctx, scope } = request;
    // capture (issue 23): seal an opted-in request and its outcome into Redis (lib/capture/recorder.ts)
    await recordCapture(
      kong,
      request,
      this.config.capture,
      this.keys,
      this.redis(),
      this.config.metrics_max_tenants,
    );
    const state = decodeMeterState(await kong.ctx.shared.get(METER_STATE_KEY));
    if (!state) {
      // Not metered in access: a cache hit (tenant-cache answered before us) is recorded. The
      // status is in the scope when tenant-cache ran in this process; else ctx.shared, the
      // contract any plugin answering from a cache may write (a test fixture does).
      const status =
        scope.get(CACHE_STATUS_SLOT) ??
        decodeCacheStatus(await kong.ctx.shared.get(CACHE_STATUS_KEY));
      if (status === 'hit') await this.settleCacheHit(kong, scope, ctx);
      return;
    }
    if (state.tenant !== ctx.tenantId) {
      void kong.log.err('token-meter: meter state and tenant context disagree; not settled');
      return;
    }
    const usage = decodeUsage(await kong.ctx.shared.get(USAGE_KEY));
    const status = await kong.response.getStatus();
    const labels = metrics.tenantLabels(this.config.metrics_max_tenants);
    const tenantLabel = labels.label(ctx.tenantId);
    const ok = status >= 200 && status < 300;
    if (!usage && (!ok || (await this.kongAnsweredForUpstream(kong)))) {
      // An error or a refusal after us, or Kong's own error body in place of an answer the
      // upstream cut: nothing billed, the reservation is released.
      await this.commit(ctx, state.period, state.periodEndMs, {
        requestId: state.requestId,
        tokens: 0,
        cost: 0,
        ttlMs: 0,
        ledger: null,
      });
      metrics.requests.inc({ tenant: tenantLabel, outcome: ok ? 'upstream_cut' : 'released' });
      return;
    }
    const counts = usage
      ? {
          promptTokens: usage.promptTokens,
          completionTokens: usage.completionTokens,
          cachedTokens: usage.cachedTokens,
        }
      : {
          // No usage (upstream sent none, client aborted): the tokenizer's prompt count and
          // the completion bound the request was held to; flagged as estimated.
          promptTokens: state.promptTokens,
          completionTokens: state.maxTokensPerChoice * state.n,
          cachedTokens: 0,
        };
    const cost = costOf(state.price, counts);
    const entry: LedgerEntry = {
      ts: Date.now(),
      modelAsked: state.modelAsked,
      modelServed: state.modelServed,
      ...counts,
      cost,
      cacheHit: false,
      estimated: !usage,
      downgrade: state.downgrade,
      stream: state.stream,
      status,
    };
    const used = await this.commit(ctx, state.period, state.periodEndMs, {
      requestId: state.requestId,
      tokens: counts.promptTokens + counts.completionTokens,
      cost,
      ttlMs: 0,
      ledger: ledgerFields(entry),
    });
    metrics.requests.inc({ tenant: tenantLabel, outcome: usage ? 'metered' : 'estimated' });
    const model = state.modelServed;
    metrics.tokens.inc({ tenant: tenantLabel, model, kind: 'prompt' }, counts.promptTokens);
    metrics.tokens.inc({ tenant: tenantLabel, model, kind: 'completion' }, counts.completionTokens);
    metrics.tokens.inc({ tenant: tenantLabel, model, kind: 'cached' }, counts.cachedTokens);
    metrics.cost.inc({ tenant: tenantLabel, model }, cost / NANO_USD_PER_USD);
    if (used) {
      const budget = this.resolveBudget(ctx);
      if (budget?.caps.tokens) {
        metrics.budgetUsedRatio.set(
          { tenant: tenantLabel, dimension: 'tokens' },
          used.usedTokens / budget.caps.tokens,
        );
      }
      if (budget?.caps.cost) {
        metrics.budgetUsedRatio.set(
          { tenant: tenantLabel, dimension: 'cost' },
          used.usedCost / budget.caps.cost,
        );
      }
    }
  }

  /**
   * A 2xx without usage that was not the upstream's answer (kong.response.get_source() is
   * "exit"): a plugin after us, or Kong itself, answered. The case that happens: the upstream
   * cut a buffered (non-streamed) answer after its status line, and kong/init.lua (3.9.3,
   * Kong.response, `res.truncated`) kept the upstream's status and had kong/error_handlers.lua
   * answer with kong.response.exit, "The upstream server responded with 200". The client got no
   * answer, so nothing is billed. Asked only on this rare path (the facts cost an exchange where
   * kong.yml's log snippet is not on the route). A cache hit, which exits before us, is settled
   * elsewhere (no meter state).
   */
  private async kongAnsweredForUpstream(kong: KongPdk): Promise<boolean> {
    return (await sourceOf(kong, await readServedFacts(kong))) === 'exit';
  }

  private async settleCacheHit(
    kong: KongPdk,
    scope: RequestScope,
    ctx: TenantContext,
  ): Promise<void> {
    // The saved log facts (one batched read) where kong.yml's log snippet is on the route, else
    // the serializer's: the request id (the settlement's idempotency key) and the status.
    const served = await readServedFacts(kong);
    const requestId = served.requestId;
    if (requestId === null) return;
    const { decodeEstimate, keptEstimate, ESTIMATE_KEY } = await estimates();
    const estimate = keptEstimate(scope) ?? decodeEstimate(await kong.ctx.shared.get(ESTIMATE_KEY));
    const now = Date.now();
    const period = periodAt(this.config.period, now);
    // The served model: tenant-auth's decision on a tiered plan, else what the body named.
    const model = ctx.model?.served ?? estimate?.model ?? '';
    const zero: TokenPrice = { prompt: 0, completion: 0, cachedPrompt: 0 };
    const entry: LedgerEntry = {
      ts: now,
      modelAsked: ctx.model?.requested ?? model,
      modelServed: model,
      promptTokens: 0,
      completionTokens: 0,
      cachedTokens: 0,
      cost: costOf(zero, { promptTokens: 0, completionTokens: 0, cachedTokens: 0 }),
      cacheHit: true,
      estimated: false,
      downgrade: 'none',
      stream: estimate?.stream ?? false,
      // The serializer's status is 0 when it could not be read: a hit is served with 200.
      status: served.status > 0 ? served.status : 200,
    };
    await this.commit(ctx, period.id, period.endMs, {
      requestId,
      tokens: 0,
      cost: 0,
      ttlMs: 0,
      ledger: ledgerFields(entry),
    });
    metrics.requests.inc({
      tenant: metrics.tenantLabels(this.config.metrics_max_tenants).label(ctx.tenantId),
      outcome: 'cache_hit',
    });
  }

  /** Settles in Redis, or spools when Redis is unavailable. Returns the totals when settled. */
  private async commit(
    ctx: TenantContext,
    period: string,
    periodEndMs: number,
    s: Settlement,
  ): Promise<{ usedTokens: number; usedCost: number } | null> {
    const now = Date.now();
    const settlement: Settlement = {
      ...s,
      ttlMs: Math.max(1000, periodEndMs - now) + this.config.ledger_retention_days * 86_400_000,
    };
    try {
      const r = await settleBudget(
        await this.readyRedis(),
        this.keys,
        ctx.tenantId,
        period,
        settlement,
      );
      return r.settled ? r : null;
    } catch (e) {
      if (!isRedisUnavailable(e)) throw e;
      this.spool.append({ tenant: ctx.tenantId, period, settlement });
      metrics.spooled.inc();
      return null;
    }
  }
}
