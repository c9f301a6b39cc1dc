/**
 * The per-node limiter behind the Limiter interface: the tenant's limits and the upstream's
 * seats counted by this process alone (local-limiter.ts), while Redis is unavailable. No
 * queue: when this node's share of the upstream is in use, the request is refused at once.
 */
import * as metrics from '../metrics';
import { LocalNodeLimiter } from '../local-limiter';
import type { TenantRatelimitConfig } from '../config';
import type { LeaseRef, Ticket } from '../ticket';
import type { Entry, Limiter, SeatOutcome } from './limiter';

/**
 * Per-node state lives for the process, shared by every instance (Kong recreates them), one
 * per key namespace as in Redis: two routes in one namespace share a tenant's buckets there,
 * two namespaces never do.
 */
const perNamespace = new Map<string, LocalNodeLimiter>();

export function perNodeState(keyNamespace: string): LocalNodeLimiter {
  let state = perNamespace.get(keyNamespace);
  if (!state) perNamespace.set(keyNamespace, (state = new LocalNodeLimiter()));
  return state;
}

export class NodeLimiter implements Limiter {
  readonly scope = 'local' as const;
  /** Seats this node may use; a flex request leaves some for urgent ones. */
  private readonly seats: { readonly urgent: number; readonly flex: number };

  constructor(
    config: TenantRatelimitConfig,
    private readonly seatLeaseMs: number,
    private readonly state: LocalNodeLimiter = perNodeState(config.redis.key_namespace),
  ) {
    // Only a concurrency capacity has a per-node share; a tokens capacity has none.
    const all = config.queue.local_max_concurrent ?? config.queue.max_concurrent;
    const flex = all > 1 ? Math.max(1, all - Math.min(config.flex.reserved_seats, all - 1)) : all;
    this.seats = { urgent: all, flex };
  }

  admit(t: Ticket): Promise<Entry> {
    metrics.localDecisions.inc({ tenant: t.tenantLabel });
    const decision = this.state.admit(t.tenant, t.limits, t.width, t.lease, t.leaseTtlMs);
    return Promise.resolve({ decision, first: null });
  }

  cancel(): Promise<void> {
    return Promise.resolve(); // no queue here
  }

  seat(t: Ticket): Promise<SeatOutcome> {
    metrics.localDecisions.inc({ tenant: t.tenantLabel });
    const max = this.seats[t.serviceClass];
    const had = max === 0 || this.state.takeSeat(t.lease, max, this.seatLeaseMs);
    return Promise.resolve({
      seat: had ? 'local' : null,
      scope: 'local',
      queued: false,
      busy: false,
      retryAfterSeconds: had ? 0 : 1,
    });
  }

  settle(l: LeaseRef, correction: number): Promise<void> {
    this.state.settle(l.tenant, l.limits, l.lease, correction);
    return Promise.resolve();
  }

  releaseSeat(seatId: string): Promise<void> {
    this.state.releaseSeat(seatId);
    return Promise.resolve();
  }

  roundTrip(): void {
    // No Redis here.
  }
}
