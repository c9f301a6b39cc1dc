/**
 * A front door for request capture's end-to-end and isolation tests (issue 23): key-auth,
 * tenant-auth with capture opted in per plan and per tenant, token-meter storing captures in a
 * random key namespace of the real Redis (removed afterwards) under a fresh capture secret,
 * and Kong's post-function with kong.yml's two body_filter snippets (usage, answer).
 *
 * Tenants (key `<tenant>-key`): `capa` (plan pro, which captures), `capb` (plan pro, too),
 * `capc` (plan free, which does not), `capd` (plan free, opted in by a tenant override),
 * `cape` (plan pro, opted out by an override).
 */
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { stringify } from 'yaml';
import { createClient } from 'redis';
import { CaptureKeyring } from '../../lib/capture/crypto';
import { createKeyspace, type Keyspace } from '../../lib/redis/keys';
import { ROOT, send, startFrontDoor, type FrontDoor, type OnClose, type Sent } from './frontdoor';
import { PRICES } from './token-meter-door';

export const USAGE_SNIPPET = readFileSync(
  path.join(ROOT, 'plugins', 'token-meter', 'usage-snippet.lua'),
  'utf8',
);
export const BEARER_SNIPPET = readFileSync(
  path.join(ROOT, 'plugins', 'tenant-auth', 'bearer-snippet.lua'),
  'utf8',
);
export const ANSWER_SNIPPET = readFileSync(
  path.join(ROOT, 'lib', 'capture', 'answer-snippet.lua'),
  'utf8',
);

export const CAPTURE_TENANTS: Record<string, 'pro' | 'free'> = {
  capa: 'pro',
  capb: 'pro',
  capc: 'free',
  capd: 'free',
  cape: 'pro',
};

export interface CaptureDoor extends FrontDoor {
  namespace: string;
  keys: Keyspace;
  secretHex: string;
  keyring: CaptureKeyring;
  /** A declarative file naming token-meter's namespace, for `npm run replay --config`. */
  configFile: string;
  call(
    tenant: string,
    body: Record<string, unknown>,
    headers?: Array<[string, string]>,
  ): Promise<Sent & { requestId: string }>;
}

export async function startCaptureDoor(onClose: OnClose): Promise<CaptureDoor> {
  const namespace = `cap${randomBytes(4).toString('hex')}`;
  const secretHex = randomBytes(32).toString('hex');
  const meter = {
    redis: {
      url: process.env.REDIS_URL ?? 'redis://127.0.0.1:6379',
      timeout_ms: 1000,
      key_namespace: namespace,
    },
    metrics_port: 0,
    plans: { free: { budget_tokens: 1_000_000 }, pro: { budget_tokens: 1_000_000 } },
    prices: PRICES,
    capture: { secret_env: 'KTA_CAPTURE_SECRET', ttl_seconds: 3600 },
  };
  const door = await startFrontDoor(
    onClose,
    (upstreamUrl) => ({
      _format_version: '3.0',
      services: [
        {
          name: 'llm',
          url: upstreamUrl,
          routes: [{ name: 'ai', paths: ['/v1'], strip_path: false }],
        },
      ],
      plugins: [
        // As in kong.yml: `Authorization: Bearer <key>` (the replay's, the SDKs') for key-auth.
        { name: 'pre-function', route: 'ai', config: { access: [BEARER_SNIPPET] } },
        { name: 'key-auth', route: 'ai', config: { hide_credentials: true } },
        {
          name: 'tenant-auth',
          route: 'ai',
          config: {
            metrics_port: 0,
            plans: {
              free: { preferred_model: 'gpt-4o-mini' },
              pro: { preferred_model: 'gpt-4o', capture: true },
            },
            tenants: { capd: { capture: true }, cape: { capture: false } },
          },
        },
        { name: 'token-meter', route: 'ai', config: meter },
        {
          name: 'post-function',
          route: 'ai',
          config: { body_filter: [USAGE_SNIPPET, ANSWER_SNIPPET] },
        },
      ],
      consumers: Object.entries(CAPTURE_TENANTS).map(([tenant, plan]) => ({
        username: `${tenant}-app`,
        custom_id: tenant,
        tags: [`plan:${plan}`],
        keyauth_credentials: [{ key: `${tenant}-key` }],
      })),
    }),
    { env: { KTA_CAPTURE_SECRET: secretHex } },
  );
  onClose(async () => {
    const redis = createClient({ url: process.env.REDIS_URL ?? 'redis://127.0.0.1:6379' });
    await redis.connect();
    for await (const batch of redis.scanIterator({ MATCH: `${namespace}:*`, COUNT: 500 })) {
      if (batch.length > 0) await redis.del(batch);
    }
    await redis.close();
  });
  const dir = mkdtempSync(path.join(tmpdir(), 'kta-capture-'));
  const configFile = path.join(dir, 'kong.yml');
  writeFileSync(
    configFile,
    stringify({ _format_version: '3.0', plugins: [{ name: 'token-meter', config: meter }] }),
  );
  const call: CaptureDoor['call'] = async (tenant, body, headers = []) => {
    const res = await send(`${door.url}/v1/chat/completions`, {
      body,
      headers: [['apikey', `${tenant}-key`], ...headers],
    });
    const rid = res.headers['x-kong-request-id'];
    return { ...res, requestId: typeof rid === 'string' ? rid : '' };
  };
  return {
    ...door,
    namespace,
    keys: createKeyspace(namespace),
    secretHex,
    keyring: new CaptureKeyring(Buffer.from(secretHex, 'hex')),
    configFile,
    call,
  };
}
