/**
 * scripts/tenant-admit-3.lua and tenant-settle-2.lua against the real Redis at REDIS_URL:
 * all-or-nothing admission over three limits, lease expiry, usage correction, and no
 * crossing between tenants. Each test works in its own random key namespace.
 */
import test, { type ExecutionContext } from 'ava';
import { closeAllRedis, type RedisClient } from '../../lib/redis/client';
import type { Keyspace } from '../../lib/redis/keys';
import {
  admitTenant,
  settleTenant,
  type TenantLimits,
} from '../../plugins/tenant-ratelimit/tenant-limits';
import { parseTenantId } from '../../lib/tenant/tenant-id';
import { connectRedis, deleteKeyspace, randomKeyspace } from './services';

const acme = parseTenantId('acme');
const globex = parseTenantId('globex');
const LEASE_MS = 60_000;

test.after.always(closeAllRedis);

async function setup(t: ExecutionContext): Promise<{ redis: RedisClient; keys: Keyspace }> {
  const redis = await connectRedis();
  const keys = randomKeyspace();
  t.teardown(() => deleteKeyspace(redis, keys));
  return { redis, keys };
}

/** Slow refills: nothing comes back during a test. */
const limits = (over: Partial<TenantLimits> = {}): TenantLimits => ({
  requestsPerMinute: 0.001,
  requestBurst: 3,
  tokensPerMinute: 0.001,
  tokenBurst: 1000,
  maxConcurrent: 0,
  ...over,
});

let n = 0;
const lease = () => `lease-${++n}`;

test('requests burst: admitted up to the burst, then refused with a retry hint', async (t) => {
  const { redis, keys } = await setup(t);
  const l = limits({ tokensPerMinute: 0 });
  const d = [];
  for (let i = 0; i < 4; i++)
    d.push(await admitTenant(redis, keys, acme, l, 10, lease(), LEASE_MS));
  t.deepEqual(
    d.map((x) => [x.allowed, x.requestsLeft]),
    [
      [true, 2],
      [true, 1],
      [true, 0],
      [false, 0],
    ],
  );
  t.is(d[3]?.refusedBy, 'requests');
  t.true((d[3]?.retryAfterMs ?? 0) > 0);
  t.is(d[3]?.tokensLeft, null, 'tokens limit off');
});

test('a refusal by one limit takes nothing from the others', async (t) => {
  const { redis, keys } = await setup(t);
  const l = limits({ requestBurst: 10, tokenBurst: 100, maxConcurrent: 5 });
  t.like(await admitTenant(redis, keys, acme, l, 80, lease(), LEASE_MS), {
    allowed: true,
    tokensLeft: 20,
    requestsLeft: 9,
    inFlight: 1,
  });
  const refused = await admitTenant(redis, keys, acme, l, 50, lease(), LEASE_MS);
  t.like(refused, {
    allowed: false,
    refusedBy: 'tokens',
    tokensLeft: 20,
    requestsLeft: 9,
    inFlight: 1,
  });
  t.like(await admitTenant(redis, keys, acme, l, 20, lease(), LEASE_MS), {
    allowed: true,
    tokensLeft: 0,
    requestsLeft: 8,
    inFlight: 2,
  });
});

test('a cost above the tokens burst is charged the whole burst, not refused forever', async (t) => {
  const { redis, keys } = await setup(t);
  const l = limits({ tokenBurst: 100 });
  t.like(await admitTenant(redis, keys, acme, l, 1_000_000, lease(), LEASE_MS), {
    allowed: true,
    tokensLeft: 0,
  });
});

test('concurrency: leases cap in-flight requests; settle frees one; expiry frees the rest', async (t) => {
  const { redis, keys } = await setup(t);
  const l = limits({ requestBurst: 100, tokensPerMinute: 0, maxConcurrent: 2 });
  const a = lease();
  t.true((await admitTenant(redis, keys, acme, l, 1, a, LEASE_MS)).allowed);
  t.true((await admitTenant(redis, keys, acme, l, 1, lease(), 1500)).allowed);
  const third = await admitTenant(redis, keys, acme, l, 1, lease(), LEASE_MS);
  t.like(third, { allowed: false, refusedBy: 'concurrency', inFlight: 2 });
  t.true(third.retryAfterMs > 0 && third.retryAfterMs <= 1000);

  t.like(await settleTenant(redis, keys, acme, l, a, 0), { leaseRemoved: true });
  t.like(await settleTenant(redis, keys, acme, l, a, 0), { leaseRemoved: false }, 'idempotent');
  t.like(await admitTenant(redis, keys, acme, l, 1, lease(), LEASE_MS), {
    allowed: true,
    inFlight: 2,
  });
  // The 1.5 s lease was never released: it expires by itself.
  await new Promise((r) => setTimeout(r, 1700));
  t.like(await admitTenant(redis, keys, acme, l, 1, lease(), LEASE_MS), {
    allowed: true,
    inFlight: 2,
  });
});

test('settle corrects the token charge: refund when usage was lower, charge when higher', async (t) => {
  const { redis, keys } = await setup(t);
  const l = limits({ requestBurst: 100, tokenBurst: 1000 });
  const a = lease();
  t.like(await admitTenant(redis, keys, acme, l, 600, a, LEASE_MS), { tokensLeft: 400 });
  // Used 100 of the 600 estimated: 500 come back.
  t.like(await settleTenant(redis, keys, acme, l, a, 100 - 600), { tokensLeft: 900 });
  const b = lease();
  t.like(await admitTenant(redis, keys, acme, l, 100, b, LEASE_MS), { tokensLeft: 800 });
  // Used 1500 of the 100 estimated: 1400 more, the bucket goes below zero.
  t.like(await settleTenant(redis, keys, acme, l, b, 1500 - 100), { tokensLeft: -600 });
  const refused = await admitTenant(redis, keys, acme, l, 1, lease(), LEASE_MS);
  t.like(refused, { allowed: false, refusedBy: 'tokens' });
});

test('one tenant exhausting its limits leaves another tenant untouched', async (t) => {
  const { redis, keys } = await setup(t);
  const l = limits({ requestBurst: 2, tokenBurst: 100, maxConcurrent: 2 });
  for (let i = 0; i < 5; i++) await admitTenant(redis, keys, acme, l, 60, lease(), LEASE_MS);
  t.like(await admitTenant(redis, keys, acme, l, 60, lease(), LEASE_MS), { allowed: false });
  t.like(await admitTenant(redis, keys, globex, l, 60, lease(), LEASE_MS), {
    allowed: true,
    requestsLeft: 1,
    tokensLeft: 40,
    inFlight: 1,
  });
});

test('all limits off: every request passes and holds a lease', async (t) => {
  const { redis, keys } = await setup(t);
  const l = limits({ requestsPerMinute: 0, tokensPerMinute: 0, maxConcurrent: 0 });
  const d = await admitTenant(redis, keys, acme, l, 5, lease(), LEASE_MS);
  t.like(d, { allowed: true, requestsLeft: null, tokensLeft: null, inFlight: 1 });
});

test('keys expire by themselves', async (t) => {
  const { redis, keys } = await setup(t);
  const l = limits({ requestsPerMinute: 600, requestBurst: 10, maxConcurrent: 3 });
  await admitTenant(redis, keys, acme, l, 5, lease(), 5000);
  for (const k of [
    keys.rateBucket(acme, 'requests'),
    keys.rateBucket(acme, 'tokens'),
    keys.concurrencyLeases(acme),
  ]) {
    const ttl = await redis.pTTL(k);
    t.true(ttl > 0, `${k} has a ttl (${ttl})`);
  }
});
