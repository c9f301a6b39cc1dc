/**
 * A front door for the circuit-breaker tests: key-auth → tenant-auth → circuit-breaker on
 * /v1, with three upstreams — the service's own mock (tenants that stay on the service
 * target), a `dedicated` mock (plans routed to their own deployment) and a `backup` mock (the
 * premium plan's fallback) — a /refuse route where a later plugin refuses every request, and
 * a /bare route where circuit-breaker runs without tenant-auth.
 */
import type { TestFn } from 'ava';
import { randomUUID } from 'node:crypto';
import type { MockUpstream } from '../../mock-upstream/index';
import {
  sharedDoor,
  send,
  startFrontDoor,
  type FrontDoor,
  type OnClose,
  type Sent,
} from './frontdoor';
import { freePort, startExtraUpstream } from './upstreams';

/** Breaker settings of the door: small numbers, so tests and benchmarks stay short. */
export const BREAKER = {
  kind: 'consecutive',
  consecutive_failures: 3,
  half_open_after_ms: 1500,
  probe_timeout_ms: 5000,
};
export const BULKHEAD = { max_in_flight: 8, queue: 1, queue_timeout_ms: 300 };
/** Service read timeout: a hanging upstream ends in Kong's 504 after this long. */
export const READ_TIMEOUT_MS = 3000;

/** Tenants (consumer custom_id) and their API keys; each test uses its own tenant. */
export const TENANTS = {
  // plan `dedicated`: routed to the dedicated upstream, one breaker per tenant there
  alpha: 'alpha-key',
  bravo: 'bravo-key',
  charlie: 'charlie-key', // bulkhead of 2
  echo: 'echo-key',
  foxtrot: 'foxtrot-key',
  golf: 'golf-key',
  // plan `premium`: dedicated upstream, falls back to the backup upstream with another model
  delta: 'delta-key',
  // plan `free`: stays on the service's own target
  globex: 'globex-key',
  initech: 'initech-key',
  // its own upstream entry: a fixed path and model (a dedicated deployment's)
  hotel: 'hotel-key',
} as const;
export type TenantName = keyof typeof TENANTS;

const PLAN_OF: Record<TenantName, string> = {
  alpha: 'dedicated',
  bravo: 'dedicated',
  charlie: 'dedicated',
  echo: 'dedicated',
  foxtrot: 'dedicated',
  golf: 'dedicated',
  delta: 'premium',
  globex: 'free',
  initech: 'free',
  hotel: 'free',
};

export interface BreakerDoor extends FrontDoor {
  dedicated: MockUpstream;
  backup: MockUpstream;
  metricsUrl: string;
  metricsPort: number;
  /** A chat completion as `tenant` on `pathname` (default /v1/chat/completions). */
  ask(
    tenant: TenantName,
    pathname?: string,
    body?: object,
    headers?: Array<[string, string]>,
  ): Promise<Sent & { testId: string }>;
  /** The value of one sample of the plugin's /metrics, 0 when absent. */
  metric(name: string, labels: Record<string, string>): Promise<number>;
  /**
   * Outcomes are recorded in the log phase, after the client has its response: polls the
   * sample until it equals `value` (at most ~5 s) and returns what it last read.
   */
  settled(name: string, labels: Record<string, string>, value: number): Promise<number>;
}

