/**
 * Cross-plugin isolation eval, cost: tenant B reads showback with A's ids in every parameter,
 * on every path and spelling a spend endpoint might have (LiteLLM #28864: spend endpoints that
 * listed every tenant's keys to any caller), and spends while A's budget is drained. B sees
 * only its own figures; A's ledger does not move for B's requests. Positive control of each
 * case: A's own showback shows A's figures, A's own request meets A's drained budget.
 */
import test from 'ava';
import { nothingOfA } from '../helpers/chain-assert';
import { sharedChainFixture, type ChainFixture, type ChainTenant } from '../helpers/chain-fixture';
import { leaks, type Probe } from '../helpers/chain-probe';

const fx = sharedChainFixture(test);

const USAGE = '/v1/organization/usage/completions';
const COSTS = '/v1/organization/costs';
const since = () => Math.floor(Date.now() / 1000) - 3600;

interface Totals {
  tokens: number;
  usd: number;
  rows: number;
}
function totals(p: Probe): Totals {
  const data = (p.res.json as { data?: Array<{ results?: Array<Record<string, unknown>> }> })?.data;
  const rows = (data ?? []).flatMap((b) => b.results ?? []);
  const num = (v: unknown) => (typeof v === 'number' ? v : 0);
  return {
    tokens: rows.reduce((a, r) => a + num(r.input_tokens) + num(r.output_tokens), 0),
    usd: rows.reduce((a, r) => a + num((r.amount as { value?: unknown } | undefined)?.value), 0),
    rows: rows.length,
  };
}

/** Query parameters naming A (`@A` A's id, `@K` A's key), each on both showback endpoints. */
const PARAMS: Array<[string, string]> = [
  ['no parameter naming anyone', 'start_time=@T&limit=7'],
  ['project_ids = A', 'start_time=@T&project_ids=@A'],
  ['project_ids[] = A', 'start_time=@T&project_ids[]=@A'],
  ['user_ids = A', 'start_time=@T&user_ids=@A'],
  ['api_key_ids = A’s key', 'start_time=@T&api_key_ids=@K'],
  ['tenant and tenant_id = A', 'start_time=@T&tenant=@A&tenant_id=@A'],
  ['customer and organization = A', 'start_time=@T&customer=@A&organization=@A'],
  ['TENANT = A, repeated', 'start_time=@T&TENANT=@A&tenant=@A&tenant=@A'],
  ['group_by = project_id', 'start_time=@T&group_by=project_id'],
  ['group_by = api_key_id (LiteLLM #28864)', 'start_time=@T&group_by=api_key_id'],
  ['start_time = 0 and a year of buckets', 'start_time=0&limit=366'],
  ['bucket_width = 1h', 'start_time=@T&bucket_width=1h&limit=24'],
];

for (const [name, extra] of PARAMS) {
  for (const endpoint of [USAGE, COSTS]) {
    test(`showback ${endpoint.split('/').pop()}: ${name}`, async (t) => {
      const f = fx();
      const q = (who: ChainTenant) =>
        `${endpoint}?${extra}`
          .replaceAll('@T', String(since()))
          .replaceAll('@A', f.A.id)
          .replaceAll('@K', who === f.B ? f.A.key : f.B.key);
      const p = await f.as(f.B, q(f.B));
      t.true(p.res.status === 200 || p.res.status === 400, `${p.res.status} ${p.res.text}`);
      nothingOfA(t, f, p);
      t.is(p.upstream.length, 0, 'answered by the gateway, never proxied');
      // Control: A's own showback (same query) holds A's figures; B's are not they.
      const a = await f.as(f.A, q(f.A));
      t.is(a.res.status, p.res.status);
      if (a.res.status === 200) {
        const [ta, tb] = [totals(a), totals(p)];
        // A's ledger shows in A's own answer whenever the window covers the seeding.
        if (extra.includes('@T')) {
          t.true(endpoint === USAGE ? ta.tokens >= f.figuresA.tokens : ta.usd >= f.figuresA.usd);
        }
        t.true(tb.tokens < f.figuresA.tokens && tb.usd < f.figuresA.usd, 'B’s are not A’s');
      }
    });
  }
}

