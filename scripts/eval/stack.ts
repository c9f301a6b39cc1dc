/**
 * What an eval runs against.
 *
 * - `startEvalStack`: the repo's kong.yml on the real Kong 3.9.3 (kong-runner; the harness
 *   with `gateway: 'harness'`), changed only where a run must differ: the upstream addresses
 *   (this run's mock upstream, or a tap in front of a real provider), one Redis key namespace
 *   and two Milvus collections of the run's own (removed at the end), metrics servers off,
 *   fresh secrets. The tenants' own documents are ingested first, through the same library
 *   as `npm run ingest`, so hit@k is judged against what the tenant really owns.
 * - `existingFrontDoor`: a front door already running (EVAL_FRONTDOOR_URL): nothing started,
 *   nothing seeded; what the upstream received is visible only through a mock's
 *   `GET /__mock/received` (EVAL_MOCK_URL).
 */
import { randomBytes } from 'node:crypto';
import { readFileSync, readdirSync } from 'node:fs';
import path from 'node:path';
import { parse } from 'yaml';
import { startGateway } from '../../harness/index';
import type { Gateway } from '../../harness/types';
import { startKong } from '../../kong-runner/index';
import { createMilvus, ensureTenantCollection } from '../../lib/milvus/client';
import { closeAllRedis, createRedis, waitForRedis, type RedisClient } from '../../lib/redis/client';
import { createKeyspace, type Keyspace } from '../../lib/redis/keys';
import { ChunkCipher } from '../../lib/retrieval/chunk-cipher';
import { Embedder } from '../../lib/retrieval/embedder';
import { ingestDocuments } from '../../lib/retrieval/knowledge-ops';
import { KnowledgeStore } from '../../lib/retrieval/knowledge-store';
import { readConfig } from '../../lib/schema/config';
import { parseTenantId } from '../../lib/tenant/tenant-id';
import { startMockUpstream, type MockUpstream } from '../../mock-upstream/index';
import { Schema as TenantCacheSchema } from '../../plugins/tenant-cache/schema';
import { semanticCollectionSpec } from '../../plugins/tenant-cache/semantic/runtime';
import { periodAt } from '../../plugins/token-meter/period';
import type { Period } from '../../plugins/token-meter/config';
import type { UpstreamView } from './checks';
import { startProviderTap, type ProviderTap } from './provider-tap';

/** The request header that ties a client request to what the upstream received. */
export const CASE_HEADER = 'x-eval-case';

export interface BudgetControl {
  /** Sets the tenant's spend this period to `fraction` of its cap; returns the undo. */
  spend(tenant: string, fraction: number): Promise<() => Promise<void>>;
}

export interface EvalTarget {
  /** Base URL of the gateway (no trailing slash, no /v1). */
  readonly url: string;
  /** Who answers: the mock upstream, or a real model. */
  readonly upstream: 'mock' | 'real';
  /** One line for the report: what ran. */
  readonly description: string;
  observe(tag: string): Promise<UpstreamView>;
  /** Absent: cases that need a prepared budget do not apply here. */
  readonly budget?: BudgetControl;
  close(): Promise<void>;
}

interface Entry {
  name: string;
  config?: Record<string, unknown>;
}
interface Consumer {
  custom_id?: string | null;
  username?: string;
  tags?: string[];
}
interface KongDoc {
  services: Array<{ url: string }>;
  plugins: Entry[];
  consumers?: Consumer[];
}

type Obj = Record<string, unknown>;
const obj = (v: unknown): Obj =>
  typeof v === 'object' && v !== null && !Array.isArray(v) ? (v as Obj) : {};

export interface StackOptions {
  root: string;
  /** The declarative config to evaluate (default: the repo's kong.yml). */
  configFile: string;
  gateway: 'kong' | 'harness';
  redisUrl: string;
  milvusAddress: string;
  /** A real provider (EVAL_BASE_URL / EVAL_API_KEY); else the mock upstream answers. */
  provider?: { baseUrl: string; apiKey: string | undefined };
  /** Documents per tenant, ingested before the gateway starts. */
  knowledge: Record<string, string[]>;
  logger?: (line: string) => void;
}

