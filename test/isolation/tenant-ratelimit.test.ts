/**
 * Isolation suite, tenant-ratelimit: tenant B (`globex`) tries to use up, reach or jump
 * ahead of tenant A's (`acme`) limits and queue place. Each case asserts what A still gets.
 */
import test from 'ava';
import { randomBytes } from 'node:crypto';
import { createClient } from 'redis';
import { createKeyspace } from '../../lib/redis/keys';
import { apiError, eventually } from '../helpers/frontdoor';
import { REDIS_URL, sharedRatelimitDoor } from '../helpers/ratelimit-door';

const REFUSED_NS = `iso-${randomBytes(3).toString('hex')}-refused`;

const door = sharedRatelimitDoor(test, [
  { name: 'bucket', config: { default_limits: { requests_per_minute: 1, request_burst: 3 } } },
  { name: 'tokens', config: { default_limits: { tokens_per_minute: 4000 } } },
  { name: 'conc', config: { default_limits: { max_concurrent: 2 } } },
  { name: 'crafted', config: { default_limits: { requests_per_minute: 1, request_burst: 2 } } },
  { name: 'hints', config: { default_limits: { requests_per_minute: 1, request_burst: 2 } } },
  { name: 'memo', config: { default_limits: { requests_per_minute: 1, request_burst: 2 } } },
  {
    name: 'queue',
    config: {
      queue: { max_concurrent: 1, max_wait_ms: 15000 },
      default_limits: { max_concurrent: 50 },
    },
  },
  {
    name: 'flexflood',
    config: { queue: { max_concurrent: 2, max_wait_ms: 15000 }, flex: { reserved_seats: 1 } },
  },
  { name: 'flexpro', config: { flex: { allowed_plans: ['pro'] } } },
  {
    name: 'refusedq',
    config: {
      redis: { key_namespace: REFUSED_NS },
      queue: { max_concurrent: 1, max_wait_ms: 15000 },
      plans: { free: { requests_per_minute: 1, request_burst: 1 } },
    },
  },
  {
    name: 'flexpromote',
    config: { queue: { max_concurrent: 1, max_wait_ms: 15000 }, flex: { reserved_seats: 0 } },
  },
]);

const A = 'acme-key';
const B = 'globex-key';

const remaining = (h: unknown, policy: string): number =>
  Number(new RegExp(`"${policy}";r=(-?\\d+)`).exec(String(h))?.[1]);

test.serial(
  "B's flood in the shared queue does not push A behind all of B's requests",
  async (t) => {
    door().upstream.configure({ latencyMs: 150 });
    t.teardown(() => door().upstream.configure({ latencyMs: 0 }));
    const flood = Array.from({ length: 8 }, () => door().call('queue', B));
    await new Promise((r) => setTimeout(r, 100));
    // A client-side "priority" header must play no part in this either way.
    const a = await door().call('queue', A, { headers: [['x-priority', 'low']] });
    const floodRes = await Promise.all(flood);
    t.is(a.res.status, 200);
    t.true(floodRes.every((r) => r.res.status === 200));
    const aWait = Number(a.res.headers['x-queue-wait-ms']);
    const bWaits = floodRes.map((r) => Number(r.res.headers['x-queue-wait-ms']));
    // Admitted in fair order, A is served before most of B's backlog, not after all of it.
    const servedAfterA = bWaits.filter((w) => w > aWait + 100).length;
    t.true(servedAfterA >= 4, `A waited ${aWait} ms; B waited ${bWaits.join(', ')}`);
  },
);

test.serial(
  "B's requests refused by its own limits take no place in the shared queue",
  async (t) => {
    const redis = createClient({ url: REDIS_URL });
    await redis.connect();
    t.teardown(() => redis.close());
    const q = createKeyspace(REFUSED_NS).fairQueue('llm');
    door().upstream.configure({ latencyMs: 1500 });
    t.teardown(() => door().upstream.configure({ latencyMs: 0 }));
    // A (pro, no per-minute limit here) holds the one seat; B's one allowed request waits.
    const holder = door().call('refusedq', A);
    await eventually(async () => ((await redis.zCard(q.seats)) === 1 ? true : undefined));
    const waiting = door().call('refusedq', B);
    await eventually(async () => ((await redis.zCard(q.waiting)) === 1 ? true : undefined));
    const tagB = await redis.zScore(q.tags, 'globex');
    // B floods past its requests per minute: every request went to the queue with its limits
    // check, and every one is refused and leaves it again.
    const refused = await Promise.all(Array.from({ length: 6 }, () => door().call('refusedq', B)));
    for (const r of refused) {
      t.is(r.res.status, 429);
      t.is(apiError(r.res).code, 'tenant_requests_per_minute_exceeded');
    }
    t.is(await redis.zCard(q.waiting), 1, 'only B’s admitted request waits');
    t.is(await redis.zCard(q.seats), 1, 'the seat is still A’s');
    t.is(await redis.zScore(q.tags, 'globex'), tagB, 'B’s refusals did not move its place');
    t.is((await holder).res.status, 200);
    t.is((await waiting).res.status, 200);
  },
);