/** Other spellings and paths a spend endpoint might have. */
const SPEND_PATHS: string[] = [
  '/v1/spend/keys',
  '/v1/spend/users',
  '/v1/spend/logs?api_key=@K',
  '/v1/key/info?key=@K',
  '/v1/global/spend/report?start_date=2020-01-01',
  '/v1/organization/usage/completions/@A?start_time=@T',
  '/v1/organization/projects/@A/costs?start_time=@T',
  '/v1/organization/Costs?start_time=@T',
  '/v1/organization/costs/?start_time=@T',
  '/v1/organization//costs?start_time=@T',
  '/v1/organization/usage/../costs?start_time=@T',
  '/v1/organization/usage/completions%3Fproject_ids=@A',
  '/v1/ORGANIZATION/USAGE/COMPLETIONS?start_time=@T',
  '/v1/dashboard/billing/usage?start_date=2020-01-01',
];

for (const raw of SPEND_PATHS) {
  test(`spend path: GET ${raw}`, async (t) => {
    const f = fx();
    const path = raw
      .replaceAll('@A', f.A.id)
      .replaceAll('@K', f.A.key)
      .replaceAll('@T', String(since()));
    const p = await f.as(f.B, path);
    nothingOfA(t, f, p);
    t.true(p.res.status !== 200 || totals(p).tokens < f.figuresA.tokens);
    // Control: A's canonical showback shows A's token total.
    const a = await f.as(f.A, `${USAGE}?start_time=${since()}`);
    t.true(totals(a).tokens >= f.figuresA.tokens);
  });
}

/** B's requests, while A's budget is drained (the per-tenant budget is never global). */
const SPENDS: Array<[string, (f: ChainFixture) => Record<string, unknown>]> = [
  ['a large request', () => ({ max_tokens: 2000 })],
  ['the request that A is refused', () => ({ max_tokens: 32 })],
  ['a request naming A in `user`', (f) => ({ max_tokens: 32, user: f.A.id })],
];

for (const [name, extra] of SPENDS) {
  test(`budget: B’s ${name} is served while A’s budget is drained`, async (t) => {
    const f = fx();
    const body = (x: Record<string, unknown>) => ({
      model: 'gpt-4o-mini',
      temperature: 1,
      messages: [{ role: 'user', content: 'lorem '.repeat(40) }],
      ...x,
    });
    const p = await f.as(f.B, '/v1/chat/completions', { body: body(extra(f)) });
    t.is(p.res.status, 200, p.res.text.slice(0, 200));
    t.regex(String(p.res.headers['x-budget-state']), /^(ok|fallback|clamp)$/);
    t.truthy(p.res.headers['x-budget-remaining-usd'], 'B’s own (money) budget');
    t.is(p.res.headers['x-budget-remaining-tokens'], undefined, 'A’s token cap is not B’s');
    nothingOfA(t, f, p);
    const a = await f.as(f.A, '/v1/chat/completions', { body: body(extra(f)) });
    t.is(a.res.status, 429, 'control: A is refused by its drained budget');
    t.true(leaks(a, f.secrets).includes('A’s budget'), 'A’s refusal carries A’s figures');
  });
}

test('ledger: B’s requests dressed as A are charged to B, never to A', async (t) => {
  const f = fx();
  const read = async (who: ChainTenant) =>
    totals(await f.as(who, `${USAGE}?start_time=${since()}`)).tokens;
  const [a0, b0] = [await read(f.A), await read(f.B)];
  t.true(a0 >= f.figuresA.tokens, 'control: A’s ledger holds A’s spend');
  for (const headers of [
    [['x-tenant-id', f.A.id]],
    [['x-consumer-custom-id', f.A.id]],
    [['x-kong-request-id', 'a'.repeat(32)]],
  ] as Array<Array<[string, string]>>) {
    const p = await f.as(f.B, '/v1/chat/completions', {
      body: {
        model: 'gpt-4o-mini',
        temperature: 1,
        user: f.A.id,
        messages: [{ role: 'user', content: 'bill A' }],
      },
      headers,
    });
    t.is(p.res.status, 200);
  }
  const deadline = Date.now() + 15_000;
  let b1 = b0;
  while (b1 <= b0 && Date.now() < deadline) {
    await new Promise((r) => setTimeout(r, 100));
    b1 = await read(f.B);
  }
  t.true(b1 > b0, 'charged to B');
  t.is(await read(f.A), a0, 'A’s ledger did not move');
});
