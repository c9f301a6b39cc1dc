/**
 * Every settlement token-meter makes, from its log phase or from access (the release of a
 * reserve whose reply was late), committed exactly once per request id (budget-settle-4.lua),
 * or appended to the local spool while Redis is unavailable (replayed by ready.ts).
 */
import { isRedisUnavailable } from '../../lib/redis/errors';
import type { TenantId } from '../../lib/tenant/tenant-id';
import { settleBudget, type Settlement } from './budget';
import * as metrics from './metrics';
import type { Ready } from './ready';

/** Whose budget, in which period: where a settlement goes. */
export interface BudgetAccount {
  readonly tenant: TenantId;
  readonly period: string;
  readonly periodEndMs: number;
}

/** Settles in Redis, or spools when Redis is unavailable. Returns the totals when settled. */
export async function commit(
  ready: Ready,
  account: BudgetAccount,
  s: Omit<Settlement, 'ttlMs'>,
): Promise<{ usedTokens: number; usedCost: number } | null> {
  const { tenant, period } = account;
  const settlement: Settlement = { ...s, ttlMs: ready.keyTtlMs(account.periodEndMs, Date.now()) };
  try {
    const r = await settleBudget(await ready.readyRedis(), ready.keys, tenant, period, settlement);
    return r.settled ? r : null;
  } catch (e) {
    if (!isRedisUnavailable(e)) throw e;
    ready.spool.append({ tenant, period, settlement });
    metrics.spooled.inc();
    return null;
  }
}

/** Releases the request id's reservation: nothing billed, no ledger entry. */
export async function release(
  ready: Ready,
  account: BudgetAccount,
  requestId: string,
): Promise<void> {
  await commit(ready, account, { requestId, tokens: 0, cost: 0, ledger: null });
}
