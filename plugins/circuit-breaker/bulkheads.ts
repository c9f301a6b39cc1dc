/**
 * Bulkheads: per tenant, per plugin-server process (per gateway node), a cockatiel
 * BulkheadPolicy capping the tenant's upstream calls in flight, with a small queue.
 *
 * A slot is held from `access` until the request's `log` event releases it. Two guards make
 * sure nothing is held forever: a queued request gives up after `queue_timeout_ms` (its queue
 * entry, when cockatiel later reaches it, returns at once and frees the slot), and every
 * slot is released by a timer after `slot_ttl_ms` when no log event came.
 */
import { BulkheadPolicy } from 'cockatiel';
import type { TenantId } from '../../lib/tenant/tenant-id';

export interface Slot {
  /** Frees the slot; safe to call more than once. */
  release(): void;
}

export type Acquired =
  { ok: true; slot: Slot; queued: boolean } | { ok: false; reason: 'full' | 'queue_timeout' };

interface Compartment {
  policy: BulkheadPolicy;
  limit: number;
  queue: number;
}

export class Bulkheads {
  private readonly compartments = new Map<string, Compartment>();

  /** In flight and queued of a tenant's compartment, for metrics and tests. */
  usage(tenant: TenantId): { inFlight: number; queued: number } {
    const c = this.find(tenant);
    if (!c) return { inFlight: 0, queued: 0 };
    return {
      inFlight: c.limit - c.policy.executionSlots,
      queued: c.queue - c.policy.queueSlots,
    };
  }

  /** Every tenant with a compartment on this node (one is dropped once idle), for metrics. */
  *all(): Iterable<{ tenant: TenantId; inFlight: number; queued: number }> {
    for (const [tenant, c] of this.compartments)
      yield {
        tenant: tenant as TenantId,
        inFlight: c.limit - c.policy.executionSlots,
        queued: c.queue - c.policy.queueSlots,
      };
  }

  private find(tenant: TenantId): Compartment | undefined {
    return this.compartments.get(tenant);
  }

  private compartment(tenant: TenantId, limit: number, queue: number): Compartment {
    const c = this.compartments.get(tenant);
    // A changed size (new config) gets a fresh compartment; calls still running in the old
    // one release into it and it is dropped once idle.
    if (c && c.limit === limit && c.queue === queue) return c;
    const fresh = { policy: new BulkheadPolicy(limit, queue), limit, queue };
    this.compartments.set(tenant, fresh);
    return fresh;
  }

  /**
   * Takes a slot of the tenant's compartment, waiting in its queue up to `queueTimeoutMs`.
   * The slot is released by `release()` or, at the latest, after `ttlMs`.
   */
  acquire(
    tenant: TenantId,
    limit: number,
    queue: number,
    queueTimeoutMs: number,
    ttlMs: number,
  ): Promise<Acquired> {
    const c = this.compartment(tenant, limit, queue);
    const queued = c.policy.executionSlots === 0;
    return new Promise<Acquired>((resolve) => {
      let answered = false;
      let waitTimer: NodeJS.Timeout | undefined;
      const answer = (a: Acquired): boolean => {
        if (answered) return false;
        answered = true;
        if (waitTimer) clearTimeout(waitTimer);
        resolve(a);
        return true;
      };
      c.policy
        .execute(
          () =>
            new Promise<void>((releaseSlot) => {
              let ttl: NodeJS.Timeout | undefined = undefined;
              const release = () => {
                if (ttl) clearTimeout(ttl);
                releaseSlot();
                this.dropIfIdle(tenant, c);
              };
              // Given up while queued: hand the slot straight back.
              if (!answer({ ok: true, slot: { release }, queued })) {
                release();
                return;
              }
              ttl = setTimeout(release, ttlMs);
              ttl.unref();
            }),
        )
        .catch(() => {
          answer({ ok: false, reason: 'full' });
        });
      if (queued && !answered) {
        waitTimer = setTimeout(
          () => answer({ ok: false, reason: 'queue_timeout' }),
          queueTimeoutMs,
        );
        waitTimer.unref();
      }
    });
  }

  private dropIfIdle(tenant: TenantId, c: Compartment): void {
    // After cockatiel's own bookkeeping (its `finally` runs after our promise settles).
    setImmediate(() => {
      if (
        this.compartments.get(tenant) === c &&
        c.policy.executionSlots === c.limit &&
        c.policy.queueSlots === c.queue
      ) {
        this.compartments.delete(tenant);
      }
    });
  }
}
