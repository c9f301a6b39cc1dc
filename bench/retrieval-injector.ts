/**
 * retrieval-injector benchmarks, in one run:
 * 1. partition-key search p50/p99 in the real Milvus with TENANTS × CHUNKS sealed chunks
 *    (default 1,000 × 200 = 200,000 rows), through `KnowledgeStore.search` (the plugin's path
 *    minus the embedding call: tenant filter, assembly assertion, decryption), with what the
 *    time is made of: the raw SDK search, Milvus's own latency (its /metrics), our code, GC,
 *    and the consistency levels; recall@10 against brute force for sampled tenants;
 * 2. ingest throughput through the real pipeline (LangChain splitter, embeddings endpoint of
 *    the mock upstream, sealing, Milvus insert);
 * 3. the latency the plugin adds per request through a gateway (the real Kong 3.9.3 when
 *    installed, else the harness): tenant-auth alone vs tenant-auth + retrieval-injector.
 *
 * The search dataset is a named collection, `kta_bench_retrieval_<T>x<C>_<INDEX>_p<P>`, kept
 * between runs: it is reused when it holds exactly TENANTS × CHUNKS rows with the expected
 * schema (dimension, embedding model record, index type), else dropped and rebuilt: bulk
 * insert of pre-computed vectors through `KnowledgeStore.appendDocuments` (the store's own
 * sealing/encryption), ~2-4 min on 2 cores. Its chunks are sealed with a fixed, bench-only
 * secret (derived from a constant), so a reused collection still opens. `scripts/services/milvus.sh
 * start` wipes Milvus's data, so the dataset survives only while the same Milvus keeps running
 * (`KEEP_SERVICES=1 npm run bench`).
 * Environment: BENCH_TENANTS, BENCH_CHUNKS, BENCH_SEARCHES (1000), BENCH_REQUESTS (200),
 * BENCH_INDEX (FLAT|HNSW), BENCH_PARTITIONS (64), BENCH_REBUILD=1 (rebuild the dataset),
 * BENCH_DROP=1 (drop it at the end), MILVUS_METRICS_URL (http://127.0.0.1:9091/metrics).
 * Run: `npm run bench -- retrieval-injector` (or `npx tsx bench/retrieval-injector.ts` after
 * `npm run build`), with Redis and Milvus up. The default run is bounded: < 10 min with the
 * dataset to build, ~3 min when it is reused.
 */
