/**
 * A front door for the retrieval-injector end-to-end and isolation suites: key-auth,
 * tenant-auth and retrieval-injector on several routes, the real Milvus (a collection of
 * this run, dropped after) and Redis, embeddings from the mock upstream. Knowledge is seeded
 * through the same library the ingest command uses.
 */
import { randomBytes, randomUUID } from 'node:crypto';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { TestFn } from 'ava';
import type { MilvusClient } from '@zilliz/milvus2-sdk-node';
import { closeAllRedis } from '../../lib/redis/client';
import { ChunkCipher } from '../../lib/retrieval/chunk-cipher';
import { Embedder } from '../../lib/retrieval/embedder';
import { KnowledgeStore } from '../../lib/retrieval/knowledge-store';
import {
  ingestDocuments,
  type Document,
  type KnowledgeOps,
} from '../../lib/retrieval/knowledge-ops';
import { parseTenantId } from '../../lib/tenant/tenant-id';
import type { ReceivedRequest } from '../../mock-upstream/index';
import {
  connectMilvus,
  connectRedis,
  deleteKeyspace,
  MILVUS_ADDRESS,
  randomKeyspace,
  REDIS_URL,
} from '../integration/services';
import { sharedDoor, Closers, send, startFrontDoor, type FrontDoor, type Sent } from './frontdoor';
import { freePort } from './upstreams';

export const DIM = 64;
export const MODEL = 'text-embedding-3-small';

export const CONSUMERS = [
  {
    username: 'acme-app',
    custom_id: 'acme',
    tags: ['plan:pro'],
    keyauth_credentials: [{ key: 'acme-key' }],
  },
  {
    username: 'globex-app',
    custom_id: 'globex',
    tags: ['plan:free'],
    keyauth_credentials: [{ key: 'globex-key' }],
  },
  {
    username: 'initech-app',
    custom_id: 'initech',
    tags: ['plan:pro'],
    keyauth_credentials: [{ key: 'initech-key' }],
  },
  {
    username: 'hooli-app',
    custom_id: 'hooli',
    tags: ['plan:pro'],
    keyauth_credentials: [{ key: 'hooli-key' }],
  },
  {
    username: 'umbrella-app',
    custom_id: 'umbrella',
    tags: ['plan:pro'],
    keyauth_credentials: [{ key: 'umbrella-key' }],
  },
  // A consumer whose tenant id tries to be a Milvus expression: tenant-auth must refuse it.
  {
    username: 'expr-app',
    custom_id: 'globex" || tenant_id != "',
    tags: ['plan:pro'],
    keyauth_credentials: [{ key: 'expr-key' }],
  },
];

const PLANS = {
  free: { tools_allowed: [], weight: 1 },
  pro: { tools_allowed: ['search'], weight: 2 },
};

export interface RetrievalDoor extends FrontDoor {
  collection: string;
  metricsUrl: string;
  milvus: MilvusClient;
  ops: KnowledgeOps;
  cipher: ChunkCipher;
  seed(tenant: string, documents: Document[]): Promise<void>;
  call(
    pathname: string,
    init?: { headers?: Array<[string, string]>; body?: string | Buffer | object },
  ): Promise<{ res: Sent; upstream: ReceivedRequest | undefined; testId: string }>;
}

