/**
 * lib/provider-objects/registry.ts against the real Redis at REDIS_URL: an object recorded
 * for tenant A is A's only (B's lookup, list and forget never see or touch it), per kind;
 * lists page in creation order with OpenAI's cursor; records and indexes expire with the TTL
 * and an index keeps at most its cap; ids no key can hold are owned by no one.
 */
import test from 'ava';
import { ObjectRegistry } from '../../lib/provider-objects/registry';
import { closeAllRedis } from '../../lib/redis/client';
import { tenantContextOf } from '../helpers/tenant-context';
import { connectRedis, deleteKeyspace, randomKeyspace } from './services';

test.after.always(closeAllRedis);

const alice = tenantContextOf('alice');
const bob = tenantContextOf('bob');

async function registry(ttlMs = 60_000, cap = 10_000) {
  const redis = await connectRedis();
  const keys = randomKeyspace();
  return { reg: new ObjectRegistry(redis, keys, ttlMs, cap), redis, keys };
}

test('an object is its maker’s: the other tenant neither owns, lists nor forgets it', async (t) => {
  const { reg, redis, keys } = await registry();
  t.teardown(() => deleteKeyspace(redis, keys));
  t.true(await reg.record(alice, 'file', 'file-a1', '{"id":"file-a1","object":"file"}'));
  t.false(await reg.record(alice, 'file', 'file-a1', null), 'a second record refreshes');
  t.true(await reg.owns(alice, 'file', 'file-a1'));
  t.false(await reg.owns(bob, 'file', 'file-a1'));
  t.false(await reg.owns(alice, 'batch', 'file-a1'), 'owned per kind');
  const opts = { limit: 20, order: 'desc' as const, after: null };
  t.deepEqual((await reg.list(bob, 'file', opts)).items, []);
  await reg.forget(bob, 'file', 'file-a1');
  t.true(await reg.owns(alice, 'file', 'file-a1'), 'bob’s forget touches only bob’s keys');
  const page = await reg.list(alice, 'file', opts);
  // The refresh without a snapshot replaced the first: as last seen.
  t.deepEqual(page.items, [{ id: 'file-a1', snapshot: null }]);
  await reg.forget(alice, 'file', 'file-a1');
  t.false(await reg.owns(alice, 'file', 'file-a1'));
  t.deepEqual((await reg.list(alice, 'file', opts)).items, []);
});

test('ids no key can hold are owned by no one and never recorded', async (t) => {
  const { reg, redis, keys } = await registry();
  t.teardown(() => deleteKeyspace(redis, keys));
  for (const id of ['', 'a:b', '{t:bob}', 'x/y', '%2F', 'a'.repeat(300), '-lead']) {
    t.false(await reg.record(alice, 'file', id, null), JSON.stringify(id));
    t.false(await reg.owns(alice, 'file', id), JSON.stringify(id));
  }
});

test('lists page in creation order with the after cursor; snapshots as recorded', async (t) => {
  const { reg, redis, keys } = await registry();
  t.teardown(() => deleteKeyspace(redis, keys));
  const base = Date.now();
  for (let i = 0; i < 5; i++) {
    await reg.record(
      alice,
      'batch',
      `batch_${i}`,
      JSON.stringify({ id: `batch_${i}`, n: i }),
      base + i,
    );
  }
  await reg.record(bob, 'batch', 'batch_bob', null, base + 10);
  const first = await reg.list(alice, 'batch', { limit: 2, order: 'desc', after: null });
  t.deepEqual(
    first.items.map((o) => o.id),
    ['batch_4', 'batch_3'],
  );
  t.true(first.hasMore);
  t.deepEqual(first.items[0]?.snapshot, { id: 'batch_4', n: 4 });
  const next = await reg.list(alice, 'batch', { limit: 2, order: 'desc', after: 'batch_3' });
  t.deepEqual(
    next.items.map((o) => o.id),
    ['batch_2', 'batch_1'],
  );
  const last = await reg.list(alice, 'batch', { limit: 2, order: 'desc', after: 'batch_1' });
  t.deepEqual(
    last.items.map((o) => o.id),
    ['batch_0'],
  );
  t.false(last.hasMore);
  const asc = await reg.list(alice, 'batch', { limit: 10, order: 'asc', after: null });
  t.deepEqual(
    asc.items.map((o) => o.id),
    ['batch_0', 'batch_1', 'batch_2', 'batch_3', 'batch_4'],
  );
  // Another tenant's id as a cursor finds nothing of alice's to start from.
  t.deepEqual(
    (await reg.list(alice, 'batch', { limit: 10, order: 'desc', after: 'batch_bob' })).items,
    [],
  );
});

test('records and indexes expire with the TTL; an index keeps at most its cap', async (t) => {
  const { reg, redis, keys } = await registry(1_000, 3);
  t.teardown(() => deleteKeyspace(redis, keys));
  for (let i = 0; i < 5; i++)
    await reg.record(alice, 'response', `resp_${i}`, null, Date.now() + i);
  const index = keys.providerObjectIndex(alice.tenantId, 'response');
  t.is(await redis.zCard(index), 3, 'the oldest ids left the index');
  t.true((await redis.pTTL(index)) > 0);
  t.true((await redis.pTTL(keys.providerObject(alice.tenantId, 'response', 'resp_4'))) > 0);
  await new Promise((r) => setTimeout(r, 1_100));
  t.false(await reg.owns(alice, 'response', 'resp_4'), 'expired: no one owns it now');
  t.is(await redis.exists(index), 0);
});

test('a list drops ids whose record is gone', async (t) => {
  const { reg, redis, keys } = await registry();
  t.teardown(() => deleteKeyspace(redis, keys));
  await reg.record(alice, 'file', 'file-1', null);
  await reg.record(alice, 'file', 'file-2', null);
  await redis.del(keys.providerObject(alice.tenantId, 'file', 'file-1'));
  const page = await reg.list(alice, 'file', { limit: 10, order: 'desc', after: null });
  t.deepEqual(
    page.items.map((o) => o.id),
    ['file-2'],
  );
  t.deepEqual(await redis.zRange(keys.providerObjectIndex(alice.tenantId, 'file'), 0, -1), [
    'file-2',
  ]);
});
