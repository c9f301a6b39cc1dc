/**
 * One request's facts for admission, built once in access and carried to wherever its lease
 * and its seat are taken (access, or circuit-breaker's access).
 */
import { randomUUID } from 'node:crypto';
import type { ServiceClass } from '../../lib/redis/fair-queue';
import type { TenantLimits } from './tenant-limits';
import type { TenantContext } from '../../lib/tenant/context';
import type { TenantId } from '../../lib/tenant/tenant-id';
import type { TokenEstimate } from '../../lib/tokens/estimate';
import type { TenantRatelimitConfig } from './config';

/** A tenant lease, as log finds it in the record. */
export interface LeaseRef {
  readonly tenant: TenantId;
  readonly limits: TenantLimits;
  /** The lease id, also the request's ticket in the fair queue and the id of its seat. */
  readonly lease: string;
}

export interface Ticket extends LeaseRef {
  readonly ctx: TenantContext;
  /** Tokens charged to the upstream's bucket: the estimate, at least 1. */
  readonly width: number;
  readonly serviceClass: ServiceClass;
  /** The tenant's metric label (bounded, lib/metrics/registry.ts). */
  readonly tenantLabel: string;
  readonly started: number;
  /** When the request stops waiting (for a seat; flex work also for its limits). */
  readonly deadline: number;
  /** The lease outlives the longest wait plus a seat's lease. */
  readonly leaseTtlMs: number;
}

export function newTicket(
  config: TenantRatelimitConfig,
  seatLeaseMs: number,
  ctx: TenantContext,
  limits: TenantLimits,
  tenantLabel: string,
  serviceClass: ServiceClass,
  estimate: TokenEstimate,
): Ticket {
  const maxWaitMs = serviceClass === 'flex' ? config.flex.max_wait_ms : config.queue.max_wait_ms;
  const started = Date.now();
  return {
    ctx,
    tenant: ctx.tenantId,
    limits,
    lease: randomUUID(),
    width: Math.max(1, estimate.totalTokens),
    serviceClass,
    tenantLabel,
    started,
    deadline: started + maxWaitMs,
    leaseTtlMs: maxWaitMs + seatLeaseMs,
  };
}
