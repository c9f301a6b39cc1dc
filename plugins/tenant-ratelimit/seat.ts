/**
 * The upstream seat of an admitted request: taken at admission, or left for circuit-breaker to
 * take once it has chosen the upstream (lib/request/seat.ts); then the metrics, the record log
 * reads and the response headers of an admitted request.
 */
import { GatewayError } from '../../lib/http/errors';
import type { KongPdk } from '../../lib/pdk/kong';
import type { AdmitDecision } from './tenant-limits';
import { leaveForLog } from '../../lib/request/for-log';
import { hasSeatTaker, type SeatHandOff } from '../../lib/request/seat';
import { type RequestScope } from '../../lib/request/scope';
import { isChainProcess } from '../../lib/request/scope-store';
import {
  LOCAL_SCOPE,
  QUEUE_WAIT_HEADER,
  SCOPE_HEADER,
  SERVICE_CLASS_HEADER,
  rateLimitHeaders,
} from './headers';
import type { FirstAcquire, Limiter, SeatOutcome } from './limiters/limiter';
import * as metrics from './metrics';
import type { Ready } from './ready';
import { saturated } from './refusals';
import { releaseRecord } from './release';
import { RECORD, type AdmissionRecord } from './state';
import type { Ticket } from './ticket';

/** What admission decided for a ticket, carried to wherever the seat is taken. */
export interface Admission {
  readonly ticket: Ticket;
  /** Where the tenant's lease was taken. */
  readonly limiter: Limiter;
  readonly decision: AdmitDecision;
  /** Tokens charged to the tenant's bucket (the estimate, capped at its burst). */
  readonly charged: number;
  /** Flex work that waited for its tenant's per-minute limits. */
  readonly limitWaited: boolean;
  /** The record log reads, as last left. */
  record: AdmissionRecord;
}

/**
 * Whether this request's seat is left for circuit-breaker: a queue to wait in, the co-hosted
 * chain process, a scope circuit-breaker will find, and circuit-breaker seen on this route.
 */
export function handsOffSeat(ready: Ready, request: RequestScope): boolean {
  return ready.queueEnabled && isChainProcess() && request.findable && hasSeatTaker(ready.routeKey);
}

/** Leaves the record for log, with the log work to run on it. */
export function leaveRecord(
  ready: Ready,
  kong: KongPdk,
  request: RequestScope,
  record: AdmissionRecord,
): Promise<void> {
  return leaveForLog(kong, request, RECORD, record, (k, r) => releaseRecord(ready, k, r));
}

/** A seat for the admission, or the 503 `upstream_saturated` (its charge given back). */
export async function seatOrRefusal(
  ready: Ready,
  kong: KongPdk,
  a: Admission,
  first: FirstAcquire | null,
): Promise<SeatOutcome> {
  const { value: outcome } = await ready.limiters.attempt(kong, 'queue', a.limiter, (l) =>
    l.seat(a.ticket, first),
  );
  if (outcome.seat === null) {
    // Never ran: the lease and the whole charge go back.
    a.limiter.roundTrip('queue');
    await a.limiter.settle(a.ticket, -a.charged, 'queue');
    throw saturated(outcome.retryAfterSeconds, outcome.scope, a.ticket.serviceClass);
  }
  return outcome;
}

/**
 * The seat left for circuit-breaker: taken on the upstream it routes to when that is the
 * upstream this queue describes (`queue.upstream`, or the route's own service), not at all
 * for another (a tenant's own deployment). Taken once; the log phase releases it.
 */
export function seatHandOff(ready: Ready, request: RequestScope, a: Admission): SeatHandOff {
  let asked = false;
  return {
    take: async (kong, target) => {
      if (asked) return;
      asked = true;
      a.record = { ...a.record, handOff: 'asked' };
      if (!(target.service || target.label === ready.config.queue.upstream)) {
        metrics.seatHandOffs.inc({ outcome: 'other_upstream' });
        await leaveRecord(ready, kong, request, a.record);
        return;
      }
      let outcome: SeatOutcome;
      try {
        outcome = await seatOrRefusal(ready, kong, a, null);
        metrics.seatHandOffs.inc({ outcome: 'seated' });
      } catch (err) {
        if (err instanceof GatewayError) {
          metrics.seatHandOffs.inc({ outcome: 'saturated' });
          const t = a.ticket;
          metrics.rejected.inc({ tenant: t.tenantLabel, class: t.serviceClass, reason: err.code });
        }
        throw err;
      }
      await admitted(ready, kong, request, a, outcome, false);
    },
  };
}

/** Metrics, the record log reads and the response headers of an admitted request. */
export async function admitted(
  ready: Ready,
  kong: KongPdk,
  request: RequestScope,
  a: Admission,
  outcome: Pick<SeatOutcome, 'seat' | 'queued' | 'busy'>,
  withLimits: boolean,
): Promise<void> {
  const { seat, queued } = outcome;
  const t = a.ticket;
  // Waited for capacity (and, flex work, for its tenant's limits).
  const waitedMs = queued || a.limitWaited ? Date.now() - t.started : 0;
  if (seat !== null || a.limitWaited) {
    metrics.queueWait.observe({ tenant: t.tenantLabel, class: t.serviceClass }, waitedMs / 1000);
  }
  // The tenant's lease stays where it was taken (record.scope); only the seat may move.
  const localNode = a.limiter.scope === 'local' || seat === 'local';
  metrics.admitted.inc({
    tenant: t.tenantLabel,
    class: t.serviceClass,
    queued: waitedMs > 0 ? 'yes' : 'no',
    scope: localNode ? LOCAL_SCOPE : 'cluster',
  });
  if (seat !== a.record.seat || outcome.busy !== a.record.busy) {
    // The seat was taken after the record was left (circuit-breaker took it), or Redis
    // failed during the wait and the per-node limiter gave it: log must know.
    a.record = { ...a.record, seat, busy: outcome.busy };
    await leaveRecord(ready, kong, request, a.record);
  }
  const waited = seat !== null || a.limitWaited ? waitedMs : null;
  await sendHeaders(kong, admissionHeaders(ready, a, waited, localNode, withLimits));
}

export function admissionHeaders(
  ready: Ready,
  a: Admission,
  waitedMs: number | null,
  localNode: boolean,
  withLimits: boolean,
): Record<string, string> {
  const { config } = ready;
  const headers: Record<string, string> =
    withLimits && config.ratelimit_headers ? rateLimitHeaders(a.ticket.limits, a.decision) : {};
  if (waitedMs !== null) headers[QUEUE_WAIT_HEADER] = String(Math.round(waitedMs));
  if (localNode) headers[SCOPE_HEADER] = LOCAL_SCOPE;
  if (config.flex.enabled) headers[SERVICE_CLASS_HEADER] = a.ticket.serviceClass;
  return headers;
}

/** One PDK call, skipped when there is nothing to send. */
export async function sendHeaders(kong: KongPdk, headers: Record<string, string>): Promise<void> {
  if (Object.keys(headers).length > 0) await kong.response.setHeaders(headers);
}
