/**
 * plugins/tenant-cache/redis.ts against the real Redis at REDIS_URL: one MGET per lookup
 * reading both generations and the entry, stores with a TTL, purges that replace only the
 * purged tenant's generation. Each test in its own random key namespace.
 */
import test, { type ExecutionContext } from 'ava';
import { randomBytes } from 'node:crypto';
import { closeAllRedis, createRedis, waitForRedis, type RedisClient } from '../../lib/redis/client';
import type { Keyspace } from '../../lib/redis/keys';
import { createTenantContext, type TenantContext } from '../../lib/tenant/context';
import { parseTenantId } from '../../lib/tenant/tenant-id';
import { cacheKeyFor } from '../../plugins/tenant-cache/cache-key';
import { CacheKeyring } from '../../plugins/tenant-cache/crypto';
import { decodeEntry, encodeEntry } from '../../plugins/tenant-cache/entry';
import {
  PURGE_GENERATION_TTL_SECONDS,
  lookup,
  purgeTenant,
  storeEntry,
} from '../../plugins/tenant-cache/redis';
import { startPrivateRedis } from './private-redis';
import { connectRedis, deleteKeyspace, randomKeyspace } from './services';

test.after.always(closeAllRedis);

const tenant = (id: string): TenantContext =>
  createTenantContext({
    tenantId: id,
    plan: 'pro',
    source: 'consumer',
    subject: 's',
    policy: {
      toolsAllowed: [],
      preferredModel: null,
      fallbackModel: null,
      persona: null,
      knowledgeNamespace: id,
      weight: 1,
    },
  });
const keyring = new CacheKeyring(randomBytes(32));
const req = {
  method: 'POST',
  pathWithQuery: '/v1/chat/completions',
  routeId: 'r',
  serviceId: 's',
  canonicalBody: '{"model":"m"}',
};
const response = { createdAt: Date.now(), contentType: 'application/json', model: 'm', body: '{}' };

async function setup(t: ExecutionContext): Promise<{ redis: RedisClient; keys: Keyspace }> {
  const redis = await connectRedis();
  const keys = randomKeyspace();
  t.teardown(() => deleteKeyspace(redis, keys));
  return { redis, keys };
}

test('a lookup reads both generations and the entry in one MGET', async (t) => {
  const { redis, keys } = await setup(t);
  const acme = tenant('acme');
  const key = cacheKeyFor(acme, keyring, keys, req).redisKey;
  const empty = await lookup(redis, keys, acme, key);
  t.deepEqual(empty, { generations: { knowledge: '0', cache: '0' }, value: null });

  await storeEntry(
    redis,
    key,
    encodeEntry(keyring.forTenant(acme), key, empty.generations, response),
    30,
  );
  const ttl = await redis.ttl(key);
  t.true(ttl > 0 && ttl <= 30);
  const found = await lookup(redis, keys, acme, key);
  t.is(decodeEntry(keyring.forTenant(acme), key, found.generations, found.value ?? '').kind, 'hit');

  await redis.set(keys.knowledgeGeneration(acme.tenantId), '7');
  const bumped = await lookup(redis, keys, acme, key);
  t.is(bumped.generations.knowledge, '7');
  t.is(
    decodeEntry(keyring.forTenant(acme), key, bumped.generations, bumped.value ?? '').kind,
    'stale',
  );
});

test('a purge replaces only that tenant’s generation, randomly, for longer than any entry lives', async (t) => {
  const { redis, keys } = await setup(t);
  const acme = parseTenantId('acme');
  const globex = parseTenantId('globex');
  const g1 = await purgeTenant(redis, keys, acme);
  const g2 = await purgeTenant(redis, keys, acme);
  t.not(g1, g2);
  t.is(await redis.get(keys.cacheGeneration(acme)), g2);
  t.is(await redis.get(keys.cacheGeneration(globex)), null);
  const ttl = await redis.ttl(keys.cacheGeneration(acme));
  t.true(ttl > PURGE_GENERATION_TTL_SECONDS - 60 && ttl <= PURGE_GENERATION_TTL_SECONDS);
  const l = await lookup(redis, keys, tenant('acme'), keys.cacheEntry(acme, 'ab'.repeat(32)));
  t.is(l.generations.cache, g2);
});

test('one lookup is one command on the server (a private Redis, so nothing else is counted)', async (t) => {
  const server = await startPrivateRedis(t);
  const redis = createRedis({ url: server.url, commandTimeoutMs: 3000 });
  await waitForRedis(redis, 5000);
  const keys = randomKeyspace();
  const acme = tenant('acme');
  const key = cacheKeyFor(acme, keyring, keys, req).redisKey;
  const calls = async (): Promise<number> => {
    const info = await redis.info('commandstats');
    let n = 0;
    for (const m of info.matchAll(/^cmdstat_([a-z|]+):calls=(\d+)/gm)) {
      if (m[1] !== 'info') n += Number(m[2]);
    }
    return n;
  };
  const before = await calls();
  for (let i = 0; i < 10; i++) await lookup(redis, keys, acme, key);
  t.is((await calls()) - before, 10);
});
