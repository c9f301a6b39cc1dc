/**
 * Retrieval's knowledge store on the real Milvus and Redis, with embeddings from the mock
 * upstream's OpenAI-compatible endpoint: the tenant filter, the assembly assertion (proven
 * by a row planted behind the filter's back), encryption at rest, model/dimension records,
 * ingestion, offboarding and the knowledge generation. Each test uses its own collection
 * (random suffix, dropped after) and its own Redis keyspace.
 */
import { randomBytes } from 'node:crypto';
import test, { type ExecutionContext } from 'ava';
import { ConsistencyLevelEnum, type MilvusClient } from '@zilliz/milvus2-sdk-node';
import { TENANT_COLLECTION_FIELDS as F } from '../../lib/milvus/client';
import { closeAllRedis } from '../../lib/redis/client';
import { ChunkCipher } from '../../lib/retrieval/chunk-cipher';
import { Embedder } from '../../lib/retrieval/embedder';
import { RetrievalIntegrityError } from '../../lib/retrieval/errors';
import { KnowledgeStore } from '../../lib/retrieval/knowledge-store';
import { ingestDocuments, offboardTenant } from '../../lib/retrieval/knowledge-ops';
import { Retriever } from '../../lib/retrieval/retriever';
import { createTenantContext, type TenantContext } from '../../lib/tenant/context';
import { parseTenantId } from '../../lib/tenant/tenant-id';
import { startMockUpstream } from '../../mock-upstream/index';
import { connectMilvus, connectRedis, deleteKeyspace, randomKeyspace } from './services';

test.after.always(closeAllRedis);

const DIM = 64;
const MODEL = 'text-embedding-3-small';
const secret = randomBytes(32);

function context(tenant: string, namespace = tenant): TenantContext {
  return createTenantContext({
    tenantId: tenant,
    plan: 'pro',
    source: 'consumer',
    subject: `${tenant}-app`,
    policy: {
      toolsAllowed: [],
      preferredModel: null,
      fallbackModel: null,
      persona: null,
      knowledgeNamespace: namespace,
      weight: 1,
    },
  });
}

interface Setup {
  client: MilvusClient;
  store: KnowledgeStore;
  embedder: Embedder;
  retriever: Retriever;
  ops: Parameters<typeof ingestDocuments>[0];
  name: string;
  keyspace: ReturnType<typeof randomKeyspace>;
}

async function setup(t: ExecutionContext, client?: MilvusClient, model = MODEL): Promise<Setup> {
  const milvus = client ?? (await connectMilvus());
  if (!client) t.teardown(() => milvus.closeConnection());
  const name = `kta_it_retr_${randomBytes(6).toString('hex')}`;
  t.teardown(async () => {
    await milvus.dropCollection({ collection_name: name });
  });
  const upstream = await startMockUpstream();
  t.teardown(() => upstream.close());
  const redis = await connectRedis();
  const keyspace = randomKeyspace();
  t.teardown(() => deleteKeyspace(redis, keyspace));
  const store = await KnowledgeStore.open({
    client: milvus,
    collection: {
      name,
      dim: DIM,
      numPartitions: 16,
      metricType: 'COSINE',
      textMaxLength: 16384,
      embeddingModel: model,
    },
    cipher: new ChunkCipher(secret),
    consistency: 'Strong',
    searchTimeoutMs: 5000,
  });
  const embedder = new Embedder({
    url: `${upstream.url}/v1/embeddings`,
    model,
    dim: DIM,
    sendDimensions: true,
    apiKey: null,
    timeoutMs: 5000,
    cache: { redis, keyspace, ttlSeconds: 60 },
  });
  return {
    client: milvus,
    store,
    embedder,
    retriever: new Retriever(embedder, store),
    ops: { store, embedder, redis, keyspace },
    name,
    keyspace,
  };
}

const acme = parseTenantId('acme');
const globex = parseTenantId('globex');
const ACME_SECRET = 'The Acme launch code is PINEAPPLE-42 and the vault opens on Tuesdays.';

test('ingest, retrieve only the own tenant, offboard verified, generation bumped each change', async (t) => {
  const s = await setup(t);
  const redis = await connectRedis();
  const a = await ingestDocuments(s.ops, acme, [{ source: 'launch.md', text: ACME_SECRET }]);
  t.is(a.chunks, 1);
  t.is(a.generation, 1);
  await ingestDocuments(s.ops, globex, [
    { source: 'faq.md', text: 'Globex ships globally. The vault of Globex opens never.' },
  ]);

  const mine = await s.retriever.retrieve(context('acme'), 'when does the vault open', 3);
  t.deepEqual(
    mine.chunks.map((c) => [c.source, c.text]),
    [['launch.md', ACME_SECRET]],
  );
  t.is(mine.cache, 'miss');
  t.is((await s.retriever.retrieve(context('acme'), 'when does the vault open', 3)).cache, 'hit');

  const theirs = await s.retriever.retrieve(context('globex'), ACME_SECRET, 5);
  t.true(theirs.chunks.every((c) => !c.text.includes('PINEAPPLE')));
  t.is(theirs.chunks.length, 1);

  // Re-ingesting a source replaces its chunks instead of adding to them.
  const again = await ingestDocuments(s.ops, acme, [{ source: 'launch.md', text: 'Now: MANGO.' }]);
  t.is(again.generation, 2);
  t.is(await s.store.countChunks(acme), 1);

  // Text at rest is sealed: the stored bytes do not contain the secret.
  const raw = await s.client.query({
    collection_name: s.name,
    filter: `${F.tenantId} == "globex"`,
    output_fields: [F.text],
    consistency_level: ConsistencyLevelEnum.Strong,
  });
  t.true(raw.data.every((r) => String(r[F.text]).startsWith('v1.')));
  t.false(raw.data.some((r) => String(r[F.text]).includes('Globex')));

  const gen = await offboardTenant(s.ops, acme);
  t.is(gen, 3);
  t.is(await s.store.countChunks(acme), 0);
  t.is(await s.store.countChunks(globex), 1);
  t.is(await redis.get(s.keyspace.knowledgeGeneration(acme)), '3');
  t.deepEqual((await s.retriever.retrieve(context('acme'), 'vault', 3)).chunks, []);
});

