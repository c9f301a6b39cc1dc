/**
 * tenant-ratelimit and bad input (issue 8, item 6): a request with no usable token estimate
 * (not JSON, an unknown model, a nonsense max_tokens) still gets a defined cost; an absurd
 * max_tokens is charged at most `estimate.max_tokens_cap`, so it can reserve neither the
 * tenant's bucket nor the upstream's tokens capacity that other tenants wait on; a config
 * past a field's bounds is refused at start, the error naming the field.
 *
 * A fresh bucket answers `RateLimit: "tpm";r=<burst - charge>` exactly (no refill yet), so
 * each case below reads its charge from a tenant's first request on a route.
 */
import test from 'ava';
import { Closers, startFrontDoor } from '../helpers/frontdoor';
import { REDIS_URL, chatBody, sharedRatelimitDoor } from '../helpers/ratelimit-door';

const TPM = 100_000;
const CAP = 4000;
const ESTIMATE = { max_tokens_cap: CAP, default_max_tokens: 1000, unknown_prompt_tokens: 256 };

/** tenant-auth refuses malformed bodies by default (400): here they must reach tenant-ratelimit. */
const LENIENT = { validate_json_body: false };

const door = sharedRatelimitDoor(test, [
  {
    name: 'absurd',
    config: { default_limits: { tokens_per_minute: TPM }, estimate: ESTIMATE },
    tenantAuthConfig: LENIENT,
  },
  {
    name: 'junk',
    config: { default_limits: { tokens_per_minute: TPM }, estimate: ESTIMATE },
    tenantAuthConfig: LENIENT,
  },
  {
    name: 'nobody',
    config: { default_limits: { tokens_per_minute: TPM }, estimate: ESTIMATE },
    tenantAuthConfig: LENIENT,
  },
  {
    name: 'upstream',
    config: {
      queue: { tokens_per_minute: 60_000, max_concurrent: 0, max_wait_ms: 3000 },
      estimate: ESTIMATE,
    },
  },
]);

const left = (h: unknown): number => Number(/"tpm";r=(-?\d+)/.exec(String(h))?.[1]);

/**
 * The tokens charged to a tenant's fresh bucket by one request. The mock upstream may refuse
 * the body as OpenAI would (400, 415): the charge was made before, in access, and the headers
 * that say so ride on whatever response comes back.
 */
async function charged(route: string, key: string, body: object | string): Promise<number> {
  const { res } = await door().call(route, key, {
    body,
    headers: typeof body === 'string' ? [['content-type', 'application/json']] : [],
  });
  if (res.headers.ratelimit === undefined) throw new Error(`${route}: ${res.status} ${res.text}`);
  return TPM - left(res.headers.ratelimit);
}

test('an absurd max_tokens is charged as max_tokens_cap, not as asked', async (t) => {
  const absurd = await charged('absurd', 'globex-key', chatBody('hi', { max_tokens: 1e15 }));
  const atCap = await charged('absurd', 'acme-key', chatBody('hi', { max_tokens: CAP }));
  t.is(absurd, atCap);
  t.true(absurd > CAP && absurd < CAP + 50, `prompt + the cap, got ${absurd}`);
  // max_completion_tokens is read the same way.
  t.is(
    await charged('absurd', 'initech-key', chatBody('hi', { max_completion_tokens: 2 ** 53 })),
    atCap,
  );
});

test('a nonsense max_tokens (negative, zero, a string, a float) falls back to default_max_tokens', async (t) => {
  const keys = ['globex-key', 'acme-key', 'initech-key', 'lookalike-key'];
  const bodies = [
    chatBody('hi'),
    chatBody('hi', { max_tokens: -5 }),
    chatBody('hi', { max_tokens: 'lots' }),
    chatBody('hi', { max_tokens: 0.5 }),
  ];
  const costs = await Promise.all(bodies.map((b, i) => charged('junk', keys[i] as string, b)));
  t.true(costs[0]! > 1000 && costs[0]! < 1050, `prompt + 1000, got ${costs[0]}`);
  t.deepEqual(costs, [costs[0], costs[0], costs[0], costs[0]]);
});

test('a body that is not JSON, or has no prompt, costs unknown_prompt_tokens + default_max_tokens', async (t) => {
  t.is(await charged('nobody', 'globex-key', '{"model": "gpt-4o-mini", "messages": ['), 256 + 1000);
  t.is(await charged('nobody', 'acme-key', { model: 'gpt-4o-mini' }), 256 + 1000);
  t.is(await charged('nobody', 'initech-key', [1, 2, 3]), 256 + 1000);
});

test('an unknown model still gets a defined cost (counted, plus default_max_tokens)', async (t) => {
  const cost = await charged('nobody', 'lookalike-key', {
    model: 'no-such-model-7',
    messages: [{ role: 'user', content: 'hello there' }],
  });
  t.true(cost > 1000 && cost < 1050, `a few prompt tokens + 1000, got ${cost}`);
});

test("an absurd max_tokens cannot drain the upstream's tokens capacity that others wait on", async (t) => {
  // 60,000 upstream tokens at once; uncapped, this request's width would take all of them.
  const hog = await door().call('upstream', 'globex-key', {
    body: chatBody('hi', { max_tokens: 1e12 }),
  });
  t.is(hog.res.status, 200);
  const other = await door().call('upstream', 'acme-key');
  t.is(other.res.status, 200);
  t.is(other.res.headers['x-queue-wait-ms'], '0', 'admitted at once, the capacity was there');
});

test('a config past a field’s bounds is refused at start, naming the field', async (t) => {
  const closers = new Closers();
  t.teardown(() => closers.closeAll());
  const error = await t.throwsAsync(
    startFrontDoor(closers.add, (upstreamUrl) => ({
      _format_version: '3.0',
      services: [{ name: 'llm', url: upstreamUrl, routes: [{ name: 'r', paths: ['/r'] }] }],
      plugins: [
        { name: 'key-auth', route: 'r' },
        { name: 'tenant-auth', route: 'r' },
        {
          name: 'tenant-ratelimit',
          route: 'r',
          config: {
            redis: { url: REDIS_URL },
            // Kong would proxy unthrottled at 60 s: the schema caps the wait at 30 s.
            queue: { max_wait_ms: 60_000 },
          },
        },
      ],
    })),
  );
  t.regex(error?.message ?? '', /max_wait_ms/);
});
