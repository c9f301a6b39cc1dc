/**
 * A front door for token-meter's end-to-end and isolation tests: key-auth, tenant-auth,
 * token-meter and Kong's post-function running the usage snippet of kong.yml, on the real
 * Redis in a random key namespace (removed afterwards). Each tenant has its own plan so
 * concurrent tests never share a budget.
 */
import { randomBytes, randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import type { TestFn } from 'ava';
import type { ReceivedRequest } from '../../mock-upstream/index';
import { createRedis, waitForRedis } from '../../lib/redis/client';
import { createKeyspace } from '../../lib/redis/keys';
import { parseTenantId } from '../../lib/tenant/tenant-id';
import { parseLedgerFields, type StoredLedgerEntry } from '../../plugins/token-meter/ledger';
import { periodAt } from '../../plugins/token-meter/period';
import { deleteKeysMatching } from './redis-cleanup';
import { sharedDoor, ROOT, send, startFrontDoor, type FrontDoor, type Sent } from './frontdoor';

export const USAGE_SNIPPET = readFileSync(
  path.join(ROOT, 'plugins', 'token-meter', 'usage-snippet.lua'),
  'utf8',
);

/** The Redis of these tests: a single node, or a Redis Cluster URL (`?cluster=1`). */
const REDIS_URL = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379';

export const PRICES = {
  'gpt-4o': { prompt_per_million: 2.5, completion_per_million: 10 },
  'gpt-4o-mini': { prompt_per_million: 0.15, completion_per_million: 0.6 },
  'text-embedding-3-small': { prompt_per_million: 0.02, completion_per_million: 0 },
};

const AUTH_PLANS = {
  free: { preferred_model: 'gpt-4o-mini' },
  pro: { preferred_model: 'gpt-4o', fallback_model: 'gpt-4o-mini' },
  tiny: { preferred_model: 'gpt-4o-mini' },
  clampy: { preferred_model: 'gpt-4o-mini' },
  usd: { preferred_model: 'gpt-4o', fallback_model: 'gpt-4o-mini' },
  unpriced: { preferred_model: 'gpt-4o' },
};

const METER_PLANS = {
  free: { budget_tokens: 1_000_000, allow_downgrade: false },
  pro: { budget_tokens: 1_000_000 },
  tiny: { budget_tokens: 300, allow_clamp: false, allow_downgrade: false },
  clampy: { budget_tokens: 200, allow_clamp: true, min_clamp_tokens: 5, allow_downgrade: false },
  usd: { budget_usd: 0.005, allow_clamp: false },
};

/** tenant id -> plan; each gets the API key `<tenant>-key`. */
export const METER_TENANTS: Record<string, keyof typeof AUTH_PLANS> = {
  acme: 'pro',
  globex: 'free',
  streamco: 'pro',
  tinyco: 'tiny',
  clampco: 'clampy',
  usdco: 'usd',
  errco: 'free',
  badco: 'free',
  noplan: 'unpriced',
  bench: 'free',
  isoa: 'tiny',
  isob: 'tiny',
  cacheco: 'free',
  metricco: 'free',
  gzipco: 'free',
};

/** The meter's metrics port in these tests (one plugin server per gateway). */
export const METRICS_PORT = 19_000 + (process.pid % 1000);

/** Consumers whose ids try to reach another tenant's keys (tenant-auth must refuse them). */
const CRAFTED_CONSUMERS = [
  { username: 'hashtag', custom_id: 'isoa}{t:isob', key: 'hashtag-key' },
  { username: 'colon', custom_id: 'isoa:budget', key: 'colon-key' },
  { username: 'glob', custom_id: 'isoa*', key: 'glob-key' },
];

export interface MeterDoor extends FrontDoor {
  namespace: string;
  call(
    tenant: string,
    pathname: string,
    init?: { method?: string; body?: string | Buffer | object; headers?: Array<[string, string]> },
  ): Promise<{ res: Sent; upstream: ReceivedRequest | undefined }>;
  /** Showback usage (group_by model) of the tenant, polled until `ready` holds (log is async). */
  usage(tenant: string, ready: (r: UsageResult[]) => boolean): Promise<UsageResult[]>;
  /** The ledger entry of the request `res` answered (its X-Kong-Request-Id), once log wrote it. */
  ledgerEntry(tenant: string, res: Sent): Promise<StoredLedgerEntry>;
}

export interface UsageResult {
  input_tokens: number;
  output_tokens: number;
  num_model_requests: number;
  model: string | null;
}

export function meterConfig(namespace: string, extra: Record<string, unknown> = {}) {
  return {
    redis: { url: REDIS_URL, timeout_ms: 1000, key_namespace: namespace },
    metrics_port: METRICS_PORT,
    plans: METER_PLANS,
    prices: PRICES,
    ...extra,
  };
}

export async function startMeterDoor(
  onClose: (fn: () => Promise<void> | void) => void,
  meterExtra: Record<string, unknown> = {},
  opts: { cacheProbe?: boolean; authExtra?: Record<string, unknown> } = {},
): Promise<MeterDoor> {
  const namespace = `tm${randomBytes(4).toString('hex')}`;
  const door = await startFrontDoor(onClose, (upstreamUrl) => ({
    _format_version: '3.0',
    services: [
      {
        name: 'llm',
        url: upstreamUrl,
        routes: [{ name: 'ai', paths: ['/v1'], strip_path: false }],
      },
    ],
    plugins: [
      { name: 'key-auth', route: 'ai', config: { hide_credentials: true } },
      { name: 'tenant-auth', route: 'ai', config: { plans: AUTH_PLANS, ...opts.authExtra } },
      // Stands in for tenant-cache answering a hit (test/fixtures/pluginservers).
      ...(opts.cacheProbe ? [{ name: 'cache-hit-probe', route: 'ai' }] : []),
      { name: 'token-meter', route: 'ai', config: meterConfig(namespace, meterExtra) },
      { name: 'post-function', route: 'ai', config: { body_filter: [USAGE_SNIPPET] } },
    ],
    consumers: [
      ...Object.entries(METER_TENANTS).map(([tenant, plan]) => ({
        username: `${tenant}-app`,
        custom_id: tenant,
        tags: [`plan:${plan}`],
        keyauth_credentials: [{ key: `${tenant}-key` }],
      })),
      ...CRAFTED_CONSUMERS.map((c) => ({
        username: c.username,
        custom_id: c.custom_id,
        tags: ['plan:tiny'],
        keyauth_credentials: [{ key: c.key }],
      })),
    ],
  }));
  onClose(async () => {
    await deleteKeysMatching(REDIS_URL, `${namespace}:*`);
  });

  const call: MeterDoor['call'] = async (tenant, pathname, init = {}) => {
    const testId = randomUUID();
    const res = await send(`${door.url}${pathname}`, {
      ...init,
      headers: [['apikey', `${tenant}-key`], ['x-test-id', testId], ...(init.headers ?? [])],
    });
    const upstream = door.upstream.received.find((r) => r.headers['x-test-id'] === testId);
    return { res, upstream };
  };

  const usage: MeterDoor['usage'] = async (tenant, ready) => {
    const start = Math.floor(Date.now() / 1000) - 86_400;
    let last: UsageResult[] = [];
    for (let i = 0; i < 100; i++) {
      const { res } = await call(
        tenant,
        `/v1/organization/usage/completions?start_time=${start}&bucket_width=1d&limit=2&group_by=model`,
      );
      if (res.status !== 200) throw new Error(`showback answered ${res.status}: ${res.text}`);
      const page = res.json as { data: Array<{ results: UsageResult[] }> };
      last = page.data.flatMap((b) => b.results);
      if (ready(last)) return last;
      await new Promise((r) => setTimeout(r, 50));
    }
    return last;
  };

  const ledgerEntry: MeterDoor['ledgerEntry'] = async (tenant, res) => {
    const rid = String(res.headers['x-kong-request-id'] ?? '');
    if (rid === '') throw new Error('the answer names no request (X-Kong-Request-Id)');
    // The process-wide client (lib/redis/client.ts), single node or cluster as the URL says;
    // closed with the door (sharedDoor's closeAllRedis).
    const redis = createRedis({ url: REDIS_URL, commandTimeoutMs: 2000 });
    await waitForRedis(redis, 5000);
    const key = createKeyspace(namespace).usageLedger(
      parseTenantId(tenant),
      periodAt('month', Date.now()).id,
    );
    for (let i = 0; i < 100; i++) {
      const entries = (await redis.xRange(key, '-', '+')) ?? [];
      const mine = entries.find((e) => e.message.rid === rid);
      if (mine) return parseLedgerFields(mine.message as Record<string, string>);
      await new Promise((r) => setTimeout(r, 50));
    }
    throw new Error(`no ledger entry for request ${rid} of ${tenant}`);
  };

  return { ...door, namespace, call, usage, ledgerEntry };
}

/** One meter door for a whole test file. */
export function sharedMeterDoor(test: TestFn): () => MeterDoor {
  return sharedDoor(test, 'meter door', (c) => startMeterDoor(c.add, {}, { cacheProbe: true }));
}

export function totals(results: UsageResult[]): { input: number; output: number; n: number } {
  return results.reduce(
    (a, r) => ({
      input: a.input + r.input_tokens,
      output: a.output + r.output_tokens,
      n: a.n + r.num_model_requests,
    }),
    { input: 0, output: 0, n: 0 },
  );
}