import { createHash, randomBytes } from 'node:crypto';
import { PerformanceObserver } from 'node:perf_hooks';
import http from 'node:http';
import { existsSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import os, { tmpdir } from 'node:os';
import path from 'node:path';
import { startGateway } from '../harness/index';
import type { Gateway } from '../harness/types';
import { locateKong, startKong } from '../kong-runner/index';
import { ConsistencyLevelEnum, type MilvusClient } from '@zilliz/milvus2-sdk-node';
import {
  TENANT_COLLECTION_FIELDS as F,
  createMilvus,
  searchParams,
  type TenantCollectionSpec,
  type VectorIndexType,
} from '../lib/milvus/client';
import { tenantFilter } from '../lib/milvus/tenant-filter';
import { closeAllRedis, createRedis, waitForRedis } from '../lib/redis/client';
import { createKeyspace } from '../lib/redis/keys';
import { ChunkCipher } from '../lib/retrieval/chunk-cipher';
import { Embedder } from '../lib/retrieval/embedder';
import { KnowledgeStore, type DocumentToStore } from '../lib/retrieval/knowledge-store';
import { ingestDocuments } from '../lib/retrieval/knowledge-ops';
import { createTenantContext, type TenantContext } from '../lib/tenant/context';
import { parseTenantId } from '../lib/tenant/tenant-id';
import { embedText, startMockUpstream } from '../mock-upstream/index';
import { percentile, table, writeSection } from './report';

const ROOT = path.resolve(__dirname, '..');
const TENANTS = Number(process.env.BENCH_TENANTS ?? 1000);
const CHUNKS = Number(process.env.BENCH_CHUNKS ?? 200);
const SEARCHES = Number(process.env.BENCH_SEARCHES ?? 1000);
const REQUESTS = Number(process.env.BENCH_REQUESTS ?? 200);
const INDEX = (process.env.BENCH_INDEX ?? 'FLAT') as VectorIndexType;
const PARTITIONS = Number(process.env.BENCH_PARTITIONS ?? 64);
const METRICS_PORT_FILE = path.resolve(__dirname, '..', '.run', 'milvus', 'metrics.port');
const METRICS_URL =
  process.env.MILVUS_METRICS_URL ??
  `http://127.0.0.1:${existsSync(METRICS_PORT_FILE) ? readFileSync(METRICS_PORT_FILE, 'utf8').trim() : '9091'}/metrics`;
const DIM = 64;
const MODEL = 'text-embedding-3-small';
/** The dataset's vectors come from the mock's hashed embedder: recorded as its own model. */
const DATASET_MODEL = 'bench-hashed-embedding';
/** Bench-only sealing secret, fixed so a kept dataset still opens in the next run. */
const DATASET_SECRET = createHash('sha256').update('kta bench retrieval dataset').digest('hex');
const MILVUS = process.env.MILVUS_ADDRESS ?? '127.0.0.1:19530';
const REDIS = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379';
const WORDS =
  'alpha beta gamma delta epsilon zeta eta theta iota kappa lambda mu nu xi omicron pi rho sigma tau upsilon phi chi psi omega anvil rocket return shipping warranty refund desert coyote'.split(
    ' ',
  );

function ctxOf(tenant: string): TenantContext {
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

function sentence(seed: number): string {
  const out: string[] = [];
  let x = seed * 2654435761;
  for (let i = 0; i < 12; i++) {
    x = (x * 1103515245 + 12345) >>> 0;
    out.push(WORDS[x % WORDS.length] ?? 'x');
  }
  return out.join(' ');
}

function stats(ms: number[]): { p50: number; p99: number; mean: number } {
  const s = [...ms].sort((a, b) => a - b);
  return {
    p50: percentile(s, 50),
    p99: percentile(s, 99),
    mean: s.reduce((a, b) => a + b, 0) / Math.max(1, s.length),
  };
}

const f2 = (n: number) => n.toFixed(2);

function post(
  url: string,
  headers: Record<string, string>,
  body: string,
): Promise<{ ms: number; status: number }> {
  const t0 = process.hrtime.bigint();
  return new Promise((resolve, reject) => {
    const req = http.request(url, { method: 'POST', headers, agent: false }, (res) => {
      res.resume();
      res.on('end', () =>
        resolve({ ms: Number(process.hrtime.bigint() - t0) / 1e6, status: res.statusCode ?? 0 }),
      );
    });
    req.on('error', reject);
    req.end(body);
  });
}

/** Sums and counts of Milvus's search-latency histograms (its Prometheus endpoint). */
async function milvusMetrics(): Promise<Map<string, number> | null> {
  try {
    const text = await (await fetch(METRICS_URL, { signal: AbortSignal.timeout(3000) })).text();
    const out = new Map<string, number>();
    const re =
      /^(milvus_(?:proxy_sq_latency|proxy_sq_wait_result_latency|querynode_sq_segment_latency|querynode_sq_wait_tsafe_latency)_(?:sum|count|bucket))(\{[^}]*\})? (\S+)$/;
    for (const line of text.split('\n')) {
      const m = re.exec(line);
      if (!m?.[1]) continue;
      // Search requests only (the proxy histograms also hold queries).
      if (m[2]?.includes('query_type') && !m[2].includes('query_type="search"')) continue;
      // Buckets are kept by their upper bound: `<name>_bucket le=<ms>`.
      const le = m[1].endsWith('_bucket') ? /le="([^"]+)"/.exec(m[2] ?? '')?.[1] : undefined;
      const key = le === undefined ? m[1] : `${m[1]} le=${le}`;
      out.set(key, (out.get(key) ?? 0) + Number(m[3]));
    }
    return out;
  } catch {
    return null;
  }
}

