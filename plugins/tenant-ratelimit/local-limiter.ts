/**
 * The per-node limiter used only while Redis is unavailable and `on_redis_unavailable` is `local`.
 * Same limits, same all-or-nothing decision as scripts/tenant-admit-3.lua, but in this
 * process: with N gateway nodes a tenant may get up to N times its limits, which is why it
 * is named for what it is and announced in a header and a metric. There is no queue here:
 * when this node's share of the upstream is in use, the request is refused at once.
 *
 * State is bounded: at most `maxTenants` tenants (the least recently seen is dropped), and
 * every lease expires by itself.
 */
import type { AdmitDecision, TenantLimits } from './tenant-limits';
import { bucketArgs, chargeableTokens } from './tenant-limits';
import type { TenantId } from '../../lib/tenant/tenant-id';

interface Bucket {
  tokens: number;
  ts: number;
}

interface TenantState {
  requests: Bucket | null;
  tokens: Bucket | null;
  /** lease id -> expiry ms */
  leases: Map<string, number>;
}

function level(b: Bucket | null, cap: number, rate: number, now: number): number | null {
  if (cap <= 0) return null;
  if (!b) return cap;
  return Math.min(cap, b.tokens + (Math.max(0, now - b.ts) * rate) / 1000);
}

export class LocalNodeLimiter {
  private readonly tenants = new Map<TenantId, TenantState>();
  /** upstream seat id -> expiry ms */
  private readonly seats = new Map<string, number>();

  constructor(
    private readonly maxTenants = 10_000,
    private readonly clock: () => number = Date.now,
  ) {}

  private state(tenant: TenantId): TenantState {
    let s = this.tenants.get(tenant);
    if (s) {
      // Re-insert: Map order is the least-recently-seen order.
      this.tenants.delete(tenant);
    } else {
      s = { requests: null, tokens: null, leases: new Map() };
      if (this.tenants.size >= this.maxTenants) {
        const oldest = this.tenants.keys().next().value;
        if (oldest !== undefined) this.tenants.delete(oldest);
      }
    }
    this.tenants.set(tenant, s);
    return s;
  }

  admit(
    tenant: TenantId,
    limits: TenantLimits,
    estimate: number,
    leaseId: string,
    leaseTtlMs: number,
  ): AdmitDecision {
    const now = this.clock();
    const s = this.state(tenant);
    for (const [id, exp] of s.leases) if (exp <= now) s.leases.delete(id);
    const [reqCap, reqRate] = bucketArgs(limits.requestsPerMinute, limits.requestBurst);
    const [tokCap, tokRate] = bucketArgs(limits.tokensPerMinute, limits.tokenBurst);
    let req = level(s.requests, reqCap, reqRate, now);
    let tok = level(s.tokens, tokCap, tokRate, now);
    const cost = chargeableTokens(limits, estimate);
    let refusedBy: AdmitDecision['refusedBy'] = null;
    let retry = 0;
    if (req !== null && req < 1) {
      refusedBy = 'requests';
      retry = Math.max(retry, Math.ceil(((1 - req) * 1000) / reqRate));
    }
    if (tok !== null && tok < cost) {
      refusedBy ??= 'tokens';
      retry = Math.max(retry, Math.ceil(((cost - tok) * 1000) / tokRate));
    }
    if (limits.maxConcurrent > 0 && s.leases.size >= limits.maxConcurrent) {
      refusedBy ??= 'concurrency';
      retry = Math.max(retry, 1000);
    }
    if (refusedBy === null) {
      if (req !== null) req -= 1;
      if (tok !== null) tok -= cost;
      s.leases.set(leaseId, now + leaseTtlMs);
    }
    s.requests = req === null ? null : { tokens: req, ts: now };
    s.tokens = tok === null ? null : { tokens: tok, ts: now };
    const resetMs = (v: number | null, cap: number, rate: number) =>
      v === null ? 0 : Math.ceil(((cap - v) * 1000) / rate);
    return {
      allowed: refusedBy === null,
      refusedBy,
      retryAfterMs: retry,
      requestsLeft: req === null ? null : Math.floor(req),
      tokensLeft: tok === null ? null : Math.floor(tok),
      inFlight: s.leases.size,
      requestsResetMs: resetMs(req, reqCap, reqRate),
      tokensResetMs: resetMs(tok, tokCap, tokRate),
    };
  }

  settle(tenant: TenantId, limits: TenantLimits, leaseId: string, correction: number): void {
    const s = this.tenants.get(tenant);
    if (!s) return;
    s.leases.delete(leaseId);
    const [tokCap, tokRate] = bucketArgs(limits.tokensPerMinute, limits.tokenBurst);
    const now = this.clock();
    const tok = level(s.tokens, tokCap, tokRate, now);
    if (tok !== null && correction !== 0) {
      s.tokens = { tokens: Math.max(-tokCap, Math.min(tokCap, tok - correction)), ts: now };
    }
  }

  /** Takes one of this node's upstream seats, or refuses (false) when all are in use. */
  takeSeat(seatId: string, maxSeats: number, ttlMs: number): boolean {
    const now = this.clock();
    for (const [id, exp] of this.seats) if (exp <= now) this.seats.delete(id);
    if (this.seats.size >= maxSeats) return false;
    this.seats.set(seatId, now + ttlMs);
    return true;
  }

  releaseSeat(seatId: string): void {
    this.seats.delete(seatId);
  }

  /** Tenants tracked now (for tests of the bound). */
  get trackedTenants(): number {
    return this.tenants.size;
  }
}
