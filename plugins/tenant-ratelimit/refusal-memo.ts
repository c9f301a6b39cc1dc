/**
 * A tenant its requests-per-minute bucket refused is refused again from memory until that bucket
 * can hold a whole request: no count of the prompt's tokens, no Redis round trip.
 *
 * Why it is sound: the requests bucket (tenant-admit-3.lua) only refills with time. Nothing gives
 * a request back (tenant-settle-2.lua corrects the tokens bucket only), and other gateway nodes
 * can only take from it. So when Redis answers "refused by requests, the bucket is at `level` < 1",
 * no node can be admitted for that tenant before `(1 - level) / rate` has passed, whatever
 * happens meanwhile. Each refusal the memo answers is one Redis would have given.
 *
 * Why it matters: the estimate (the prompt's BPE count) is made before the limits are checked,
 * since tokens per minute need it. A tenant flooding over its request limit with long prompts
 * cost a core of counting and a Redis round trip per refused request; its neighbours paid in
 * latency (docs/benchmarks.md, "Long prompts").
 *
 * Bounds: an entry ends at that time, or after `MAX_REMEMBER_MS` at most (an operator who resets
 * a tenant's bucket in Redis sees it obeyed within that), and it is used only for the very same
 * request limits (a plan change or an override makes it moot). At most `MAX_TENANTS` entries;
 * past that the oldest goes. Only a refusal by the requests bucket is remembered: the tokens
 * bucket is refunded when a request used less than its estimate, and a concurrency lease ends
 * when its request does, so neither refusal says anything about the next request.
 */
import type { TenantId } from '../../lib/tenant/tenant-id';
import { bucketArgs, type AdmitDecision, type TenantLimits } from './tenant-limits';

/** Longest an entry is used: the staleness an operator's reset of a bucket can meet. */
export const MAX_REMEMBER_MS = 5000;
/** Most tenants remembered at once, per plugin instance. */
export const MAX_TENANTS = 10_000;

interface Entry {
  /** Local clock, ms: no request of the tenant fits before this. */
  readonly until: number;
  /** When Redis's answer was asked for (local clock, ms). */
  readonly at: number;
  /** The request limits it holds for. */
  readonly limitsKey: string;
  readonly decision: AdmitDecision;
}

const limitsKey = (l: TenantLimits): string => `${l.requestsPerMinute}/${l.requestBurst}`;

/** ms until a requests bucket refused at this decision holds one request again; 0 when unknown. */
export function untilOneRequest(limits: TenantLimits, d: AdmitDecision): number {
  if (d.refusedBy !== 'requests' || d.requestsLeft === null) return 0;
  const [cap, rate] = bucketArgs(limits.requestsPerMinute, limits.requestBurst);
  if (cap <= 0 || rate <= 0) return 0;
  // The script answers when the bucket is full again: ceil((cap - level) * 1000 / rate) ms. One
  // request is `(cap - 1) * 1000 / rate` ms before that; 1 ms less for the ceil.
  return Math.floor(d.requestsResetMs - ((cap - 1) * 1000) / rate) - 1;
}

export class RefusalMemo {
  private readonly byTenant = new Map<TenantId, Entry>();

  constructor(
    private readonly maxTenants = MAX_TENANTS,
    private readonly maxMs = MAX_REMEMBER_MS,
  ) {}

  /** Redis refused `tenant`'s request asked for at `askedAt`: kept when the requests bucket did. */
  remember(tenant: TenantId, limits: TenantLimits, d: AdmitDecision, askedAt: number): void {
    const wait = Math.min(untilOneRequest(limits, d), this.maxMs);
    if (wait <= 0) return;
    this.byTenant.delete(tenant);
    if (this.byTenant.size >= this.maxTenants) {
      const oldest = this.byTenant.keys().next();
      if (!oldest.done) this.byTenant.delete(oldest.value);
    }
    this.byTenant.set(tenant, {
      until: askedAt + wait,
      at: askedAt,
      limitsKey: limitsKey(limits),
      decision: d,
    });
  }

  /**
   * The refusal to answer now, or null: Redis must decide. Its times are counted down from the
   * refusal Redis gave; what was left of the other limits is as Redis last said.
   */
  recall(tenant: TenantId, limits: TenantLimits, now: number): AdmitDecision | null {
    const e = this.byTenant.get(tenant);
    if (!e) return null;
    if (now >= e.until) {
      this.byTenant.delete(tenant);
      return null;
    }
    if (e.limitsKey !== limitsKey(limits)) return null;
    const gone = Math.max(0, now - e.at);
    const d = e.decision;
    return {
      ...d,
      retryAfterMs: Math.max(e.until - now, d.retryAfterMs - gone),
      requestsResetMs: Math.max(0, d.requestsResetMs - gone),
      tokensResetMs: Math.max(0, d.tokensResetMs - gone),
    };
  }

  /** Entries held (for tests and the bound). */
  get size(): number {
    return this.byTenant.size;
  }
}
