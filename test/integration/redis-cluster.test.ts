/**
 * The project's Redis scripts and calls, unchanged, on a real 3-master Redis Cluster
 * (scripts/services/redis-cluster.sh; REDIS_CLUSTER_URL, or started here): tenants whose keys
 * live on three different masters, each with its own limits, budget, ledger and cache; the
 * fair queue in its own slot with its grant announcement; chargeback and token-meter's sweep of
 * expired reservations over every master. The
 * positive control shows the cluster refusing a call whose keys span two slots, so every call
 * here that passes kept to one. Faults (slot migration, failover) are in
 * redis-cluster-faults.test.ts, on a private cluster.
 */
import { randomBytes } from 'node:crypto';
import test, { type ExecutionContext } from 'ava';
import { closeAllRedis, type RedisClusterClient } from '../../lib/redis/client';
import { acquireSeat, grantedTickets, releaseSeat } from '../../lib/redis/fair-queue';
import { hashSlot } from '../../lib/redis/hash-slot';
import type { Keyspace } from '../../lib/redis/keys';
import { runScript } from '../../lib/redis/lua-script';
import { admitTenant, settleTenant } from '../../plugins/tenant-ratelimit/tenant-limits';
import { productScript } from '../fixtures/redis/product-scripts';
import { takeTokens } from '../fixtures/redis/token-bucket';
import { createTenantContext } from '../../lib/tenant/context';
import type { TenantId } from '../../lib/tenant/tenant-id';
import { lookup, purgeTenant, storeEntry } from '../../plugins/tenant-cache/redis';
import { reserveBudget, settleBudget } from '../../plugins/token-meter/budget';
import { chargeback } from '../../plugins/token-meter/chargeback';
import { ExpirySweeper } from '../../plugins/token-meter/expiry';
import { ledgerFields, readLedger } from '../../plugins/token-meter/ledger';
import { periodAt } from '../../plugins/token-meter/period';
import {
  connectCluster,
  masterPortOf,
  nodeAdmin,
  sharedClusterUrl,
  tenantsOnEveryMaster,
} from './redis-cluster-service';
import { deleteKeyspace, randomKeyspace, TEST_COMMAND_TIMEOUT_MS } from './services';
import { expiryBilling } from '../helpers/expiry-billing';

test.after.always(closeAllRedis);

interface Setup {
  readonly redis: RedisClusterClient;
  readonly keys: Keyspace;
  /** One tenant on each master. */
  readonly tenants: readonly TenantId[];
}

let url: Promise<string> | undefined;

async function setup(t: ExecutionContext): Promise<Setup> {
  url ??= sharedClusterUrl();
  const redis = await connectCluster(await url, TEST_COMMAND_TIMEOUT_MS);
  const keys = randomKeyspace();
  t.teardown(() => deleteKeyspace(redis, keys));
  const tenants = tenantsOnEveryMaster(redis, `c${randomBytes(3).toString('hex')}`);
  return { redis, keys, tenants };
}

/** Keys the master on `port` holds in the slot of `key` (CLUSTER COUNTKEYSINSLOT). */
async function keysOnMaster(t: ExecutionContext, port: number, key: string): Promise<number> {
  const admin = await nodeAdmin(t, port);
  return Number(await admin.sendCommand(['CLUSTER', 'COUNTKEYSINSLOT', String(hashSlot(key))]));
}

test('three masters; the slots keys.ts computes are the cluster’s', async (t) => {
  const { redis, keys, tenants } = await setup(t);
  t.is(redis.masters.length, 3);
  t.is(tenants.length, 3);
  const ports = tenants.map((tenant) => masterPortOf(redis, hashSlot(`t:${tenant}`)));
  t.is(new Set(ports).size, 3, 'one tenant per master');
  const admin = await nodeAdmin(t, redis.masters[0]?.port ?? 0);
  for (const tenant of tenants) {
    for (const key of [
      keys.budget(tenant, '2026-12'),
      keys.concurrencyLeases(tenant),
      keys.fairQueue('openai').state,
    ]) {
      t.is(Number(await admin.sendCommand(['CLUSTER', 'KEYSLOT', key])), hashSlot(key), key);
    }
  }
});

test('positive control: a script whose keys span two tenants is refused (CROSSSLOT)', async (t) => {
  const { redis, keys, tenants } = await setup(t);
  const [a, b] = tenants as [TenantId, TenantId];
  const err = await t.throwsAsync(
    runScript(
      redis,
      productScript('tenant-settle-2'),
      [keys.rateBucket(a, 'tokens'), keys.concurrencyLeases(b)],
      ['lease', 0, 0, 0],
    ),
  );
  t.regex(err?.message ?? '', /CROSSSLOT/);
});