test.serial("B's flex flood cannot delay A's urgent work", async (t) => {
  door().upstream.configure({ latencyMs: 300 });
  t.teardown(() => door().upstream.configure({ latencyMs: 0 }));
  const flex = {
    service_tier: 'flex',
    model: 'gpt-4o-mini',
    messages: [{ role: 'user', content: 'x' }],
  };
  const flood = Array.from({ length: 8 }, () => door().call('flexflood', B, { body: flex }));
  await new Promise((r) => setTimeout(r, 150));
  // B's flex work holds at most the unreserved seat: A's urgent request finds one at once,
  // every time, while B's backlog is still waiting.
  for (let i = 0; i < 3; i++) {
    const a = await door().call('flexflood', A);
    t.is(a.res.status, 200);
    t.is(a.res.headers['x-service-class'], 'urgent');
    t.is(a.res.headers['x-queue-wait-ms'], '0');
  }
  const floodRes = await Promise.all(flood);
  t.true(
    floodRes.every((r) => r.res.status === 200 && r.res.headers['x-service-class'] === 'flex'),
  );
});

test.serial('a client cannot promote its own flex work', async (t) => {
  door().upstream.configure({ latencyMs: 300 });
  t.teardown(() => door().upstream.configure({ latencyMs: 0 }));
  const flex = {
    service_tier: 'flex',
    model: 'gpt-4o-mini',
    messages: [{ role: 'user', content: 'x' }],
  };
  const holder = door().call('flexpromote', A);
  await new Promise((r) => setTimeout(r, 100));
  // B's flex request asks loudly to be urgent; A's urgent request arrives after it.
  const promoted = door().call('flexpromote', B, {
    body: flex,
    headers: [
      ['x-request-priority', 'high'],
      ['x-priority', 'urgent'],
      ['priority', 'u=0'],
      ['x-service-class', 'urgent'],
    ],
  });
  await new Promise((r) => setTimeout(r, 100));
  const urgent = door().call('flexpromote', A);
  const [p, u] = await Promise.all([promoted, urgent, holder]);
  t.is(p.res.headers['x-service-class'], 'flex');
  t.true((u.upstream?.at ?? Infinity) < (p.upstream?.at ?? 0), "A's urgent work went first");
  // Nor through the body: a tier above the default is refused, not served.
  const priority = await door().call('flexpromote', B, {
    body: { ...flex, service_tier: 'priority' },
  });
  t.is(priority.res.status, 400);
  t.is(priority.upstream, undefined);
});

test.serial("B holding its concurrency cap does not take A's", async (t) => {
  door().upstream.configure({ latencyMs: 800 });
  t.teardown(() => door().upstream.configure({ latencyMs: 0 }));
  const b = Promise.all([door().call('conc', B), door().call('conc', B), door().call('conc', B)]);
  await new Promise((r) => setTimeout(r, 300));
  const a = await Promise.all([door().call('conc', A), door().call('conc', A)]);
  const bRes = await b;
  t.deepEqual(bRes.map((r) => r.res.status).sort(), [200, 200, 429]);
  t.is(apiError(bRes.find((r) => r.res.status === 429)!.res).code, 'tenant_concurrency_exceeded');
  t.deepEqual(
    a.map((r) => r.res.status),
    [200, 200],
  );
});

test("B exhausting its request bucket leaves A's bucket full", async (t) => {
  for (let i = 0; i < 6; i++) await door().call('bucket', B);
  t.is((await door().call('bucket', B)).res.status, 429);
  const a = await door().call('bucket', A);
  t.is(a.res.status, 200);
  t.is(remaining(a.res.headers.ratelimit, 'rpm'), 2, "A's burst of 3 is intact");
});

