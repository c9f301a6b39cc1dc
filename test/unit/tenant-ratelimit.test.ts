/**
 * tenant-ratelimit, the pure parts: schema rules Kong enforces, limit resolution, config
 * checks naming the field, the IETF headers, and the per-node limiter used when Redis is down.
 */
import test from 'ava';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { parse } from 'yaml';
import { readConfig } from '../../lib/schema/config';
import type { KongField, KongSchemaFields } from '../../lib/schema/fields';
import type { TenantContext } from '../../lib/tenant/context';
import { parseTenantId } from '../../lib/tenant/tenant-id';
import { GrantListener } from '../../plugins/tenant-ratelimit/grant-listener';
import { rateLimitHeaders } from '../../plugins/tenant-ratelimit/headers';
import { resolveLimits } from '../../plugins/tenant-ratelimit/limits';
import { LocalNodeLimiter } from '../../plugins/tenant-ratelimit/local-limiter';
import { nextLookMs } from '../../plugins/tenant-ratelimit/pacing';
import { releasePlan, roundTrips } from '../../plugins/tenant-ratelimit/release-plan';
import { checkConfig } from '../../plugins/tenant-ratelimit/config';
import { Schema } from '../../plugins/tenant-ratelimit/schema';
import { tenantContextOf } from '../helpers/tenant-context';

const config = (raw: Record<string, unknown> = {}) => readConfig(Schema, raw);

const ctx = (tenantId: string, plan: string, weight = 1): TenantContext =>
  tenantContextOf(tenantId, plan, weight);

function descriptions(fields: KongSchemaFields, prefix = ''): Array<[string, string]> {
  const out: Array<[string, string]> = [];
  const visit = (def: KongField, p: string) => {
    out.push([p, def.description ?? '']);
    if (def.fields) out.push(...descriptions(def.fields, p));
    if (def.keys) visit(def.keys, `${p}.<key>`);
    if (def.values) visit(def.values, `${p}.<value>`);
    if (def.elements) visit(def.elements, `${p}[]`);
  };
  for (const entry of fields)
    for (const [n, def] of Object.entries(entry)) visit(def, prefix ? `${prefix}.${n}` : n);
  return out;
}

test("every description fits Kong's metaschema (10 to 500 characters)", (t) => {
  for (const [p, d] of descriptions(Schema)) {
    t.true(d.length >= 10 && d.length <= 500, `${p}: ${d.length} characters`);
  }
});

test('limits: the plan, the default for unknown plans, per-tenant overrides, bursts default to a minute', (t) => {
  const c = config({
    default_limits: { requests_per_minute: 10 },
    plans: { pro: { requests_per_minute: 600, tokens_per_minute: 1000, token_burst: 200 } },
    tenants: { acme: { request_burst: 50, max_concurrent: 3 } },
  });
  t.deepEqual(resolveLimits(c, ctx('globex', 'pro')), {
    requestsPerMinute: 600,
    requestBurst: 600,
    tokensPerMinute: 1000,
    tokenBurst: 200,
    maxConcurrent: 0,
  });
  t.like(resolveLimits(c, ctx('acme', 'pro')), { requestBurst: 50, maxConcurrent: 3 });
  t.like(resolveLimits(c, ctx('initech', 'gold')), { requestsPerMinute: 10, tokensPerMinute: 0 });
  // A plan named like an Object.prototype member is just an unknown plan.
  t.like(resolveLimits(c, ctx('initech', 'constructor')), { requestsPerMinute: 10 });
});

test('config errors name the field', (t) => {
  const bad: Array<[Record<string, unknown>, RegExp]> = [
    [{ plans: { free: { request_burst: 5 } } }, /plans\.free\.request_burst/],
    [{ tenants: { acme: { tokens_per_minute: 0, token_burst: 5 } } }, /tenants\.acme\.token_burst/],
    [{ queue: { token_burst: 10 } }, /queue\.token_burst/],
    [
      { queue: { max_concurrent: 2, max_wait_ms: 50, poll_interval_ms: 100 } },
      /queue\.poll_interval_ms/,
    ],
    [{ queue: { local_max_concurrent: 2 } }, /queue\.local_max_concurrent/],
    [{ queue: { max_wait_ms: 20000 }, flex: { max_wait_ms: 10000 } }, /flex\.max_wait_ms/],
  ];
  for (const [raw, message] of bad) t.throws(() => checkConfig(config(raw)), { message });
  t.notThrows(() => checkConfig(config({})));
});

