/**
 * token-meter isolation: tenant B trying to read or spend tenant A's usage and budget.
 * isoa and isob are both on the `tiny` plan (300 tokens a month).
 */
import test from 'ava';
import { apiError, chat, send } from '../helpers/frontdoor';
import { sharedMeterDoor, totals } from '../helpers/token-meter-door';

const door = sharedMeterDoor(test);

test.serial('A spends; B sees none of it in showback, whatever B asks for', async (t) => {
  const d = door();
  const a = await d.call('isoa', '/v1/chat/completions', {
    body: chat('secret of A', { max_tokens: 50 }),
  });
  t.is(a.res.status, 200);
  const aUsage = await d.usage('isoa', (r) => totals(r).n >= 1);
  t.is(totals(aUsage).n, 1);

  const start = Math.floor(Date.now() / 1000) - 86_400;
  for (const extra of [
    '',
    '&project_ids=isoa',
    '&tenant=isoa',
    '&user_ids[]=isoa',
    '&api_key_ids=isoa-key',
  ]) {
    for (const p of ['/v1/organization/usage/completions', '/v1/organization/costs']) {
      const { res } = await d.call('isob', `${p}?start_time=${start}&limit=2${extra}`);
      t.is(res.status, 200, `${p}${extra}`);
      const page = res.json as { data: Array<{ results: unknown[] }> };
      t.deepEqual(
        page.data.flatMap((b) => b.results),
        [],
        `B's ${p}${extra} shows nothing of A`,
      );
    }
  }
});

test.serial(
  "A at its cap is refused; B's budget is untouched and B's refusal names only B",
  async (t) => {
    const d = door();
    const a = await d.call('isoa', '/v1/chat/completions', {
      body: chat('hi', { max_tokens: 290 }),
    });
    t.is(a.res.status, 429);
    t.regex(apiError(a.res).message, /tenant isoa/);

    const b = await d.call('isob', '/v1/chat/completions', {
      body: chat('hi', { max_tokens: 100 }),
    });
    t.is(b.res.status, 200, "A's spending does not count against B");
    const bRefused = await d.call('isob', '/v1/chat/completions', {
      body: chat('hi', { max_tokens: 290 }),
    });
    t.is(bRefused.res.status, 429);
    const msg = apiError(bRefused.res).message;
    t.regex(msg, /tenant isob/);
    t.notRegex(msg, /isoa/);
    for (const v of Object.values(bRefused.res.headers)) t.notRegex(String(v), /isoa/);
  },
);

test('a client cannot choose whose budget it spends: spoofed tenant headers are ignored', async (t) => {
  const d = door();
  const before = totals(await d.usage('isoa', () => true));
  const { res } = await d.call('isob', '/v1/chat/completions', {
    body: chat('charge A please', { max_tokens: 20 }),
    headers: [
      ['x-tenant-id', 'isoa'],
      ['x-budget-state', 'ok'],
      ['x-kong-request-id', 'deadbeef'],
    ],
  });
  t.true(res.status === 200 || res.status === 429);
  const bUsage = await d.usage('isob', (r) => totals(r).n >= 1);
  t.true(totals(bUsage).n >= 1, 'charged to B');
  const after = totals(await d.usage('isoa', () => true));
  t.deepEqual(after, before, "A's ledger did not move");
});

test('crafted tenant ids never reach a Redis key: refused before the meter', async (t) => {
  const d = door();
  for (const key of ['hashtag-key', 'colon-key', 'glob-key']) {
    const res = await send(`${d.url}/v1/chat/completions`, {
      headers: [['apikey', key]],
      body: chat('hi', { max_tokens: 10 }),
    });
    t.is(res.status, 403, key);
    t.is(apiError(res).code, 'invalid_tenant_id');
  }
});

test('a request id sent by the client is not the settlement id: two requests, two entries', async (t) => {
  const d = door();
  for (let i = 0; i < 2; i++) {
    const { res } = await d.call('globex', '/v1/chat/completions', {
      body: chat(`same id ${i}`, { max_tokens: 20 }),
      headers: [
        ['x-kong-request-id', 'replayed-id'],
        ['x-request-id', 'replayed-id'],
      ],
    });
    t.is(res.status, 200);
    t.not(res.headers['x-kong-request-id'], 'replayed-id');
  }
  const usage = await d.usage('globex', (r) => totals(r).n >= 2);
  t.is(totals(usage).n, 2, 'both settled, neither deduplicated away');
});
