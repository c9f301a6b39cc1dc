/**
 * A front door with several routes, each a different tenant-auth setup, shared by the
 * tenant-auth end-to-end tests and the isolation suite. Each request carries a unique
 * `x-test-id` so concurrent tests find their own upstream record.
 */
import { randomUUID } from 'node:crypto';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { ReceivedRequest } from '../../mock-upstream/index';
import { HS_SECRET, keys } from './jwt';
import type { TestFn } from 'ava';
import {
  sharedDoor,
  send,
  startFrontDoor,
  type FrontDoor,
  type OnClose,
  type Sent,
} from './frontdoor';
import { freePort } from '../../harness/free-port';

export const PLANS = {
  free: { tools_allowed: [], preferred_model: 'gpt-4o-mini', weight: 1 },
  pro: {
    tools_allowed: ['search', 'calculator'],
    preferred_model: 'gpt-4o',
    fallback_model: 'gpt-4o-mini',
    persona: 'You are a pro-plan assistant.',
    weight: 4,
  },
  open: { tools_allowed: ['*'], weight: 1 },
};

export const TENANTS = {
  acme: { persona: 'You are Acme support.', tools_allowed: ['search', 'calculator', 'crm_write'] },
};

export const CONSUMERS = [
  // key-auth's anonymous fallback on the anon route; its custom_id must never become a tenant.
  { username: 'anon-user', custom_id: 'public', tags: ['plan:free'] },
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
    username: 'open-app',
    custom_id: 'umbrella',
    tags: ['plan:open'],
    keyauth_credentials: [{ key: 'open-key' }],
  },
  { username: 'no-tenant', keyauth_credentials: [{ key: 'no-tenant-key' }] },
  { username: 'no-plan', custom_id: 'hooli', keyauth_credentials: [{ key: 'no-plan-key' }] },
  {
    username: 'gold-plan',
    // Kong refuses two consumers with one custom_id (a uniqueness violation in kong.yml).
    custom_id: 'pied-piper',
    tags: ['plan:gold'],
    keyauth_credentials: [{ key: 'gold-plan-key' }],
  },
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
    username: 'milvus-expr',
    custom_id: 'acme" || tenant_id != "',
    tags: ['plan:pro'],
    keyauth_credentials: [{ key: 'expr-key' }],
  },
  {
    username: 'crlf',
    custom_id: 'acme\r\nx-tenant-id: globex',
    tags: ['plan:pro'],
    keyauth_credentials: [{ key: 'crlf-key' }],
  },
  {
    username: 'colon',
    custom_id: 'acme:globex',
    tags: ['plan:pro'],
    keyauth_credentials: [{ key: 'colon-key' }],
  },
];

export const JWT_ISSUER = 'https://idp.example';
export const JWT_AUDIENCE = 'ai-gateway';

function tenantAuth(extra: Record<string, unknown> = {}): Record<string, unknown> {
  return { plans: PLANS, tenants: TENANTS, ...extra };
}

export interface TenantDoor extends FrontDoor {
  serializeFile: string;
  /** Where tenant-auth's plugin server serves /metrics. */
  metricsUrl: string;
  /** Sends with a fresh x-test-id; returns the response and what reached the upstream (if anything). */
  call(
    pathname: string,
    init?: { method?: string; headers?: Array<[string, string]>; body?: string | Buffer | object },
  ): Promise<{ res: Sent; upstream: ReceivedRequest | undefined; testId: string }>;
}