export async function startBreakerDoor(onClose: OnClose): Promise<BreakerDoor> {
  const dedicated = await startExtraUpstream(onClose);
  const backup = await startExtraUpstream(onClose);
  const metricsPort = await freePort();
  const plans = Object.fromEntries(
    ['free', 'dedicated', 'premium'].map((p) => [p, { tools_allowed: ['*'] }]),
  );
  const breakerConfig = {
    metrics_port: metricsPort,
    upstreams: {
      dedicated: { host: '127.0.0.1', port: dedicated.port },
      backup: { host: '127.0.0.1', port: backup.port, breaker_scope: 'upstream' },
      'hotel-deployment': {
        host: '127.0.0.1',
        port: dedicated.port,
        path: '/v1/chat/completions',
        model: 'gpt-4.1',
      },
    },
    plans: {
      dedicated: { upstream: 'dedicated' },
      premium: {
        upstream: 'dedicated',
        fallback_upstream: 'backup',
        fallback_model: 'gpt-4o-mini',
      },
    },
    tenants: { charlie: { max_in_flight: 2 }, hotel: { upstream: 'hotel-deployment' } },
    breaker: BREAKER,
    bulkhead: BULKHEAD,
  };
  const door = await startFrontDoor(onClose, (upstreamUrl) => ({
    _format_version: '3.0',
    services: [
      {
        name: 'llm',
        url: upstreamUrl,
        read_timeout: READ_TIMEOUT_MS,
        routes: [
          { name: 'ai', paths: ['/v1'], strip_path: false },
          { name: 'refuse', paths: ['/refuse'], strip_path: true },
          { name: 'bare', paths: ['/bare'], strip_path: true },
        ],
      },
    ],
    plugins: [
      ...['ai', 'refuse'].flatMap((route) => [
        { name: 'key-auth', route, config: { hide_credentials: true } },
        { name: 'tenant-auth', route, config: { plans } },
        { name: 'circuit-breaker', route, config: breakerConfig },
      ]),
      { name: 'breaker-refuser', route: 'refuse', config: { status: 503 } },
      // circuit-breaker without tenant-auth: must refuse, not proxy untenanted traffic
      { name: 'key-auth', route: 'bare', config: { hide_credentials: true } },
      { name: 'circuit-breaker', route: 'bare', config: breakerConfig },
    ],
    consumers: (Object.keys(TENANTS) as TenantName[]).map((t) => ({
      username: `${t}-app`,
      custom_id: t,
      tags: [`plan:${PLAN_OF[t]}`],
      keyauth_credentials: [{ key: TENANTS[t] }],
    })),
  }));
  const metricsUrl = `http://127.0.0.1:${metricsPort}/metrics`;
  const metric: BreakerDoor['metric'] = async (name, labels) => {
    const text = (await send(metricsUrl)).text;
    const want = Object.entries(labels);
    for (const line of text.split('\n')) {
      if (!line.startsWith(`${name}{`)) continue;
      if (want.every(([k, v]) => line.includes(`${k}="${v}"`))) {
        return Number(line.slice(line.lastIndexOf(' ') + 1));
      }
    }
    return 0;
  };
  return {
    ...door,
    dedicated,
    backup,
    metricsUrl,
    metricsPort,
    async ask(tenant, pathname = '/v1/chat/completions', body, headers = []) {
      const testId = randomUUID();
      const res = await send(`${door.url}${pathname}`, {
        headers: [...headers, ['apikey', TENANTS[tenant]], ['x-test-id', testId]],
        body: body ?? {
          model: 'gpt-4o',
          messages: [{ role: 'user', content: `hello from ${tenant}` }],
        },
      });
      return { ...res, testId };
    },
    metric,
    async settled(name, labels, value) {
      let v = await metric(name, labels);
      for (let i = 0; i < 100 && v !== value; i++) {
        await sleep(50);
        v = await metric(name, labels);
      }
      return v;
    },
  };
}

/** One breaker door for a whole test file. */
export function sharedBreakerDoor(test: TestFn): () => BreakerDoor {
  return sharedDoor(test, 'breaker door', (c) => startBreakerDoor(c.add));
}

/** Resolves after `ms` (waiting out a breaker's open period, not a timing assertion). */
export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/** Counts the requests an upstream received for one tenant (by the gateway's X-Tenant-Id). */
export function receivedFor(upstream: MockUpstream, tenant: string): number {
  return upstream.received.filter((r) => r.headers['x-tenant-id'] === tenant).length;
}
