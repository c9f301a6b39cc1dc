/**
 * Chargeback: per-tenant, per-model totals of every tenant's ledger over a time range, for
 * the operator (`npm run chargeback`). Reads the ledger streams of each period overlapping
 * the range (SCAN by the keyspace's ledger pattern). First it settles the expired reservations
 * of those periods (scripts/budget-sweep-4.lua, one call per tenant period found with open
 * reservations), so a request whose log phase never ran is billed, marked `settled_by_expiry`.
 */
import type { RedisClient } from '../../lib/redis/client';
import type { Keyspace } from '../../lib/redis/keys';
import { parseTenantId } from '../../lib/tenant/tenant-id';
import { sweepExpired } from './budget';
import { readLedger } from './ledger';
import { periodsBetween } from './period';
import { nanoUsdToUsd } from './pricing';
import type { Period } from './config';

export interface ChargebackRow {
  tenant: string;
  model: string;
  requests: number;
  cache_hits: number;
  estimated: number;
  /** Entries settled by the expiry sweep (the log phase never ran); counted in `estimated` too. */
  settled_by_expiry: number;
  downgraded: number;
  prompt_tokens: number;
  completion_tokens: number;
  cached_tokens: number;
  cost_usd: number;
}

export async function chargeback(
  redis: RedisClient,
  keys: Keyspace,
  period: Period,
  fromMs: number,
  toMs: number,
  /** TTL of a period's keys billed by the sweep when its budget has none (the ledger retention). */
  minTtlMs = 400 * 86_400_000,
): Promise<ChargebackRow[]> {
  const rows = new Map<string, ChargebackRow & { cost_nusd: number }>();
  const tenantOf = new RegExp(`^${keys.namespace}:\\{t:([a-z0-9][a-z0-9_-]*)\\}:ledger:`);
  const periods = periodsBetween(period, fromMs, toMs);
  const wanted = new Set(periods.map((p) => p.id));
  for await (const batch of redis.scanIterator({
    MATCH: keys.budgetReservationsPattern(),
    COUNT: 1000,
  })) {
    for (const key of batch) {
      const found = keys.budgetReservationsOf(key);
      if (!found || !wanted.has(found.period)) continue;
      const tenant = parseTenantId(found.tenant);
      for (;;) {
        const r = await sweepExpired(redis, keys, tenant, found.period, minTtlMs, 1000);
        if (!r.more) break;
      }
    }
  }
  for (const p of periods) {
    const found = new Set<string>();
    for await (const batch of redis.scanIterator({
      MATCH: keys.usageLedgerPattern(p.id),
      COUNT: 1000,
    })) {
      for (const key of batch) {
        const m = tenantOf.exec(key);
        if (m?.[1]) found.add(m[1]);
      }
    }
    for (const raw of [...found].sort()) {
      const tenant = parseTenantId(raw);
      for (const e of await readLedger(redis, keys, tenant, p.id, fromMs, toMs)) {
        const k = `${raw}\u0000${e.modelServed}`;
        const r = rows.get(k) ?? {
          tenant: raw,
          model: e.modelServed,
          requests: 0,
          cache_hits: 0,
          estimated: 0,
          settled_by_expiry: 0,
          downgraded: 0,
          prompt_tokens: 0,
          completion_tokens: 0,
          cached_tokens: 0,
          cost_usd: 0,
          cost_nusd: 0,
        };
        r.requests += 1;
        if (e.cacheHit) r.cache_hits += 1;
        if (e.estimated) r.estimated += 1;
        if (e.settledBy === 'expiry') r.settled_by_expiry += 1;
        if (e.downgrade !== 'none') r.downgraded += 1;
        r.prompt_tokens += e.promptTokens;
        r.completion_tokens += e.completionTokens;
        r.cached_tokens += e.cachedTokens;
        r.cost_nusd += e.cost;
        rows.set(k, r);
      }
    }
  }
  return [...rows.values()]
    .map(({ cost_nusd, ...r }) => ({ ...r, cost_usd: nanoUsdToUsd(cost_nusd) }))
    .sort((a, b) => a.tenant.localeCompare(b.tenant) || a.model.localeCompare(b.model));
}

const COLUMNS: ReadonlyArray<keyof ChargebackRow> = [
  'tenant',
  'model',
  'requests',
  'cache_hits',
  'estimated',
  'settled_by_expiry',
  'downgraded',
  'prompt_tokens',
  'completion_tokens',
  'cached_tokens',
  'cost_usd',
];

export function toCsv(rows: readonly ChargebackRow[]): string {
  const esc = (v: string | number): string => {
    const s = String(v);
    return /[",\n]/.test(s) ? `"${s.replace(/"/g, '""')}"` : s;
  };
  return [COLUMNS.join(','), ...rows.map((r) => COLUMNS.map((c) => esc(r[c])).join(','))].join(
    '\n',
  );
}
