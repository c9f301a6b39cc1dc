/**
 * tenant-ratelimit's flex (non-urgent) class end to end: key-auth -> tenant-auth ->
 * tenant-ratelimit on the gateway, the real Redis holding the queue. A request marked with
 * the body's `service_tier: "flex"` or the configured header runs on idle capacity, after
 * urgent work, waits longer instead of being refused, and says which class served it.
 */
import test from 'ava';
import { apiError } from '../helpers/frontdoor';
import { chatBody, sharedRatelimitDoor } from '../helpers/ratelimit-door';

const door = sharedRatelimitDoor(test, [
  { name: 'plain', config: {} },
  { name: 'noflex', config: { flex: { enabled: false } } },
  { name: 'proonly', config: { flex: { allowed_plans: ['pro'] } } },
  {
    name: 'reserve',
    config: { queue: { max_concurrent: 2, max_wait_ms: 8000 }, flex: { reserved_seats: 1 } },
  },
  {
    name: 'order',
    config: { queue: { max_concurrent: 1, max_wait_ms: 8000 }, flex: { reserved_seats: 0 } },
  },
  {
    name: 'limits',
    config: { default_limits: { requests_per_minute: 12, request_burst: 1 } },
  },
  {
    name: 'saturated',
    config: {
      queue: { max_concurrent: 1, max_wait_ms: 300, poll_interval_ms: 100 },
      flex: { max_wait_ms: 600, reserved_seats: 0 },
    },
  },
]);

const GLOBEX = 'globex-key'; // plan free
const ACME = 'acme-key'; // plan pro
const FLEX_BODY = chatBody('hello', { service_tier: 'flex' });
const LOW: Array<[string, string]> = [['X-Request-Priority', 'low']];

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

test.serial('a freed seat goes to urgent work first, the same tenant’s included', async (t) => {
  t.is((await door().call('order', GLOBEX)).res.status, 200); // warm: scripts, tokenizer
  door().upstream.configure({ latencyMs: 900 });
  t.teardown(() => door().upstream.configure({ latencyMs: 0 }));
  const first = door().call('order', GLOBEX);
  await sleep(300);
  const flex = door().call('order', GLOBEX, { body: FLEX_BODY });
  await sleep(300);
  const urgent = door().call('order', GLOBEX);
  const [f, u, a] = await Promise.all([flex, urgent, first]);
  t.deepEqual(
    [a, u, f].map((c) => c.res.status),
    [200, 200, 200],
  );
  t.is(f.res.headers['x-service-class'], 'flex');
  t.is(u.res.headers['x-service-class'], 'urgent');
  // The urgent request came after the flex one, and reached the upstream before it.
  t.truthy(u.upstream && f.upstream);
  t.true(
    (u.upstream?.at ?? Infinity) < (f.upstream?.at ?? 0),
    `urgent overtook flex: first ${a.upstream?.at}, urgent ${u.upstream?.at}, flex ${f.upstream?.at}`,
  );
});

test.serial('flex work leaves the reserved seat to urgent arrivals', async (t) => {
  door().upstream.configure({ latencyMs: 600 });
  t.teardown(() => door().upstream.configure({ latencyMs: 0 }));
  // Two flex requests: one runs on the idle seat, the other waits (the second seat is reserved).
  const flex = [
    door().call('reserve', GLOBEX, { body: FLEX_BODY }),
    door().call('reserve', GLOBEX, { body: FLEX_BODY }),
  ];
  await sleep(200);
  const urgent = await door().call('reserve', ACME);
  t.is(urgent.res.status, 200);
  t.is(urgent.res.headers['x-service-class'], 'urgent');
  t.is(urgent.res.headers['x-queue-wait-ms'], '0', 'the reserved seat was free');
  const done = await Promise.all(flex);
  t.deepEqual(
    done.map((c) => c.res.status),
    [200, 200],
  );
  const waits = done.map((c) => Number(c.res.headers['x-queue-wait-ms'])).sort((x, y) => x - y);
  t.is(waits[0], 0);
  t.true((waits[1] ?? 0) > 0, 'the second flex request waited for an idle seat');
});

