/**
 * The log phase's work for an admitted request: the tenant's lease settled to the observed
 * usage and the seat handed back, on the limiter the record names, in the round trips
 * release-plan.ts chooses.
 */
import type { KongPdk } from '../../lib/pdk/kong';
import { forgetSeatTaker } from '../../lib/request/seat';
import { parseTenantId } from '../../lib/tenant/tenant-id';
import { USAGE_KEY, decodeUsage } from '../../lib/tokens/usage';
import * as metrics from './metrics';
import type { Ready } from './ready';
import { releasePlan } from './release-plan';
import type { AdmissionRecord } from './state';
import type { LeaseRef } from './ticket';

export async function releaseRecord(
  ready: Ready,
  kong: KongPdk,
  record: AdmissionRecord | undefined,
): Promise<void> {
  if (record === undefined) return; // refused before admission: nothing to release
  const { limiters } = ready;
  const lease: LeaseRef = {
    tenant: parseTenantId(record.tenant),
    limits: record.limits,
    lease: record.lease,
  };
  const leaseLimiter = limiters.of(record.scope);
  const seatLimiter = record.seat === null ? null : limiters.of(record.seat);
  // The plan batches the cluster's calls; the per-node limiter's go with the late batch.
  const plan = releasePlan({
    seat: record.seat,
    lease: record.scope,
    busy: record.busy,
    tenantTokens: record.limits.tokensPerMinute > 0,
    upstreamTokens: ready.capacity.tokensPerMinute > 0,
  });
  const jobs: Array<Promise<unknown>> = [];
  if (plan.early.seat || plan.early.lease) limiters.cluster.roundTrip('log');
  if (plan.early.seat && seatLimiter) jobs.push(seatLimiter.releaseSeat(record.lease, 0));
  if (plan.early.lease) jobs.push(leaseLimiter.settle(lease, 0, 'log'));
  if (record.handOff === 'left' && (await kong.response.getSource()) === 'service') {
    // Proxied, but circuit-breaker never asked for the seat left for it: it is no longer on
    // this route. Later requests take their seat here again (lib/request/seat.ts).
    forgetSeatTaker(ready.routeKey);
    metrics.unseatedRequests.inc();
    void kong.log.warn(
      'tenant-ratelimit: circuit-breaker no longer takes the seat on this route; taking it at admission again',
    );
  }
  const usage = decodeUsage(await kong.ctx.shared.get(USAGE_KEY));
  const label = ready.label(lease.tenant);
  let correction = 0;
  let upstreamCorrection = 0;
  if (usage) {
    correction = usage.totalTokens - record.charged;
    upstreamCorrection = usage.totalTokens - record.width;
    metrics.usageCorrections.inc({ tenant: label, kind: correction < 0 ? 'refund' : 'charge' });
  } else {
    metrics.usageCorrections.inc({ tenant: label, kind: 'estimate_kept' });
  }
  if (plan.late.seat || plan.late.lease) limiters.cluster.roundTrip('log');
  if (!plan.early.lease) jobs.push(leaseLimiter.settle(lease, correction, 'log'));
  if (seatLimiter && !plan.early.seat) {
    jobs.push(seatLimiter.releaseSeat(record.lease, upstreamCorrection));
  }
  await Promise.all(jobs);
}
