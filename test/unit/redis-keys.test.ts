/**
 * lib/redis/keys.ts: one hash slot per tenant, no key shared between tenants, no way to forge
 * a hash tag; and lib/redis/hash-slot.ts against Redis Cluster's published values.
 */
import test from 'ava';
import { crc16, hashSlot } from '../../lib/redis/hash-slot';
import { createKeyspace, InvalidKeyPartError, type Keyspace } from '../../lib/redis/keys';
import { parseTenantId, type TenantId } from '../../lib/tenant/tenant-id';

const tenants: TenantId[] = [
  'acme',
  'globex',
  'a',
  '0',
  'tenant-with-dashes_1',
  'x'.repeat(64),
].map(parseTenantId);

function everyTenantKey(keys: Keyspace, tenant: TenantId): string[] {
  return [
    keys.rateBucket(tenant, 'requests'),
    keys.rateBucket(tenant, 'tokens'),
    keys.concurrencyLeases(tenant),
    keys.budget(tenant, '2026-11'),
    keys.knowledgeGeneration(tenant),
    keys.cacheEntry(tenant, 'ab'.repeat(32)),
    keys.cacheGeneration(tenant),
    keys.embeddingCache(tenant, 'a'.repeat(64)),
  ];
}

test('crc16 and hashSlot match the Redis Cluster specification', (t) => {
  t.is(crc16(Buffer.from('123456789')), 0x31c3);
  // Values from `CLUSTER KEYSLOT` in the Redis documentation.
  t.is(hashSlot('somekey'), 11058);
  t.is(hashSlot('foo{hash_tag}'), hashSlot('hash_tag'));
  t.is(hashSlot('{user1000}.following'), hashSlot('{user1000}.followers'));
  // An empty tag is no tag: the whole key is hashed.
  t.is(hashSlot('foo{}{bar}'), crc16(Buffer.from('foo{}{bar}')) % 16384);
  t.not(hashSlot('foo{}{bar}'), hashSlot('bar'));
  t.is(hashSlot('foo'), 12182);
});

test('all keys of one tenant share one hash slot', (t) => {
  for (const namespace of ['kta', 'other-ns']) {
    const keys = createKeyspace(namespace);
    for (const tenant of tenants) {
      const slots = new Set(everyTenantKey(keys, tenant).map(hashSlot));
      t.is(slots.size, 1, `${namespace}/${tenant}`);
      t.is([...slots][0], hashSlot(`t:${tenant}`));
    }
  }
});

test('two tenants never share a key', (t) => {
  const keys = createKeyspace();
  const owner = new Map<string, TenantId>();
  for (const tenant of tenants) {
    for (const key of everyTenantKey(keys, tenant)) {
      t.false(owner.has(key), `${key} already belongs to ${owner.get(key)}`);
      owner.set(key, tenant);
      t.true(key.includes(`{t:${tenant}}`));
    }
  }
});

test('keys carry the namespace, default kta', (t) => {
  const acme = parseTenantId('acme');
  t.is<string, string>(createKeyspace().rateBucket(acme, 'requests'), 'kta:{t:acme}:rate:requests');
  t.is<string, string>(
    createKeyspace('staging').concurrencyLeases(acme),
    'staging:{t:acme}:leases',
  );
  t.is<string, string>(createKeyspace().sharedQueue('openai'), 'kta:{q:openai}:queue');
  t.is(createKeyspace('staging').pattern(), 'staging:*');
  t.not(createKeyspace('a').budget(acme, 'day'), createKeyspace('b').budget(acme, 'day'));
});

test('a shared queue has its own slot, not a tenant one', (t) => {
  const keys = createKeyspace();
  t.is(hashSlot(keys.sharedQueue('openai')), hashSlot('q:openai'));
  t.not(keys.sharedQueue('acme'), keys.concurrencyLeases(parseTenantId('acme')));
});

test('configured names cannot forge a hash tag or a separator', (t) => {
  const keys = createKeyspace();
  const acme = parseTenantId('acme');
  for (const bad of ['', 'a}b', '{t:globex}', 'a:b', 'A', ' x', 'x'.repeat(65)]) {
    t.throws(() => keys.rateBucket(acme, bad), { instanceOf: InvalidKeyPartError }, bad);
    t.throws(() => keys.sharedQueue(bad), { instanceOf: InvalidKeyPartError }, bad);
  }
  for (const bad of ['', 'k{t', 'a:b', 'UPPER']) {
    t.throws(() => createKeyspace(bad), { instanceOf: InvalidKeyPartError }, bad);
  }
});

test('cache entry names accept only a hex digest', (t) => {
  const keys = createKeyspace('kta');
  const acme = parseTenantId('acme');
  t.is(String(keys.cacheEntry(acme, 'ab'.repeat(32))), `kta:{t:acme}:cache:e:${'ab'.repeat(32)}`);
  for (const bad of ['', 'AB'.repeat(32), 'x}{t:globex', `${'ab'.repeat(32)}:x`, 'ab']) {
    t.throws(() => keys.cacheEntry(acme, bad), { instanceOf: InvalidKeyPartError });
  }
});

test('embedding cache keys take only a SHA-256 hex digest', (t) => {
  const keys = createKeyspace('kta');
  t.is<string, string>(
    keys.embeddingCache(parseTenantId('acme'), 'ab'.repeat(32)),
    `kta:{t:acme}:emb:${'ab'.repeat(32)}`,
  );
  for (const bad of ['', 'x'.repeat(64), 'AB'.repeat(32), `${'a'.repeat(63)}}`, 'a'.repeat(65)]) {
    t.throws(() => keys.embeddingCache(parseTenantId('acme'), bad), {
      instanceOf: InvalidKeyPartError,
    });
  }
});
