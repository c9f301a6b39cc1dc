/**
 * A front door for the tenant-cache end-to-end and isolation suites: key-auth, tenant-auth
 * and tenant-cache on the real Redis, in a random key namespace, with the master secret in a
 * file outside the config. A second service (`gz`) points at a tiny upstream that answers
 * gzip-compressed chat completions.
 */
import { randomBytes, randomUUID } from 'node:crypto';
import { chmodSync, mkdtempSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { gzipSync } from 'node:zlib';
import type { TestFn } from 'ava';
import type { ReceivedRequest } from '../../mock-upstream/index';
import { createKeyspace, type Keyspace } from '../../lib/redis/keys';
import { type RedisClient } from '../../lib/redis/client';
import { connectRedis, deleteKeyspace, REDIS_URL } from '../integration/services';
import {
  sharedDoor,
  send,
  startFrontDoor,
  type FrontDoor,
  type OnClose,
  type Sent,
} from './frontdoor';
import { freePort } from '../../harness/free-port';

export const CACHE_PLANS = {
  free: { tools_allowed: [], preferred_model: 'gpt-4o-mini', weight: 1 },
  pro: { tools_allowed: ['search', 'calculator'], persona: 'You are a pro assistant.', weight: 2 },
  open: { tools_allowed: ['*'], weight: 1 },
};

export const CACHE_CONSUMERS = [
  // Ids tenant-auth refuses: they must never reach the cache.
  {
    username: 'upper',
    custom_id: 'ACME',
    tags: ['plan:pro'],
    keyauth_credentials: [{ key: 'upper-key' }],
  },
  {
    username: 'hashtag',
    custom_id: 'acme}{t:globex',
    tags: ['plan:pro'],
    keyauth_credentials: [{ key: 'hashtag-key' }],
  },
  {
    username: 'colon',
    custom_id: 'acme:x',
    tags: ['plan:pro'],
    keyauth_credentials: [{ key: 'colon-key' }],
  },
  {
    username: 'acme',
    custom_id: 'acme',
    tags: ['plan:pro'],
    keyauth_credentials: [{ key: 'acme-key' }],
  },
  {
    username: 'globex',
    custom_id: 'globex',
    tags: ['plan:pro'],
    keyauth_credentials: [{ key: 'globex-key' }],
  },
  {
    username: 'initech',
    custom_id: 'initech',
    tags: ['plan:free'],
    keyauth_credentials: [{ key: 'initech-key' }],
  },
  {
    username: 'umbrella',
    custom_id: 'umbrella',
    tags: ['plan:open'],
    keyauth_credentials: [{ key: 'umbrella-key' }],
  },
  // Plan pro like globex, but granted only `search` (tenants.hooli below).
  {
    username: 'hooli',
    custom_id: 'hooli',
    tags: ['plan:pro'],
    keyauth_credentials: [{ key: 'hooli-key' }],
  },
];

/** An upstream answering every POST with a gzip-compressed chat completion; counts calls. */
async function startGzipUpstream(onClose: OnClose): Promise<{ url: string; calls: () => number }> {
  let calls = 0;
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      calls++;
      const asked = (
        JSON.parse(Buffer.concat(chunks).toString('utf8') || '{}') as { model?: string }
      ).model;
      const body = JSON.stringify({
        id: `chatcmpl-gz-${calls}`,
        object: 'chat.completion',
        model: asked ?? 'gpt-4o-mini',
        choices: [
          {
            index: 0,
            message: { role: 'assistant', content: `gzipped answer ${calls}` },
            finish_reason: 'stop',
          },
        ],
        usage: { prompt_tokens: 5, completion_tokens: 3, total_tokens: 8 },
      });
      res.writeHead(200, { 'content-type': 'application/json', 'content-encoding': 'gzip' });
      res.end(gzipSync(body));
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  onClose(() => new Promise<void>((r) => server.close(() => r())));
  const port = (server.address() as net.AddressInfo).port;
  return { url: `http://127.0.0.1:${port}`, calls: () => calls };
}

export interface CacheDoor extends FrontDoor {
  keyspace: Keyspace;
  redis: RedisClient;
  metricsUrl: string;
  /** Lines `{id, status}` written by the cache-status-probe fixture's log phase (route ai). */
  statusFile: string;
  gzipCalls: () => number;
  /** Sends with a fresh x-test-id; returns the response and what reached the upstream. */
  call(
    pathname: string,
    init?: { method?: string; headers?: Array<[string, string]>; body?: string | Buffer | object },
  ): Promise<{ res: Sent; upstream: ReceivedRequest | undefined }>;
  /** Every Redis key of the door's namespace matching `{t:<tenant>}:cache:e:*`. */
  entries(tenant: string): Promise<string[]>;
}

export async function startCacheDoor(onClose: OnClose): Promise<CacheDoor> {
  const redis = await connectRedis();
  const keyspace = createKeyspace(`tc-${randomBytes(5).toString('hex')}`);
  onClose(() => deleteKeyspace(redis, keyspace));
  const dir = mkdtempSync(path.join(tmpdir(), 'tenant-cache-'));
  chmodSync(dir, 0o755);
  const keyFile = path.join(dir, 'master.key');
  writeFileSync(keyFile, `${randomBytes(32).toString('hex')}\n`, { mode: 0o644 });
  const statusFile = path.join(dir, 'cache-status.jsonl');
  writeFileSync(statusFile, '', { mode: 0o666 });
  const metricsPort = await freePort();
  const gz = await startGzipUpstream(onClose);

  const cache = (extra: Record<string, unknown> = {}) => ({
    redis: { url: REDIS_URL, timeout_ms: 2000, key_namespace: keyspace.namespace },
    master_key_env: 'KTA_TEST_CACHE_KEY_UNSET',
    master_key_file: keyFile,
    ...extra,
  });
  const tenantAuth = {
    plans: CACHE_PLANS,
    tenants: { hooli: { tools_allowed: ['search'] } },
  };
  const routes = ['ai', 'warm', 'nostatus', 'gz', 'nokey'];
  const door = await startFrontDoor(onClose, (upstreamUrl) => ({
    _format_version: '3.0',
    services: [
      {
        name: 'llm',
        url: upstreamUrl,
        routes: [
          { name: 'ai', paths: ['/v1'], strip_path: false },
          { name: 'warm', paths: ['/warm'], strip_path: true },
          { name: 'nostatus', paths: ['/nostatus'], strip_path: true },
          { name: 'nokey', paths: ['/nokey'], strip_path: true },
          { name: 'untenanted', paths: ['/untenanted'], strip_path: true },
        ],
      },
      { name: 'gzllm', url: gz.url, routes: [{ name: 'gz', paths: ['/gz'], strip_path: true }] },
    ],
    plugins: [
      ...[...routes, 'untenanted'].map((r) => ({
        name: 'key-auth',
        route: r,
        config: { hide_credentials: true },
      })),
      // A route that forgot tenant-auth: tenant-cache must refuse, not serve untenanted traffic.
      { name: 'tenant-cache', route: 'untenanted', config: cache() },
      ...routes.map((r) => ({ name: 'tenant-auth', route: r, config: tenantAuth })),
      { name: 'cache-status-probe', route: 'ai', config: { file: statusFile } },
      {
        name: 'tenant-cache',
        route: 'ai',
        config: cache({ metrics_port: metricsPort, plans: { free: { ttl_seconds: 60 } } }),
      },
      // temperature up to 1 is cached here, for the free plan only; pro is not cached at all.
      {
        name: 'tenant-cache',
        route: 'warm',
        config: cache({ plans: { free: { max_temperature: 1 }, pro: { enabled: false } } }),
      },
      { name: 'tenant-cache', route: 'nostatus', config: cache({ status_header: false }) },
      { name: 'tenant-cache', route: 'gz', config: cache() },
      // No secret anywhere: the cache turns itself off, the traffic flows.
      {
        name: 'tenant-cache',
        route: 'nokey',
        config: { ...cache(), master_key_file: null },
      },
    ],
    consumers: CACHE_CONSUMERS,
  }));

  const call: CacheDoor['call'] = async (pathname, init = {}) => {
    const testId = randomUUID();
    const res = await send(`${door.url}${pathname}`, {
      ...init,
      headers: [...(init.headers ?? []), ['x-test-id', testId]],
    });
    const upstream = door.upstream.received.find((r) => r.headers['x-test-id'] === testId);
    return { res, upstream };
  };
  const entries = async (tenant: string): Promise<string[]> => {
    const out: string[] = [];
    const match = `${keyspace.namespace}:{t:${tenant}}:cache:e:*`;
    for await (const batch of redis.scanIterator({ MATCH: match, COUNT: 500 })) out.push(...batch);
    return out;
  };
  return {
    ...door,
    keyspace,
    redis,
    metricsUrl: `http://127.0.0.1:${metricsPort}/metrics`,
    statusFile,
    gzipCalls: gz.calls,
    call,
    entries,
  };
}

export function sharedCacheDoor(test: TestFn): () => CacheDoor {
  return sharedDoor(test, 'cache door', (c) => startCacheDoor(c.add));
}

export const apikey = (k: string): Array<[string, string]> => [['apikey', k]];

/** A deterministic chat request with a prompt no other test uses. */
export function detChat(
  prompt: string,
  extra: Record<string, unknown> = {},
): Record<string, unknown> {
  return {
    model: 'gpt-4o-mini',
    temperature: 0,
    messages: [{ role: 'user', content: `${prompt} ${randomUUID()}` }],
    ...extra,
  };
}

/** Polls `probe` until it returns true (every 25 ms, up to 10 s); throws with `what` after. */
export async function eventually(what: string, probe: () => Promise<boolean>): Promise<void> {
  const deadline = Date.now() + 10_000;
  while (!(await probe())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

/** The value of one sample of the door's tenant-cache metrics (0 when absent). */
export async function metric(
  door: { metricsUrl: string },
  name: string,
  labels: Record<string, string>,
): Promise<number> {
  const text = await new Promise<string>((resolve, reject) => {
    http
      .get(door.metricsUrl, (res) => {
        let s = '';
        res.on('data', (c: Buffer) => (s += c.toString()));
        res.on('end', () => resolve(s));
      })
      // Not listening yet: the plugin instance starts with the first request of its route.
      .on('error', (e: NodeJS.ErrnoException) =>
        e.code === 'ECONNREFUSED' ? resolve('') : reject(e),
      );
  });
  let sum = 0;
  for (const line of text.split('\n')) {
    if (!line.startsWith(`${name}{`)) continue;
    const ok = Object.entries(labels).every(([k, v]) => line.includes(`${k}="${v}"`));
    if (ok) sum += Number(line.slice(line.lastIndexOf(' ') + 1));
  }
  return sum;
}

/** Waits until the tenant has `n` entries in Redis (stores happen in the log phase). */
export async function stored(door: CacheDoor, tenant: string, n = 1): Promise<string[]> {
  let keys: string[] = [];
  await eventually(`${n} cache entries of ${tenant}`, async () => {
    keys = await door.entries(tenant);
    return keys.length >= n;
  });
  return keys;
}