test("kong.yml's tenant-ratelimit entry is a valid config", (t) => {
  const doc = parse(readFileSync(path.join(__dirname, '..', '..', 'kong.yml'), 'utf8')) as {
    plugins: Array<{ name: string; config: Record<string, unknown> }>;
  };
  const names = doc.plugins.map((p) => p.name);
  t.is(names.indexOf('tenant-ratelimit'), names.indexOf('tenant-auth') + 1);
  const entry = doc.plugins.find((p) => p.name === 'tenant-ratelimit');
  t.notThrows(() => checkConfig(config(entry?.config)));
});

test('IETF headers: one list item per enabled limit; none when no limit is on', (t) => {
  const limits = {
    requestsPerMinute: 600,
    requestBurst: 100,
    tokensPerMinute: 1000,
    tokenBurst: 1000,
    maxConcurrent: 4,
  };
  t.deepEqual(
    rateLimitHeaders(limits, {
      requestsLeft: 99,
      tokensLeft: -40,
      requestsResetMs: 100,
      tokensResetMs: 62_400,
    }),
    {
      'RateLimit-Policy': '"rpm";q=600;w=60, "tpm";q=1000;w=60',
      RateLimit: '"rpm";r=99;t=1, "tpm";r=0;t=63',
    },
  );
  t.deepEqual(
    rateLimitHeaders(
      { ...limits, requestsPerMinute: 0, tokensPerMinute: 0 },
      { requestsLeft: null, tokensLeft: null, requestsResetMs: 0, tokensResetMs: 0 },
    ),
    {},
  );
});

test('per-node limiter: the same all-or-nothing decision, leases that expire, a bounded memory', (t) => {
  let now = 1_000_000;
  const local = new LocalNodeLimiter(2, () => now);
  const acme = parseTenantId('acme');
  const limits = {
    requestsPerMinute: 60,
    requestBurst: 5,
    tokensPerMinute: 600,
    tokenBurst: 100,
    maxConcurrent: 2,
  };
  t.like(local.admit(acme, limits, 80, 'l1', 1000), { allowed: true, tokensLeft: 20, inFlight: 1 });
  t.like(local.admit(acme, limits, 50, 'l2', 1000), {
    allowed: false,
    refusedBy: 'tokens',
    requestsLeft: 4,
    inFlight: 1,
  });
  t.like(local.admit(acme, limits, 10, 'l3', 1000), { allowed: true, inFlight: 2 });
  t.like(local.admit(acme, limits, 1, 'l4', 1000), { allowed: false, refusedBy: 'concurrency' });
  local.settle(acme, limits, 'l1', -70);
  t.like(local.admit(acme, limits, 1, 'l5', 1000), { allowed: true, tokensLeft: 79 });
  now += 1001; // every lease expired by itself
  t.like(local.admit(acme, limits, 1, 'l6', 1000), { allowed: true, inFlight: 1 });

  for (const id of ['b', 'c', 'd']) local.admit(parseTenantId(id), limits, 1, `x-${id}`, 1000);
  t.is(local.trackedTenants, 2);

  t.true(local.takeSeat('s1', 1, 500));
  t.false(local.takeSeat('s2', 1, 500));
  local.releaseSeat('s1');
  t.true(local.takeSeat('s3', 1, 500));
  now += 501;
  t.true(local.takeSeat('s4', 1, 500), 'a seat expires by itself');
});

test('grant listener: a grant that arrives between two waits is not lost', async (t) => {
  const listener = new GrantListener(
    {} as unknown as ConstructorParameters<typeof GrantListener>[0],
    'channel',
    () => undefined,
  );
  // Announced before its waiter waits (its poll in flight): the next wait returns at once.
  listener.wake('early');
  t.true(await listener.wait('early', 10_000));
  // Only once: a later wait for the same ticket times out.
  t.false(await listener.wait('early', 10));
  // A waiter that is waiting is woken; one that is not announced times out.
  const woken = listener.wait('waiting', 10_000);
  listener.wake('waiting');
  t.true(await woken);
  t.false(await listener.wait('other', 10));
  t.is(listener.size, 0);
});

test('a waiter on upstream tokens looks again when its turn comes, not the whole queue at every hint', (t) => {
  // 40 requests of 25 tokens per second: one request's tokens every 25 ms.
  const quota = { tokensPerMinute: 40 * 60 * 25, tokenBurst: 50 };
  const top = () => 0; // no jitter: the full interval
  // The head: exactly when its tokens are there (its own poll admits it).
  t.is(nextLookMs({ retryHintMs: 7, position: 0 }, 25, quota, 500, 10_000, top), 7);
  // Three places behind it: three requests' tokens later.
  t.is(nextLookMs({ retryHintMs: 7, position: 3 }, 25, quota, 500, 10_000, top), 7 + 3 * 25);
  // Far behind: the poll interval stays the longest sleep (the heartbeat depends on it)...
  t.is(nextLookMs({ retryHintMs: 7, position: 80 }, 25, quota, 500, 10_000, top), 500);
  // ...and the deadline the shortest.
  t.is(nextLookMs({ retryHintMs: 7, position: 3 }, 25, quota, 500, 40, top), 40);
  // A width above the burst is charged the burst.
  t.is(nextLookMs({ retryHintMs: 1, position: 1 }, 1000, quota, 500, 10_000, top), 1 + 50);
  // Waiting on seats (no hint): a release announces the grant; the poll is the safety net.
  t.is(nextLookMs({ retryHintMs: 0, position: 2 }, 25, quota, 500, 10_000, top), 500);
  t.is(
    nextLookMs(
      { retryHintMs: 0, position: 2 },
      25,
      { tokensPerMinute: 0, tokenBurst: 0 },
      300,
      10_000,
      top,
    ),
    300,
  );
});

