/**
 * The cluster-wide limiter behind the Limiter interface: the tenant's limits in Redis
 * (lib/redis/tenant-limits.ts) and the shared upstream's weighted fair queue
 * (lib/redis/fair-queue.ts), the same for every gateway node.
 */
import type { RedisClient } from '../../../lib/redis/client';
import {
  acquireSeat,
  cancelSeat,
  claimSeat,
  releaseSeat,
  type AcquireResult,
  type UpstreamCapacity,
} from '../../../lib/redis/fair-queue';
import type { FairQueueKeys, Keyspace } from '../../../lib/redis/keys';
import { admitTenant, settleTenant } from '../tenant-limits';
import { grantListener, type GrantListener } from '../grant-listener';
import * as metrics from '../metrics';
import { waitInQueue, type QueueDoor } from '../queue-wait';
import type { TenantRatelimitConfig } from '../config';
import type { LeaseRef, Ticket } from '../ticket';
import type { Entry, FirstAcquire, Limiter, SeatOutcome, TripPhase } from './limiter';
import { notify } from '../../../lib/pdk/notices';

const log = (m: string): void => notify(`tenant-ratelimit: ${m}`);

export class RedisLimiter implements Limiter, QueueDoor {
  readonly scope = 'cluster' as const;
  readonly pollIntervalMs: number;
  private readonly upstream: string;
  private readonly maxWaitMs: number;

  constructor(
    private readonly redis: RedisClient,
    private readonly keys: Keyspace,
    private readonly queueKeys: FairQueueKeys,
    readonly capacity: UpstreamCapacity,
    queue: TenantRatelimitConfig['queue'],
  ) {
    this.upstream = queue.upstream;
    this.pollIntervalMs = queue.poll_interval_ms;
    this.maxWaitMs = queue.max_wait_ms;
  }

  roundTrip(phase: TripPhase): void {
    metrics.redisRoundTrips.inc({ phase });
  }

  listener(): GrantListener {
    return grantListener(this.redis, this.queueKeys.channel, log);
  }

  /**
   * With `enter`, one round trip: the tenant's limits and the fair queue's acquire are written
   * together on the one connection (two scripts: their keys live in different hash-tag slots, a
   * tenant's `{t:..}` and the upstream's `{q:..}`, so no one script may touch both on Redis
   * Cluster). When the limits fail, a ticket that did reach the queue is handed back.
   */
  async admit(t: Ticket, enter: boolean): Promise<Entry> {
    this.roundTrip('access');
    const limits = admitTenant(
      this.redis,
      this.keys,
      t.tenant,
      t.limits,
      t.width,
      t.lease,
      t.leaseTtlMs,
    );
    if (!enter) return { decision: await limits, first: null };
    const [admitted, acquired] = await Promise.allSettled([limits, this.acquire(t)]);
    if (admitted.status === 'rejected') {
      if (acquired.status === 'fulfilled') void this.cancelTicket(t, acquired.value.tags);
      throw admitted.reason;
    }
    const first: FirstAcquire =
      acquired.status === 'fulfilled'
        ? { ok: true, result: acquired.value }
        : { ok: false, error: acquired.reason };
    return { decision: admitted.value, first };
  }

  async seat(t: Ticket, first: FirstAcquire | null): Promise<SeatOutcome> {
    if (first !== null && !first.ok) throw first.error;
    const granted = await waitInQueue(this, t, first?.result ?? null);
    if (granted !== null) {
      const busy = granted.queued || granted.waiting > 0;
      return {
        seat: 'cluster',
        scope: 'cluster',
        queued: granted.queued,
        busy,
        retryAfterSeconds: 0,
      };
    }
    return {
      seat: null,
      scope: 'cluster',
      queued: true,
      busy: true,
      retryAfterSeconds: Math.max(1, Math.ceil(this.maxWaitMs / 2000)),
    };
  }

  async settle(l: LeaseRef, correction: number, phase: TripPhase): Promise<void> {
    try {
      await settleTenant(this.redis, this.keys, l.tenant, l.limits, l.lease, correction);
    } catch {
      metrics.redisErrors.inc({ phase });
    }
  }

  releaseSeat(seatId: string, correction: number): Promise<void> {
    return releaseSeat(this.redis, this.queueKeys, this.capacity, seatId, correction).then(
      (r) => {
        this.wakeGranted(r.grantedIds);
        this.seatsInUse(r.seatsInUse);
      },
      () => void metrics.redisErrors.inc({ phase: 'log' }),
    );
  }

  async cancel(t: Ticket, first: FirstAcquire | null): Promise<void> {
    if (first?.ok === true) await this.cancelTicket(t, first.result.tags);
  }

  /** Undoes the first round trip's acquire of a request that will not run; never throws. */
  private async cancelTicket(t: Ticket, tags: string): Promise<void> {
    this.roundTrip('access');
    try {
      const r = await cancelSeat(
        this.redis,
        this.queueKeys,
        this.capacity,
        t.lease,
        t.tenant,
        t.serviceClass,
        t.width,
        tags,
      );
      this.wakeGranted(r.grantedIds);
      this.seatsInUse(r.seatsInUse);
    } catch {
      // Left to the ticket's heartbeat (a waiter) or its lease (a seat).
      metrics.redisErrors.inc({ phase: 'access' });
    }
  }

  poll(t: Ticket): Promise<AcquireResult> {
    this.roundTrip('queue');
    return this.acquire(t);
  }

  /**
   * A claim that comes too late (the window passed, the seat went on) changes nothing in the
   * queue: the request goes on without a seat, counted in tenant_ratelimit_late_claims_total.
   */
  claim(t: Ticket): void {
    this.roundTrip('queue');
    claimSeat(this.redis, this.queueKeys, this.capacity, t.lease).then(
      (claim) => {
        if (!claim.claimed) {
          metrics.lateClaims.inc({ upstream: this.upstream });
          log(`seat claim of ${t.lease} came too late`);
        }
      },
      () => metrics.redisErrors.inc({ phase: 'queue' }),
    );
  }

  async leave(t: Ticket): Promise<void> {
    this.roundTrip('queue');
    await releaseSeat(this.redis, this.queueKeys, this.capacity, t.lease).then(
      (rel) => this.wakeGranted(rel.grantedIds),
      () => undefined,
    );
  }

  /** One fair-queue acquire (enter, or poll); the caller counts the round trip. */
  private async acquire(t: Ticket): Promise<AcquireResult> {
    const r = await acquireSeat(
      this.redis,
      this.queueKeys,
      this.capacity,
      t.lease,
      t.tenant,
      t.ctx.policy.weight,
      t.width,
      t.serviceClass,
    );
    this.seatsInUse(r.seatsInUse);
    return r;
  }

  /** Waiters of this process learn of their grant now, not a pub/sub round trip later. */
  private wakeGranted(ids: readonly string[]): void {
    if (ids.length === 0) return;
    const listener = this.listener();
    for (const id of ids) listener.wake(id);
  }

  private seatsInUse(n: number): void {
    metrics.seatsInUse.set({ upstream: this.upstream }, n);
  }
}