/** Mean of one histogram between two scrapes (other clients' searches included). */
function meanBetween(
  a: Map<string, number> | null,
  b: Map<string, number> | null,
  name: string,
): number {
  if (!a || !b) return NaN;
  const n = (b.get(`${name}_count`) ?? 0) - (a.get(`${name}_count`) ?? 0);
  return n > 0 ? ((b.get(`${name}_sum`) ?? 0) - (a.get(`${name}_sum`) ?? 0)) / n : NaN;
}

/**
 * Milvus's own p99 between two scrapes, as the upper bound of the histogram bucket that holds
 * it (its buckets double: 1, 2, 4, … ms, so this is a bound, not a value).
 */
function p99Between(
  a: Map<string, number> | null,
  b: Map<string, number> | null,
  name: string,
): number {
  if (!a || !b) return NaN;
  const prefix = `${name}_bucket le=`;
  const buckets = [...b.keys()]
    .filter((k) => k.startsWith(prefix))
    .map((k) => ({ le: Number(k.slice(prefix.length)), n: (b.get(k) ?? 0) - (a.get(k) ?? 0) }))
    .sort((x, y) => x.le - y.le);
  const total = buckets.at(-1)?.n ?? 0;
  if (total <= 0) return NaN;
  return buckets.find((x) => x.n >= 0.99 * total)?.le ?? NaN;
}

const chunkVector = (t: number, c: number) => embedText(sentence(t * CHUNKS + c), DIM);

async function openDataset(milvus: MilvusClient): Promise<{
  store: KnowledgeStore;
  spec: TenantCollectionSpec;
  built: { rows: number; insertSeconds: number; flushSeconds: number; indexSeconds: number } | null;
}> {
  const spec = {
    name: `kta_bench_retrieval_${TENANTS}x${CHUNKS}_${INDEX.toLowerCase()}_p${PARTITIONS}`,
    dim: DIM,
    numPartitions: PARTITIONS,
    metricType: 'COSINE' as const,
    indexType: INDEX,
    textMaxLength: 16384,
    embeddingModel: DATASET_MODEL,
  };
  const open = () =>
    KnowledgeStore.open({
      client: milvus,
      collection: spec,
      cipher: new ChunkCipher(Buffer.from(DATASET_SECRET)),
      consistency: 'Bounded',
      searchTimeoutMs: 10_000,
    });
  let store: KnowledgeStore | null = null;
  if (process.env.BENCH_REBUILD !== '1') {
    // Reused only if it opens (schema, dimension, model record, index) and is complete.
    store = await open().catch(() => null);
    if (store) {
      const count = await milvus.query({
        collection_name: spec.name,
        filter: '',
        output_fields: ['count(*)'],
        consistency_level: ConsistencyLevelEnum.Strong,
      });
      if (Number(count.data[0]?.['count(*)']) === TENANTS * CHUNKS) {
        return { store, spec, built: null };
      }
    }
  }
  await milvus.dropCollection({ collection_name: spec.name });
  store = await open();
  process.stdout.write(`building ${spec.name} (${TENANTS * CHUNKS} rows)\n`);
  const t0 = Date.now();
  let docs: DocumentToStore[] = [];
  let pending = 0;
  for (let t = 0; t < TENANTS; t++) {
    const chunks = Array.from({ length: CHUNKS }, (_, c) => ({
      text: sentence(t * CHUNKS + c),
      vector: chunkVector(t, c),
    }));
    docs.push({ tenant: parseTenantId(`t${t}`), source: `doc-${t}.md`, chunks });
    pending += CHUNKS;
    if (pending >= 5000 || t === TENANTS - 1) {
      await store.appendDocuments(docs);
      docs = [];
      pending = 0;
    }
  }
  const insertSeconds = (Date.now() - t0) / 1000;
  const f0 = Date.now();
  await milvus.flushSync({ collection_names: [spec.name] });
  const flushSeconds = (Date.now() - f0) / 1000;
  const i0 = Date.now();
  const deadline = Date.now() + 300_000;
  for (;;) {
    const p = await milvus.getIndexBuildProgress({
      collection_name: spec.name,
      field_name: F.embedding,
    });
    if (Number(p.indexed_rows) >= Number(p.total_rows) || Date.now() > deadline) break;
    await new Promise((r) => setTimeout(r, 2000));
  }
  return {
    store,
    spec,
    built: {
      rows: TENANTS * CHUNKS,
      insertSeconds,
      flushSeconds,
      indexSeconds: (Date.now() - i0) / 1000,
    },
  };
}

