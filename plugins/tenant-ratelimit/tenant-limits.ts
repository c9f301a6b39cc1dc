/**
 * A tenant's own limits in Redis, one atomic script per decision: requests per minute and
 * LLM tokens per minute (token buckets with burst) and a concurrency cap (in-flight leases
 * that expire by themselves). scripts/tenant-admit-3.lua decides, scripts/tenant-settle-2.lua
 * ends a request: it releases the lease and corrects the token charge to the observed usage.
 */
import { join } from 'node:path';
import type { RedisClient } from '../../lib/redis/client';
import type { Keyspace } from '../../lib/redis/keys';
import { loadScript, replyNumbers, runScript } from '../../lib/redis/lua-script';
import type { TenantId } from '../../lib/tenant/tenant-id';

/** tenant-ratelimit's own Lua scripts (scripts/, copied beside the build by scripts/build.js). */
const SCRIPTS = join(__dirname, 'scripts');

/** Limits of one tenant; 0 turns a limit off. Rates are per minute, as operators write them. */
export interface TenantLimits {
  readonly requestsPerMinute: number;
  /** Requests the bucket holds: how many may come at once after a quiet spell. */
  readonly requestBurst: number;
  readonly tokensPerMinute: number;
  readonly tokenBurst: number;
  readonly maxConcurrent: number;
}

export type LimitName = 'requests' | 'tokens' | 'concurrency';

export interface AdmitDecision {
  readonly allowed: boolean;
  /** The first limit that refused (null when allowed). */
  readonly refusedBy: LimitName | null;
  readonly retryAfterMs: number;
  /** Whole requests left; null when the limit is off. */
  readonly requestsLeft: number | null;
  /** Whole tokens left (negative after an overrun); null when the limit is off. */
  readonly tokensLeft: number | null;
  readonly inFlight: number;
  readonly requestsResetMs: number;
  readonly tokensResetMs: number;
}

export class TenantLimitsReplyError extends Error {
  override readonly name = 'TenantLimitsReplyError';
}

const REASONS: ReadonlyArray<LimitName | null> = [null, 'requests', 'tokens', 'concurrency'];

const numbers = <N extends number>(reply: unknown, length: N, what: string) =>
  replyNumbers(reply, length, what, (m) => new TenantLimitsReplyError(m));

/** Buckets refill per second; the script takes burst and refill rate. */
export function bucketArgs(perMinute: number, burst: number): [number, number] {
  if (perMinute <= 0) return [0, 0];
  return [Math.max(1, burst), perMinute / 60];
}

/** The token cost the script can ever grant: at most the tokens burst. */
export function chargeableTokens(limits: TenantLimits, estimate: number): number {
  const cost = Math.max(0, Math.ceil(estimate));
  return limits.tokensPerMinute > 0 ? Math.min(cost, Math.max(1, limits.tokenBurst)) : cost;
}

/** Takes one request, `tokens` tokens and one lease for `tenant`, or nothing. */
export async function admitTenant(
  client: RedisClient,
  keys: Keyspace,
  tenant: TenantId,
  limits: TenantLimits,
  tokens: number,
  leaseId: string,
  leaseTtlMs: number,
): Promise<AdmitDecision> {
  const [reqCap, reqRate] = bucketArgs(limits.requestsPerMinute, limits.requestBurst);
  const [tokCap, tokRate] = bucketArgs(limits.tokensPerMinute, limits.tokenBurst);
  const reply = await runScript(
    client,
    loadScript('tenant-admit-3', SCRIPTS),
    [
      keys.rateBucket(tenant, 'requests'),
      keys.rateBucket(tenant, 'tokens'),
      keys.concurrencyLeases(tenant),
    ],
    [
      reqCap,
      reqRate,
      tokCap,
      tokRate,
      chargeableTokens(limits, tokens),
      limits.maxConcurrent > 0 ? limits.maxConcurrent : 0,
      leaseId,
      Math.max(1, Math.ceil(leaseTtlMs)),
    ],
  );
  const [allowed, reason, retry, reqLeft, tokLeft, inFlight, reqReset, tokReset] = numbers(
    reply,
    8,
    'tenant-admit',
  );
  return {
    allowed: allowed === 1,
    refusedBy: REASONS[reason] ?? null,
    retryAfterMs: retry,
    requestsLeft: reqCap > 0 ? reqLeft : null,
    tokensLeft: tokCap > 0 ? tokLeft : null,
    inFlight,
    requestsResetMs: reqReset,
    tokensResetMs: tokReset,
  };
}

export interface SettleResult {
  readonly leaseRemoved: boolean;
  readonly tokensLeft: number | null;
}

/**
 * Ends the request's lease and corrects its token charge by `correction` (actual - charged;
 * negative refunds). Idempotent for the lease; the correction is applied on every call.
 */
export async function settleTenant(
  client: RedisClient,
  keys: Keyspace,
  tenant: TenantId,
  limits: TenantLimits,
  leaseId: string,
  correction: number,
): Promise<SettleResult> {
  const [tokCap, tokRate] = bucketArgs(limits.tokensPerMinute, limits.tokenBurst);
  const reply = await runScript(
    client,
    loadScript('tenant-settle-2', SCRIPTS),
    [keys.rateBucket(tenant, 'tokens'), keys.concurrencyLeases(tenant)],
    [leaseId, tokCap, tokRate, Math.round(correction)],
  );
  const [removed, tokLeft] = numbers(reply, 2, 'tenant-settle');
  return { leaseRemoved: removed === 1, tokensLeft: tokCap > 0 ? tokLeft : null };
}