/** The tenant → plan map of the config's consumers (custom_id, tag `plan:<plan>`). */
function tenantPlans(doc: KongDoc): Record<string, string> {
  const out: Record<string, string> = {};
  for (const c of doc.consumers ?? []) {
    const tenant = c.custom_id ?? c.username;
    const plan = (c.tags ?? []).find((t) => t.startsWith('plan:'))?.slice(5);
    if (tenant && plan) out[tenant] = plan;
  }
  return out;
}

function budgetControl(
  redis: RedisClient,
  keyspace: Keyspace,
  meter: Obj,
  plans: Record<string, string>,
): BudgetControl {
  const period = (typeof meter.period === 'string' ? meter.period : 'month') as Period;
  return {
    async spend(tenant, fraction) {
      const plan = plans[tenant];
      const caps = { ...obj(obj(meter.plans)[plan ?? '']), ...obj(obj(meter.tenants)[tenant]) };
      const tokens = typeof caps.budget_tokens === 'number' ? caps.budget_tokens : null;
      const usd = typeof caps.budget_usd === 'number' ? caps.budget_usd : null;
      if (tokens === null && usd === null) {
        throw new Error(
          `tenant ${tenant} (plan ${plan ?? 'none'}) has no budget in token-meter's config`,
        );
      }
      // The counters token-meter's reserve script reads (plugins/token-meter/scripts/budget-reserve-4.lua):
      // integers, cost in nano-USD.
      const key = keyspace.budget(parseTenantId(tenant), periodAt(period, Date.now()).id);
      const fields = ['used_tokens', 'used_cost'];
      const before = await redis.hmGet(key, fields);
      const set: Record<string, string> = {};
      if (tokens !== null) set.used_tokens = String(Math.ceil(tokens * fraction));
      if (usd !== null) set.used_cost = String(Math.ceil(usd * 1e9 * fraction));
      await redis.hSet(key, set);
      return async () => {
        for (const [i, f] of fields.entries()) {
          const v = before[i];
          if (v === null || v === undefined) await redis.hDel(key, f);
          else await redis.hSet(key, f, v);
        }
      };
    },
  };
}

/** kong.yml, changed only where this run must differ (see the module comment). */
function adaptConfig(
  doc: KongDoc,
  o: {
    chatUrl: string;
    mockUrl: string;
    namespace: string;
    collections: { knowledge: string; semantic: string };
  } & Pick<StackOptions, 'redisUrl' | 'milvusAddress'>,
): void {
  const chat = new URL(o.chatUrl);
  for (const s of doc.services) s.url = o.chatUrl;
  for (const p of doc.plugins) {
    const c = p.config;
    if (!c) continue;
    // Metrics servers off: `npm start` or another run may hold the configured ports.
    if ('metrics_port' in c) c.metrics_port = 0;
    if (p.name === 'tenant-ratelimit')
      c.redis = { ...obj(c.redis), url: o.redisUrl, key_namespace: o.namespace };
    if (p.name === 'tenant-cache') {
      c.redis = { ...obj(c.redis), url: o.redisUrl, key_namespace: o.namespace };
      const semantic = obj(c.semantic);
      c.semantic = {
        ...semantic,
        milvus: {
          ...obj(semantic.milvus),
          address: o.milvusAddress,
          collection: o.collections.semantic,
        },
        embeddings: { ...obj(semantic.embeddings), url: `${o.mockUrl}/v1/embeddings` },
      };
    }
    if (p.name === 'token-meter')
      c.redis = { ...obj(c.redis), url: o.redisUrl, key_namespace: o.namespace };
    if (p.name === 'retrieval-injector') {
      c.embeddings = { ...obj(c.embeddings), url: `${o.mockUrl}/v1/embeddings` };
      c.redis = { ...obj(c.redis), url: o.redisUrl, key_namespace: o.namespace };
      c.milvus = {
        ...obj(c.milvus),
        address: o.milvusAddress,
        collection: o.collections.knowledge,
      };
    }
    if (p.name === 'circuit-breaker') {
      for (const u of Object.values(obj(c.upstreams))) {
        const up = u as Obj;
        up.host = chat.hostname;
        up.port = Number(chat.port);
      }
    }
  }
}