interface Timed {
  p50: number;
  p99: number;
  mean: number;
  empty: number;
  milvusMean: number;
  /** Upper bound of Milvus's own p99 (its histogram bucket). */
  milvusP99: number;
}

async function timed(n: number, one: (i: number) => Promise<number>): Promise<Timed> {
  for (let i = 0; i < Math.min(50, n); i++) await one(i + 1_000_000);
  const m0 = await milvusMetrics();
  const ms: number[] = [];
  let empty = 0;
  const stop = Date.now() + 90_000;
  for (let i = 0; i < n && Date.now() < stop; i++) {
    const s = process.hrtime.bigint();
    const hits = await one(i);
    ms.push(Number(process.hrtime.bigint() - s) / 1e6);
    if (hits === 0) empty++;
  }
  const m1 = await milvusMetrics();
  return {
    ...stats(ms),
    empty,
    milvusMean: meanBetween(m0, m1, 'milvus_proxy_sq_latency'),
    milvusP99: p99Between(m0, m1, 'milvus_proxy_sq_latency'),
  };
}

async function searchBench(milvus: MilvusClient) {
  const { store, spec, built } = await openDataset(milvus);
  const tenantOf = (i: number) => `t${(i * 7919) % TENANTS}`;
  const queryOf = (i: number) => embedText(sentence(i + 99_991), DIM);
  const K = 4;
  const raw = (consistency: ConsistencyLevelEnum, output: string[]) => async (i: number) => {
    const r = await milvus.search({
      collection_name: spec.name,
      vector: queryOf(i),
      limit: K,
      filter: tenantFilter(parseTenantId(tenantOf(i))),
      metric_type: spec.metricType,
      params: searchParams(spec, K),
      output_fields: output,
      consistency_level: consistency,
    });
    return r.results.length;
  };
  const C = ConsistencyLevelEnum;
  // The plugin's path and the same raw SDK request, interleaved (one of each per step) so both
  // see the same machine; GC pauses observed meanwhile.
  const gc: number[] = [];
  const obs = new PerformanceObserver((list) => {
    for (const e of list.getEntries()) gc.push(e.duration);
  });
  const rawSame = raw(C.Bounded, [F.tenantId, F.text]);
  const storeMs: number[] = [];
  const rawMs: number[] = [];
  let storeEmpty = 0;
  let rawEmpty = 0;
  const viaStoreOne = async (i: number) =>
    (await store.search(ctxOf(tenantOf(i)), queryOf(i), K, -1)).length;
  const clock = async (fn: () => Promise<number>, into: number[]) => {
    const s = process.hrtime.bigint();
    const n = await fn();
    into.push(Number(process.hrtime.bigint() - s) / 1e6);
    return n;
  };
  for (let i = 0; i < 50; i++) {
    await viaStoreOne(i + 1_000_000);
    await rawSame(i + 1_000_000);
  }
  const m0 = await milvusMetrics();
  obs.observe({ entryTypes: ['gc'] });
  const stop = Date.now() + 120_000;
  for (let i = 0; i < SEARCHES && Date.now() < stop; i++) {
    if ((await clock(() => viaStoreOne(i), storeMs)) === 0) storeEmpty++;
    if ((await clock(() => rawSame(i), rawMs)) === 0) rawEmpty++;
  }
  obs.disconnect();
  const m1 = await milvusMetrics();
  const both = meanBetween(m0, m1, 'milvus_proxy_sq_latency');
  const bothP99 = p99Between(m0, m1, 'milvus_proxy_sq_latency');
  const viaStore: Timed = {
    ...stats(storeMs),
    empty: storeEmpty,
    milvusMean: both,
    milvusP99: bothP99,
  };
  const rawBounded: Timed = {
    ...stats(rawMs),
    empty: rawEmpty,
    milvusMean: both,
    milvusP99: bothP99,
  };
  const rawIdsOnly = await timed(Math.min(SEARCHES, 300), raw(C.Bounded, []));
  const rawEventually = await timed(
    Math.min(SEARCHES, 300),
    raw(C.Eventually, [F.tenantId, F.text]),
  );
  const rawStrong = await timed(Math.min(SEARCHES, 100), raw(C.Strong, [F.tenantId, F.text]));

  // Recall@10 of the filtered search against brute force over the tenant's own vectors.
  const R = 10;
  let found = 0;
  let zero = 0;
  const sampled = Math.min(100, TENANTS);
  for (let s = 0; s < sampled; s++) {
    const t = (s * 104_729) % TENANTS;
    const q = embedText(sentence(s + 555_555), DIM);
    const scores = Array.from({ length: CHUNKS }, (_, c) =>
      chunkVector(t, c).reduce((a, x, j) => a + x * (q[j] ?? 0), 0),
    ).sort((a, b) => b - a);
    const bar = (scores[Math.min(R, CHUNKS) - 1] ?? 0) - 1e-4;
    const r = await milvus.search({
      collection_name: spec.name,
      vector: q,
      limit: R,
      filter: tenantFilter(parseTenantId(`t${t}`)),
      metric_type: spec.metricType,
      params: searchParams(spec, R),
      output_fields: [],
      consistency_level: C.Bounded,
    });
    if (r.results.length === 0) zero++;
    found += r.results.filter((h) => h.score >= bar).length;
  }
  const recall = found / (sampled * Math.min(R, CHUNKS));
  return {
    spec,
    built,
    viaStore,
    rawBounded,
    rawIdsOnly,
    rawEventually,
    rawStrong,
    gc: { count: gc.length, total: gc.reduce((a, b) => a + b, 0), max: Math.max(0, ...gc) },
    recall,
    recallZero: zero,
    recallSampled: sampled,
  };
}