test('min score drops weak hits; k bounds the count', async (t) => {
  const s = await setup(t);
  await ingestDocuments(
    s.ops,
    acme,
    ['alpha beta gamma', 'delta epsilon zeta', 'alpha beta theta', 'iota kappa lambda'].map(
      (text, i) => ({ source: `d${i}`, text }),
    ),
  );
  const all = await s.retriever.retrieve(context('acme'), 'alpha beta', 4);
  t.is(all.chunks.length, 4);
  t.is(all.chunks[0]?.text.startsWith('alpha beta'), true);
  const strong = await s.retriever.retrieve(context('acme'), 'alpha beta', 4, { minScore: 0.3 });
  t.deepEqual(strong.chunks.map((c) => c.source).sort(), ['d0', 'd2']);
  t.is((await s.retriever.retrieve(context('acme'), 'alpha beta', 1)).chunks.length, 1);
});

test('the assembly assertion fires on a foreign row planted behind the filter', async (t) => {
  const real = await connectMilvus();
  t.teardown(() => real.closeConnection());
  // A Milvus (or SDK) that silently ignores the filter: search goes through without it.
  const filterless = new Proxy(real, {
    get(target, prop, receiver) {
      if (prop === 'search') {
        return (req: Record<string, unknown>) => {
          const { filter: _dropped, ...rest } = req;
          return target.search(rest as unknown as Parameters<MilvusClient['search']>[0]);
        };
      }
      const v: unknown = Reflect.get(target, prop, receiver);
      return typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(target) : v;
    },
  });
  const s = await setup(t, filterless);
  await ingestDocuments(s.ops, acme, [{ source: 'launch.md', text: ACME_SECRET }]);
  await ingestDocuments(s.ops, globex, [{ source: 'faq.md', text: 'Globex weather report.' }]);
  const err = await t.throwsAsync(s.retriever.retrieve(context('globex'), ACME_SECRET, 5), {
    instanceOf: RetrievalIntegrityError,
  });
  t.is(err?.kind, 'tenant_mismatch');
});

test('a chunk sealed for another tenant does not open (third lock)', async (t) => {
  const s = await setup(t);
  const cipher = new ChunkCipher(secret);
  const payload = JSON.stringify({ ns: acme, src: 'stolen', i: 0, text: ACME_SECRET });
  const [vector] = await s.embedder.embedBatch([ACME_SECRET]);
  // Labelled globex (so the filter and the tenant field both let it through), sealed for acme.
  await s.client.insert({
    collection_name: s.name,
    data: [
      { [F.tenantId]: globex, [F.text]: cipher.seal(acme, payload), [F.embedding]: vector ?? [] },
    ],
  });
  const err = await t.throwsAsync(s.retriever.retrieve(context('globex'), ACME_SECRET, 3), {
    instanceOf: RetrievalIntegrityError,
  });
  t.is(err?.kind, 'chunk_unreadable');

  // Sealed for globex but naming acme inside: refused as a tenant mismatch.
  const s2 = await setup(t);
  await s2.client.insert({
    collection_name: s2.name,
    data: [
      { [F.tenantId]: globex, [F.text]: cipher.seal(globex, payload), [F.embedding]: vector ?? [] },
    ],
  });
  const err2 = await t.throwsAsync(s2.retriever.retrieve(context('globex'), ACME_SECRET, 3), {
    instanceOf: RetrievalIntegrityError,
  });
  t.is(err2?.kind, 'tenant_mismatch');
});

test('a collection recorded for another embedding model or none is refused', async (t) => {
  const s = await setup(t);
  const open = (embeddingModel: string, dim = DIM) =>
    KnowledgeStore.open({
      client: s.client,
      collection: { name: s.name, dim, numPartitions: 16, metricType: 'COSINE', embeddingModel },
      cipher: new ChunkCipher(secret),
      consistency: 'Strong',
      searchTimeoutMs: 1000,
    });
  await t.notThrowsAsync(open(MODEL));
  const err = await t.throwsAsync(open('text-embedding-3-large'), {
    instanceOf: RetrievalIntegrityError,
  });
  t.is(err?.kind, 'collection_mismatch');
  t.regex(err?.message ?? '', /text-embedding-3-small\/64/);
  await t.throwsAsync(open(MODEL, 32), { instanceOf: RetrievalIntegrityError });
});

test('an embeddings endpoint answering another dimension is refused, not searched', async (t) => {
  const s = await setup(t);
  const wrong = new Embedder({ ...s.embedder.opts, dim: 32, sendDimensions: false, cache: null });
  const err = await t.throwsAsync(
    new Retriever(wrong, s.store).retrieve(context('acme'), 'anything', 3),
    { instanceOf: RetrievalIntegrityError },
  );
  t.is(err?.kind, 'embedding_mismatch');
});
