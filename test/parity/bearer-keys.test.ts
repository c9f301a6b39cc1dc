/**
 * Parity for the Bearer keys of the OpenAI SDKs: Kong's bundled pre-function running
 * plugins/tenant-auth/bearer-snippet.lua (what kong.yml ships) before key-auth, on the real Kong
 * 3.9.3 and on the harness (harness/post-function.ts runs the same Lua in access). Each case
 * goes through both; status, response headers, the body (JSON compared parsed: lua-cjson's key
 * order is its hash order) and what the upstream received must be the same, and each case also
 * asserts what it is about (a converted key authenticates, two keys are refused, a JWT is left
 * for tenant-auth, the key never reaches the upstream).
 *
 * Needs a Kong 3.9 (kong-runner locateKong): without one this file FAILS, it does not skip.
 */
import test from 'ava';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { startGateway } from '../../harness/index';
import type { Gateway } from '../../harness/types';
import { locateKong, startKong } from '../../kong-runner/index';
import { ROOT, pluginServerDir } from '../helpers/frontdoor';
import { head } from './cases';
import { rawRequest, startRecordingUpstream, type RecordingUpstream } from './rig';

const SNIPPET = readFileSync(
  path.join(ROOT, 'plugins', 'tenant-auth', 'bearer-snippet.lua'),
  'utf8',
);

const IGNORED_RESPONSE = new Set([
  'date',
  'x-kong-request-id',
  'x-kong-response-latency',
  'x-kong-proxy-latency',
  'x-kong-upstream-latency',
]);
const IGNORED_UPSTREAM = new Set([
  'x-kong-request-id',
  'x-credential-identifier',
  'x-case',
  'x-forwarded-port',
]);
const REQUEST_ID = /\b[0-9a-f]{32}\b/g;
/** A JWT-shaped token (header {"alg":"HS256","typ":"JWT"}); tenant-auth here verifies none. */
const JWT = 'eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiJ4In0.c2ln';

interface Observed {
  status: number;
  headers: string[];
  body: unknown;
  upstream: { target: string; headers: string[] } | 'nothing reached the upstream';
}

interface Rig {
  upstream: RecordingUpstream;
  kong: Gateway;
  harness: Gateway;
}
let rig: Rig | undefined;
let counter = 0;

test.before(async () => {
  if (!locateKong()) {
    throw new Error(
      'no Kong 3.9 on this machine (KONG_INSTALL_DIR, /opt/kong-3.9.3 or PATH): this parity ' +
        'test cannot run without it. Install it with `scripts/services/kong.sh install`.',
    );
  }
  const upstream = await startRecordingUpstream();
  const config = {
    _format_version: '3.0',
    services: [
      {
        name: 'llm',
        url: upstream.url,
        routes: [{ name: 'ai', paths: ['/v1'], strip_path: false }],
      },
    ],
    plugins: [
      { name: 'pre-function', route: 'ai', config: { access: [SNIPPET] } },
      {
        name: 'key-auth',
        route: 'ai',
        config: { key_names: ['apikey', 'x-api-key'], hide_credentials: true },
      },
      { name: 'tenant-auth', route: 'ai', config: { plans: { free: { tools_allowed: [] } } } },
    ],
    consumers: [
      {
        username: 'globex-app',
        custom_id: 'globex',
        tags: ['plan:free'],
        keyauth_credentials: [{ key: 'globex-key' }],
      },
      {
        username: 'acme-app',
        custom_id: 'acme',
        tags: ['plan:free'],
        keyauth_credentials: [{ key: 'acme-key' }],
      },
    ],
  };
  const pluginServers = { 'tenant-auth': pluginServerDir('tenant-auth') };
  const kong = await startKong({ config, pluginServers, label: 'parity-bearer' });
  const harness = await startGateway({ config, pluginServers }).catch(async (e: unknown) => {
    await kong.close();
    throw e;
  });
  rig = { upstream, kong, harness };
});

test.after.always(async () => {
  await rig?.kong.close();
  await rig?.harness.close();
  await rig?.upstream.close();
});

function lines(list: Array<[string, string]>, ignored: Set<string>): string[] {
  return list
    .filter(([k]) => !ignored.has(k))
    .map(([k, v]) => `${k}: ${v.replace(REQUEST_ID, '<request-id>')}`)
    .sort();
}

async function through(gw: Gateway, extra: string[]): Promise<Observed> {
  if (!rig) throw new Error('the parity rig did not start');
  const id = `bearer-${process.pid}-${counter++}`;
  const raw = head('GET /v1/models', extra, { key: false }).replace('{{id}}', id);
  const res = await rawRequest(gw.port, raw);
  const rec = rig.upstream.records.find((r) =>
    r.headers.some(([k, v]) => k === 'x-case' && v === id),
  );
  const text = res.body.replace(REQUEST_ID, '<request-id>');
  let body: unknown = text;
  try {
    body = JSON.parse(text) as unknown;
  } catch {
    // not JSON: compared as text
  }
  return {
    status: res.status,
    headers: lines(res.headers, IGNORED_RESPONSE),
    body,
    upstream: rec
      ? { target: rec.target, headers: lines(rec.headers, IGNORED_UPSTREAM) }
      : 'nothing reached the upstream',
  };
}

