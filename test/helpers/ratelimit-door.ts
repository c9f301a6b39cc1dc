/**
 * A front door for tenant-ratelimit's end-to-end and isolation tests: key-auth, tenant-auth
 * and tenant-ratelimit on several routes, each route with its own limits and its own random
 * Redis key namespace (so tests on different routes never share a bucket or a queue), all on
 * the real Redis at REDIS_URL.
 */
import { randomBytes, randomUUID } from 'node:crypto';
import type { TestFn } from 'ava';
import type { ReceivedRequest } from '../../mock-upstream/index';
import {
  sharedDoor,
  send,
  startFrontDoor,
  startFrontDoors,
  type Cluster,
  type FrontDoor,
  type Sent,
} from './frontdoor';

export const REDIS_URL = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379';
/** Nothing listens here: a Redis that is down. */
export const DEAD_REDIS_URL = 'redis://127.0.0.1:1';

export const AUTH_PLANS = {
  free: { tools_allowed: ['*'], weight: 1 },
  pro: { tools_allowed: ['*'], weight: 4 },
};

export const RATELIMIT_CONSUMERS = [
  {
    username: 'acme',
    custom_id: 'acme',
    tags: ['plan:pro'],
    keyauth_credentials: [{ key: 'acme-key' }],
  },
  {
    username: 'globex',
    custom_id: 'globex',
    tags: ['plan:free'],
    keyauth_credentials: [{ key: 'globex-key' }],
  },
  {
    username: 'initech',
    custom_id: 'initech',
    tags: ['plan:free'],
    keyauth_credentials: [{ key: 'initech-key' }],
  },
  // tenant ids that differ from acme's only by what a careless key builder would collapse
  {
    username: 'acme-lookalike',
    custom_id: 'acme-requests',
    tags: ['plan:free'],
    keyauth_credentials: [{ key: 'lookalike-key' }],
  },
  {
    username: 'hashtag',
    custom_id: 'acme}{t:globex',
    tags: ['plan:free'],
    keyauth_credentials: [{ key: 'hashtag-key' }],
  },
  {
    username: 'colon',
    custom_id: 'acme:rate:requests',
    tags: ['plan:free'],
    keyauth_credentials: [{ key: 'colon-key' }],
  },
];

export interface RouteSpec {
  /** Route name; its path is `/<name>` (stripped before the upstream). */
  name: string;
  /** tenant-ratelimit config (redis url and key namespace are filled in unless given). */
  config: Record<string, unknown>;
  /** false: no tenant-auth on this route (tenant-ratelimit must refuse). */
  tenantAuth?: boolean;
  /** More tenant-auth config (e.g. `validate_json_body: false`, so bad bodies reach tenant-ratelimit). */
  tenantAuthConfig?: Record<string, unknown>;
  /** Observed usage published for log (test/fixtures/pluginservers/usage-stub). */
  usage?: string;
}

export interface RatelimitDoor extends FrontDoor {
  /**
   * Sends to `/<route>/v1/chat/completions` (or `pathname`) with a fresh x-test-id; a chat
   * body unless `body` is given (`null`: none, a GET).
   */
  call(
    route: string,
    key: string | null,
    init?: { body?: object | string | null; headers?: Array<[string, string]>; pathname?: string },
  ): Promise<{ res: Sent; upstream: ReceivedRequest | undefined }>;
}

export function chatBody(content = 'hello', extra: Record<string, unknown> = {}): object {
  return { model: 'gpt-4o-mini', messages: [{ role: 'user', content }], ...extra };
}

/** The declarative config of the door: every route, its plugins, the consumers. */
function ratelimitConfig(routes: RouteSpec[]): (upstreamUrl: string) => Record<string, unknown> {
  const run = randomBytes(4).toString('hex');
  return (upstreamUrl) => ({
    _format_version: '3.0',
    services: [
      {
        name: 'llm',
        url: upstreamUrl,
        routes: routes.map((r) => ({ name: r.name, paths: [`/${r.name}`], strip_path: true })),
      },
    ],
    plugins: routes.flatMap((r) => [
      { name: 'key-auth', route: r.name, config: { hide_credentials: true } },
      ...(r.tenantAuth === false
        ? []
        : [
            {
              name: 'tenant-auth',
              route: r.name,
              config: { plans: AUTH_PLANS, ...(r.tenantAuthConfig ?? {}) },
            },
          ]),
      {
        name: 'tenant-ratelimit',
        route: r.name,
        config: {
          ...r.config,
          redis: {
            url: REDIS_URL,
            key_namespace: `e2e-${run}-${r.name}`.slice(0, 32),
            timeout_ms: 2000,
            ...((r.config.redis as object | undefined) ?? {}),
          },
        },
      },
      ...(r.usage ? [{ name: 'usage-stub', route: r.name, config: { usage: r.usage } }] : []),
    ]),
    consumers: RATELIMIT_CONSUMERS,
  });
}

type Call = RatelimitDoor['call'];

function caller(url: string, upstream: FrontDoor['upstream']): Call {
  return async (route, key, init = {}) => {
    const testId = randomUUID();
    const headers: Array<[string, string]> = [...(init.headers ?? []), ['x-test-id', testId]];
    if (key !== null) headers.push(['apikey', key]);
    const res = await send(`${url}/${route}${init.pathname ?? '/v1/chat/completions'}`, {
      headers,
      ...(init.body === null ? {} : { body: init.body ?? chatBody() }),
    });
    const received = upstream.received.find((r) => r.headers['x-test-id'] === testId);
    return { res, upstream: received };
  };
}

export async function startRatelimitDoor(
  onClose: (fn: () => Promise<void> | void) => void,
  routes: RouteSpec[],
): Promise<RatelimitDoor> {
  const door = await startFrontDoor(onClose, ratelimitConfig(routes));
  return { ...door, call: caller(door.url, door.upstream) };
}

export interface RatelimitCluster extends Cluster {
  /** The same as RatelimitDoor.call, through node `node` (0-based). */
  call(node: number, ...args: Parameters<Call>): ReturnType<Call>;
}

/**
 * The door's routes on `nodes` gateway nodes (real Kongs with GATEWAY=kong, each with its own
 * plugin servers), one declarative config, one mock upstream, one Redis: one cluster.
 */
export async function startRatelimitCluster(
  onClose: (fn: () => Promise<void> | void) => void,
  routes: RouteSpec[],
  nodes = 2,
): Promise<RatelimitCluster> {
  const cluster = await startFrontDoors(onClose, ratelimitConfig(routes), { nodes });
  const calls = cluster.urls.map((u) => caller(u, cluster.upstream));
  return {
    ...cluster,
    call: (node, ...args) => {
      const c = calls[node];
      if (!c) throw new Error(`no node ${node} (${calls.length} nodes)`);
      return c(...args);
    },
  };
}

/** One door for a whole test file. */
export function sharedRatelimitDoor(test: TestFn, routes: RouteSpec[]): () => RatelimitDoor {
  return sharedDoor(test, 'ratelimit door', (c) => startRatelimitDoor(c.add, routes));
}

/** Repeats `attempt` until it returns true (log phases run after the response), at most ~3 s. */
export async function eventually(attempt: () => Promise<boolean>): Promise<boolean> {
  for (let i = 0; i < 60; i++) {
    if (await attempt()) return true;
    await new Promise((r) => setTimeout(r, 50));
  }
  return false;
}