async function ingestKnowledge(
  o: StackOptions,
  retrieval: Obj,
  redis: RedisClient,
  keyspace: Keyspace,
  secret: string,
  mockUrl: string,
): Promise<void> {
  const milvusCfg = obj(retrieval.milvus);
  const emb = obj(retrieval.embeddings);
  const dim = typeof emb.dimensions === 'number' ? emb.dimensions : 64;
  const model = typeof emb.model === 'string' ? emb.model : 'text-embedding-3-small';
  const milvus = await createMilvus({ address: o.milvusAddress, timeoutMs: 30_000 });
  try {
    const store = await KnowledgeStore.open({
      client: milvus,
      collection: {
        name: String(milvusCfg.collection),
        dim,
        numPartitions: typeof milvusCfg.num_partitions === 'number' ? milvusCfg.num_partitions : 64,
        indexType: milvusCfg.index_type === 'HNSW' ? 'HNSW' : 'FLAT',
        metricType: 'COSINE',
        textMaxLength:
          typeof milvusCfg.text_max_bytes === 'number' ? milvusCfg.text_max_bytes : 16384,
        embeddingModel: model,
      },
      cipher: new ChunkCipher(Buffer.from(secret, 'utf8')),
      consistency: 'Strong',
      searchTimeoutMs: 10_000,
    });
    const embedder = new Embedder({
      url: `${mockUrl}/v1/embeddings`,
      model,
      dim,
      sendDimensions: true,
      apiKey: null,
      timeoutMs: 30_000,
      cache: null,
    });
    for (const [tenant, files] of Object.entries(o.knowledge)) {
      if (files.length === 0) continue;
      const documents = files.map((f) => ({
        source: path.basename(f),
        text: readFileSync(f, 'utf8'),
      }));
      await ingestDocuments({ store, embedder, redis, keyspace }, parseTenantId(tenant), documents);
    }
  } finally {
    milvus.closeConnection();
  }
}

/**
 * The semantic cache's collection made and loaded before the gateway starts, as the knowledge
 * collection is, with the plugin's own spec. Otherwise the plugin makes it on its first
 * request, under its connect deadline (`semantic.milvus.connect_timeout_ms`, 5 s): a fresh
 * Milvus loading a new 64-partition collection on a busy machine once took longer (CI, stop
 * 42), and that request's lookup and store were misses, the semantic case's first answer never
 * stored. What the eval judges is the cache's answers, not how long Milvus takes to load.
 */
async function openSemanticCollection(o: StackOptions, raw: Obj): Promise<void> {
  const c = readConfig(TenantCacheSchema, raw);
  const milvus = await createMilvus({ address: o.milvusAddress, timeoutMs: 30_000 });
  try {
    await ensureTenantCollection(milvus, semanticCollectionSpec(c.semantic));
  } finally {
    milvus.closeConnection();
  }
}

async function dropRunState(
  o: StackOptions,
  redis: RedisClient,
  keyspace: Keyspace,
  collections: string[],
): Promise<void> {
  const keys: string[] = [];
  for await (const batch of redis.scanIterator({ MATCH: keyspace.pattern(), COUNT: 200 }))
    keys.push(...batch);
  if (keys.length > 0) await redis.unlink(keys);
  const milvus = await createMilvus({ address: o.milvusAddress, timeoutMs: 30_000 });
  try {
    for (const name of collections) {
      const has = await milvus.hasCollection({ collection_name: name });
      if (has.value === true) await milvus.dropCollection({ collection_name: name });
    }
  } finally {
    milvus.closeConnection();
  }
}

function observeIn(
  received: ReadonlyArray<{ headers: Obj; json: unknown }>,
  tag: string,
): UpstreamView {
  return {
    observable: true,
    bodies: received.filter((r) => r.headers[CASE_HEADER] === tag).map((r) => r.json),
  };
}