test('B refused from memory (no Redis asked) refuses only B: A is asked of Redis, in its own bucket', async (t) => {
  const statuses: number[] = [];
  // B's third request is refused by Redis, the next ones from memory (refusal-memo.ts),
  // while naming A every way a client can.
  const naming: Array<[string, string]> = [
    ['x-tenant-id', 'acme'],
    ['x-consumer-username', 'acme'],
  ];
  for (let i = 0; i < 5; i++) {
    statuses.push((await door().call('memo', B, { headers: naming })).res.status);
  }
  t.deepEqual(statuses, [200, 200, 429, 429, 429]);
  // A, on the same route with the same plan, has its whole burst of 2 and is refused only
  // when its own bucket is empty: B's refusal was never A's.
  const a1 = await door().call('memo', A);
  t.is(a1.res.status, 200);
  t.is(remaining(a1.res.headers.ratelimit, 'rpm'), 1);
  t.truthy(a1.upstream);
  const a2 = await door().call('memo', A);
  t.is(a2.res.status, 200);
  t.is(remaining(a2.res.headers.ratelimit, 'rpm'), 0);
  const a3 = await door().call('memo', A);
  t.is(a3.res.status, 429);
  t.is(apiError(a3.res).code, 'tenant_requests_per_minute_exceeded');
  t.is(a3.upstream, undefined);
});

test("B exhausting its tokens leaves A's tokens untouched", async (t) => {
  const huge = {
    model: 'gpt-4o-mini',
    messages: [{ role: 'user', content: 'x' }],
    max_tokens: 3900,
  };
  t.is((await door().call('tokens', B, { body: huge })).res.status, 200);
  t.is((await door().call('tokens', B, { body: huge })).res.status, 429);
  const a = await door().call('tokens', A, { body: huge });
  t.is(a.res.status, 200);
});

test("crafted tenant ids cannot reach A's keys: refused at the edge or kept in their own bucket", async (t) => {
  // Ids that would forge a hash tag or a key separator never become tenants (tenant-auth 403)
  for (const key of ['hashtag-key', 'colon-key']) {
    for (let i = 0; i < 3; i++) {
      const r = await door().call('crafted', key);
      t.is(r.res.status, 403);
      t.is(r.upstream, undefined);
    }
  }
  // A valid id that contains A's id and a limit name is a different tenant with its own bucket.
  for (let i = 0; i < 3; i++) await door().call('crafted', 'lookalike-key');
  t.is((await door().call('crafted', 'lookalike-key')).res.status, 429);
  const a = await door().call('crafted', A);
  t.is(a.res.status, 200);
  t.is(remaining(a.res.headers.ratelimit, 'rpm'), 1, "A's burst of 2 is intact");
});

test('client headers that look like queue, priority or limit hints are ignored', async (t) => {
  const hints: Array<[string, string]> = [
    ['x-priority', 'urgent'],
    ['priority', 'u=0, i'],
    ['x-queue-priority', '0'],
    ['x-tenant-weight', '1000'],
    ['x-ratelimit-bypass', 'true'],
    ['x-ratelimit-scope', 'local-node'],
    ['ratelimit-policy', '"rpm";q=1000000;w=60'],
    ['ratelimit', '"rpm";r=1000000;t=0'],
    ['x-queue-wait-ms', '0'],
    ['x-tenant-id', 'acme'],
    ['x-tenant-plan', 'pro'],
  ];
  const statuses: number[] = [];
  for (let i = 0; i < 4; i++) {
    const r = await door().call('hints', B, { headers: hints });
    statuses.push(r.res.status);
    if (r.res.status === 200) t.is(r.res.headers['x-ratelimit-scope'], undefined);
  }
  // The same burst of 2 as any other free tenant, however loudly it asks.
  t.deepEqual(statuses, [200, 200, 429, 429]);
  // And A, whose id B named in a header, was not charged.
  const a = await door().call('hints', A);
  t.is(remaining(a.res.headers.ratelimit, 'rpm'), 1);
});

test('flex hints from a tenant whose plan may not mark flex work are ignored', async (t) => {
  // globex (free) is not allowed: its low-priority header and flex tier are served urgent.
  const b = await door().call('flexpro', B, { headers: [['x-request-priority', 'low']] });
  t.is(b.res.status, 200);
  t.is(b.res.headers['x-service-class'], 'urgent');
  const a = await door().call('flexpro', A, { headers: [['x-request-priority', 'low']] });
  t.is(a.res.headers['x-service-class'], 'flex');
});
