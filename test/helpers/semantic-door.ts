/**
 * A front door for tenant-cache's semantic cache and its meeting with token-meter: the chain
 * of kong.yml from key-auth to token-meter (key-auth, tenant-auth, tenant-cache, token-meter,
 * post-function with the usage snippet) on the real Redis (random key namespace) and the real
 * Milvus (a random collection, dropped after), embeddings from the mock upstream.
 *
 * Routes (each path is stripped, the upstream sees `/v1/...`):
 * - `/ai`: the exact cache only (the schema's default: semantic off);
 * - `/sem`: the semantic cache on for plan `pro` (threshold 0.9, Strong consistency);
 * - `/semdown`: the semantic cache pointed at a Milvus that is not there;
 * - `/semslow`: the semantic cache with an embeddings endpoint that answers after 3 s.
 */
import { randomBytes, randomUUID } from 'node:crypto';
import { chmodSync, mkdtempSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { TestFn } from 'ava';
import type { MilvusClient } from '@zilliz/milvus2-sdk-node';
import type { ReceivedRequest } from '../../mock-upstream/index';
import { type RedisClient } from '../../lib/redis/client';
import { createKeyspace, type Keyspace } from '../../lib/redis/keys';
import {
  connectMilvus,
  connectRedis,
  deleteKeyspace,
  REDIS_URL,
  MILVUS_ADDRESS,
} from '../integration/services';
import {
  sharedDoor,
  send,
  startFrontDoor,
  type FrontDoor,
  type OnClose,
  type Sent,
} from './frontdoor';
import { PRICES, USAGE_SNIPPET } from './token-meter-door';
import { freePort } from '../../harness/free-port';

export const SEM_DIM = 256;
export const SEM_THRESHOLD = 0.9;

const AUTH_PLANS = {
  pro: { tools_allowed: ['search', 'calculator'], preferred_model: 'gpt-4o-mini', weight: 2 },
  free: { tools_allowed: [], preferred_model: 'gpt-4o-mini', weight: 1 },
};

/** tenant -> plan; the API key is `<tenant>-key`. */
const TENANTS: Record<string, keyof typeof AUTH_PLANS> = {
  acme: 'pro',
  globex: 'pro',
  hooli: 'pro',
  initech: 'free',
  meterco: 'pro',
  semmeter: 'pro',
};

/** An embeddings endpoint that answers (correctly) only after `delayMs`. */
async function startSlowEmbeddings(onClose: OnClose, delayMs: number): Promise<string> {
  const server = http.createServer((req, res) => {
    req.resume();
    const timer = setTimeout(() => {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ data: [{ index: 0, embedding: new Array(SEM_DIM).fill(0.0625) }] }));
    }, delayMs);
    res.on('close', () => clearTimeout(timer));
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  onClose(
    () =>
      new Promise<void>((r) => {
        server.closeAllConnections();
        server.close(() => r());
      }),
  );
  return `http://127.0.0.1:${(server.address() as net.AddressInfo).port}/v1/embeddings`;
}

export interface SemanticDoor extends FrontDoor {
  keyspace: Keyspace;
  redis: RedisClient;
  milvus: MilvusClient;
  collection: string;
  cacheMetricsUrl: string;
  meterMetricsUrl: string;
  call(
    tenant: string,
    pathname: string,
    init?: { body?: string | Buffer | object; headers?: Array<[string, string]> },
  ): Promise<{ res: Sent; upstream: ReceivedRequest | undefined }>;
}

