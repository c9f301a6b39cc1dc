/**
 * The gate: per-tenant pass rates against each tenant's recorded baseline. Pure, so the rule
 * that matters is unit-tested on its own: a change passes only when **no tenant** is below
 * its baseline, whatever the average does (an average can rise while one customer's results
 * quietly degrade).
 */

export interface CaseOutcome {
  tenant: string;
  id: string;
  file: string;
  outcome: 'pass' | 'fail' | 'n/a';
  /** Why it failed, or why it did not apply. */
  reasons: string[];
}

export interface TenantSummary {
  tenant: string;
  /** Cases that applied here (n/a ones excluded). */
  cases: number;
  passed: number;
  /** passed / cases; 1 when no case applied (nothing failed). */
  rate: number;
  notApplicable: number;
  failed: CaseOutcome[];
}

export interface BaselineEntry {
  rate: number;
  cases: number;
}

export interface Baseline {
  version: 1;
  tenants: Record<string, BaselineEntry>;
}

export interface GateRow extends TenantSummary {
  baseline: BaselineEntry | undefined;
  ok: boolean;
  /** Why the tenant fails the gate (below its baseline, no baseline, no cases). */
  problem?: string;
}

export interface GateResult {
  ok: boolean;
  rows: GateRow[];
  /** Tenants in the baseline that no longer ran (a deleted eval set fails the gate). */
  missing: string[];
  /** Over every case of every tenant: shown, never decisive. */
  average: { now: number; baseline: number | undefined };
}

/** Rates are compared after rounding to this many decimals (no float noise in the gate). */
const RATE_DECIMALS = 6;
const round = (r: number) => Number(r.toFixed(RATE_DECIMALS));

export function summarise(outcomes: readonly CaseOutcome[]): TenantSummary[] {
  const byTenant = new Map<string, CaseOutcome[]>();
  for (const o of outcomes) {
    const list = byTenant.get(o.tenant) ?? [];
    list.push(o);
    byTenant.set(o.tenant, list);
  }
  return [...byTenant.keys()].sort().map((tenant) => {
    const list = byTenant.get(tenant) ?? [];
    const applied = list.filter((o) => o.outcome !== 'n/a');
    const passed = applied.filter((o) => o.outcome === 'pass').length;
    return {
      tenant,
      cases: applied.length,
      passed,
      rate: applied.length === 0 ? 1 : round(passed / applied.length),
      notApplicable: list.length - applied.length,
      failed: applied.filter((o) => o.outcome === 'fail'),
    };
  });
}

function micro(entries: ReadonlyArray<{ rate: number; cases: number }>): number | undefined {
  const cases = entries.reduce((n, e) => n + e.cases, 0);
  if (cases === 0) return undefined;
  return round(entries.reduce((n, e) => n + e.rate * e.cases, 0) / cases);
}

export function gate(summaries: readonly TenantSummary[], baseline: Baseline): GateResult {
  const rows: GateRow[] = summaries.map((s) => {
    const b = baseline.tenants[s.tenant];
    if (!b) {
      return {
        ...s,
        baseline: undefined,
        ok: false,
        problem: 'no baseline recorded (npm run eval -- --record-baseline)',
      };
    }
    if (s.cases === 0) {
      return { ...s, baseline: b, ok: false, problem: 'no case applied' };
    }
    const ok = round(s.rate) >= round(b.rate);
    return {
      ...s,
      baseline: b,
      ok,
      ...(ok
        ? {}
        : {
            problem: `below its baseline: ${pct(s.rate)} < ${pct(b.rate)}`,
          }),
    };
  });
  const ran = new Set(summaries.map((s) => s.tenant));
  const missing = Object.keys(baseline.tenants)
    .filter((t) => !ran.has(t))
    .sort();
  return {
    ok: rows.every((r) => r.ok) && missing.length === 0,
    rows,
    missing,
    average: {
      now: micro(summaries) ?? 1,
      baseline: micro(Object.values(baseline.tenants)),
    },
  };
}

