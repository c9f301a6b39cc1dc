/**
 * A front door for the model-tier suites: key-auth (and a JWT route), tenant-auth with the
 * example plans' tiers, tenant-cache and token-meter on the real Redis in a random key
 * namespace, and Kong's post-function reading usage — the part of the chain that decides,
 * prices and caches on the model. Tenants are many and single-use so tests never share a
 * ledger or a cache entry.
 */
import { randomBytes, randomUUID } from 'node:crypto';
import { chmodSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { TestFn } from 'ava';
import type { ReceivedRequest } from '../../mock-upstream/index';
import { createKeyspace } from '../../lib/redis/keys';
import { connectRedis, deleteKeyspace, REDIS_URL } from '../integration/services';
import {
  sharedDoor,
  send,
  startFrontDoor,
  type FrontDoor,
  type OnClose,
  type Sent,
} from './frontdoor';
import { HS_SECRET, hsKey, sign } from './jwt';
import { PRICES, USAGE_SNIPPET } from './token-meter-door';

/** The tiers of kong.yml's example plans (free: the small model; pro: both). */
export const TIER_PLANS = {
  free: {
    tools_allowed: [],
    preferred_model: 'gpt-4o-mini',
    models: ['gpt-4o-mini', 'text-embedding-3-small'],
    embedding_model: 'text-embedding-3-small',
  },
  pro: {
    tools_allowed: ['*'],
    preferred_model: 'gpt-4o',
    fallback_model: 'gpt-4o-mini',
    models: ['gpt-4o', 'gpt-4o-mini', 'text-embedding-3-small'],
    embedding_model: 'text-embedding-3-small',
    model_aliases: { fast: 'gpt-4o-mini' },
  },
  // No tier: every model passes unchanged (the behaviour before tiers).
  open: { tools_allowed: ['*'], preferred_model: 'gpt-4o' },
};

/** tenant id -> plan; each tenant's API key is `<tenant>-key`. */
export const TIER_TENANTS: Record<string, keyof typeof TIER_PLANS> = {
  free1: 'free',
  free2: 'free',
  free3: 'free',
  free4: 'free',
  free5: 'free',
  free6: 'free',
  free7: 'free',
  free8: 'free',
  free9: 'free',
  pro1: 'pro',
  pro2: 'pro',
  pro3: 'pro',
  pro4: 'pro',
  pro5: 'pro',
  open1: 'open',
  vip: 'free',
};

export const JWT_ISSUER = 'https://idp.example';

export interface TierDoor extends FrontDoor {
  /** Sends as `tenant` (its API key, or a JWT naming `plan` on /jwt routes). */
  call(
    tenant: string,
    pathname: string,
    init?: {
      method?: string;
      body?: string | Buffer | object;
      headers?: Array<[string, string]>;
      jwtPlan?: string;
    },
  ): Promise<{ res: Sent; upstream: ReceivedRequest | undefined }>;
  /** The tenant's ledger (showback, group_by model), polled until `ready` holds. */
  usage(tenant: string, ready: (r: UsageRow[]) => boolean): Promise<UsageRow[]>;
}

export interface UsageRow {
  input_tokens: number;
  output_tokens: number;
  num_model_requests: number;
  model: string | null;
}

export async function startTierDoor(onClose: OnClose): Promise<TierDoor> {
  const redis = await connectRedis();
  const keyspace = createKeyspace(`tier-${randomBytes(5).toString('hex')}`);
  onClose(() => deleteKeyspace(redis, keyspace));
  const dir = mkdtempSync(path.join(tmpdir(), 'tier-door-'));
  chmodSync(dir, 0o755);
  const keyFile = path.join(dir, 'master.key');
  writeFileSync(keyFile, `${randomBytes(32).toString('hex')}\n`, { mode: 0o644 });

  const tenantAuth = (extra: Record<string, unknown> = {}) => ({
    plans: TIER_PLANS,
    tenants: {
      // A per-tenant override: this free tenant may also use the frontier model.
      vip: { models: ['gpt-4o', 'gpt-4o-mini'], preferred_model: 'gpt-4o' },
    },
    // Every tiered plan understands `smart`; for free it names a model outside the tier.
    model_aliases: { smart: 'gpt-4o' },
    ...extra,
  });
  const cache = {
    redis: { url: REDIS_URL, timeout_ms: 2000, key_namespace: keyspace.namespace },
    master_key_env: 'KTA_TEST_CACHE_KEY_UNSET',
    master_key_file: keyFile,
  };
  const meter = {
    redis: { url: REDIS_URL, timeout_ms: 1000, key_namespace: keyspace.namespace },
    plans: {
      free: { budget_tokens: 1_000_000, allow_downgrade: false },
      pro: { budget_tokens: 1_000_000 },
      open: { budget_tokens: 1_000_000, allow_downgrade: false },
    },
    prices: PRICES,
  };
  const jwt = {
    algorithms: ['HS256'],
    hs256_secrets: [HS_SECRET],
    issuer: JWT_ISSUER,
  };
  const routes = ['ai', 'strict', 'jwt'];
  const door = await startFrontDoor(onClose, (upstreamUrl) => ({
    _format_version: '3.0',
    services: [
      {
        name: 'llm',
        url: upstreamUrl,
        routes: [
          { name: 'ai', paths: ['/v1'], strip_path: false },
          { name: 'strict', paths: ['/strict'], strip_path: true },
          { name: 'jwt', paths: ['/jwt'], strip_path: true },
        ],
      },
    ],
    plugins: [
      ...['ai', 'strict'].map((r) => ({
        name: 'key-auth',
        route: r,
        config: { hide_credentials: true },
      })),
      { name: 'tenant-auth', route: 'ai', config: tenantAuth() },
      { name: 'tenant-auth', route: 'strict', config: tenantAuth({ model_policy: 'reject' }) },
      {
        name: 'tenant-auth',
        route: 'jwt',
        config: tenantAuth({ identity_sources: ['jwt'], jwt }),
      },
      ...routes.map((r) => ({ name: 'tenant-cache', route: r, config: cache })),
      ...routes.map((r) => ({ name: 'token-meter', route: r, config: meter })),
      ...routes.map((r) => ({
        name: 'post-function',
        route: r,
        config: { body_filter: [USAGE_SNIPPET] },
      })),
    ],
    consumers: Object.entries(TIER_TENANTS).map(([tenant, plan]) => ({
      username: `${tenant}-app`,
      custom_id: tenant,
      tags: [`plan:${plan}`],
      keyauth_credentials: [{ key: `${tenant}-key` }],
    })),
  }));

  const call: TierDoor['call'] = async (tenant, pathname, init = {}) => {
    const testId = randomUUID();
    const credential: [string, string] =
      init.jwtPlan !== undefined
        ? [
            'authorization',
            `Bearer ${await sign(
              { tenant_id: tenant, plan: init.jwtPlan, iss: JWT_ISSUER, sub: tenant },
              'HS256',
              hsKey(),
            )}`,
          ]
        : ['apikey', `${tenant}-key`];
    const res = await send(`${door.url}${pathname}`, {
      ...(init.method ? { method: init.method } : {}),
      ...(init.body !== undefined ? { body: init.body } : {}),
      headers: [credential, ['x-test-id', testId], ...(init.headers ?? [])],
    });
    const upstream = door.upstream.received.find((r) => r.headers['x-test-id'] === testId);
    return { res, upstream };
  };

  const usage: TierDoor['usage'] = async (tenant, ready) => {
    const start = Math.floor(Date.now() / 1000) - 86_400;
    let last: UsageRow[] = [];
    for (let i = 0; i < 100; i++) {
      const { res } = await call(
        tenant,
        `/v1/organization/usage/completions?start_time=${start}&bucket_width=1d&limit=2&group_by=model`,
      );
      if (res.status !== 200) throw new Error(`showback answered ${res.status}: ${res.text}`);
      const page = res.json as { data: Array<{ results: UsageRow[] }> };
      last = page.data.flatMap((b) => b.results);
      if (ready(last)) return last;
      await new Promise((r) => setTimeout(r, 50));
    }
    return last;
  };
  return { ...door, call, usage };
}

/** One tier door for a whole test file. */
export function sharedTierDoor(test: TestFn): () => TierDoor {
  return sharedDoor(test, 'tier door', (c) => startTierDoor(c.add));
}

/** A deterministic (cacheable) chat request whose prompt no other test uses. */
export function uniqueChat(model: unknown, extra: Record<string, unknown> = {}) {
  return {
    model,
    temperature: 0,
    messages: [{ role: 'user', content: `tier test ${randomUUID()}` }],
    ...extra,
  };
}
