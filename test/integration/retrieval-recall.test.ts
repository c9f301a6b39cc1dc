/**
 * Recall of the tenant-filtered search on the real Milvus: a tenant with stored chunks must
 * get hits, as many as it has up to k, and the exact nearest ones, however small its share of
 * its hash partition, at every stage of a segment's life (growing, sealed, indexed).
 *
 * Why: with an HNSW index, Milvus 2.3.5 returned no hit at all for 5% of searches at 1,000
 * tenants × 200 chunks (bench/retrieval-injector.ts), and for tenants with 2 chunks among
 * ~1,400 rows at 100 × 200. The misses came from sealed segments served before (or without)
 * their HNSW index, through the query node's interim IVF index (`queryNode.segcore.
 * interimIndex`, nprobe 16 of nlist 128), which applies the tenant filter only inside the
 * probed clusters. The collection's default index is FLAT since (lib/milvus/client.ts): exact,
 * no interim index. This test keeps the default honest; whether HNSW fails it depends on how
 * fast the index is built (it passed on some runs), so it is not a proof that HNSW is safe.
 */
import { randomBytes } from 'node:crypto';
import test from 'ava';
import { ConsistencyLevelEnum } from '@zilliz/milvus2-sdk-node';
import { TENANT_COLLECTION_FIELDS as F } from '../../lib/milvus/client';
import { ChunkCipher } from '../../lib/retrieval/chunk-cipher';
import { KnowledgeStore, type DocumentToStore } from '../../lib/retrieval/knowledge-store';
import { createTenantContext, type TenantContext } from '../../lib/tenant/context';
import { parseTenantId } from '../../lib/tenant/tenant-id';
import { embedText } from '../../mock-upstream/index';
import { connectMilvus } from './services';

const DIM = 64;
const BIG_TENANTS = 16;
const BIG_CHUNKS = 200;
const SMALL_TENANTS = 20;
const SMALL_CHUNKS = 2;
const K = 4;
const TOPICS = ['anvil', 'rocket', 'refund', 'desert', 'coyote', 'warranty', 'shipping'];
/** Queries per tenant and stage. */
const QUERIES = TOPICS.slice(0, 4);

function context(tenant: string): TenantContext {
  return createTenantContext({
    tenantId: tenant,
    plan: 'pro',
    source: 'consumer',
    subject: tenant,
    policy: {
      toolsAllowed: [],
      preferredModel: null,
      fallbackModel: null,
      persona: null,
      knowledgeNamespace: tenant,
      weight: 1,
    },
  });
}

const chunkText = (tenant: string, i: number) =>
  `note ${i} of ${tenant} on ${TOPICS[i % TOPICS.length] ?? ''} ${(i * 7) % 13} ${(i * 11) % 17}`;

function cosine(a: readonly number[], b: readonly number[]): number {
  let s = 0;
  for (let i = 0; i < a.length; i++) s += (a[i] ?? 0) * (b[i] ?? 0);
  return s; // both unit length
}

test('every tenant with chunks gets its exact top-k, small tenants in a big partition too', async (t) => {
  t.timeout(180_000);
  const client = await connectMilvus();
  t.teardown(() => client.closeConnection());
  const name = `kta_it_recall_${randomBytes(6).toString('hex')}`;
  t.teardown(async () => {
    await client.dropCollection({ collection_name: name });
  });
  const store = await KnowledgeStore.open({
    client,
    // The default index (no indexType): what the plugin uses unless configured otherwise.
    collection: {
      name,
      dim: DIM,
      // One partition of 3,240 rows: the share of a partition a tenant holds at 1,000 × 200
      // over 64 partitions (16 tenants per partition).
      numPartitions: 1,
      metricType: 'COSINE',
      embeddingModel: 'm',
      indexType: 'HNSW',
    },
    cipher: new ChunkCipher(randomBytes(32)),
    // Bounded, as the plugin searches; each stage starts behind a Strong barrier (below).
    consistency: 'Bounded',
    searchTimeoutMs: 30_000,
  });

  const tenants = new Map<string, string[]>();
  for (let i = 0; i < BIG_TENANTS; i++) tenants.set(`big${i}`, []);
  for (let i = 0; i < SMALL_TENANTS; i++) tenants.set(`small${i}`, []);
  const total = BIG_TENANTS * BIG_CHUNKS + SMALL_TENANTS * SMALL_CHUNKS;
  const docs: DocumentToStore[] = [];
  for (const [tenant, texts] of tenants) {
    const n = tenant.startsWith('big') ? BIG_CHUNKS : SMALL_CHUNKS;
    for (let i = 0; i < n; i++) texts.push(chunkText(tenant, i));
    docs.push({
      tenant: parseTenantId(tenant),
      source: 'doc.md',
      chunks: texts.map((text) => ({ text, vector: embedText(text, DIM) })),
    });
  }
  t.is(await store.appendDocuments(docs), total);

  const check = async (stage: string) => {
    // Barrier: a Strong count waits until the query nodes have consumed every insert, so the
    // Bounded searches after it see all rows (the test is about recall, not freshness).
    const count = await client.query({
      collection_name: name,
      filter: '',
      output_fields: ['count(*)'],
      consistency_level: ConsistencyLevelEnum.Strong,
    });
    t.is(Number(count.data[0]?.['count(*)']), total, `${stage}: all rows counted`);
    const failures: string[] = [];
    for (const [tenant, texts] of tenants) {
      for (const topic of QUERIES) {
        const query = embedText(`what about ${topic} notes ${tenant}`, DIM);
        const hits = await store.search(context(tenant), query, K, -Infinity);
        // Brute force over the tenant's own chunks: the k-th best score is the bar.
        const scores = texts.map((x) => cosine(query, embedText(x, DIM))).sort((a, b) => b - a);
        const want = Math.min(K, texts.length);
        const bar = (scores[want - 1] ?? 0) - 1e-4;
        if (hits.length !== want) failures.push(`${tenant}/${topic}: ${hits.length}/${want} hits`);
        else if (hits.some((h) => h.score < bar)) failures.push(`${tenant}/${topic}: not nearest`);
      }
    }
    t.deepEqual(failures, [], `${stage}: every tenant gets its exact top-${K}`);
  };

  await check('growing segments');
  const flushed = await client.flushSync({ collection_names: [name] });
  t.is(flushed.status.error_code, 'Success');
  await check('sealed segments');
  const deadline = Date.now() + 90_000;
  for (;;) {
    const p = await client.getIndexBuildProgress({
      collection_name: name,
      field_name: F.embedding,
    });
    if (Number(p.indexed_rows) >= Number(p.total_rows) || Date.now() > deadline) break;
    await new Promise((r) => setTimeout(r, 1000));
  }
  // The query coordinator swaps the indexed segments in shortly after the build.
  await new Promise((r) => setTimeout(r, 3000));
  await check('indexed segments');
});
