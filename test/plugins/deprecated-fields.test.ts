/**
 * Field names a release renamed still load as deprecated aliases (lib/schema/deprecated.ts):
 * a kong.yml written for the old names behaves as before, the gateway logs a deprecation
 * warning naming the new field, and setting both names to different values is refused
 * (500 plugin_misconfigured, never proxied). On the gateway GATEWAY names; on the real Kong
 * the warning is Kong's own (its per-field `deprecation` attribute).
 */
import test from 'ava';
import { randomBytes } from 'node:crypto';
import type { KongGateway } from '../../kong-runner/index';
import { apiError, Closers, send, startFrontDoor, type FrontDoor } from '../helpers/frontdoor';
import {
  AUTH_PLANS,
  DEAD_REDIS_URL,
  RATELIMIT_CONSUMERS,
  chatBody,
} from '../helpers/ratelimit-door';
import { PRICES } from '../helpers/token-meter-door';
import { closeAllRedis } from '../../lib/redis/client';
import { connectRedis } from '../integration/services';

const REDIS_URL = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379';

const run = randomBytes(4).toString('hex');
const closers = new Closers();
const said: string[] = [];
let door: FrontDoor;

const ROUTES: Record<string, Record<string, unknown>> = {
  // A tenant-ratelimit config as written before on_redis_unavailable and redis.timeout_ms.
  old: {
    redis: { url: DEAD_REDIS_URL, key_namespace: `dep-${run}-old`, command_timeout_ms: 100 },
    on_redis_error: 'local',
    default_limits: { requests_per_minute: 1, request_burst: 2 },
  },
  // Both names, different values: which one the operator meant is not ours to guess.
  clash: {
    redis: { url: DEAD_REDIS_URL, key_namespace: `dep-${run}-clash`, timeout_ms: 100 },
    on_redis_error: 'refuse',
    on_redis_unavailable: 'local',
  },
  // Both names, the same value: loads.
  agree: {
    redis: { url: DEAD_REDIS_URL, key_namespace: `dep-${run}-agree`, timeout_ms: 100 },
    on_redis_error: 'local',
    on_redis_unavailable: 'local',
  },
};

const FLAT_CACHE = {
  redis_url: REDIS_URL,
  redis_timeout_ms: 2000,
  key_namespace: `depc-${run}`,
  ephemeral_key_when_missing: true,
  master_key_env: 'KTA_TEST_CACHE_KEY_UNSET',
  metrics_port: 0,
};
const FLAT_METER = {
  redis_url: REDIS_URL,
  redis_timeout_ms: 2000,
  key_namespace: `depm-${run}`,
  plans: { free: { budget_tokens: 1_000_000 }, pro: { budget_tokens: 1_000_000 } },
  prices: PRICES,
  metrics_port: 0,
};

test.before(async () => {
  door = await startFrontDoor(
    closers.add,
    (upstreamUrl) => ({
      _format_version: '3.0',
      services: [
        {
          name: 'llm',
          url: upstreamUrl,
          routes: [...Object.keys(ROUTES), 'flat'].map((r) => ({
            name: r,
            paths: [`/${r}`],
            strip_path: true,
          })),
        },
      ],
      plugins: [
        ...Object.entries(ROUTES).flatMap(([route, config]) => [
          { name: 'key-auth', route, config: { hide_credentials: true } },
          { name: 'tenant-auth', route, config: { plans: AUTH_PLANS, metrics_port: 0 } },
          { name: 'tenant-ratelimit', route, config: { ...config, metrics_port: 0 } },
        ]),
        // token-meter and tenant-cache as configured before their `redis` record.
        { name: 'key-auth', route: 'flat', config: { hide_credentials: true } },
        { name: 'tenant-auth', route: 'flat', config: { plans: AUTH_PLANS, metrics_port: 0 } },
        { name: 'tenant-cache', route: 'flat', config: FLAT_CACHE },
        { name: 'token-meter', route: 'flat', config: FLAT_METER },
      ],
      consumers: RATELIMIT_CONSUMERS,
    }),
    { logger: (line) => said.push(line) },
  );
});
test.after.always(async () => {
  await closers.closeAll();
  await closeAllRedis();
});

