/**
 * Budgets in Redis: the atomic reserve (scripts/budget-reserve-2.lua) and the exactly-once
 * settle with its ledger entry (scripts/budget-settle-4.lua). Keys come from the Keyspace,
 * for a TenantId only.
 */
import type { RedisClient } from '../../lib/redis/client';
import type { Keyspace } from '../../lib/redis/keys';
import { loadScript, runScript } from '../../lib/redis/lua-script';
import type { TenantId } from '../../lib/tenant/tenant-id';

/** One way to serve the request: worst case = base + units × unit, units in [min, max]. */
export interface ReserveCandidate {
  readonly baseTokens: number;
  readonly baseCost: number;
  readonly unitTokens: number;
  readonly unitCost: number;
  readonly minUnits: number;
  readonly maxUnits: number;
  /** < 1: eligible only while used + reserved ≤ softRatio × cap. */
  readonly softRatio: number;
}

export interface BudgetCaps {
  /** null: no cap in that dimension. */
  readonly tokens: number | null;
  readonly cost: number | null;
}

export interface BudgetTotals {
  readonly usedTokens: number;
  readonly reservedTokens: number;
  readonly usedCost: number;
  readonly reservedCost: number;
}

export interface ReserveResult {
  /** Index into the candidates, -1 none fits, 'duplicate' the id already holds one. */
  readonly chosen: number | 'duplicate';
  readonly units: number;
  readonly totals: BudgetTotals;
}

export class BudgetReplyError extends Error {
  override readonly name = 'BudgetReplyError';
}

function numbers(reply: unknown, length: number, what: string): number[] {
  if (
    Array.isArray(reply) &&
    reply.length === length &&
    reply.every((v): v is number => typeof v === 'number')
  ) {
    return reply;
  }
  throw new BudgetReplyError(`unexpected ${what} reply: ${JSON.stringify(reply)}`);
}

export async function reserveBudget(
  redis: RedisClient,
  keys: Keyspace,
  tenant: TenantId,
  period: string,
  req: {
    requestId: string;
    ttlMs: number;
    keyTtlMs: number;
    caps: BudgetCaps;
    candidates: readonly ReserveCandidate[];
  },
): Promise<ReserveResult> {
  const args: Array<string | number> = [
    req.requestId,
    Math.ceil(req.ttlMs),
    req.caps.tokens ?? -1,
    req.caps.cost ?? -1,
    Math.ceil(req.keyTtlMs),
  ];
  for (const c of req.candidates) {
    args.push(
      Math.ceil(c.baseTokens),
      Math.ceil(c.baseCost),
      Math.ceil(c.unitTokens),
      Math.ceil(c.unitCost),
      c.minUnits,
      c.maxUnits,
      c.softRatio,
    );
  }
  const reply = await runScript(
    redis,
    loadScript('budget-reserve-2'),
    [keys.budget(tenant, period), keys.budgetReservations(tenant, period)],
    args,
  );
  const [index, units, usedT, resT, usedC, resC] = numbers(reply, 6, 'budget-reserve') as [
    number,
    number,
    number,
    number,
    number,
    number,
  ];
  return {
    chosen: index === -1 ? 'duplicate' : index - 1,
    units,
    totals: { usedTokens: usedT, reservedTokens: resT, usedCost: usedC, reservedCost: resC },
  };
}

export interface Settlement {
  readonly requestId: string;
  readonly tokens: number;
  readonly cost: number;
  readonly ttlMs: number;
  /** null: release only (nothing billed, no ledger entry). */
  readonly ledger: Readonly<Record<string, string>> | null;
}

export interface SettleResult {
  /** false: this request id was settled before; nothing changed. */
  readonly settled: boolean;
  readonly usedTokens: number;
  readonly usedCost: number;
}

export async function settleBudget(
  redis: RedisClient,
  keys: Keyspace,
  tenant: TenantId,
  period: string,
  s: Settlement,
): Promise<SettleResult> {
  const args: string[] = [
    s.requestId,
    String(Math.max(0, Math.round(s.tokens))),
    String(Math.max(0, Math.ceil(s.cost))),
    String(Math.ceil(s.ttlMs)),
    s.ledger ? '1' : '0',
  ];
  if (s.ledger) for (const [k, v] of Object.entries(s.ledger)) args.push(k, v);
  const reply = await runScript(
    redis,
    loadScript('budget-settle-4'),
    [
      keys.budget(tenant, period),
      keys.budgetReservations(tenant, period),
      keys.budgetSettled(tenant, period),
      keys.usageLedger(tenant, period),
    ],
    args,
  );
  const [settled, usedT, usedC] = numbers(reply, 3, 'budget-settle') as [number, number, number];
  return { settled: settled === 1, usedTokens: usedT, usedCost: usedC };
}
