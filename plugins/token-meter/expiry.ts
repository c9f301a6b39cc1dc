/**
 * The sweep of expired reservations that does not wait for the tenant's next request.
 *
 * A reservation whose log phase never ran (the chain's plugin server killed, a node lost, log
 * timers dropped) is settled as estimated, with its ledger entry, by the first sweep that finds
 * it past its TTL (scripts/budget-sweep-4.lua; the tenant's next reserve runs the same sweep).
 * A tenant that never comes back must still be billed, so each plugin server also sweeps on a
 * timer, one per (Redis, key namespace), whatever the number of instances:
 * - the tenant periods this process reserved for, each swept once after its last reserve's
 *   reservation can have expired (then forgotten): bounded by MAX_RECENT;
 * - every tenant period with open reservations in Redis, found by an incremental SCAN (one SCAN
 *   page per tick), so a reservation of a process that died, or of another node, is found too.
 * Work per tick: at most one SCAN page (COUNT SCAN_COUNT) and MAX_SWEEPS_PER_TICK script calls,
 * each settling at most SWEEP_LIMIT reservations. Several processes sweeping the same tenant is
 * harmless: each reservation is settled exactly once, by whichever comes first.
 */
import type { RedisClient } from '../../lib/redis/client';
import { isRedisUnavailable } from '../../lib/redis/errors';
import type { Keyspace } from '../../lib/redis/keys';
import { parseTenantId, type TenantId } from '../../lib/tenant/tenant-id';
import { sweepExpired, type SweepResult } from './budget';

/** Tenant periods remembered from this process's reserves (a map entry each, ~100 bytes). */
export const MAX_RECENT = 10_000;
/** Script calls per tick; what is left waits for the next tick. */
export const MAX_SWEEPS_PER_TICK = 50;
/** Reservations one script call settles at most. */
export const SWEEP_LIMIT = 100;
/** Keys SCAN examines per tick (its COUNT hint). */
export const SCAN_COUNT = 1000;
/** Tenant periods found by SCAN and waiting for a sweep, at most. */
const MAX_PENDING = 5000;

export interface ExpirySweeperOptions {
  readonly redis: () => RedisClient;
  readonly keys: Keyspace;
  readonly reservationTtlMs: number;
  /** Least TTL of a billed period's keys when its budget hash has none (the retention). */
  readonly minTtlMs: number;
  readonly intervalMs: number;
  /** Called for every sweep that settled something. */
  readonly onSettled: (tenant: TenantId, r: SweepResult) => void;
  readonly onError: (e: unknown) => void;
  /**
   * True while this process has settlements waiting in its spool: the timer then waits, so a
   * spooled exact settlement replays before the sweep could bill its request as estimated.
   */
  readonly hold?: () => boolean;
}

interface Target {
  readonly tenant: TenantId;
  readonly period: string;
}

const id = (t: Target): string => `${t.tenant} ${t.period}`;

export class ExpirySweeper {
  /** Tenant period -> when its last reservation (made by this process) can have expired. */
  private readonly recent = new Map<string, Target & { dueMs: number }>();
  private readonly pending = new Map<string, Target>();
  private scan: AsyncGenerator<string[], void, unknown> | undefined;
  private timer: NodeJS.Timeout | undefined;
  private running = false;

  constructor(private readonly o: ExpirySweeperOptions) {}

  start(): void {
    if (this.timer) return;
    this.timer = setInterval(() => {
      if (this.running) return;
      this.running = true;
      this.tick()
        .catch((e: unknown) => this.o.onError(e))
        .finally(() => {
          this.running = false;
        });
    }, this.o.intervalMs);
    this.timer.unref();
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
  }

  /** A reserve of this process for the tenant's period: sweep it once its TTL has passed. */
  noteReserve(tenant: TenantId, period: string, nowMs: number): void {
    const k = id({ tenant, period });
    // Re-inserted at the end: the map's order is the order of last use, oldest first.
    this.recent.delete(k);
    if (this.recent.size >= MAX_RECENT) {
      const oldest = this.recent.keys().next();
      if (!oldest.done) this.recent.delete(oldest.value);
    }
    this.recent.set(k, { tenant, period, dueMs: nowMs + this.o.reservationTtlMs + 1000 });
  }

  /** Settles the expired reservations of the given tenant periods now (showback). */
  async sweepNow(tenant: TenantId, periods: readonly string[]): Promise<void> {
    for (const period of periods) await this.sweepOne({ tenant, period });
  }

  /** One round: due recent periods first, then what the SCAN found. Returns calls made. */
  async tick(now = Date.now()): Promise<number> {
    if (this.o.hold?.() === true) return 0;
    let calls = 0;
    for (const [k, r] of this.recent) {
      if (calls >= MAX_SWEEPS_PER_TICK) return calls;
      if (r.dueMs > now) continue;
      calls += 1;
      const res = await this.sweepOne(r);
      if (!res?.more) this.recent.delete(k);
    }
    await this.scanPage();
    for (const [k, target] of this.pending) {
      if (calls >= MAX_SWEEPS_PER_TICK) return calls;
      calls += 1;
      const res = await this.sweepOne(target);
      if (!res?.more) this.pending.delete(k);
    }
    return calls;
  }

  private async sweepOne(target: Target): Promise<SweepResult | undefined> {
    try {
      const r = await sweepExpired(
        this.o.redis(),
        this.o.keys,
        target.tenant,
        target.period,
        this.o.minTtlMs,
        SWEEP_LIMIT,
      );
      if (r.settled > 0) this.o.onSettled(target.tenant, r);
      return r;
    } catch (e) {
      // Redis away: the reservations stay, the next tick (or reserve) settles them.
      if (isRedisUnavailable(e)) return { settled: 0, tokens: 0, cost: 0, more: true };
      throw e;
    }
  }

  /** One SCAN page of the reservation sets; a full pass restarts on the next tick. */
  private async scanPage(): Promise<void> {
    if (this.pending.size >= MAX_PENDING) return;
    this.scan ??= this.o.redis().scanIterator({
      MATCH: this.o.keys.budgetReservationsPattern(),
      COUNT: SCAN_COUNT,
      TYPE: 'zset',
    });
    let page: IteratorResult<string[], void>;
    try {
      page = await this.scan.next();
    } catch (e) {
      this.scan = undefined;
      if (isRedisUnavailable(e)) return;
      throw e;
    }
    if (page.done) {
      this.scan = undefined;
      return;
    }
    for (const key of page.value) {
      const found = this.o.keys.budgetReservationsOf(key);
      if (!found) continue;
      let tenant: TenantId;
      try {
        tenant = parseTenantId(found.tenant);
      } catch {
        continue;
      }
      const target = { tenant, period: found.period };
      if (this.pending.size < MAX_PENDING) this.pending.set(id(target), target);
    }
  }
}
