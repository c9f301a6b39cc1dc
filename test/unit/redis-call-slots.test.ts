/**
 * Every multi-key Redis call the project makes sends keys of one hash slot, so it runs on
 * Redis Cluster (where keys of two slots in one call are refused with CROSSSLOT), and every
 * Lua script reaches its keys only through KEYS (a key a script builds itself is invisible to
 * the cluster's routing). The calls are the real ones: each lib function (and the plugins'
 * token-meter budget and tenant-cache lookup) runs against a client that records the keys it
 * is given and refuses the call, for many tenants, periods and upstreams.
 * test/integration/redis-cluster.test.ts runs the same calls on a real cluster.
 */
import test from 'ava';
import type { RedisClient } from '../../lib/redis/client';
import { acquireSeat, cancelSeat, claimSeat, releaseSeat } from '../../lib/redis/fair-queue';
import { hashSlot } from '../../lib/redis/hash-slot';
import { createKeyspace, type Keyspace } from '../../lib/redis/keys';
import { admitTenant, settleTenant } from '../../plugins/tenant-ratelimit/tenant-limits';
import { productScripts } from '../fixtures/redis/product-scripts';
import { takeTokens, tokenBucketScript } from '../fixtures/redis/token-bucket';
import { createTenantContext } from '../../lib/tenant/context';
import { parseTenantId, type TenantId } from '../../lib/tenant/tenant-id';
import { reserveBudget, settleBudget, sweepExpired } from '../../plugins/token-meter/budget';
import { lookup } from '../../plugins/tenant-cache/redis';
import { expiryBilling } from '../helpers/expiry-billing';

interface Call {
  /** Script name (by its SHA or source), or the command. */
  readonly what: string;
  readonly keys: readonly string[];
}

class Recorded extends Error {}

/** A client that notes the keys of each call and refuses it (no server is involved). */
function recorder(): { client: RedisClient; calls: Call[] } {
  const calls: Call[] = [];
  const scriptName = (shaOrSource: string): string => {
    for (const s of [...productScripts(), tokenBucketScript()]) {
      if (s.sha1 === shaOrSource || s.source === shaOrSource) return s.name;
    }
    return `unknown script ${shaOrSource.slice(0, 12)}`;
  };
  const script = (shaOrSource: string, options: { keys?: string[] }): Promise<never> => {
    calls.push({ what: scriptName(shaOrSource), keys: options.keys ?? [] });
    return Promise.reject(new Recorded());
  };
  const methods = {
    evalSha: script,
    eval: script,
    mGet: (keys: string[]): Promise<never> => {
      calls.push({ what: 'MGET', keys });
      return Promise.reject(new Recorded());
    },
  };
  // The lib functions use only the methods above; the cast is the test's, not the product's.
  return { client: methods as unknown as RedisClient, calls };
}

async function recordedCall(run: () => Promise<unknown>): Promise<void> {
  try {
    await run();
  } catch (e) {
    if (e instanceof Recorded) return;
    throw e;
  }
  throw new Error('the call was expected to reach the client');
}

const tenants: TenantId[] = [
  'acme',
  'globex',
  'initech',
  'a',
  '0',
  'tenant-with-dashes_1',
  'x'.repeat(64),
].map(parseTenantId);
const namespaces = ['kta', 'it-0123abcd', 'prod_eu-1'];
const periods = ['2026-12', '2026-12-05', '2026-12-05t21', 'm'];
const upstreams = ['openai', 'azure.eu-1', 'local_llm'];
const limits = {
  requestsPerMinute: 60,
  requestBurst: 10,
  tokensPerMinute: 1000,
  tokenBurst: 500,
  maxConcurrent: 2,
};
const capacity = {
  maxConcurrent: 4,
  tokensPerMinute: 6000,
  tokenBurst: 1000,
  seatLeaseMs: 30_000,
  heartbeatMs: 2000,
  flexReserve: 1,
};

