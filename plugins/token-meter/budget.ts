/**
 * Budgets in Redis: the atomic reserve (scripts/budget-reserve-4.lua), the exactly-once
 * settle with its ledger entry (scripts/budget-settle-4.lua) and the settlement of expired
 * reservations (scripts/budget-sweep-4.lua; the reserve runs the same sweep first). Keys come
 * from the Keyspace, for a TenantId only.
 */
import type { RedisClient } from '../../lib/redis/client';
import type { Keyspace, RedisKey } from '../../lib/redis/keys';
import { join } from 'node:path';
import { loadScript, replyNumbers, runScript } from '../../lib/redis/lua-script';
import type { TenantId } from '../../lib/tenant/tenant-id';
import type { FlatPrice } from './pricing';

/** token-meter's own Lua scripts (scripts/, copied beside the build by scripts/build.js). */
const SCRIPTS = join(__dirname, 'scripts');

/** How a request was served below what it asked: another model, or fewer completion tokens. */
export type Downgrade = 'none' | 'fallback' | 'clamp';

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

/**
 * What a reservation is billed as when its log phase never settles it (the "estimated" entry
 * the log phase writes when no usage arrives): stored by the reserve, written by the sweep of
 * expired reservations with `settled_by = expiry`.
 */
export interface ExpiryBilling {
  readonly modelAsked: string;
  /** The tokenizer's prompt count (without the injected-context headroom). */
  readonly promptTokens: number;
  /** Completion tokens billed per unit reserved: the number of choices (0: prompt only). */
  readonly completionPerUnit: number;
  readonly stream: boolean;
  /** One per reserve candidate, in the same order. */
  readonly candidates: readonly ExpiryCandidate[];
}

export interface ExpiryCandidate {
  readonly model: string;
  readonly downgrade: Downgrade;
  /** The prices at the estimated prompt's length (pricing.ts `atLength`), cost unit per token. */
  readonly price: FlatPrice;
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
  /** Expired reservations of the tenant's period this call settled (billed) first. */
  readonly expiredSettled: number;
}

export class BudgetReplyError extends Error {
  override readonly name = 'BudgetReplyError';
}

const numbers = <N extends number>(reply: unknown, length: N, what: string) =>
  replyNumbers(reply, length, what, (m) => new BudgetReplyError(m));

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
    expiry: ExpiryBilling;
  },
): Promise<ReserveResult> {
  const e = req.expiry;
  if (e.candidates.length !== req.candidates.length) {
    throw new Error('reserveBudget: one expiry candidate per reserve candidate');
  }
  const args: Array<string | number> = [
    req.requestId,
    Math.ceil(req.ttlMs),
    req.caps.tokens ?? -1,
    req.caps.cost ?? -1,
    Math.ceil(req.keyTtlMs),
    e.modelAsked,
    Math.max(0, Math.round(e.promptTokens)),
    Math.max(0, Math.round(e.completionPerUnit)),
    e.stream ? 1 : 0,
  ];
  req.candidates.forEach((c, i) => {
    const x = e.candidates[i] as ExpiryCandidate;
    args.push(
      Math.ceil(c.baseTokens),
      Math.ceil(c.baseCost),
      Math.ceil(c.unitTokens),
      Math.ceil(c.unitCost),
      c.minUnits,
      c.maxUnits,
      c.softRatio,
      x.model,
      x.downgrade,
      // String(n) is the shortest text that reads back as the same double: the script's
      // product is then the one costOf computes.
      x.price.prompt,
      x.price.completion,
    );
  });
  const reply = await runScript(
    redis,
    loadScript('budget-reserve-4', SCRIPTS),
    budgetKeys(keys, tenant, period),
    args,
  );
  const [index, units, usedT, resT, usedC, resC, expired] = numbers(reply, 7, 'budget-reserve');
  return {
    chosen: index === -1 ? 'duplicate' : index - 1,
    units,
    totals: { usedTokens: usedT, reservedTokens: resT, usedCost: usedC, reservedCost: resC },
    expiredSettled: expired,
  };
}

/** The four keys of a tenant's period, in the order every budget script takes them. */
function budgetKeys(keys: Keyspace, tenant: TenantId, period: string): RedisKey[] {
  return [
    keys.budget(tenant, period),
    keys.budgetReservations(tenant, period),
    keys.budgetSettled(tenant, period),
    keys.usageLedger(tenant, period),
  ];
}

export interface SweepResult {
  /** Reservations settled by expiry (each billed once, with its ledger entry). */
  readonly settled: number;
  readonly tokens: number;
  readonly cost: number;
  /** More expired reservations wait than this call's limit took. */
  readonly more: boolean;
}

/**
 * Settles the expired reservations of one tenant's period (at most `limit`), without
 * reserving: one script call. The timer sweep, showback and chargeback use it. The keys it
 * writes keep the budget hash's TTL (the reserve's), `minTtlMs` when that has none.
 */
export async function sweepExpired(
  redis: RedisClient,
  keys: Keyspace,
  tenant: TenantId,
  period: string,
  minTtlMs: number,
  limit = 100,
): Promise<SweepResult> {
  const reply = await runScript(
    redis,
    loadScript('budget-sweep-4', SCRIPTS),
    budgetKeys(keys, tenant, period),
    [Math.ceil(minTtlMs), limit],
  );
  const [settled, tokens, cost, more] = numbers(reply, 4, 'budget-sweep');
  return { settled, tokens, cost, more: more === 1 };
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
  /**
   * It had been billed at expiry as estimated: this settlement replaced that entry (or, for a
   * release, removed it) and gave the budget the difference (budget-settle-4.lua). Counts as
   * settled.
   */
  readonly corrected: boolean;
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
    loadScript('budget-settle-4', SCRIPTS),
    budgetKeys(keys, tenant, period),
    args,
  );
  const [settled, usedT, usedC] = numbers(reply, 3, 'budget-settle');
  return {
    settled: settled === 1 || settled === 2,
    corrected: settled === 2,
    usedTokens: usedT,
    usedCost: usedC,
  };
}
