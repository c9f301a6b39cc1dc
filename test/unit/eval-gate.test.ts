/**
 * The eval gate (scripts/eval/gate.ts): per-tenant pass rates against per-tenant baselines.
 * The case that matters most: the average rises while one tenant drops, and the gate fails.
 */
import test from 'ava';
import {
  BaselineFormatError,
  baselineFrom,
  gate,
  parseBaseline,
  renderReport,
  summarise,
  type Baseline,
  type CaseOutcome,
} from '../../scripts/eval/gate';

/** `passed` passing and `failed` failing cases (and `na` not applicable) for a tenant. */
function outcomes(tenant: string, passed: number, failed: number, na = 0): CaseOutcome[] {
  const out: CaseOutcome[] = [];
  for (let i = 0; i < passed; i++)
    out.push({ tenant, id: `p${i}`, file: `evals/${tenant}/x.yaml`, outcome: 'pass', reasons: [] });
  for (let i = 0; i < failed; i++)
    out.push({
      tenant,
      id: `f${i}`,
      file: `evals/${tenant}/x.yaml`,
      outcome: 'fail',
      reasons: [`reason ${i}`],
    });
  for (let i = 0; i < na; i++)
    out.push({
      tenant,
      id: `n${i}`,
      file: `evals/${tenant}/x.yaml`,
      outcome: 'n/a',
      reasons: ['needs a real upstream'],
    });
  return out;
}

test('summarise: per tenant, n/a cases left out of the rate', (t) => {
  const s = summarise([...outcomes('globex', 3, 1, 2), ...outcomes('acme', 4, 0)]);
  t.deepEqual(
    s.map((x) => [x.tenant, x.cases, x.passed, x.rate, x.notApplicable, x.failed.length]),
    [
      ['acme', 4, 4, 1, 0, 0],
      ['globex', 4, 3, 0.75, 2, 1],
    ],
  );
});

test('the average rises while one tenant drops: the gate fails, naming that tenant', (t) => {
  // Before: acme 6/10, globex 10/10 (average 16/20 = 80%).
  const baseline = baselineFrom(
    summarise([...outcomes('acme', 6, 4), ...outcomes('globex', 10, 0)]),
  );
  // After: acme 10/10, globex 9/10 (average 19/20 = 95%): better overall, worse for globex.
  const now = summarise([...outcomes('acme', 10, 0), ...outcomes('globex', 9, 1)]);
  const result = gate(now, baseline);
  t.true(
    (result.average.baseline ?? 1) < result.average.now,
    `the average rose: ${result.average.baseline} -> ${result.average.now}`,
  );
  t.false(result.ok);
  const globex = result.rows.find((r) => r.tenant === 'globex');
  const acme = result.rows.find((r) => r.tenant === 'acme');
  t.false(globex?.ok);
  t.regex(globex?.problem ?? '', /below its baseline: 90\.0% < 100\.0%/);
  t.true(acme?.ok);
  const report = renderReport(result);
  t.regex(report, /^globex\s+10\s+9\s+90\.0%\s+100\.0%\s+0\s+FAIL$/m);
  t.regex(report, /^acme\s+10\s+10\s+100\.0%\s+60\.0%\s+0\s+ok$/m);
  t.regex(report, /globex\/f0 \(evals\/globex\/x\.yaml\)\n\s+reason 0/);
  t.regex(report, /eval: FAILED/);
});

test('every tenant at or above its baseline passes, improvements included', (t) => {
  const baseline = baselineFrom(
    summarise([...outcomes('acme', 2, 1), ...outcomes('globex', 5, 0)]),
  );
  const result = gate(
    summarise([...outcomes('acme', 2, 1), ...outcomes('globex', 5, 0)]),
    baseline,
  );
  t.true(result.ok, renderReport(result));
  t.true(gate(summarise([...outcomes('acme', 3, 0), ...outcomes('globex', 5, 0)]), baseline).ok);
  // 2/3 recorded and 2/3 again: no float noise between the two.
  t.is(baseline.tenants.acme?.rate, 0.666667);
});

test('a tenant without a baseline, or a baseline tenant that did not run, fails the gate', (t) => {
  const baseline: Baseline = { version: 1, tenants: { acme: { rate: 1, cases: 2 } } };
  const newcomer = gate(
    summarise([...outcomes('acme', 2, 0), ...outcomes('initech', 1, 0)]),
    baseline,
  );
  t.false(newcomer.ok);
  t.regex(newcomer.rows.find((r) => r.tenant === 'initech')?.problem ?? '', /no baseline/);
  const gone = gate(summarise(outcomes('globex', 1, 0)), {
    version: 1,
    tenants: { acme: { rate: 1, cases: 2 }, globex: { rate: 1, cases: 1 } },
  });
  t.false(gone.ok);
  t.deepEqual(gone.missing, ['acme']);
  t.regex(renderReport(gone), /acme: in the baseline, but its eval set did not run/);
});

test('a tenant whose every case was n/a fails rather than passing on nothing', (t) => {
  const result = gate(summarise(outcomes('acme', 0, 0, 3)), {
    version: 1,
    tenants: { acme: { rate: 1, cases: 3 } },
  });
  t.false(result.ok);
  t.regex(result.rows[0]?.problem ?? '', /no case applied/);
});

test('parseBaseline: the recorded shape, and nothing else', (t) => {
  const b = baselineFrom(summarise(outcomes('acme', 1, 1)));
  t.deepEqual(parseBaseline(JSON.parse(JSON.stringify(b))), b);
  for (const bad of [
    null,
    {},
    { version: 2, tenants: {} },
    { version: 1, tenants: { acme: { rate: 1.5, cases: 1 } } },
    { version: 1, tenants: { acme: { rate: 1 } } },
    { version: 1, tenants: { acme: { rate: '1', cases: 1 } } },
  ]) {
    t.throws(() => parseBaseline(bad), { instanceOf: BaselineFormatError }, JSON.stringify(bad));
  }
});
