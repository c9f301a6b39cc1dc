/**
 * tenant-cache keys and entries: per-tenant names, per-tenant AES-256-GCM, associated data
 * binding tenant, key id, Redis key and generations.
 */
import test from 'ava';
import { randomBytes } from 'node:crypto';
import { createKeyspace } from '../../lib/redis/keys';
import {
  createTenantContext,
  type TenantContext,
  type TenantPolicy,
} from '../../lib/tenant/context';
import { cacheKeyFor, type RequestIdentity } from '../../plugins/tenant-cache/cache-key';
import { CacheKeyring, decodeSecret } from '../../plugins/tenant-cache/crypto';
import { decodeEntry, encodeEntry, generation } from '../../plugins/tenant-cache/entry';

const policy = (p: Partial<TenantPolicy> = {}): TenantPolicy => ({
  toolsAllowed: ['search'],
  preferredModel: null,
  fallbackModel: null,
  persona: 'You help.',
  knowledgeNamespace: 'acme',
  weight: 1,
  models: [],
  ...p,
});
const tenant = (id: string, p: Partial<TenantPolicy> = {}, plan = 'pro'): TenantContext =>
  createTenantContext({
    tenantId: id,
    plan,
    source: 'consumer',
    subject: `${id}-app`,
    policy: policy({ knowledgeNamespace: id, ...p }),
  });

const keyring = new CacheKeyring(randomBytes(32));
const keyspace = createKeyspace('kta');
const req: RequestIdentity = {
  method: 'POST',
  pathWithQuery: '/v1/chat/completions',
  routeId: 'r1',
  serviceId: 's1',
  canonicalBody: '{"model":"m","temperature":0}',
};
const gens = { knowledge: '0', cache: '0' };
const response = { createdAt: 1, contentType: 'application/json', model: 'm', body: '{"ok":1}' };

test('the same request of two tenants has two unrelated names, each in its own slot', (t) => {
  const a = cacheKeyFor(tenant('acme'), keyring, keyspace, req);
  const b = cacheKeyFor(tenant('globex'), keyring, keyspace, req);
  t.not(a.digest, b.digest);
  t.true(a.redisKey.startsWith('kta:{t:acme}:cache:e:'));
  t.true(b.redisKey.startsWith('kta:{t:globex}:cache:e:'));
  t.is(a.redisKey, cacheKeyFor(tenant('acme'), keyring, keyspace, req).redisKey, 'stable');
});

test('persona, tool grants, plan, knowledge namespace, route, service, path and body each change the name', (t) => {
  const base = cacheKeyFor(tenant('acme'), keyring, keyspace, req).digest;
  const variants = [
    cacheKeyFor(tenant('acme', { persona: 'Other.' }), keyring, keyspace, req),
    cacheKeyFor(tenant('acme', { persona: null }), keyring, keyspace, req),
    cacheKeyFor(tenant('acme', { toolsAllowed: ['search', 'crm_write'] }), keyring, keyspace, req),
    cacheKeyFor(tenant('acme', { toolsAllowed: [] }), keyring, keyspace, req),
    cacheKeyFor(tenant('acme', { knowledgeNamespace: 'acme-eu' }), keyring, keyspace, req),
    cacheKeyFor(tenant('acme', {}, 'free'), keyring, keyspace, req),
    cacheKeyFor(tenant('acme'), keyring, keyspace, { ...req, routeId: 'r2' }),
    cacheKeyFor(tenant('acme'), keyring, keyspace, { ...req, serviceId: 's2' }),
    cacheKeyFor(tenant('acme'), keyring, keyspace, { ...req, pathWithQuery: '/v1/embeddings' }),
    cacheKeyFor(tenant('acme'), keyring, keyspace, { ...req, canonicalBody: '{"model":"n"}' }),
    // Length prefixes: moving a character from one field to the next is another key.
    cacheKeyFor(tenant('acme'), keyring, keyspace, { ...req, routeId: 'r1s', serviceId: '1' }),
  ].map((k) => k.digest);
  for (const v of variants) t.not(v, base);
  t.is(new Set(variants).size, variants.length);
  // The order of the grants is not a different grant.
  t.is(
    cacheKeyFor(tenant('acme', { toolsAllowed: ['b', 'a'] }), keyring, keyspace, req).digest,
    cacheKeyFor(tenant('acme', { toolsAllowed: ['a', 'b'] }), keyring, keyspace, req).digest,
  );
});

