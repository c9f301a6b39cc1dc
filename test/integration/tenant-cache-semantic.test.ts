/**
 * tenant-cache's semantic store on the real Milvus and Redis, embeddings from the mock
 * upstream's endpoint (feature hashing: texts sharing words are similar). The tenant filter,
 * the scope, the assertion and the encryption, each proven by rows planted behind the store's
 * back; the per-tenant bound and expiry; the purge's delete. Each test has its own collection
 * and Redis keyspace.
 */
import { randomBytes } from 'node:crypto';
import test, { type ExecutionContext } from 'ava';
import type { MilvusClient } from '@zilliz/milvus2-sdk-node';
import { TENANT_COLLECTION_FIELDS as F } from '../../lib/milvus/client';
import { closeAllRedis, type RedisClient } from '../../lib/redis/client';
import type { Keyspace } from '../../lib/redis/keys';
import { Embedder } from '../../lib/retrieval/embedder';
import { createTenantContext, type TenantContext } from '../../lib/tenant/context';
import { startMockUpstream } from '../../mock-upstream/index';
import { CacheKeyring } from '../../plugins/tenant-cache/crypto';
import type { CachedResponse } from '../../plugins/tenant-cache/entry';
import {
  EXPIRES_FIELD,
  SWEEP_INTERVAL_MS,
  SCOPE_FIELD,
  SemanticStore,
} from '../../plugins/tenant-cache/semantic/collection';
import { semanticRequest, semanticScope } from '../../plugins/tenant-cache/semantic/key';
import { deleteTenantRows } from '../../plugins/tenant-cache/semantic/purge';
import { sealRow } from '../../plugins/tenant-cache/semantic/row';
import { connectMilvus, connectRedis, deleteKeyspace, randomKeyspace } from './services';

test.after.always(closeAllRedis);

const DIM = 256;
const MODEL = 'text-embedding-3-small';
const keyring = new CacheKeyring(randomBytes(32));

function context(tenant: string, tools: string[] = []): TenantContext {
  return createTenantContext({
    tenantId: tenant,
    plan: 'pro',
    source: 'consumer',
    subject: `${tenant}-app`,
    policy: {
      toolsAllowed: tools,
      preferredModel: null,
      fallbackModel: null,
      persona: null,
      knowledgeNamespace: tenant,
      weight: 1,
    },
  });
}

const GENS = { knowledge: '0', cache: '0' };

function scopeOf(ctx: TenantContext, question = 'q', gens = GENS): string {
  const req = semanticRequest(
    { model: 'gpt-4o-mini', messages: [{ role: 'user', content: question }] },
    1000,
  );
  if (typeof req === 'string') throw new Error(req);
  return semanticScope(
    ctx,
    keyring,
    {
      method: 'POST',
      pathWithQuery: '/v1/chat/completions',
      routeId: 'r',
      serviceId: 's',
      context: req.context,
    },
    gens,
  );
}

const answer = (text: string): CachedResponse => ({
  createdAt: Date.now(),
  contentType: 'application/json',
  model: 'gpt-4o-mini',
  body: JSON.stringify({ choices: [{ message: { content: text } }] }),
});

interface Setup {
  client: MilvusClient;
  store: SemanticStore;
  embedder: Embedder;
  redis: RedisClient;
  keyspace: Keyspace;
  name: string;
}

async function setup(t: ExecutionContext): Promise<Setup> {
  const client = await connectMilvus();
  t.teardown(() => client.closeConnection());
  const name = `kta_it_sem_${randomBytes(6).toString('hex')}`;
  t.teardown(async () => {
    await client.dropCollection({ collection_name: name });
  });
  const upstream = await startMockUpstream();
  t.teardown(() => upstream.close());
  const redis = await connectRedis();
  const keyspace = randomKeyspace();
  t.teardown(() => deleteKeyspace(redis, keyspace));
  const embedder = new Embedder({
    url: `${upstream.url}/v1/embeddings`,
    model: MODEL,
    dim: DIM,
    sendDimensions: true,
    apiKey: null,
    timeoutMs: 5000,
    cache: { redis, keyspace, ttlSeconds: 60 },
  });
  const store = await SemanticStore.open({
    client,
    collection: {
      name,
      dim: DIM,
      numPartitions: 16,
      metricType: 'COSINE',
      textMaxLength: 65535,
      embeddingModel: MODEL,
    },
    embedder,
    redis,
    keyspace,
    consistency: 'Strong',
  });
  return { client, store, embedder, redis, keyspace, name };
}

const Q = 'what is the refund policy for annual plans in europe';
const NEAR = 'what is the refund policy for annual plans in europe ?';
const FAR = 'how do i rotate the api keys of my organisation';

