/**
 * The access phase of a metered request: its worst case reserved in Redis in one script
 * (budget-reserve-4.lua), first fit on the ladder (policy.ts) or the 429; then the request
 * bounded to what was reserved (the body's model and max_tokens), the meter state left for the
 * log phase, and the budget headers. Redis unavailable: a 503, or (spool mode) the request
 * served unchecked and settled later.
 */
import { type KongPdk } from '../../lib/pdk/kong';
import { RedisDeadlineError } from '../../lib/redis/client';
import { isRedisUnavailable } from '../../lib/redis/errors';
import type { TenantContext } from '../../lib/tenant/context';
import type { TenantRequest } from '../../lib/tenant/read';
import { reserveBudget } from './budget';
import { budgetHeaders, type Remaining } from './headers';
import type { LadderStep } from './ladder';
import * as metrics from './metrics';
import { periodAt, type PeriodWindow } from './period';
import { ladderFor, resolveBudget, type RequestLadder, type ResolvedBudget } from './policy';
import { atLength } from './pricing';
import { estimates, type Ready } from './ready';
import { budgetExhausted, budgetUnavailable, MISCONFIGURED, requestTooLarge } from './refusals';
import { readMeteredRequest, rewriteBody, type MeteredRequest } from './request-body';
import { release } from './commit';
import { encodeMeterState, METER_STATE_KEY, type MeterState } from './state';

/** Largest body read; bigger requests are refused 413 (tenant-auth bounds them earlier). */
const MAX_BODY_BYTES = 8 * 1024 * 1024;

/**
 * Sent upstream on every metered request: the usage reader (usage-snippet.lua, in body_filter)
 * string-matches the answer's bytes, so the answer must come uncompressed. A client's
 * `Accept-Encoding: gzip` (httpx, `curl --compressed`, most SDKs) would otherwise reach the
 * provider, which gzips its JSON, and the request would be billed at its bound, estimated.
 */
export const UPSTREAM_ENCODING: Readonly<Record<string, string>> = Object.freeze({
  'accept-encoding': 'identity',
});

/** One metered request, as access knows it before the reserve: built once, passed whole. */
interface Metering {
  readonly ctx: TenantContext;
  readonly budget: ResolvedBudget;
  readonly request: MeteredRequest;
  /** What the client asked for, before tenant-auth's tier decision (reported, never priced). */
  readonly modelAsked: string;
  /** The tokenizer's prompt count (without the injected-context headroom). */
  readonly promptTokens: number;
  readonly ladder: RequestLadder;
  readonly requestId: string;
  readonly period: PeriodWindow;
  readonly now: number;
}

/** What the reserve gave the request. */
interface Reservation {
  readonly step: LadderStep;
  /** Completion tokens per choice the request is held to. */
  readonly units: number;
  /** false: Redis was unavailable and the request goes out unchecked (spool mode). */
  readonly reserved: boolean;
  readonly remaining: Remaining;
}

/** Meters a POST: reserves, bounds the request, leaves the meter state and sets the headers. */
export async function meter(ready: Ready, kong: KongPdk, request: TenantRequest): Promise<void> {
  const m = await readMetering(ready, kong, request);
  const r = await reserve(ready, m);
  const state: MeterState = {
    v: 1,
    requestId: m.requestId,
    tenant: m.ctx.tenantId,
    period: m.period.id,
    periodEndMs: m.period.endMs,
    modelAsked: m.modelAsked,
    modelServed: r.step.model,
    downgrade: r.step.downgrade,
    stream: m.request.stream,
    promptTokens: m.promptTokens,
    maxTokensPerChoice: r.units,
    n: m.request.n,
    price: r.step.price,
    reserved: r.reserved,
  };
  await kong.ctx.shared.set(METER_STATE_KEY, encodeMeterState(state));
  const newBody = rewriteBody(m.request, state.modelServed, state.maxTokensPerChoice);
  if (newBody !== null) await request.scope.setBody(kong, newBody);
  // An uncompressed answer, so that the usage reader can read it (UPSTREAM_ENCODING). A write:
  // it joins this phase's batch of writes (lib/pluginserver/batch.ts), no exchange of its own.
  await kong.service.request.setHeaders(UPSTREAM_ENCODING);
  request.scope.applyHeaderWrites(UPSTREAM_ENCODING);
  if (state.downgrade !== 'none') {
    metrics.downgrades.inc({ tenant: ready.label(m.ctx.tenantId), kind: state.downgrade });
  }
  await kong.response.setHeaders(budgetHeaders(state, r.remaining));
}