test('another master secret names every entry differently (rotation = a cold cache)', (t) => {
  const other = new CacheKeyring(randomBytes(32));
  t.not(other.keyId, keyring.keyId);
  t.not(
    cacheKeyFor(tenant('acme'), other, keyspace, req).digest,
    cacheKeyFor(tenant('acme'), keyring, keyspace, req).digest,
  );
});

test('an entry opens for its tenant, key and generations only', (t) => {
  const acme = tenant('acme');
  const key = cacheKeyFor(acme, keyring, keyspace, req).redisKey;
  const value = encodeEntry(keyring.forTenant(acme), key, gens, response);
  t.false(value.includes('"ok"'), 'the body is not in clear');
  t.deepEqual(decodeEntry(keyring.forTenant(acme), key, gens, value), {
    kind: 'hit',
    response,
  });

  // Planted under another tenant (same key string or B's own key): authentication fails.
  const globex = tenant('globex');
  const bKey = cacheKeyFor(globex, keyring, keyspace, req).redisKey;
  t.is(decodeEntry(keyring.forTenant(globex), bKey, gens, value).kind, 'forged');
  t.is(decodeEntry(keyring.forTenant(globex), key, gens, value).kind, 'forged');
  // Moved under another entry of the same tenant.
  const other = cacheKeyFor(acme, keyring, keyspace, { ...req, routeId: 'r9' }).redisKey;
  t.is(decodeEntry(keyring.forTenant(acme), other, gens, value).kind, 'forged');
  // The clear generations edited to look current: the associated data still differs.
  const old = encodeEntry(keyring.forTenant(acme), key, { knowledge: '1', cache: '0' }, response);
  const edited = old.replace('.1.0.', '.0.0.');
  t.is(decodeEntry(keyring.forTenant(acme), key, gens, edited).kind, 'forged');
  // Another generation in force: stale, an ordinary miss.
  t.is(
    decodeEntry(keyring.forTenant(acme), key, { knowledge: '2', cache: '0' }, value).kind,
    'stale',
  );
  t.is(
    decodeEntry(keyring.forTenant(acme), key, { knowledge: '0', cache: 'p1' }, value).kind,
    'stale',
  );
  // A flipped ciphertext byte, garbage, another format.
  const b64 = value.split('.')[4] as string;
  const flipped = Buffer.from(b64, 'base64');
  flipped[20] = (flipped[20] ?? 0) ^ 1;
  t.is(
    decodeEntry(keyring.forTenant(acme), key, gens, value.replace(b64, flipped.toString('base64')))
      .kind,
    'forged',
  );
  t.is(decodeEntry(keyring.forTenant(acme), key, gens, 'garbage').kind, 'forged');
  t.is(decodeEntry(keyring.forTenant(acme), key, gens, `{"b":"plaintext"}`).kind, 'forged');
});

test('generations: absent is 0; odd values are hashed into a safe form', (t) => {
  t.is(generation(null), '0');
  t.is(generation(''), '0');
  t.is(generation('42'), '42');
  t.regex(generation('a.b|c'), /^h[0-9a-f]{32}$/);
});

test('master secrets: hex or base64, at least 32 bytes', (t) => {
  t.is(decodeSecret('ab'.repeat(32)).length, 32);
  t.is(decodeSecret(randomBytes(48).toString('base64')).length, 48);
  t.throws(() => decodeSecret('ab'.repeat(16)));
  t.throws(() => decodeSecret('short'));
});
