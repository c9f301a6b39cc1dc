/**
 * The checks every probe of test/isolation/chain-* makes, and the positive controls' evidence:
 * what A's own requests carried to the upstream while the fixture seeded them.
 */
import type { ExecutionContext } from 'ava';
import type { ChainFixture, ChainTenant } from './chain-fixture';
import { answerPrint, leaks, type Probe } from './chain-probe';

/** Headers only A's state can put on a response (its breaker, its fallback, its budget). */
const A_STATE_HEADERS = [
  'x-circuit-breaker-state',
  'x-circuit-breaker-fallback',
  'x-circuit-breaker-fallback-model',
];

/**
 * Nothing of A's in anything the prober got back or sent upstream: no secret text, no id, no
 * figure, no cached answer of A's, no header of A's state, no request on A's dedicated
 * upstream, every upstream request labelled with the prober's own tenant.
 */
export function nothingOfA(
  t: ExecutionContext,
  f: ChainFixture,
  p: Probe,
  who: ChainTenant = f.B,
): void {
  t.deepEqual(leaks(p, f.secrets), [], `${p.res.status} ${p.res.text.slice(0, 300)}`);
  t.false(p.upstreamNames.includes('dedicated'), 'never on A’s dedicated upstream');
  for (const r of p.upstream) t.is(r.headers['x-tenant-id'], who.id, 'labelled as the prober');
  const print = answerPrint(p.res);
  t.true(print === null || (print !== f.printA.exact && print !== f.printA.semantic));
  for (const h of A_STATE_HEADERS) t.is(p.res.headers[h], undefined, h);
  t.not(p.res.headers['x-budget-state'], 'exhausted', 'not A’s drained budget');
  if (p.res.status >= 400 && p.res.json !== undefined) {
    const e = (p.res.json as { error?: { message?: unknown; type?: unknown } }).error;
    t.is(typeof e?.message, 'string', 'refusals are OpenAI-style errors');
  }
}

/** A request of A's carried `text` to an upstream during seeding (the control of a probe). */
export function seenByA(f: ChainFixture, text: string, path = '/v1/'): boolean {
  return [...f.upstreams.dedicated.received, ...f.upstreams.main.received].some(
    (r) =>
      r.headers['x-tenant-id'] === f.A.id &&
      r.path.startsWith(path) &&
      `${JSON.stringify(r.headers)}${r.rawBody.toString('utf8')}`.includes(text),
  );
}