export async function startRetrievalDoor(closers: Closers): Promise<RetrievalDoor> {
  const collection = `kta_e2e_retr_${randomBytes(6).toString('hex')}`;
  const secretFile = path.join(mkdtempSync(path.join(tmpdir(), 'kta-secret-')), 'knowledge.secret');
  const secret = randomBytes(32).toString('hex');
  writeFileSync(secretFile, secret, { mode: 0o600 });
  const keyspace = randomKeyspace();
  const metricsPort = await freePort();
  const deadPort = await freePort();

  const milvus = await connectMilvus();
  closers.add(() => {
    milvus.closeConnection();
  });
  closers.add(async () => {
    await milvus.dropCollection({ collection_name: collection });
  });
  const redis = await connectRedis();
  closers.add(closeAllRedis);
  closers.add(() => deleteKeyspace(redis, keyspace));

  const retrieval = (upstreamUrl: string, extra: Record<string, unknown> = {}) => ({
    milvus: {
      address: MILVUS_ADDRESS,
      collection,
      num_partitions: 16,
      consistency_level: 'Strong',
      // Generous: the test machine is shared and loaded; deadlines are not what is tested here.
      search_timeout_ms: 10000,
      connect_timeout_ms: 30000,
    },
    embeddings: { url: `${upstreamUrl}/v1/embeddings`, model: MODEL, dimensions: DIM },
    redis: { url: REDIS_URL, key_namespace: keyspace.namespace, timeout_ms: 1000 },
    encryption: { secret_file: secretFile },
    plans: { pro: { top_k: 3, min_score: 0.15 }, free: { top_k: 2, min_score: 0.15 } },
    ...extra,
  });
  const route = (name: string) => ({ name, paths: [`/${name}`], strip_path: true });
  const routes = ['ai', 'both', 'header', 'down', 'skip', 'embdown', 'untenanted', 'nosecret'];
  const door = await startFrontDoor(closers.add, (upstreamUrl) => ({
    _format_version: '3.0',
    services: [{ name: 'llm', url: upstreamUrl, routes: routes.map(route) }],
    plugins: [
      ...routes
        .filter((r) => r !== 'untenanted')
        .flatMap((r) => [
          { name: 'key-auth', route: r, config: { hide_credentials: true } },
          {
            name: 'tenant-auth',
            route: r,
            config: { plans: PLANS, tenants: { hooli: { knowledge_namespace: 'initech' } } },
          },
        ]),
      {
        name: 'retrieval-injector',
        route: 'ai',
        config: retrieval(upstreamUrl, { metrics_port: metricsPort }),
      },
      {
        name: 'retrieval-injector',
        route: 'both',
        config: retrieval(upstreamUrl, { inject: 'both' }),
      },
      {
        name: 'retrieval-injector',
        route: 'header',
        config: retrieval(upstreamUrl, { inject: 'header', header_max_bytes: 600 }),
      },
      {
        name: 'retrieval-injector',
        route: 'down',
        config: retrieval(upstreamUrl, {
          milvus: { address: `127.0.0.1:${deadPort}`, collection, connect_timeout_ms: 1000 },
          retry_after_seconds: 7,
        }),
      },
      {
        name: 'retrieval-injector',
        route: 'skip',
        config: retrieval(upstreamUrl, {
          milvus: { address: `127.0.0.1:${deadPort}`, collection, connect_timeout_ms: 1000 },
          on_unavailable: 'skip',
        }),
      },
      {
        name: 'retrieval-injector',
        route: 'embdown',
        config: retrieval(upstreamUrl, {
          embeddings: {
            url: `http://127.0.0.1:${deadPort}/v1/embeddings`,
            model: MODEL,
            dimensions: DIM,
          },
        }),
      },
      { name: 'retrieval-injector', route: 'untenanted', config: retrieval(upstreamUrl) },
      {
        name: 'retrieval-injector',
        route: 'nosecret',
        config: retrieval(upstreamUrl, {
          encryption: { secret_file: null, secret_env: 'KTA_TEST_SECRET_THAT_IS_NOT_SET' },
        }),
      },
    ],
    consumers: CONSUMERS,
  }));

  const cipher = new ChunkCipher(Buffer.from(secret, 'utf8'));
  const store = await KnowledgeStore.open({
    client: milvus,
    collection: {
      name: collection,
      dim: DIM,
      numPartitions: 16,
      metricType: 'COSINE',
      textMaxLength: 16384,
      embeddingModel: MODEL,
    },
    cipher,
    consistency: 'Strong',
    searchTimeoutMs: 5000,
  });
  const embedder = new Embedder({
    url: `${door.upstream.url}/v1/embeddings`,
    model: MODEL,
    dim: DIM,
    sendDimensions: true,
    apiKey: null,
    timeoutMs: 5000,
    cache: null,
  });
  const ops: KnowledgeOps = { store, embedder, redis, keyspace };

  const call: RetrievalDoor['call'] = async (pathname, init = {}) => {
    const testId = randomUUID();
    const res = await send(`${door.url}${pathname}`, {
      ...init,
      headers: [...(init.headers ?? []), ['x-test-id', testId]],
    });
    const upstream = door.upstream.received.find((r) => r.headers['x-test-id'] === testId);
    return { res, upstream, testId };
  };
  return {
    ...door,
    collection,
    metricsUrl: `http://127.0.0.1:${metricsPort}/metrics`,
    milvus,
    ops,
    cipher,
    seed: async (tenant, documents) => {
      await ingestDocuments(ops, parseTenantId(tenant), documents);
    },
    call,
  };
}

/** One retrieval door for a whole test file. */
export function sharedRetrievalDoor(
  test: TestFn,
  seed: (door: RetrievalDoor) => Promise<void> = async () => undefined,
): () => RetrievalDoor {
  return sharedDoor(test, 'retrieval door', async (c) => {
    const started = await startRetrievalDoor(c);
    await seed(started);
    return started;
  });
}

/** Every message content of a chat body that reached the upstream, joined. */
export function upstreamText(r: ReceivedRequest | undefined): string {
  if (!r) return '';
  return [r.rawBody.toString('utf8'), JSON.stringify(r.headers)].join('\n');
}

export function systemMessages(r: ReceivedRequest | undefined): string[] {
  const messages = (r?.json as { messages?: Array<{ role: string; content: unknown }> } | undefined)
    ?.messages;
  return (messages ?? []).filter((m) => m.role === 'system').map((m) => String(m.content));
}
