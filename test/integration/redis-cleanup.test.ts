/**
 * The test helpers' teardown (test/helpers/redis-cleanup.ts) on both kinds of Redis. The
 * helpers used a plain client on REDIS_URL: on a Redis Cluster URL that is one node, whose
 * SCAN sees a third of the keys and whose multi-key DEL over several tenants is refused
 * (CROSSSLOT), so a suite run on the cluster left its keys behind. The helper scans every
 * master and deletes per slot: all of them, and nothing outside the pattern. On a single Redis
 * the same call keeps its one DEL per SCAN batch.
 */
import { randomBytes } from 'node:crypto';
import test from 'ava';
import { createClient } from 'redis';
import { closeAllRedis, type RedisClient } from '../../lib/redis/client';
import { createKeyspace } from '../../lib/redis/keys';
import { hashSlot } from '../../lib/redis/hash-slot';
import { deleteKeysMatching, groupBySlot } from '../helpers/redis-cleanup';
import { connectCluster, sharedClusterUrl, tenantsOnEveryMaster } from './redis-cluster-service';
import { connectRedis, REDIS_URL, TEST_COMMAND_TIMEOUT_MS } from './services';

test.after.always(closeAllRedis);

const ns = (what: string) => `cl${what}${randomBytes(4).toString('hex')}`;

/** A few keys of each tenant (string, hash, sorted set), as the plugins write them. */
async function seed(redis: RedisClient, namespace: string, tenants: string[]): Promise<string[]> {
  const k = createKeyspace(namespace);
  const keys: string[] = [];
  for (const id of tenants) {
    const tenant = id as Parameters<typeof k.budget>[0];
    const budget = k.budget(tenant, '2026-12');
    const leases = k.concurrencyLeases(tenant);
    const gen = k.cacheGeneration(tenant);
    await redis.hSet(budget, { used_tokens: '1' });
    await redis.zAdd(leases, { score: 1, value: 'lease' });
    await redis.set(gen, 'g1');
    keys.push(budget, leases, gen);
  }
  return keys;
}

test('groupBySlot: one group per slot, a tenant’s keys together', (t) => {
  const k = createKeyspace('grp');
  const keys = ['a', 'b', 'c'].flatMap((id) => {
    const tenant = `grp-${id}` as Parameters<typeof k.budget>[0];
    return [k.budget(tenant, 'p'), k.concurrencyLeases(tenant), k.cacheGeneration(tenant)];
  });
  const groups = groupBySlot(keys);
  t.is(groups.length, new Set(keys.map(hashSlot)).size);
  for (const g of groups) t.is(new Set(g.map(hashSlot)).size, 1);
  t.deepEqual(groups.flat().sort(), [...keys].sort());
});

test('Redis Cluster: keys of tenants on three masters deleted, others kept', async (t) => {
  const url = await sharedClusterUrl();
  const cluster = await connectCluster(url, TEST_COMMAND_TIMEOUT_MS);
  const namespace = ns('c');
  const keep = ns('k');
  const tenants = tenantsOnEveryMaster(cluster, `cleanup-${randomBytes(3).toString('hex')}`);
  t.is(tenants.length, 3);
  const keys = await seed(cluster, namespace, tenants);
  const kept = await seed(cluster, keep, tenants.slice(0, 1));
  t.teardown(() => deleteKeysMatching(url, `${keep}:*`).then(() => undefined));
  // Positive control: what the helpers did before, a plain client on the URL's seed node and
  // one DEL over the keys found (node-redis's cluster client would split it by slot itself).
  const node = createClient({ url: `redis://${new URL(url).host}` });
  await node.connect();
  t.teardown(() => node.close());
  const err = await node.del(keys).then(
    () => undefined,
    (e: unknown) => e,
  );
  t.true(err instanceof Error && /CROSSSLOT/.test(err.message), String(err));
  t.is(await deleteKeysMatching(url, `${namespace}:*`), keys.length);
  for (const key of keys) t.is(await cluster.exists(key), 0, key);
  for (const key of kept) t.is(await cluster.exists(key), 1, `${key} is outside the pattern`);
});

test('single Redis: the same call, one DEL per batch', async (t) => {
  const redis = await connectRedis();
  const namespace = ns('s');
  const keep = ns('k');
  const keys = await seed(redis, namespace, ['solo-a', 'solo-b']);
  const kept = await seed(redis, keep, ['solo-a']);
  t.teardown(() => deleteKeysMatching(REDIS_URL, `${keep}:*`).then(() => undefined));
  t.is(await deleteKeysMatching(REDIS_URL, `${namespace}:*`), keys.length);
  t.is(await redis.exists(keys), 0);
  t.is(await redis.exists(kept), kept.length);
});