async function main(): Promise<void> {
  const milvus = await createMilvus({ address: MILVUS, timeoutMs: 120_000 });
  const collection = `kta_bench_retr_${randomBytes(4).toString('hex')}`;
  const secret = randomBytes(32).toString('hex');
  const cipher = new ChunkCipher(Buffer.from(secret));
  const upstream = await startMockUpstream();
  const redis = createRedis({ url: REDIS, commandTimeoutMs: 5000 });
  await waitForRedis(redis, 10_000);
  const keyspace = createKeyspace(`bench-${randomBytes(4).toString('hex')}`);
  const closers: Array<() => Promise<unknown>> = [];
  try {
    const store = await KnowledgeStore.open({
      client: milvus,
      collection: {
        name: collection,
        dim: DIM,
        numPartitions: 64,
        metricType: 'COSINE',
        textMaxLength: 16384,
        embeddingModel: MODEL,
      },
      cipher,
      consistency: 'Bounded',
      searchTimeoutMs: 10_000,
    });

    const search = await searchBench(milvus);

    // 2. Ingest throughput through the real pipeline (splitter, embeddings endpoint, seal, insert).
    const embedder = new Embedder({
      url: `${upstream.url}/v1/embeddings`,
      model: MODEL,
      dim: DIM,
      sendDimensions: true,
      apiKey: null,
      timeoutMs: 30_000,
      cache: null,
    });
    const doc = Array.from({ length: 400 }, (_, i) => `${sentence(i)}.`).join('\n\n');
    const i0 = Date.now();
    const ingested = await ingestDocuments(
      { store, embedder, redis, keyspace },
      parseTenantId('ingest-bench'),
      [{ source: 'big.md', text: doc }],
      { chunkSize: 400, chunkOverlap: 40 },
    );
    const ingestSeconds = (Date.now() - i0) / 1000;

    // 3. Added latency per request through a gateway.
    const secretFile = path.join(mkdtempSync(path.join(tmpdir(), 'kta-bench-')), 'secret');
    writeFileSync(secretFile, secret);
    const consumers = [
      {
        username: 't1-app',
        custom_id: 't1',
        tags: ['plan:pro'],
        keyauth_credentials: [{ key: 't1-key' }],
      },
    ];
    const route = (name: string) => ({ name, paths: [`/${name}`], strip_path: true });
    const config = {
      _format_version: '3.0',
      services: [{ name: 'llm', url: upstream.url, routes: [route('auth'), route('retr')] }],
      plugins: [
        ...['auth', 'retr'].flatMap((r) => [
          { name: 'key-auth', route: r, config: { hide_credentials: true } },
          {
            name: 'tenant-auth',
            route: r,
            config: { plans: { pro: { tools_allowed: ['*'] } }, validate_json_body: false },
          },
        ]),
        {
          name: 'retrieval-injector',
          route: 'retr',
          config: {
            milvus: { address: MILVUS, collection },
            embeddings: { url: `${upstream.url}/v1/embeddings`, model: MODEL, dimensions: DIM },
            redis: { url: REDIS, key_namespace: keyspace.namespace },
            encryption: { secret_file: secretFile },
          },
        },
      ],
      consumers,
    };
    const pluginServers = {
      'tenant-auth': path.join(ROOT, 'dist', 'pluginservers', 'tenant-auth'),
      'retrieval-injector': path.join(ROOT, 'dist', 'pluginservers', 'retrieval-injector'),
    };
    const useKong = process.env.GATEWAY !== 'harness' && locateKong() !== undefined;
    const gateway: Gateway = useKong
      ? await startKong({ config, pluginServers, label: 'bench-retrieval' })
      : await startGateway({ config, pluginServers });
    closers.push(() => gateway.close());
    const headers = { apikey: 't1-key', 'content-type': 'application/json' };
    const body = (q: string) =>
      JSON.stringify({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: q }] });
    const run = async (p: string, distinct: boolean) => {
      const ms: number[] = [];
      for (let i = 0; i < 20; i++) await post(`${gateway.url}${p}`, headers, body(sentence(i)));
      for (let i = 0; i < REQUESTS; i++) {
        const r = await post(
          `${gateway.url}${p}`,
          headers,
          body(sentence(distinct ? 500_000 + i : 7)),
        );
        if (r.status !== 200) throw new Error(`${p}: status ${r.status}`);
        ms.push(r.ms);
      }
      return stats(ms);
    };
    const base = await run('/auth/v1/chat/completions', false);
    const cached = await run('/retr/v1/chat/completions', false);
    const uncached = await run('/retr/v1/chat/completions', true);

    const rowsOut = [
      ['tenant-auth only', f2(base.p50), f2(base.p99), '—'],
      [
        '+ retrieval-injector, repeated query (embedding cached)',
        f2(cached.p50),
        f2(cached.p99),
        f2(cached.p50 - base.p50),
      ],
      [
        '+ retrieval-injector, distinct queries (embedding call each)',
        f2(uncached.p50),
        f2(uncached.p99),
        f2(uncached.p50 - base.p50),
      ],
    ];
    const S = search;
    const ms = (t: Timed) => `${f2(t.p50)} / ${f2(t.p99)} / ${f2(t.mean)}`;
    const inMilvus = (t: Timed) =>
      `${Number.isNaN(t.milvusMean) ? 'n/a' : f2(t.milvusMean)} / ${Number.isNaN(t.milvusP99) ? 'n/a' : `≤ ${t.milvusP99}`}`;
    const breakdown = table(
      ['search (top 4, one tenant)', 'p50 / p99 / mean ms', 'Milvus proxy mean / p99 ms', 'empty'],
      [
        [
          '`KnowledgeStore.search`, Bounded (the plugin)',
          ms(S.viaStore),
          inMilvus(S.viaStore),
          S.viaStore.empty,
        ],
        [
          'raw SDK search, same request',
          ms(S.rawBounded),
          inMilvus(S.rawBounded),
          S.rawBounded.empty,
        ],
        ['raw, ids and scores only', ms(S.rawIdsOnly), inMilvus(S.rawIdsOnly), S.rawIdsOnly.empty],
        ['raw, Eventually', ms(S.rawEventually), inMilvus(S.rawEventually), S.rawEventually.empty],
        ['raw, Strong', ms(S.rawStrong), inMilvus(S.rawStrong), S.rawStrong.empty],
      ],
    );
    const b = S.built;
    const section = `## retrieval-injector: filtered retrieval and its cost

Command: \`npm run bench -- retrieval-injector\` (bench/retrieval-injector.ts); Milvus 2.3.5
(embedded standalone) and Redis on this machine (2 shared cores, load average ${(os.loadavg()[0] ?? 0).toFixed(1)} at the end), dim ${DIM}, COSINE,
index ${S.spec.indexType ?? 'FLAT'}, ${S.spec.numPartitions} partition-key partitions.

**Partition-key search** over ${TENANTS} tenants × ${CHUNKS} chunks (${TENANTS * CHUNKS} rows,
collection \`${S.spec.name}\`, ${
      b
        ? `built in this run: bulk insert of pre-computed vectors through \`KnowledgeStore.appendDocuments\` (sealed) ${b.insertSeconds.toFixed(0)} s (${(b.rows / b.insertSeconds).toFixed(0)} rows/s), flush ${b.flushSeconds.toFixed(0)} s, index ${b.indexSeconds.toFixed(0)} s`
        : 'reused from an earlier run'
    }), searches for rotating tenants:
