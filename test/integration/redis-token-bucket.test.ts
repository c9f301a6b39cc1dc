/**
 * test/fixtures/redis/token-bucket-1.lua (a script outside lib/ on the shared includes) through
 * the lib loader, against the real Redis at REDIS_URL.
 * Each test works in its own random key namespace and deletes it afterwards.
 */
import test, { type ExecutionContext } from 'ava';
import { ErrorReply } from 'redis';
import { closeAllRedis, type RedisClient } from '../../lib/redis/client';
import type { Keyspace } from '../../lib/redis/keys';
import { runScript } from '../../lib/redis/lua-script';
import {
  takeTokens,
  tokenBucketScript,
  type TokenBucketLimit,
} from '../fixtures/redis/token-bucket';
import { parseTenantId } from '../../lib/tenant/tenant-id';
import { connectRedis, deleteKeyspace, randomKeyspace } from './services';

const acme = parseTenantId('acme');
const globex = parseTenantId('globex');
/** So slow that no token comes back during a test. */
const NO_REFILL = 0.0001;

test.after.always(closeAllRedis);

async function setup(t: ExecutionContext): Promise<{ redis: RedisClient; keys: Keyspace }> {
  const redis = await connectRedis();
  const keys = randomKeyspace();
  t.teardown(() => deleteKeyspace(redis, keys));
  return { redis, keys };
}

test('a new bucket starts full and refuses once empty', async (t) => {
  const { redis, keys } = await setup(t);
  const key = keys.rateBucket(acme, 'requests');
  const limit: TokenBucketLimit = { capacity: 3, refillPerSecond: 1 };

  const decisions = [];
  for (let i = 0; i < 4; i++) decisions.push(await takeTokens(redis, key, limit));

  t.deepEqual(
    decisions.slice(0, 3).map((d) => [d.allowed, d.remaining, d.retryAfterMs]),
    [
      [true, 2, 0],
      [true, 1, 0],
      [true, 0, 0],
    ],
  );
  const refused = decisions[3];
  t.is(refused?.allowed, false);
  t.is(refused?.remaining, 0);
  // One token at 1 token/s: due within a second, not yet.
  t.true((refused?.retryAfterMs ?? 0) > 0 && (refused?.retryAfterMs ?? 0) <= 1000);
});

test('a refused take is all or nothing', async (t) => {
  const { redis, keys } = await setup(t);
  const key = keys.rateBucket(acme, 'tokens');
  const limit = { capacity: 10, refillPerSecond: NO_REFILL };

  t.like(await takeTokens(redis, key, limit, 8), { allowed: true, remaining: 2 });
  t.like(await takeTokens(redis, key, limit, 5), { allowed: false, remaining: 2 });
  t.like(await takeTokens(redis, key, limit, 2), { allowed: true, remaining: 0 });
});

test('tokens come back at the refill rate', async (t) => {
  const { redis, keys } = await setup(t);
  const key = keys.rateBucket(acme, 'requests');
  // One token per 500 ms: long enough that the second call below comes before the refill.
  const limit = { capacity: 1, refillPerSecond: 2 };

  t.true((await takeTokens(redis, key, limit)).allowed);
  const refused = await takeTokens(redis, key, limit);
  t.false(refused.allowed);
  t.true(refused.retryAfterMs > 0 && refused.retryAfterMs <= 500, `${refused.retryAfterMs}`);

  await new Promise((r) => setTimeout(r, refused.retryAfterMs + 20));
  t.like(await takeTokens(redis, key, limit), { allowed: true, remaining: 0 });
});

test('cost 0 reads the bucket without taking', async (t) => {
  const { redis, keys } = await setup(t);
  const key = keys.rateBucket(acme, 'requests');
  const limit = { capacity: 5, refillPerSecond: NO_REFILL };

  await takeTokens(redis, key, limit, 2);
  t.like(await takeTokens(redis, key, limit, 0), { allowed: true, remaining: 3 });
  t.like(await takeTokens(redis, key, limit, 0), { allowed: true, remaining: 3 });
});

test('tenants have separate buckets', async (t) => {
  const { redis, keys } = await setup(t);
  const limit = { capacity: 2, refillPerSecond: NO_REFILL };

  await takeTokens(redis, keys.rateBucket(acme, 'requests'), limit, 2);
  t.false((await takeTokens(redis, keys.rateBucket(acme, 'requests'), limit)).allowed);
  t.like(await takeTokens(redis, keys.rateBucket(globex, 'requests'), limit), {
    allowed: true,
    remaining: 1,
  });
});

test('concurrent takes from many connections never overspend', async (t) => {
  const { redis, keys } = await setup(t);
  const key = keys.rateBucket(acme, 'requests');
  const limit = { capacity: 25, refillPerSecond: NO_REFILL };
  // Separate connections, as separate gateway nodes would have.
  const others = await Promise.all(
    [1, 2, 3].map(async () => {
      const c = redis.duplicate();
      c.on('error', () => undefined);
      await c.connect();
      return c;
    }),
  );
  t.teardown(() => Promise.all(others.map((c) => c.close())));
  const clients = [redis, ...others];

  const decisions = await Promise.all(
    Array.from({ length: 100 }, (_, i) => takeTokens(clients[i % clients.length]!, key, limit)),
  );

  t.is(decisions.filter((d) => d.allowed).length, 25);
  const remainders = decisions.filter((d) => d.allowed).map((d) => d.remaining);
  // Each grant saw a distinct bucket level: 24, 23, ..., 0.
  t.deepEqual(
    [...remainders].sort((a, b) => b - a),
    Array.from({ length: 25 }, (_, i) => 24 - i),
  );
});

test('the bucket key expires once it would be full again', async (t) => {
  const { redis, keys } = await setup(t);
  const key = keys.rateBucket(acme, 'requests');

  await takeTokens(redis, key, { capacity: 10, refillPerSecond: 2 }, 4);
  const ttl = await redis.pTTL(key);
  // 4 tokens at 2/s refill in 2 s, plus the script's 1 s margin.
  t.true(ttl > 2000 && ttl <= 3000, `pttl ${ttl}`);
});

test('a cost above capacity is refused before reaching Redis', async (t) => {
  const { redis, keys } = await setup(t);
  await t.throwsAsync(
    takeTokens(redis, keys.rateBucket(acme, 'requests'), { capacity: 2, refillPerSecond: 1 }, 3),
    { instanceOf: RangeError },
  );
  t.is(await redis.exists(keys.rateBucket(acme, 'requests')), 0);
});

test('the script rejects bad arguments with a Redis error', async (t) => {
  const { redis, keys } = await setup(t);
  const error = await t.throwsAsync(
    runScript(redis, tokenBucketScript(), [keys.rateBucket(acme, 'x')], [0, 1, 1]),
    { instanceOf: ErrorReply },
  );
  t.regex(error?.message ?? '', /token-bucket: capacity and rate must be > 0/);
});

test('the loader checks the key count', async (t) => {
  const { redis, keys } = await setup(t);
  const key = keys.rateBucket(acme, 'x');
  await t.throwsAsync(runScript(redis, tokenBucketScript(), [key, key], [1, 1, 1]), {
    message: /takes 1 key\(s\), got 2/,
  });
});