test('waiters held to the poll interval look again spread over its last quarter, not in one wave', (t) => {
  const quota = { tokensPerMinute: 40 * 60 * 25, tokenBurst: 50 };
  // The jitter only ever shortens a full sleep, by at most a quarter: the heartbeat holds.
  t.is(
    nextLookMs({ retryHintMs: 7, position: 80 }, 25, quota, 500, 10_000, () => 0.999),
    375,
  );
  t.is(
    nextLookMs({ retryHintMs: 0, position: 2 }, 25, quota, 400, 10_000, () => 0.5),
    350,
  );
  // A paced sleep shorter than the interval is the waiter's turn: left as it is.
  t.is(
    nextLookMs({ retryHintMs: 7, position: 3 }, 25, quota, 500, 10_000, () => 0.999),
    82,
  );
  // 80 waiters that entered together (a flood's first requests) with the real random source:
  // their next looks spread over the interval's last quarter instead of one instant.
  const looks = Array.from({ length: 80 }, () =>
    nextLookMs({ retryHintMs: 7, position: 80 }, 25, quota, 500, 10_000),
  );
  t.true(looks.every((ms) => ms >= 375 && ms <= 500));
  t.true(new Set(looks).size >= 30, `only ${new Set(looks).size} distinct looks among 80`);
  t.true(Math.max(...looks) - Math.min(...looks) >= 60);
});

test('log plan: the unqueued path releases seat and lease in one round trip', (t) => {
  const base = { seat: 'cluster', lease: 'cluster', busy: false } as const;
  for (const tenantTokens of [false, true]) {
    for (const upstreamTokens of [false, true]) {
      const plan = releasePlan({ ...base, tenantTokens, upstreamTokens });
      t.is(roundTrips(plan), 1, `tenant tokens ${tenantTokens}, upstream tokens ${upstreamTokens}`);
      t.true(
        (plan.early.seat && plan.early.lease) || (plan.late.seat && plan.late.lease),
        'the two calls go together',
      );
    }
  }
  // Nothing needs the usage: both go before it is read.
  t.deepEqual(releasePlan({ ...base, tenantTokens: false, upstreamTokens: false }).early, {
    seat: true,
    lease: true,
  });
});

test('log plan: a busy queue gets its seat back before the usage is read', (t) => {
  const busy = { seat: 'cluster', lease: 'cluster', upstreamTokens: false } as const;
  // The tenant's tokens bucket needs the usage: the seat goes first, the settle after.
  const plan = releasePlan({ ...busy, busy: true, tenantTokens: true });
  t.deepEqual(plan, { early: { seat: true, lease: false }, late: { seat: false, lease: true } });
  t.is(roundTrips(plan), 2);
  // A record of an earlier version (no `busy`) is treated as busy.
  t.deepEqual(releasePlan({ ...busy, busy: undefined, tenantTokens: true }), plan);
  // An upstream tokens capacity needs the usage for the seat too: one batch, after it.
  t.deepEqual(releasePlan({ ...busy, busy: true, tenantTokens: true, upstreamTokens: true }), {
    early: { seat: false, lease: false },
    late: { seat: true, lease: true },
  });
});

test('log plan: per-node seats and leases cost no round trip', (t) => {
  const local = releasePlan({
    seat: 'local',
    lease: 'local',
    busy: true,
    tenantTokens: true,
    upstreamTokens: true,
  });
  t.is(roundTrips(local), 0);
  // The lease in Redis, the seat per node (Redis failed during the wait): one for the lease.
  t.is(
    roundTrips(
      releasePlan({
        seat: 'local',
        lease: 'cluster',
        busy: true,
        tenantTokens: true,
        upstreamTokens: false,
      }),
    ),
    1,
  );
  t.is(
    roundTrips(
      releasePlan({
        seat: null,
        lease: 'cluster',
        busy: false,
        tenantTokens: false,
        upstreamTokens: false,
      }),
    ),
    1,
  );
});