test.serial(
  'flex past the platform’s capacity: waits its longer maximum, then 503 saying the class',
  async (t) => {
    door().upstream.configure({ latencyMs: 1800 });
    t.teardown(() => door().upstream.configure({ latencyMs: 0 }));
    const holder = door().call('saturated', ACME);
    await sleep(150);
    const [urgent, flex] = await Promise.all([
      door().call('saturated', GLOBEX),
      door().call('saturated', GLOBEX, { body: FLEX_BODY }),
    ]);
    t.is(urgent.res.status, 503);
    t.is(flex.res.status, 503);
    t.like(apiError(flex.res), { type: 'service_unavailable', code: 'upstream_saturated' });
    t.is(flex.res.headers['x-service-class'], 'flex');
    t.is(urgent.res.headers['x-service-class'], 'urgent');
    t.truthy(flex.res.headers['retry-after']);
    t.is(flex.upstream, undefined);
    t.is((await holder).res.status, 200);
  },
);

test('an unmarked request is urgent and says so', async (t) => {
  const { res, upstream } = await door().call('plain', GLOBEX);
  t.is(res.status, 200);
  t.is(res.headers['x-service-class'], 'urgent');
  t.truthy(upstream);
});

test('service_tier "flex" in the body: served as flex, the body reaches the upstream unchanged', async (t) => {
  const { res, upstream } = await door().call('plain', GLOBEX, { body: FLEX_BODY });
  t.is(res.status, 200);
  t.is(res.headers['x-service-class'], 'flex');
  t.like(upstream?.json, { service_tier: 'flex' });
});

test('the configured header marks flex work, case-insensitively; other values are ignored', async (t) => {
  for (const value of ['low', 'LOW', ' Low ']) {
    const { res } = await door().call('plain', GLOBEX, {
      headers: [['X-Request-Priority', value]],
    });
    t.is(res.headers['x-service-class'], 'flex', value);
  }
  for (const value of ['high', 'urgent', '0', '']) {
    const { res } = await door().call('plain', GLOBEX, {
      headers: [['X-Request-Priority', value]],
    });
    t.is(res.headers['x-service-class'], 'urgent', value);
  }
});

test('service_tier values the gateway does not grant are refused before the upstream', async (t) => {
  for (const tier of ['priority', 'scale', 'FLEX', 7, '']) {
    const { res, upstream } = await door().call('plain', GLOBEX, {
      body: chatBody('hi', { service_tier: tier }),
    });
    t.is(res.status, 400, String(tier));
    t.like(apiError(res), {
      type: 'invalid_request_error',
      code: 'unsupported_service_tier',
      param: 'service_tier',
    });
    t.is(upstream, undefined);
  }
  for (const tier of ['auto', 'default']) {
    const { res, upstream } = await door().call('plain', GLOBEX, {
      body: chatBody('hi', { service_tier: tier }),
    });
    t.is(res.status, 200);
    t.is(res.headers['x-service-class'], 'urgent');
    t.like(upstream?.json, { service_tier: tier });
  }
});

test('flex turned off: every request is urgent, and no class header is sent', async (t) => {
  const { res } = await door().call('noflex', GLOBEX, { body: FLEX_BODY, headers: LOW });
  t.is(res.status, 200);
  t.is(res.headers['x-service-class'], undefined);
});

test('only the allowed plans may mark flex work', async (t) => {
  const free = await door().call('proonly', GLOBEX, { headers: LOW });
  t.is(free.res.headers['x-service-class'], 'urgent');
  const pro = await door().call('proonly', ACME, { headers: LOW });
  t.is(pro.res.headers['x-service-class'], 'flex');
});

test('flex near its tenant’s requests-per-minute limit waits for it instead of a 429', async (t) => {
  t.is((await door().call('limits', 'initech-key')).res.status, 200);
  const urgent = await door().call('limits', 'initech-key');
  t.is(urgent.res.status, 429);
  t.is(urgent.res.headers['x-service-class'], 'urgent');
  const flex = await door().call('limits', 'initech-key', { body: FLEX_BODY });
  t.is(flex.res.status, 200);
  t.is(flex.res.headers['x-service-class'], 'flex');
  t.true(Number(flex.res.headers['x-queue-wait-ms']) > 0, 'it waited for a request to refill');
});