test('a near-duplicate question of the same tenant and scope is a hit; a far one is not', async (t) => {
  const s = await setup(t);
  const acme = context('acme');
  const keys = keyring.forTenant(acme);
  const scope = scopeOf(acme);
  t.is(
    await s.store.store(acme, keys, scope, Q, answer('refunds: 30 days'), 60, 10, Date.now()),
    'stored',
  );
  const near = await s.store.lookup(
    acme,
    keys,
    scope,
    'What is the refund policy for annual plans in Europe?',
    0.9,
    Date.now(),
  );
  t.is(near.kind, 'hit');
  if (near.kind === 'hit') {
    t.true(near.response.body.includes('refunds: 30 days'));
    t.true(near.similarity >= 0.9);
  }
  const far = await s.store.lookup(acme, keys, scope, FAR, 0.9, Date.now());
  t.is(far.kind, 'miss');
  t.true(far.kind === 'miss' && far.similarity !== null && far.similarity < 0.9);
});

test('another tenant, another scope, a purge generation: never a hit', async (t) => {
  const s = await setup(t);
  const acme = context('acme');
  const globex = context('globex');
  const scope = scopeOf(acme);
  await s.store.store(
    acme,
    keyring.forTenant(acme),
    scope,
    Q,
    answer('acme only'),
    60,
    10,
    Date.now(),
  );
  // globex, same question: its own scope (an HMAC under its key), its own partition filter.
  const g = await s.store.lookup(
    globex,
    keyring.forTenant(globex),
    scopeOf(globex),
    NEAR,
    0.5,
    Date.now(),
  );
  t.is(g.kind, 'miss');
  t.is(g.kind === 'miss' ? g.similarity : 'x', null, 'no row of globex at all');
  // acme with other tool grants: another scope.
  const tooled = context('acme', ['search']);
  t.is(
    (
      await s.store.lookup(
        tooled,
        keyring.forTenant(tooled),
        scopeOf(tooled),
        NEAR,
        0.5,
        Date.now(),
      )
    ).kind,
    'miss',
  );
  // acme after a purge (new cache generation): another scope.
  const purged = scopeOf(acme, 'q', { knowledge: '0', cache: 'pnew' });
  t.not(purged, scope);
  t.is(
    (await s.store.lookup(acme, keyring.forTenant(acme), purged, NEAR, 0.5, Date.now())).kind,
    'miss',
  );
  // And the original still hits.
  t.is(
    (await s.store.lookup(acme, keyring.forTenant(acme), scope, NEAR, 0.9, Date.now())).kind,
    'hit',
  );
});

test('a row planted in B’s partition with B’s scope but sealed by A is an alarm, not served', async (t) => {
  const s = await setup(t);
  const acme = context('acme');
  const globex = context('globex');
  const gScope = scopeOf(globex);
  const vector = (await s.embedder.embedQuery(globex.tenantId, Q)).vector;
  const expires = Math.floor(Date.now() / 1000) + 60;
  // A's answer, sealed under A's key, planted as if it were B's (tenant_id, scope of B).
  await s.client.insert({
    collection_name: s.name,
    data: [
      {
        [F.tenantId]: 'globex',
        [F.text]: sealRow(keyring.forTenant(acme), gScope, expires, answer('acme secret')),
        [F.embedding]: vector,
        [SCOPE_FIELD]: gScope,
        [EXPIRES_FIELD]: expires,
      },
    ],
  });
  const r = await s.store.lookup(globex, keyring.forTenant(globex), gScope, NEAR, 0.5, Date.now());
  t.is(r.kind, 'forged');
  // The reverse: B's answer in A's partition under A's scope.
  const aScope = scopeOf(acme);
  await s.client.insert({
    collection_name: s.name,
    data: [
      {
        [F.tenantId]: 'acme',
        [F.text]: sealRow(keyring.forTenant(globex), aScope, expires, answer('globex secret')),
        [F.embedding]: vector,
        [SCOPE_FIELD]: aScope,
        [EXPIRES_FIELD]: expires,
      },
    ],
  });
  t.is(
    (await s.store.lookup(acme, keyring.forTenant(acme), aScope, NEAR, 0.5, Date.now())).kind,
    'forged',
  );
  // A row whose expiry was moved forward no longer opens (the expiry is associated data).
  const bScope2 = scopeOf(globex, 'q', { knowledge: '1', cache: '0' });
  await s.client.insert({
    collection_name: s.name,
    data: [
      {
        [F.tenantId]: 'globex',
        [F.text]: sealRow(keyring.forTenant(globex), bScope2, expires, answer('b')),
        [F.embedding]: vector,
        [SCOPE_FIELD]: bScope2,
        [EXPIRES_FIELD]: expires + 3600,
      },
    ],
  });
  t.is(
    (await s.store.lookup(globex, keyring.forTenant(globex), bScope2, NEAR, 0.5, Date.now())).kind,
    'forged',
  );
});