export async function startSemanticDoor(onClose: OnClose): Promise<SemanticDoor> {
  const redis = await connectRedis();
  const keyspace = createKeyspace(`sc-${randomBytes(5).toString('hex')}`);
  onClose(() => deleteKeyspace(redis, keyspace));
  const milvus = await connectMilvus();
  const collection = `kta_e2e_sem_${randomBytes(6).toString('hex')}`;
  onClose(async () => {
    await milvus.dropCollection({ collection_name: collection }).catch(() => undefined);
    milvus.closeConnection();
  });
  const dir = mkdtempSync(path.join(tmpdir(), 'tenant-cache-sem-'));
  chmodSync(dir, 0o755);
  const keyFile = path.join(dir, 'master.key');
  writeFileSync(keyFile, `${randomBytes(32).toString('hex')}\n`, { mode: 0o644 });
  const cachePort = await freePort();
  const meterPort = await freePort();
  const deadMilvus = await freePort();
  const slowEmbeddings = await startSlowEmbeddings(onClose, 3000);

  const door = await startFrontDoor(onClose, (upstreamUrl) => {
    const semantic = (extra: Record<string, unknown> = {}) => ({
      milvus: {
        address: MILVUS_ADDRESS,
        collection,
        consistency_level: 'Strong',
        num_partitions: 16,
      },
      embeddings: { url: `${upstreamUrl}/v1/embeddings`, dimensions: SEM_DIM },
      // Generous: the machine is shared; the deadline itself is proven on /semslow.
      lookup_timeout_ms: 8000,
      store_timeout_ms: 8000,
      ...extra,
    });
    const cache = (sem: Record<string, unknown> | null) => ({
      redis: { url: REDIS_URL, timeout_ms: 2000, key_namespace: keyspace.namespace },
      master_key_env: 'KTA_TEST_CACHE_KEY_UNSET',
      master_key_file: keyFile,
      metrics_port: cachePort,
      ...(sem
        ? {
            semantic: sem,
            plans: { pro: { semantic_enabled: true, similarity_threshold: SEM_THRESHOLD } },
          }
        : {}),
    });
    const routes: Array<[string, Record<string, unknown> | null]> = [
      ['ai', null],
      ['sem', semantic()],
      [
        'semdown',
        semantic({
          milvus: { address: `127.0.0.1:${deadMilvus}`, collection, connect_timeout_ms: 500 },
          lookup_timeout_ms: 2000,
          store_timeout_ms: 2000,
        }),
      ],
      [
        'semslow',
        semantic({
          embeddings: { url: slowEmbeddings, dimensions: SEM_DIM, cache_ttl_seconds: 0 },
          lookup_timeout_ms: 300,
          store_timeout_ms: 300,
        }),
      ],
    ];
    return {
      _format_version: '3.0',
      services: [
        {
          name: 'llm',
          url: upstreamUrl,
          routes: routes.map(([name]) => ({ name, paths: [`/${name}`], strip_path: true })),
        },
      ],
      plugins: routes.flatMap(([route, sem]) => [
        { name: 'key-auth', route, config: { hide_credentials: true } },
        { name: 'tenant-auth', route, config: { plans: AUTH_PLANS } },
        { name: 'tenant-cache', route, config: cache(sem) },
        {
          name: 'token-meter',
          route,
          config: {
            redis: { url: REDIS_URL, timeout_ms: 2000, key_namespace: keyspace.namespace },
            metrics_port: meterPort,
            period: 'month',
            plans: { pro: { budget_tokens: 10_000_000 }, free: { budget_tokens: 10_000_000 } },
            prices: PRICES,
          },
        },
        { name: 'post-function', route, config: { body_filter: [USAGE_SNIPPET] } },
      ]),
      consumers: Object.entries(TENANTS).map(([tenant, plan]) => ({
        username: `${tenant}-app`,
        custom_id: tenant,
        tags: [`plan:${plan}`],
        keyauth_credentials: [{ key: `${tenant}-key` }],
      })),
    };
  });

  const call: SemanticDoor['call'] = async (tenant, pathname, init = {}) => {
    const testId = randomUUID();
    const res = await send(`${door.url}${pathname}`, {
      ...init,
      headers: [['apikey', `${tenant}-key`], ['x-test-id', testId], ...(init.headers ?? [])],
    });
    const upstream = door.upstream.received.find((r) => r.headers['x-test-id'] === testId);
    return { res, upstream };
  };
  return {
    ...door,
    keyspace,
    redis,
    milvus,
    collection,
    cacheMetricsUrl: `http://127.0.0.1:${cachePort}/metrics`,
    meterMetricsUrl: `http://127.0.0.1:${meterPort}/metrics`,
    call,
  };
}

export function sharedSemanticDoor(test: TestFn): () => SemanticDoor {
  return sharedDoor(test, 'semantic door', (c) => startSemanticDoor(c.add));
}

/** A deterministic chat request whose question carries a token no other test uses. */
export function question(text: string, tag: string, extra: Record<string, unknown> = {}) {
  return {
    model: 'gpt-4o-mini',
    temperature: 0,
    messages: [{ role: 'user', content: `${text} ${tag}` }],
    ...extra,
  };
}

/**
 * Random words appended to a test's questions: enough of them that two tests' questions are
 * far apart (the mock's embedding is a bag of words), while a question and its near-duplicate
 * within one test share them all.
 */
export const tag = (): string =>
  Array.from({ length: 6 }, () => `r${randomBytes(4).toString('hex')}`).join(' ');

/** One sample's value summed over the series matching `labels` (0 when absent). */
export async function metricAt(
  url: string,
  name: string,
  labels: Record<string, string>,
): Promise<number> {
  const text = await new Promise<string>((resolve, reject) => {
    http
      .get(url, (res) => {
        let s = '';
        res.on('data', (c: Buffer) => (s += c.toString()));
        res.on('end', () => resolve(s));
      })
      .on('error', (e: NodeJS.ErrnoException) =>
        e.code === 'ECONNREFUSED' ? resolve('') : reject(e),
      );
  });
  let sum = 0;
  for (const line of text.split('\n')) {
    if (!line.startsWith(`${name}{`) && !line.startsWith(`${name} `)) continue;
    if (Object.entries(labels).every(([k, v]) => line.includes(`${k}="${v}"`))) {
      sum += Number(line.slice(line.lastIndexOf(' ') + 1));
    }
  }
  return sum;
}

/** Polls `probe` every 25 ms until true, up to 15 s. */
export async function until(what: string, probe: () => Promise<boolean>): Promise<void> {
  const deadline = Date.now() + 15_000;
  while (!(await probe())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

/**
 * Sends `body` as `tenant` on `route`; on a miss, waits until the log phase has finished its
 * semantic store (any outcome) so the next request can find it.
 */
export async function askSem(
  d: SemanticDoor,
  tenant: string,
  route: string,
  body: unknown,
  opts: { awaitSemanticStore?: boolean } = {},
) {
  const storesBefore = await metricAt(d.cacheMetricsUrl, 'tenant_cache_semantic_stores_total', {
    tenant,
  });
  const exactBefore = await metricAt(d.cacheMetricsUrl, 'tenant_cache_stores_total', { tenant });
  const r = await d.call(tenant, `/${route}/v1/chat/completions`, { body: body as object });
  if (r.res.headers['x-cache-status'] === 'MISS') {
    await until(`the store of ${tenant}`, async () =>
      opts.awaitSemanticStore === false
        ? (await metricAt(d.cacheMetricsUrl, 'tenant_cache_stores_total', { tenant })) > exactBefore
        : (await metricAt(d.cacheMetricsUrl, 'tenant_cache_semantic_stores_total', { tenant })) >
          storesBefore,
    );
  }
  return r;
}