export async function startTenantDoor(onClose: OnClose): Promise<TenantDoor> {
  const k = keys();
  const metricsPort = await freePort();
  const serializeFile = path.join(mkdtempSync(path.join(tmpdir(), 'serialize-')), 'log.jsonl');
  const jwt = {
    algorithms: ['HS256', 'RS256', 'ES256'],
    hs256_secrets: [HS_SECRET],
    public_keys: [k.rsa.publicPem, k.ec.publicPem],
    issuer: JWT_ISSUER,
    audience: JWT_AUDIENCE,
  };
  // /v1 goes to the upstream as is; /<name>/v1/... reaches it as /v1/... (strip_path).
  const route = (name: string, p: string) => ({ name, paths: [p], strip_path: p !== '/v1' });
  const door = await startFrontDoor(onClose, (upstreamUrl) => ({
    _format_version: '3.0',
    services: [
      {
        name: 'llm',
        url: upstreamUrl,
        routes: [
          route('ai', '/v1'),
          route('jwt', '/jwt'),
          route('both', '/both'),
          route('bare', '/bare'),
          route('reject', '/reject'),
          route('replace', '/replace'),
          route('fallback', '/fallback'),
          route('lean', '/lean'),
          route('strip', '/strip'),
          route('untenanted', '/untenanted'),
          route('broken', '/broken'),
          route('anon', '/anon'),
          route('jwtshort', '/jwtshort'),
        ],
      },
    ],
    plugins: [
      { name: 'tenant-probe', service: 'llm', config: { serialize_file: serializeFile } },
      ...['ai', 'both', 'reject', 'replace', 'fallback', 'lean', 'strip'].map((r) => ({
        name: 'key-auth',
        route: r,
        config: { hide_credentials: true },
      })),
      { name: 'tenant-auth', route: 'ai', config: tenantAuth({ metrics_port: metricsPort }) },
      {
        name: 'key-auth',
        route: 'anon',
        config: { hide_credentials: true, anonymous: 'anon-user' },
      },
      {
        name: 'tenant-auth',
        route: 'anon',
        config: tenantAuth({ identity_sources: ['consumer', 'jwt'], jwt }),
      },
      {
        name: 'tenant-auth',
        route: 'jwtshort',
        config: tenantAuth({
          identity_sources: ['jwt'],
          jwt: { ...jwt, max_lifetime_seconds: 3600 },
        }),
      },
      // Valid for the schema, but default_plan names no plan: checkConfig rejects it.
      { name: 'tenant-auth', route: 'broken', config: tenantAuth({ default_plan: 'platinum' }) },
      { name: 'tenant-auth', route: 'jwt', config: tenantAuth({ identity_sources: ['jwt'], jwt }) },
      {
        name: 'tenant-auth',
        route: 'both',
        config: tenantAuth({ identity_sources: ['consumer', 'jwt'], jwt }),
      },
      { name: 'tenant-auth', route: 'bare', config: tenantAuth() },
      { name: 'tenant-auth', route: 'reject', config: tenantAuth({ tool_policy: 'reject' }) },
      { name: 'tenant-auth', route: 'replace', config: tenantAuth({ persona_mode: 'replace' }) },
      { name: 'tenant-auth', route: 'fallback', config: tenantAuth({ default_plan: 'free' }) },
      {
        name: 'tenant-auth',
        route: 'lean',
        config: tenantAuth({ validate_json_body: false, max_body_bytes: 128 }),
      },
      {
        name: 'tenant-auth',
        route: 'strip',
        config: tenantAuth({ strip_headers: ['X-Consumer-Custom-ID', 'X-Internal-Role'] }),
      },
    ],
    consumers: CONSUMERS,
  }));

  const call: TenantDoor['call'] = async (pathname, init = {}) => {
    const testId = randomUUID();
    const res = await send(`${door.url}${pathname}`, {
      ...init,
      headers: [...(init.headers ?? []), ['x-test-id', testId]],
    });
    const upstream = door.upstream.received.find((r) => r.headers['x-test-id'] === testId);
    return { res, upstream, testId };
  };
  return { ...door, serializeFile, metricsUrl: `http://127.0.0.1:${metricsPort}/metrics`, call };
}

/** The TenantContext JSON a later plugin saw (tenant-probe copies it into a header). */
export function probedContext(
  r: ReceivedRequest | undefined,
): Record<string, unknown> | 'absent' | undefined {
  const v = r?.headers['x-probe-tenant-context'];
  if (v === undefined) return undefined;
  if (v === 'absent') return 'absent';
  return JSON.parse(String(v)) as Record<string, unknown>;
}

/** One tenant door for a whole test file: started before its tests, stopped after. */
export function sharedTenantDoor(test: TestFn): () => TenantDoor {
  return sharedDoor(test, 'tenant door', (c) => startTenantDoor(c.add));
}