function call(route: string, content = 'hello') {
  return send(`${door.url}/${route}/v1/chat/completions`, {
    headers: [['apikey', 'acme-key']],
    body: chatBody(content),
  });
}

/** What the gateway logged: Kong's error log, or the harness's notes. */
function gatewayLog(): string {
  const g = door.gateway as Partial<KongGateway>;
  return typeof g.errorLog === 'function' ? g.errorLog() : said.join('\n');
}

test('old names: on_redis_error and redis.command_timeout_ms still apply', async (t) => {
  const statuses: number[] = [];
  const scopes: unknown[] = [];
  const started = Date.now();
  for (let i = 0; i < 3; i++) {
    const res = await call('old');
    statuses.push(res.status);
    scopes.push(res.headers['x-ratelimit-scope']);
  }
  // `local` (not the default `refuse`): the per-node limiter answers, and still limits.
  t.deepEqual(statuses, [200, 200, 429]);
  t.deepEqual(scopes, ['local-node', 'local-node', 'local-node']);
  // The old 100 ms deadline, not the default 250 ms, bounds each wait for the dead Redis.
  t.true(Date.now() - started < 3 * 1000);
});

test('old names: the gateway warns that each is deprecated and names its replacement', (t) => {
  const log = gatewayLog();
  t.regex(
    log,
    /tenant-ratelimit: config\.on_redis_error is deprecated, please use config\.on_redis_unavailable instead/,
  );
  t.regex(
    log,
    /tenant-ratelimit: config\.redis\.command_timeout_ms is deprecated, please use config\.redis\.timeout_ms instead/,
  );
});

test('both names set to different values: 500 plugin_misconfigured, never proxied', async (t) => {
  // A marker of its own: this file's other tests reach the same upstream at the same time.
  const marker = `clash-${run}`;
  const res = await call('clash', marker);
  t.is(res.status, 500);
  t.is(apiError(res).code, 'plugin_misconfigured');
  t.false(
    door.upstream.received.some((r) => r.rawBody.toString('utf8').includes(marker)),
    'never proxied',
  );
});

test('both names set to the same value: loads and applies it', async (t) => {
  const res = await call('agree');
  t.is(res.status, 200);
  t.is(res.headers['x-ratelimit-scope'], 'local-node');
});

test('token-meter and tenant-cache: redis_url, redis_timeout_ms and key_namespace still apply', async (t) => {
  const body = chatBody('deprecated flat fields', { temperature: 0 });
  const ask = () =>
    send(`${door.url}/flat/v1/chat/completions`, { headers: [['apikey', 'acme-key']], body });
  const first = await ask();
  t.is(first.status, 200, first.text.slice(0, 300));
  let hit = false;
  for (let i = 0; i < 50 && !hit; i++) {
    hit = (await ask()).headers['x-cache-status'] === 'HIT';
    if (!hit) await new Promise((r) => setTimeout(r, 100));
  }
  t.true(hit, 'the cache stores and answers through the old fields');
  // Each plugin keeps its keys under the namespace its old key_namespace named.
  const redis = await connectRedis();
  const keysOf = async (ns: string) => {
    const found: string[] = [];
    for await (const batch of redis.scanIterator({ MATCH: `${ns}:*`, COUNT: 1000 }))
      found.push(...batch);
    return found;
  };
  t.true((await keysOf(`depc-${run}`)).length > 0, 'cache entries under the old key_namespace');
  t.true((await keysOf(`depm-${run}`)).length > 0, 'meter state under the old key_namespace');
  const log = gatewayLog();
  for (const plugin of ['tenant-cache', 'token-meter']) {
    for (const [old, now] of [
      ['redis_url', 'redis.url'],
      ['redis_timeout_ms', 'redis.timeout_ms'],
      ['key_namespace', 'redis.key_namespace'],
    ]) {
      t.true(
        log.includes(`${plugin}: config.${old} is deprecated, please use config.${now} instead`),
        `${plugin} warns about ${old}`,
      );
    }
  }
});