test('tenant limits on three masters: each tenant’s admission is its own', async (t) => {
  const { redis, keys, tenants } = await setup(t);
  // Refills of one per minute: nothing comes back while the test runs.
  const limits = {
    requestsPerMinute: 1,
    requestBurst: 3,
    tokensPerMinute: 1,
    tokenBurst: 1000,
    maxConcurrent: 2,
  };
  const [a, b, c] = tenants as [TenantId, TenantId, TenantId];
  // a takes its two leases, then its concurrency cap refuses the third.
  t.like(await admitTenant(redis, keys, a, limits, 100, 'a1', 60_000), { allowed: true });
  t.like(await admitTenant(redis, keys, a, limits, 100, 'a2', 60_000), {
    allowed: true,
    inFlight: 2,
  });
  t.like(await admitTenant(redis, keys, a, limits, 100, 'a3', 60_000), {
    allowed: false,
    refusedBy: 'concurrency',
  });
  // Tenants on the other masters are untouched by a's exhaustion.
  for (const tenant of [b, c]) {
    t.like(await admitTenant(redis, keys, tenant, limits, 100, `${tenant}-1`, 60_000), {
      allowed: true,
      inFlight: 1,
      requestsLeft: 2,
      tokensLeft: 900,
    });
  }
  // Settling one of a's leases refunds its unused tokens and frees a seat.
  t.like(await settleTenant(redis, keys, a, limits, 'a1', -60), {
    leaseRemoved: true,
    tokensLeft: 860,
  });
  t.like(await admitTenant(redis, keys, a, limits, 100, 'a4', 60_000), {
    allowed: true,
    requestsLeft: 0,
  });
  t.like(await admitTenant(redis, keys, a, limits, 100, 'a5', 60_000), {
    allowed: false,
    refusedBy: 'requests',
  });
  // Each tenant's keys are on its own master.
  for (const tenant of tenants) {
    const leases = keys.concurrencyLeases(tenant);
    t.true((await keysOnMaster(t, masterPortOf(redis, hashSlot(leases)), leases)) >= 3);
  }
});

test('token buckets on three masters', async (t) => {
  const { redis, keys, tenants } = await setup(t);
  const limit = { capacity: 5, refillPerSecond: 0.001 };
  for (const [i, tenant] of tenants.entries()) {
    const key = keys.rateBucket(tenant, 'requests');
    for (let n = 0; n <= i; n++) await takeTokens(redis, key, limit);
    t.like(await takeTokens(redis, key, limit, 2), { allowed: true, remaining: 2 - i });
  }
  const last = keys.rateBucket(tenants[2] as TenantId, 'requests');
  t.like(await takeTokens(redis, last, limit, 1), { allowed: false });
});

test('budgets and ledgers on three masters; chargeback reads every master', async (t) => {
  const { redis, keys, tenants } = await setup(t);
  const now = Date.now();
  const period = periodAt('month', now).id;
  const DAY = 86_400_000;
  for (const [i, tenant] of tenants.entries()) {
    const reserved = await reserveBudget(redis, keys, tenant, period, {
      requestId: 'r1',
      ttlMs: 60_000,
      keyTtlMs: DAY,
      caps: { tokens: 1000, cost: null },
      candidates: [
        {
          baseTokens: 100,
          baseCost: 0,
          unitTokens: 0,
          unitCost: 0,
          minUnits: 0,
          maxUnits: 0,
          softRatio: 1,
        },
      ],
      expiry: expiryBilling(1),
    });
    t.like(reserved, { chosen: 0, totals: { reservedTokens: 100, usedTokens: 0 } });
    const settle = () =>
      settleBudget(redis, keys, tenant, period, {
        requestId: 'r1',
        tokens: 10 * (i + 1),
        cost: 1000,
        ttlMs: DAY,
        ledger: ledgerFields({
          ts: now,
          modelAsked: 'gpt-4o',
          modelServed: 'gpt-4o',
          promptTokens: 5 * (i + 1),
          completionTokens: 5 * (i + 1),
          cachedTokens: 0,
          cost: 1000,
          cacheHit: false,
          estimated: false,
          downgrade: 'none',
          stream: false,
          status: 200,
        }),
      });
    t.like(await settle(), { settled: true, usedTokens: 10 * (i + 1) });
    // Exactly once, on whichever master holds the tenant.
    t.like(await settle(), { settled: false, usedTokens: 10 * (i + 1) });
    const ledger = await readLedger(redis, keys, tenant, period, now - DAY, now + DAY);
    t.is(ledger.length, 1);
    t.is(ledger[0]?.promptTokens, 5 * (i + 1));
  }
  const rows = await chargeback(redis, keys, 'month', now - DAY, now + DAY);
  t.deepEqual(
    rows.map((r) => [r.tenant, r.requests, r.prompt_tokens]),
    tenants
      .map((tenant, i) => [tenant as string, 1, 5 * (i + 1)] as const)
      .sort((x, y) => x[0].localeCompare(y[0])),
  );
});

