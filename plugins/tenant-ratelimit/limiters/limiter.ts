/**
 * The limiters behind one interface, after the policy table of Kong's rate-limiting plugin
 * (`kong/plugins/rate-limiting/policies/init.lua`): the cluster-wide one in Redis, and the
 * per-node one that stands in while Redis is unavailable (on_redis_unavailable `local`). Admission
 * starts on the cluster limiter and moves to the per-node one through `attempt`, in one place;
 * log finds the limiter a record names with `of`.
 */
import type { KongPdk } from '../../../lib/pdk/kong';
import type { AcquireResult } from '../../../lib/redis/fair-queue';
import { isRedisUnavailable } from '../../../lib/redis/errors';
import type { AdmitDecision } from '../tenant-limits';
import * as metrics from '../metrics';
import { UNAVAILABLE } from '../refusals';
import type { RedisErrorPolicy } from '../config';
import type { Scope } from '../state';
import type { LeaseRef, Ticket } from '../ticket';

/** Where a batch of Redis calls was sent from (tenant_ratelimit_redis_round_trips_total). */
export type TripPhase = 'access' | 'queue' | 'log';

/** What the access phase's first round trip brought back from the fair queue. */
export type FirstAcquire =
  | { readonly ok: true; readonly result: AcquireResult }
  | { readonly ok: false; readonly error: unknown };

export interface Entry {
  readonly decision: AdmitDecision;
  /** The fair queue's acquire sent with the limits; null when none was. */
  readonly first: FirstAcquire | null;
}

export interface SeatOutcome {
  /** Where the seat was taken; null: none in time. */
  readonly seat: Scope | null;
  /** Where it was sought. */
  readonly scope: Scope;
  /** Granted after a wait. */
  readonly queued: boolean;
  /** The queue had waiters, or the request waited: log hands the seat back first. */
  readonly busy: boolean;
  /** For the 503 when no seat was had. */
  readonly retryAfterSeconds: number;
}

export interface Limiter {
  readonly scope: Scope;
  /**
   * The tenant's limits (a lease when allowed) and, with `enter`, the fair queue's acquire in
   * the same round trip. Throws a Redis error (with nothing left in the queue).
   */
  admit(t: Ticket, enter: boolean): Promise<Entry>;
  /** Undoes `admit`'s fair-queue acquire (`first`) of a request that will not run; never throws. */
  cancel(t: Ticket, first: FirstAcquire | null): Promise<void>;
  /** One seat of the shared upstream: at once, after a fair wait, or none. May throw a Redis error. */
  seat(t: Ticket, first: FirstAcquire | null): Promise<SeatOutcome>;
  /** Ends a tenant lease and corrects its charge; never throws (trouble is left to the lease TTL). */
  settle(lease: LeaseRef, correction: number, phase: TripPhase): Promise<void>;
  /** Hands a seat back, correcting the upstream's token charge; never throws. */
  releaseSeat(seatId: string, correction: number): Promise<void>;
  /** Counts one batch of Redis calls written together (none for a limiter without Redis). */
  roundTrip(phase: TripPhase): void;
}

export interface Attempt<T> {
  /** The limiter that answered. */
  readonly limiter: Limiter;
  readonly value: T;
}

export class Limiters {
  constructor(
    readonly cluster: Limiter,
    readonly local: Limiter,
    private readonly onRedisError: RedisErrorPolicy,
  ) {}

  of(scope: Scope): Limiter {
    return scope === 'cluster' ? this.cluster : this.local;
  }

  /**
   * Runs `op` on `limiter`; a Redis outage applies on_redis_unavailable: `local` runs it again on the
   * per-node limiter, `refuse` answers 503. Any other error goes on to the caller.
   */
  async attempt<T>(
    kong: KongPdk,
    phase: TripPhase,
    limiter: Limiter,
    op: (l: Limiter) => Promise<T>,
  ): Promise<Attempt<T>> {
    try {
      return { limiter, value: await op(limiter) };
    } catch (err) {
      if (limiter === this.local || !isRedisUnavailable(err)) throw err;
      metrics.redisErrors.inc({ phase });
      if (this.onRedisError === 'refuse') {
        void kong.log.warn(`tenant-ratelimit: Redis unavailable, refusing: ${String(err)}`);
        throw UNAVAILABLE;
      }
      return { limiter: this.local, value: await op(this.local) };
    }
  }
}