test('rows expire and each tenant is bounded; the purge deletes one tenant’s rows only', async (t) => {
  const s = await setup(t);
  const acme = context('acme');
  const globex = context('globex');
  const keys = keyring.forTenant(acme);
  const scope = scopeOf(acme);
  const now = Date.now();
  // An expired row (stored 120 s "ago" with a 60 s life) is never found.
  await s.store.store(acme, keys, scope, FAR, answer('old'), 60, 3, now - 120_000);
  t.is((await s.store.lookup(acme, keys, scope, FAR, 0.9, now)).kind, 'miss');
  // Four more stores with a bound of 3: the oldest live one is evicted, and the expired row
  // with it (its index entry expired with it; the sweep removes the row).
  for (let i = 0; i < 4; i++) {
    await s.store.store(
      acme,
      keys,
      scope,
      `question number ${i} about invoices`,
      answer(`a${i}`),
      60 + i,
      3,
      now,
    );
  }
  t.is(await s.store.countRows(acme.tenantId), 3);
  t.is(await s.redis.zCard(s.keyspace.semanticIndex(acme.tenantId)), 3);
  t.true(
    (await s.redis.pTTL(s.keyspace.semanticIndex(acme.tenantId))) > 0,
    'the index expires too',
  );

  await s.store.store(
    globex,
    keyring.forTenant(globex),
    scopeOf(globex),
    Q,
    answer('g'),
    60,
    3,
    now,
  );
  await deleteTenantRows(s.client, s.name, s.redis, s.keyspace, acme.tenantId);
  t.is(await s.store.countRows(acme.tenantId), 0);
  t.is(await s.store.countRows(globex.tenantId), 1);
  t.is(await s.redis.exists(s.keyspace.semanticIndex(acme.tenantId)), 0);
});

test('a tenant at its bound evicts by id on every store, and sweeps its expired rows at most once a minute', async (t) => {
  const s = await setup(t);
  // A tenant of its own: the sweep's once-a-minute memo is per process.
  const ctx = context(`sweep${randomBytes(3).toString('hex')}`);
  const keys = keyring.forTenant(ctx);
  const scope = scopeOf(ctx);
  const deletes: string[] = [];
  const original = s.client.deleteEntities.bind(s.client);
  s.client.deleteEntities = ((req: Parameters<typeof original>[0]) => {
    deletes.push(String((req as { filter?: string }).filter ?? ''));
    return original(req);
  }) as typeof s.client.deleteEntities;
  t.teardown(() => {
    s.client.deleteEntities = original;
  });
  const now = Date.now();
  // A bound of 1: every store after the first evicts the row before it.
  for (let i = 0; i < 4; i++) {
    await s.store.store(
      ctx,
      keys,
      scope,
      `question ${i} on invoices`,
      answer(`a${i}`),
      60 + i,
      1,
      now,
    );
  }
  const byId = deletes.filter((f) => !f.includes(EXPIRES_FIELD));
  const sweeps = deletes.filter((f) => f.includes(EXPIRES_FIELD));
  t.is(byId.length, 3, 'each eviction deletes its row by id');
  t.is(sweeps.length, 1, 'one sweep of expired rows, not one per store');
  t.is(await s.store.countRows(ctx.tenantId), 1);
  t.true(SWEEP_INTERVAL_MS >= 60_000);
});

test('a question is the last user message; its context is everything else', (t) => {
  const a = semanticRequest(
    {
      model: 'm',
      temperature: 0,
      messages: [
        { role: 'system', content: 'x' },
        { role: 'user', content: 'hi there' },
      ],
    },
    100,
  );
  const b = semanticRequest(
    {
      messages: [
        { role: 'system', content: 'x' },
        { content: 'hello there', role: 'user' },
      ],
      temperature: 0,
      model: 'm',
    },
    100,
  );
  t.true(typeof a !== 'string' && typeof b !== 'string' && a.context === b.context);
  const other = semanticRequest(
    {
      model: 'm',
      temperature: 0,
      messages: [
        { role: 'system', content: 'y' },
        { role: 'user', content: 'hi there' },
      ],
    },
    100,
  );
  t.true(typeof other !== 'string' && typeof a !== 'string' && other.context !== a.context);
  t.is(
    semanticRequest({ model: 'm', messages: [{ role: 'assistant', content: 'x' }] }, 100),
    'no_question',
  );
  t.is(
    semanticRequest({ model: 'm', messages: [{ role: 'user', content: 'x'.repeat(101) }] }, 100),
    'question_too_long',
  );
  t.is(
    semanticRequest(
      { model: 'm', messages: [{ role: 'user', content: [{ type: 'image_url', image_url: {} }] }] },
      100,
    ),
    'no_question',
  );
});