/** The tenant's budget, the checked body, its estimate and its ladder; or a refusal. */
async function readMetering(
  ready: Ready,
  kong: KongPdk,
  { tenant: ctx, scope }: TenantRequest,
): Promise<Metering> {
  const c = ready.config;
  const budget = resolveBudget(c, ctx);
  if (!budget) {
    void kong.log.err(`token-meter: plan '${ctx.plan}' has no budget and unlisted_plan=refuse`);
    throw MISCONFIGURED;
  }
  const path = await scope.path(kong);
  const raw = await scope.rawBody(kong, MAX_BODY_BYTES);
  if (raw === null) throw requestTooLarge(MAX_BODY_BYTES);
  const request = readMeteredRequest(
    raw,
    path,
    { maxTokensCap: c.max_tokens_cap, maxChoices: c.max_choices },
    (b) => scope.json(b),
  );
  // Usually published by tenant-ratelimit; computed (and published) here only when absent.
  const { sharedEstimate } = await estimates();
  const estimate = await sharedEstimate(
    kong,
    scope,
    ctx.tenantId,
    () => Promise.resolve(request.body),
    {
      defaultMaxTokens: budget.defaultMaxTokens,
      maxTokensCap: c.max_tokens_cap,
      maxChoices: c.max_choices,
    },
  );
  const promptTokens = estimate.promptTokens;
  // tenant-auth decided the model on a tiered plan and wrote it into the body: price what
  // will be served, report what the client asked for.
  const model = ctx.model?.served ?? request.model;
  if (ctx.model && ctx.model.served !== request.model) {
    void kong.log.warn(
      `token-meter: the body names '${request.model}' but tenant-auth serves '${ctx.model.served}'; metering and sending the latter`,
    );
  }
  const ladder = ladderFor(c, { ctx, budget, request, model, promptTokens });
  const requestId = await scope.requestId(kong);
  if (requestId === '') throw new Error('no kong_request_id');
  const now = Date.now();
  return {
    ctx,
    budget,
    request,
    modelAsked: ctx.model ? ctx.model.requested : request.model,
    promptTokens,
    ladder,
    requestId,
    period: periodAt(c.period, now),
    now,
  };
}

/** The first ladder step the budget covers, or the 429; Redis unavailable: 503 or unchecked. */
async function reserve(ready: Ready, m: Metering): Promise<Reservation> {
  const c = ready.config;
  const { ctx, period, now, requestId } = m;
  const { steps } = m.ladder;
  const caps = m.budget.caps;
  try {
    const r = await reserveBudget(await ready.readyRedis(), ready.keys, ctx.tenantId, period.id, {
      requestId,
      ttlMs: c.reservation_ttl_seconds * 1000,
      keyTtlMs: ready.keyTtlMs(period.endMs, now),
      caps,
      candidates: steps.map((s) => s.candidate),
      // What the log phase would bill with no usage, should it never run (see expiry.ts).
      expiry: {
        modelAsked: m.modelAsked,
        promptTokens: m.promptTokens,
        completionPerUnit: m.request.n,
        stream: m.request.stream,
        candidates: steps.map((s) => ({
          model: s.model,
          downgrade: s.downgrade,
          price: atLength(s.price, m.promptTokens),
        })),
      },
    });
    if (r.expiredSettled > 0) ready.countExpired(ctx.tenantId, r.expiredSettled);
    ready.sweeper.noteReserve(ctx.tenantId, period.id, now);
    if (r.chosen === 'duplicate') throw new Error(`request id ${requestId} reserved twice`);
    const step = r.chosen >= 0 ? steps[r.chosen] : undefined;
    const t = r.totals;
    if (!step) {
      metrics.budgetRefusals.inc({ tenant: ready.label(ctx.tenantId) });
      throw budgetExhausted({
        tenant: ctx.tenantId,
        period: c.period,
        periodEndMs: period.endMs,
        caps,
        totals: t,
        now,
      });
    }
    return {
      step,
      units: r.units,
      reserved: true,
      remaining: {
        tokens: caps.tokens === null ? null : caps.tokens - t.usedTokens - t.reservedTokens,
        cost: caps.cost === null ? null : caps.cost - t.usedCost - t.reservedCost,
      },
    };
  } catch (e) {
    if (!isRedisUnavailable(e)) throw e;
    if (c.on_redis_unavailable === 'refuse') {
      if (e instanceof RedisDeadlineError) {
        // The script may still run (only its reply was late): release this request id, or
        // its reservation would hold the tenant's budget until its TTL. Written after the
        // reserve on the same connection (the same slot), so Redis runs it after the script;
        // spooled like any settlement if Redis stays away.
        const account = { tenant: ctx.tenantId, period: period.id, periodEndMs: period.endMs };
        void release(ready, account, requestId).catch(() => undefined);
        metrics.lateReleases.inc();
      }
      throw budgetUnavailable();
    }
    // spool mode: serve unchecked at the requested bound, settle later from the spool.
    return {
      step: steps[0] as LadderStep,
      units: m.ladder.maxTokensPerChoice,
      reserved: false,
      remaining: { tokens: null, cost: null },
    };
  }
}