async function everyCall(keys: Keyspace, tenant: TenantId, period: string, upstream: string) {
  const { client, calls } = recorder();
  const q = keys.fairQueue(upstream);
  const ctx = createTenantContext({
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
  await recordedCall(() => admitTenant(client, keys, tenant, limits, 120, 'lease-1', 30_000));
  await recordedCall(() => settleTenant(client, keys, tenant, limits, 'lease-1', -20));
  await recordedCall(() =>
    takeTokens(client, keys.rateBucket(tenant, 'requests'), { capacity: 5, refillPerSecond: 1 }),
  );
  await recordedCall(() =>
    reserveBudget(client, keys, tenant, period, {
      requestId: 'req-1',
      ttlMs: 60_000,
      keyTtlMs: 3_600_000,
      caps: { tokens: 10_000, cost: null },
      candidates: [
        {
          baseTokens: 10,
          baseCost: 1,
          unitTokens: 1,
          unitCost: 1,
          minUnits: 1,
          maxUnits: 100,
          softRatio: 1,
        },
      ],
      expiry: expiryBilling(1),
    }),
  );
  await recordedCall(() =>
    settleBudget(client, keys, tenant, period, {
      requestId: 'req-1',
      tokens: 42,
      cost: 7,
      ttlMs: 3_600_000,
      ledger: { model: 'gpt-4o-mini' },
    }),
  );
  await recordedCall(() => sweepExpired(client, keys, tenant, period, 3_600_000));
  await recordedCall(() => acquireSeat(client, q, capacity, 't-1', tenant, 1, 100, 'urgent'));
  await recordedCall(() => claimSeat(client, q, capacity, 't-1'));
  await recordedCall(() => releaseSeat(client, q, capacity, 't-1', 5));
  await recordedCall(() => cancelSeat(client, q, capacity, 't-1', tenant, 'flex', 100, '0:1'));
  await recordedCall(() => lookup(client, keys, ctx, keys.cacheEntry(tenant, 'ab'.repeat(32))));
  return calls;
}

test('every multi-key call sends keys of one hash slot: the tenant’s, or the upstream’s queue', async (t) => {
  let checked = 0;
  const seen = new Set<string>();
  for (const ns of namespaces) {
    const keys = createKeyspace(ns);
    for (const tenant of tenants) {
      for (const period of periods) {
        for (const upstream of upstreams) {
          const calls = await everyCall(keys, tenant, period, upstream);
          t.is(calls.length, 11);
          for (const call of calls) {
            seen.add(call.what);
            t.true(call.keys.length > 0, call.what);
            const slots = new Set(call.keys.map(hashSlot));
            t.is(slots.size, 1, `${call.what}: ${call.keys.join(' ')}`);
            const expected = call.what.startsWith('fair-queue')
              ? hashSlot(`q:${upstream}`)
              : hashSlot(`t:${tenant}`);
            t.is([...slots][0], expected, call.what);
            checked++;
          }
        }
      }
    }
  }
  // Every script that takes more than one key was among the calls.
  for (const s of productScripts()) {
    if (s.numberOfKeys > 1) t.true(seen.has(s.name), `${s.name} has no call in this test`);
  }
  t.true(seen.has('MGET'));
  t.true(checked > 1000);
});

test('positive control: two tenants’ keys, or a tenant’s and a queue’s, are in different slots', (t) => {
  const keys = createKeyspace('kta');
  const acme = parseTenantId('acme');
  const globex = parseTenantId('globex');
  t.not(hashSlot(keys.budget(acme, 'm')), hashSlot(keys.budget(globex, 'm')));
  t.not(hashSlot(keys.concurrencyLeases(acme)), hashSlot(keys.fairQueue('openai').seats));
});

/**
 * Where a script's key arguments come from, read from its source: every key is KEYS[i] (or a
 * local bound to one), never a literal, an ARGV value or a string built from a key.
 */
function keyProblems(source: string, numberOfKeys: number): string[] {
  const problems: string[] = [];
  const code = source.replace(/--\[\[[\s\S]*?\]\]/g, '').replace(/--[^\n]*/g, '');
  const indices = [...code.matchAll(/KEYS\[(\d+)\]/g)].map((m) => Number(m[1]));
  const loopsOverKeys = /ipairs\(KEYS\)/.test(code);
  const max = Math.max(0, ...indices);
  if (max > numberOfKeys) problems.push(`KEYS[${max}] beyond its ${numberOfKeys} keys`);
  if (!loopsOverKeys && max < numberOfKeys)
    problems.push(`declares ${numberOfKeys} keys, uses ${max}`);
  for (const m of code.matchAll(/redis\.p?call\(\s*'(\w+)'\s*,\s*([^,)]+)/g)) {
    const [, command = '', first = ''] = m;
    // PUBLISH's first argument is a channel, not a key.
    if (/^S?PUBLISH$/i.test(command)) continue;
    if (/^['"]/.test(first.trim())) problems.push(`${command} on a literal key ${first.trim()}`);
    if (/ARGV\[/.test(first)) problems.push(`${command} on a key taken from ARGV`);
  }
  if (/KEYS\[\d+\]\s*\.\./.test(code) || /\.\.\s*KEYS\[/.test(code)) {
    problems.push('a key built from another key');
  }
  return problems;
}

test('every Lua script reaches its keys through KEYS only, as many as its name says', (t) => {
  const scripts = [...productScripts(), tokenBucketScript()];
  t.true(scripts.length >= 10);
  for (const s of scripts) {
    t.deepEqual(keyProblems(s.source, s.numberOfKeys), [], s.name);
  }
  // Positive control: the check sees each kind of fault.
  t.deepEqual(keyProblems("redis.call('GET', 'kta:{t:acme}:x')", 0), [
    "GET on a literal key 'kta:{t:acme}:x'",
  ]);
  t.deepEqual(keyProblems("redis.call('INCR', ARGV[1])", 0), ['INCR on a key taken from ARGV']);
  t.deepEqual(keyProblems("redis.call('INCR', KEYS[1] .. ':n')", 1), [
    'a key built from another key',
  ]);
  t.deepEqual(keyProblems("redis.call('INCR', KEYS[2])", 1), ['KEYS[2] beyond its 1 keys']);
});