test('expired reservations on three masters: the timer sweep finds each by SCAN and bills it once', async (t) => {
  const { redis, keys, tenants } = await setup(t);
  const period = periodAt('month', Date.now()).id;
  for (const tenant of tenants) {
    const r = await reserveBudget(redis, keys, tenant, period, {
      requestId: 'lost',
      ttlMs: 50,
      keyTtlMs: 86_400_000,
      caps: { tokens: null, cost: null },
      candidates: [
        {
          baseTokens: 7,
          baseCost: 0,
          unitTokens: 1,
          unitCost: 0,
          minUnits: 3,
          maxUnits: 3,
          softRatio: 1,
        },
      ],
      expiry: expiryBilling(1, { promptTokens: 7 }),
    });
    t.is(r.chosen, 0);
  }
  await new Promise((r) => setTimeout(r, 150));
  const billed: string[] = [];
  // No process of its own reserved for them: only the SCAN of every master can find them.
  const sweeper = new ExpirySweeper({
    redis: () => redis,
    keys,
    reservationTtlMs: 50,
    minTtlMs: 86_400_000,
    intervalMs: 60_000,
    onSettled: (tenant, r) => billed.push(`${tenant}:${r.settled}:${r.tokens}`),
    onError: (e) => t.fail(String(e)),
  });
  for (let i = 0; i < 100 && billed.length < tenants.length; i++) await sweeper.tick();
  for (let i = 0; i < 3; i++) await sweeper.tick();
  t.deepEqual(billed.sort(), tenants.map((tenant) => `${tenant}:1:10`).sort());
  for (const tenant of tenants) {
    const ledger = await readLedger(redis, keys, tenant, period, 0, Date.now() + 1000);
    t.deepEqual(
      ledger.map((e) => [e.requestId, e.settledBy, e.promptTokens, e.completionTokens]),
      [['lost', 'expiry', 7, 3]],
    );
  }
});

test('the fair queue in its own slot; a grant reaches a subscriber on another node', async (t) => {
  const { redis, keys, tenants } = await setup(t);
  const [a, b] = tenants as [TenantId, TenantId];
  const q = keys.fairQueue('llm');
  const cap = {
    maxConcurrent: 1,
    tokensPerMinute: 0,
    tokenBurst: 0,
    seatLeaseMs: 60_000,
    heartbeatMs: 60_000,
  };
  const sub = redis.duplicate();
  sub.on('error', () => undefined);
  await sub.connect();
  t.teardown(() => sub.destroy());
  const heard: string[] = [];
  await sub.subscribe(q.channel, (message: string) => heard.push(...grantedTickets(message)));

  t.like(await acquireSeat(redis, q, cap, 'ta', a, 1, 100), { granted: true, seatsInUse: 1 });
  t.like(await acquireSeat(redis, q, cap, 'tb', b, 1, 100), { granted: false, waiting: 1 });
  const released = await releaseSeat(redis, q, cap, 'ta');
  t.like(released, { was: 'seated', granted: 1 });
  t.deepEqual(released.grantedIds, ['tb']);
  // PUBLISH from the script on the queue's master reaches the subscriber wherever it is.
  const deadline = Date.now() + 10_000;
  while (!heard.includes('tb') && Date.now() < deadline) {
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  t.deepEqual(heard, ['tb']);
  t.like(await acquireSeat(redis, q, cap, 'tb', b, 1, 100), { granted: true, seatsInUse: 1 });
});

test('the response cache on three masters: one MGET per lookup, purge per tenant', async (t) => {
  const { redis, keys, tenants } = await setup(t);
  const ctx = (tenant: TenantId) =>
    createTenantContext({
      tenantId: tenant,
      plan: 'pro',
      source: 'consumer',
      subject: 's',
      policy: {
        toolsAllowed: [],
        preferredModel: null,
        fallbackModel: null,
        persona: null,
        knowledgeNamespace: tenant,
        weight: 1,
      },
    });
  const digest = 'ab'.repeat(32);
  for (const tenant of tenants) {
    await storeEntry(redis, keys.cacheEntry(tenant, digest), `answer of ${tenant}`, 60);
  }
  for (const tenant of tenants) {
    const found = await lookup(redis, keys, ctx(tenant), keys.cacheEntry(tenant, digest));
    t.is(found.value, `answer of ${tenant}`);
  }
  const [a, b] = tenants as [TenantId, TenantId];
  const before = await lookup(redis, keys, ctx(b), keys.cacheEntry(b, digest));
  const gen = await purgeTenant(redis, keys, a);
  t.is((await lookup(redis, keys, ctx(a), keys.cacheEntry(a, digest))).generations.cache, gen);
  t.deepEqual(await lookup(redis, keys, ctx(b), keys.cacheEntry(b, digest)), before);
});