const credentialLines = (o: Observed): string[] =>
  o.upstream === 'nothing reached the upstream'
    ? []
    : o.upstream.headers.filter((l) => /^(authorization|apikey|x-api-key):/.test(l));
const consumer = (o: Observed): string | undefined =>
  o.upstream === 'nothing reached the upstream'
    ? undefined
    : o.upstream.headers.find((l) => l.startsWith('x-consumer-custom-id:'));
const errorCode = (o: Observed): unknown =>
  (o.body as { error?: { code?: unknown } } | null)?.error?.code;

interface BearerCase {
  name: string;
  headers: string[];
  check: (o: Observed) => string | undefined;
}

const authenticatedAs =
  (tenant: string) =>
  (o: Observed): string | undefined => {
    if (o.status !== 200) return `status ${o.status}`;
    if (consumer(o) !== `x-consumer-custom-id: ${tenant}`) return `consumer ${consumer(o)}`;
    const creds = credentialLines(o);
    return creds.length ? `a credential went upstream: ${creds.join(', ')}` : undefined;
  };
const conflict = (o: Observed): string | undefined =>
  o.status === 401 &&
  errorCode(o) === 'conflicting_credentials' &&
  o.upstream === 'nothing reached the upstream'
    ? undefined
    : `expected a 401 conflicting_credentials, got ${o.status} ${JSON.stringify(o.body)}`;
const keyAuthRefusal = (o: Observed): string | undefined =>
  o.status === 401 && o.upstream === 'nothing reached the upstream'
    ? undefined
    : `expected key-auth's 401, got ${o.status}`;

const CASES: BearerCase[] = [
  {
    name: 'Bearer <key> authenticates',
    headers: ['Authorization: Bearer globex-key'],
    check: authenticatedAs('globex'),
  },
  {
    name: 'scheme case and spaces: bearer  <key>',
    headers: ['authorization: bearer   acme-key '],
    check: authenticatedAs('acme'),
  },
  {
    name: 'Bearer <key> plus the same key in apikey and x-api-key',
    headers: ['Authorization: Bearer acme-key', 'apikey: acme-key', 'x-api-key: acme-key'],
    check: authenticatedAs('acme'),
  },
  {
    name: 'apikey alone is untouched',
    headers: ['apikey: globex-key'],
    check: authenticatedAs('globex'),
  },
  {
    name: 'Bearer <key> plus another key in apikey',
    headers: ['Authorization: Bearer globex-key', 'apikey: acme-key'],
    check: conflict,
  },
  {
    name: 'Bearer <key> plus another key in x-api-key',
    headers: ['Authorization: Bearer acme-key', 'x-api-key: globex-key'],
    check: conflict,
  },
  {
    name: 'apikey plus another key in x-api-key',
    headers: ['apikey: globex-key', 'x-api-key: acme-key'],
    check: conflict,
  },
  {
    // nginx refuses a repeated Authorization line itself (400), before any plugin runs.
    name: 'two Authorization lines: 400 from nginx',
    headers: ['Authorization: Bearer globex-key', 'Authorization: Bearer acme-key'],
    check: (o) =>
      o.status === 400 && o.upstream === 'nothing reached the upstream'
        ? undefined
        : `expected nginx's 400, got ${o.status}`,
  },
  {
    name: 'Bearer with an unknown key',
    headers: ['Authorization: Bearer nope'],
    check: keyAuthRefusal,
  },
  {
    // The snippet leaves it alone (tenant-auth removes Authorization before the upstream).
    name: 'a JWT plus an apikey: the key authenticates, the JWT is not taken for a key',
    headers: [`Authorization: Bearer ${JWT}`, 'apikey: globex-key'],
    check: authenticatedAs('globex'),
  },
  {
    name: 'a JWT alone is no key for key-auth',
    headers: [`Authorization: Bearer ${JWT}`],
    check: keyAuthRefusal,
  },
  {
    name: 'Basic is not a key',
    headers: ['Authorization: Basic Z2xvYmV4LWtleTo='],
    check: keyAuthRefusal,
  },
  { name: 'Bearer without a token', headers: ['Authorization: Bearer'], check: keyAuthRefusal },
];

for (const c of CASES) {
  test.serial(`Bearer keys, same on Kong and the harness: ${c.name}`, async (t) => {
    if (!rig) throw new Error('the parity rig did not start');
    const kong = await through(rig.kong, c.headers);
    const harness = await through(rig.harness, c.headers);
    t.deepEqual(harness, kong);
    t.is(c.check(kong), undefined);
  });
}