/** The baseline a run records: each tenant's rate and case count now. */
export function baselineFrom(summaries: readonly TenantSummary[]): Baseline {
  return {
    version: 1,
    tenants: Object.fromEntries(
      summaries.map((s) => [s.tenant, { rate: round(s.rate), cases: s.cases }]),
    ),
  };
}

export class BaselineFormatError extends Error {
  override readonly name = 'BaselineFormatError';
}

export function parseBaseline(v: unknown): Baseline {
  const fail = (why: string): never => {
    throw new BaselineFormatError(`baseline: ${why}`);
  };
  if (typeof v !== 'object' || v === null) return fail('an object is required');
  const o = v as { version?: unknown; tenants?: unknown };
  if (o.version !== 1) fail('version must be 1');
  if (typeof o.tenants !== 'object' || o.tenants === null) return fail('tenants is required');
  const tenants: Record<string, BaselineEntry> = {};
  for (const [t, e] of Object.entries(o.tenants as Record<string, unknown>)) {
    const entry = e as { rate?: unknown; cases?: unknown } | null;
    if (
      typeof entry?.rate !== 'number' ||
      entry.rate < 0 ||
      entry.rate > 1 ||
      typeof entry.cases !== 'number' ||
      !Number.isInteger(entry.cases) ||
      entry.cases < 0
    ) {
      fail(`tenants.${t} needs a rate in [0, 1] and a whole number of cases`);
    }
    tenants[t] = { rate: entry?.rate as number, cases: entry?.cases as number };
  }
  return { version: 1, tenants };
}

export function pct(rate: number): string {
  return `${(rate * 100).toFixed(1)}%`;
}

/** The table `npm run eval` prints, then the failed cases with their reasons. */
export function renderReport(result: GateResult, notes: readonly string[] = []): string {
  const head = ['tenant', 'cases', 'passed', 'rate', 'baseline', 'n/a', 'gate'];
  const body = result.rows.map((r) => [
    r.tenant,
    String(r.cases),
    String(r.passed),
    pct(r.rate),
    r.baseline ? pct(r.baseline.rate) : '-',
    String(r.notApplicable),
    r.ok ? 'ok' : 'FAIL',
  ]);
  const cases = result.rows.reduce((n, r) => n + r.cases, 0);
  const passed = result.rows.reduce((n, r) => n + r.passed, 0);
  body.push([
    '(all)',
    String(cases),
    String(passed),
    pct(result.average.now),
    result.average.baseline === undefined ? '-' : pct(result.average.baseline),
    String(result.rows.reduce((n, r) => n + r.notApplicable, 0)),
    result.ok ? 'ok' : 'FAIL',
  ]);
  const widths = head.map((h, i) =>
    Math.max(h.length, ...body.map((row) => (row[i] ?? '').length)),
  );
  const line = (row: string[]) =>
    row
      .map((c, i) =>
        i === 0 || i === row.length - 1 ? c.padEnd(widths[i] ?? 0) : c.padStart(widths[i] ?? 0),
      )
      .join('  ')
      .trimEnd();
  const out = [line(head), ...body.map(line)];
  const failed = result.rows.flatMap((r) => r.failed);
  if (failed.length > 0) {
    out.push('', `failed cases (${failed.length}):`);
    for (const f of failed) {
      out.push(`  ${f.tenant}/${f.id} (${f.file})`);
      for (const reason of f.reasons) out.push(`      ${reason}`);
    }
  }
  const problems = [
    ...result.rows.filter((r) => r.problem).map((r) => `${r.tenant}: ${r.problem}`),
    ...result.missing.map((t) => `${t}: in the baseline, but its eval set did not run`),
  ];
  if (problems.length > 0) out.push('', 'gate:', ...problems.map((p) => `  ${p}`));
  for (const n of notes) out.push(n);
  out.push(
    '',
    result.ok
      ? `eval: every tenant at or above its baseline (${passed}/${cases} cases passed)`
      : `eval: FAILED, the gate did not pass (${passed}/${cases} cases passed; see "gate:" above)`,
  );
  return out.join('\n');
}