**p50 ${f2(S.viaStore.p50)} ms, p99 ${f2(S.viaStore.p99)} ms** through \`KnowledgeStore.search\`
(target p99 ≤ 20 ms: ${S.viaStore.p99 <= 20 ? 'met' : 'NOT met'}).

${breakdown}

Where the time goes: Milvus's own mean and p99 (its proxy search histogram over the same
interval, other clients of the shared Milvus included; the p99 is the upper bound of the
histogram bucket holding it, as Milvus's buckets double: 1, 2, 4, 8, 16, 32 ms) vs what the
client sees; the raw SDK
search minus Milvus is the Node SDK, gRPC and scheduling; the store minus the raw search is
our code (assertion of every hit's tenant, decryption and parsing of every hit):
${f2(S.viaStore.mean - S.rawBounded.mean)} ms mean. No Redis call is made per search (the
embedding cache is per request, measured below). GC during the store's searches:
${S.gc.count} pauses, ${f2(S.gc.total)} ms in all, longest ${f2(S.gc.max)} ms.
Strong waits for the query node's time tick (Milvus's \`timeTickInterval\`, 200 ms) and
sees every write acknowledged before the search; Bounded (the plugin's default) and
Eventually do not wait: they search what the query node has consumed, normally writes older
than a few hundred ms (Bounded tolerates up to Milvus's \`gracefulTime\`, 5 s, of lag).

**Recall@10** against brute force over each tenant's own vectors, ${S.recallSampled} sampled
tenants: **${S.recall.toFixed(4)}**; searches with no hit: ${S.recallZero}.

**Ingest**: ${ingested.chunks} chunks (one 400-paragraph document, chunk size 400) split, embedded
by the mock upstream's endpoint, sealed and inserted in ${ingestSeconds.toFixed(2)} s:
**${(ingested.chunks / ingestSeconds).toFixed(0)} chunks/s**.

**Added latency per request** through ${useKong ? 'the real Kong 3.9.3' : 'the harness'}, ${REQUESTS}
sequential chat requests each (mock upstream, no latency), ms:

${table(['route', 'p50', 'p99', 'added p50'], rowsOut)}`;
    writeSection('retrieval-injector', section);
    process.stdout.write(`${section}\n`);
  } finally {
    for (const c of closers) await c().catch(() => undefined);
    await milvus.dropCollection({ collection_name: collection });
    if (process.env.BENCH_DROP === '1') {
      await milvus.dropCollection({
        collection_name: `kta_bench_retrieval_${TENANTS}x${CHUNKS}_${INDEX.toLowerCase()}_p${PARTITIONS}`,
      });
    }
    milvus.closeConnection();
    for await (const batch of redis.scanIterator({ MATCH: keyspace.pattern(), COUNT: 100 })) {
      if (batch.length > 0) await redis.unlink(batch);
    }
    await closeAllRedis();
    await upstream.close();
  }
}

main().catch((e: unknown) => {
  process.stderr.write(
    `bench failed: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}\n`,
  );
  process.exit(1);
});
