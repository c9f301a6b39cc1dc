/**
 * Admission of a request: its tenant's limits (with the fair queue's acquire in the same round
 * trip), flex work waiting for those limits, the 429, then the seat (or its hand-off to
 * circuit-breaker).
 */
import type { KongPdk } from '../../lib/pdk/kong';
import { untilFirstConnected } from '../../lib/redis/client';
import type { ServiceClass } from '../../lib/redis/fair-queue';
import { chargeableTokens, type TenantLimits } from './tenant-limits';
import { SEAT_HAND_OFF } from '../../lib/request/seat';
import type { RequestScope } from '../../lib/request/scope';
import type { TenantContext } from '../../lib/tenant/context';
import { serviceTierOf, sharedEstimate } from '../../lib/tokens/estimate';
import { SERVICE_CLASS_HEADER } from './headers';
import * as metrics from './metrics';
import type { Ready } from './ready';
import { tooMany } from './refusals';
import {
  admissionHeaders,
  admitted,
  handsOffSeat,
  leaveRecord,
  seatHandOff,
  seatOrRefusal,
  sendHeaders,
  type Admission,
} from './seat';
import { serviceClassOf } from './service-class';
import type { AdmissionRecord } from './state';
import { newTicket } from './ticket';
import { resolveLimits } from './limits';

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, Math.max(0, ms)));

export async function admit(
  ready: Ready,
  kong: KongPdk,
  request: RequestScope,
  ctx: TenantContext,
  tenantLabel: string,
  classOf: { value: ServiceClass | 'none' },
): Promise<void> {
  const { config, limiters } = ready;
  const limits = resolveLimits(config, ctx);
  await refuseFromMemory(ready, kong, request, ctx, limits, classOf);
  // The instance (and its client) is created by the first request: its first connection
  // gets one command deadline instead of a 503 "client is offline".
  await untilFirstConnected(ready.redis, config.redis.timeout_ms);
  const estimate = await sharedEstimate(
    kong,
    request,
    ctx.tenantId,
    () => request.jsonBody(kong),
    ready.estimateOptions,
  );
  const serviceClass = await serviceClassOf(kong, request, config.flex, ctx, estimate.serviceTier);
  classOf.value = serviceClass;
  const t = newTicket(
    config,
    ready.capacity.seatLeaseMs,
    ctx,
    limits,
    tenantLabel,
    serviceClass,
    estimate,
  );
  const handOff = handsOffSeat(ready, request);

  const askedAt = Date.now();
  const entered = await limiters.attempt(kong, 'access', limiters.cluster, (l) =>
    l.admit(t, ready.queueEnabled && !handOff),
  );
  let { limiter } = entered;
  let { decision, first } = entered.value;
  if (!decision.allowed) {
    // Refused by its own limits: the request never runs, its place or seat goes back.
    await limiter.cancel(t, first);
    first = null;
    if (limiter === limiters.cluster)
      ready.refusals.remember(t.tenant, t.limits, decision, askedAt);
  }
  let limitWaited = false;
  // Flex work near its tenant's per-minute limits waits for them rather than taking a 429;
  // a concurrency refusal has no time after which it clears, so it is never waited for.
  while (
    !decision.allowed &&
    serviceClass === 'flex' &&
    config.flex.wait_for_tenant_limits &&
    decision.refusedBy !== 'concurrency' &&
    Date.now() + decision.retryAfterMs < t.deadline
  ) {
    await sleep(Math.max(20, decision.retryAfterMs));
    limitWaited = true;
    const again = await limiters.attempt(kong, 'access', limiter, (l) => l.admit(t, false));
    limiter = again.limiter;
    decision = again.value.decision;
  }
  if (!decision.allowed)
    throw tooMany(decision, t.limits, limiter.scope, classHeader(ready, serviceClass));
  metrics.inFlight.set({ tenant: tenantLabel }, decision.inFlight);

  const record: AdmissionRecord = {
    v: 1,
    tenant: t.tenant,
    lease: t.lease,
    scope: limiter.scope,
    charged: chargeableTokens(t.limits, t.width),
    width: t.width,
    seat: ready.queueEnabled && !handOff ? limiter.scope : null,
    limits: t.limits,
    busy: first === null || !first.ok || !first.result.granted || first.result.waiting > 0,
    ...(handOff ? { handOff: 'left' as const } : {}),
  };
  // Left before any wait, so that a granted request goes on with one PDK call (the
  // headers). If the wait ends in a refusal, log settles again: a no-op (lease gone,
  // correction 0) and the release of a ticket no longer queued.
  await leaveRecord(ready, kong, request, record);
  const a: Admission = {
    ticket: t,
    limiter,
    decision,
    charged: record.charged,
    limitWaited,
    record,
  };
  if (handOff) {
    // circuit-breaker takes the seat once it has chosen the upstream (lib/request/seat.ts).
    request.set(SEAT_HAND_OFF, seatHandOff(ready, request, a));
    await sendHeaders(kong, admissionHeaders(ready, a, null, limiter.scope === 'local', true));
    return;
  }
  const outcome = ready.queueEnabled
    ? await seatOrRefusal(ready, kong, a, first)
    : { seat: null, queued: false, busy: record.busy === true };
  await admitted(ready, kong, request, a, outcome, true);
}

function classHeader(ready: Ready, serviceClass: ServiceClass): Record<string, string> {
  return ready.config.flex.enabled ? { [SERVICE_CLASS_HEADER]: serviceClass } : {};
}

/**
 * The 429 of a tenant its requests bucket refused moments ago, before this request's estimate
 * and without Redis (refusal-memo.ts): no request of the tenant can fit before the time Redis
 * gave. The body's service tier is still checked first (a bad one is a 400, as ever), and flex
 * work that waits for its tenant's limits goes on to wait, as it would after Redis's answer.
 */
async function refuseFromMemory(
  ready: Ready,
  kong: KongPdk,
  request: RequestScope,
  ctx: TenantContext,
  limits: TenantLimits,
  classOf: { value: ServiceClass | 'none' },
): Promise<void> {
  const refused = ready.refusals.recall(ctx.tenantId, limits, Date.now());
  if (refused === null) return;
  const { flex } = ready.config;
  const tier = serviceTierOf(await request.jsonBody(kong));
  const serviceClass = await serviceClassOf(kong, request, flex, ctx, tier);
  classOf.value = serviceClass;
  if (serviceClass === 'flex' && flex.wait_for_tenant_limits) return;
  metrics.rememberedRefusals.inc({ tenant: ready.label(ctx.tenantId) });
  throw tooMany(refused, limits, 'cluster', classHeader(ready, serviceClass));
}