export async function startEvalStack(o: StackOptions): Promise<EvalTarget> {
  const closers: Array<() => Promise<void>> = [];
  const closeAll = async () => {
    for (const c of closers.reverse()) {
      try {
        await c();
      } catch (e) {
        o.logger?.(`eval: cleanup step failed: ${e instanceof Error ? e.message : String(e)}`);
      }
    }
  };
  try {
    const run = randomBytes(4).toString('hex');
    const namespace = `eval-${run}`;
    const collections = {
      knowledge: `kta_eval_${run}_knowledge`,
      semantic: `kta_eval_${run}_semantic`,
    };
    const knowledgeSecret = randomBytes(32).toString('hex');
    const redis = createRedis({ url: o.redisUrl, commandTimeoutMs: 5000 });
    closers.push(() => closeAllRedis());
    await waitForRedis(redis, 10_000);
    const keyspace = createKeyspace(namespace);
    closers.push(() => dropRunState(o, redis, keyspace, Object.values(collections)));

    // The mock answers embeddings always (retrieval, the semantic cache, ingest: one embedder
    // for documents and queries), and chat too unless a real provider is configured.
    const mock: MockUpstream = await startMockUpstream();
    closers.push(() => mock.close());
    let tap: ProviderTap | undefined;
    if (o.provider) {
      tap = await startProviderTap(o.provider);
      closers.push(() => (tap as ProviderTap).close());
    }
    const chatUrl = tap?.url ?? mock.url;

    const doc = parse(readFileSync(o.configFile, 'utf8')) as KongDoc;
    adaptConfig(doc, {
      chatUrl,
      mockUrl: mock.url,
      namespace,
      collections,
      redisUrl: o.redisUrl,
      milvusAddress: o.milvusAddress,
    });
    const retrieval = doc.plugins.find((p) => p.name === 'retrieval-injector')?.config;
    if (retrieval) await ingestKnowledge(o, retrieval, redis, keyspace, knowledgeSecret, mock.url);
    const cache = doc.plugins.find((p) => p.name === 'tenant-cache')?.config;
    if (cache) await openSemanticCollection(o, cache);

    const pluginsRoot = path.join(o.root, 'dist', 'pluginservers');
    const built = new Set(readdirSync(pluginsRoot));
    const pluginServers = Object.fromEntries(
      doc.plugins
        .filter((p) => built.has(p.name))
        .map((p) => [p.name, path.join(pluginsRoot, p.name)]),
    );
    const gwOpts = {
      config: doc as unknown as Record<string, unknown>,
      pluginServers,
      env: {
        KTA_KNOWLEDGE_SECRET: knowledgeSecret,
        KTA_CACHE_MASTER_KEY: randomBytes(32).toString('hex'),
        // Opted-in tenants' requests are captured as in production (into the run's namespace,
        // removed with it): the eval then also shows capture changes no tenant's results.
        KTA_CAPTURE_SECRET: randomBytes(32).toString('hex'),
      },
      ...(o.logger && process.env.EVAL_GATEWAY_LOG ? { logger: o.logger } : {}),
    };
    const gateway: Gateway =
      o.gateway === 'kong'
        ? await startKong({ ...gwOpts, label: `eval-${run}` })
        : await startGateway(gwOpts);
    closers.push(() => gateway.close());

    const meter = doc.plugins.find((p) => p.name === 'token-meter')?.config;
    const received = tap ? tap.received : mock.received;
    return {
      url: gateway.url,
      upstream: tap ? 'real' : 'mock',
      description: `${o.gateway === 'kong' ? 'the real Kong 3.9.3' : 'the harness'} with ${path.relative(o.root, o.configFile)}, upstream: ${
        o.provider ? `${o.provider.baseUrl} (through a recording tap)` : 'the mock upstream'
      }`,
      observe: (tag) =>
        Promise.resolve(
          observeIn(received as unknown as ReadonlyArray<{ headers: Obj; json: unknown }>, tag),
        ),
      ...(meter ? { budget: budgetControl(redis, keyspace, meter, tenantPlans(doc)) } : {}),
      close: closeAll,
    };
  } catch (e) {
    await closeAll();
    throw e;
  }
}

/** A front door that runs already (npm start, a staging deployment): nothing is started. */
export function existingFrontDoor(url: string, mockUrl: string | undefined): EvalTarget {
  const base = url.replace(/\/+$/, '').replace(/\/v1$/, '');
  return {
    url: base,
    upstream: mockUrl ? 'mock' : 'real',
    description: `the front door at ${base}${mockUrl ? `, upstream seen through ${mockUrl}/__mock/received` : ''}`,
    async observe(tag) {
      if (!mockUrl) return { observable: false };
      const r = await fetch(`${mockUrl.replace(/\/+$/, '')}/__mock/received`, {
        signal: AbortSignal.timeout(10_000),
      });
      if (!r.ok) throw new Error(`${mockUrl}/__mock/received answered ${r.status}`);
      return observeIn((await r.json()) as Array<{ headers: Obj; json: unknown }>, tag);
    },
    close: () => Promise.resolve(),
  };
}
