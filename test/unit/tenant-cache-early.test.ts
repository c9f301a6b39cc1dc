/**
 * tenant-cache's early lookup (plugins/tenant-cache/lookup.ts `startEarly`): in the co-hosted
 * chain its exact lookup is started before tenant-ratelimit's admission (lib/pluginserver/
 * chain-access.ts `runMerged`), and its access takes it instead of reading again. Checked with a
 * Redis stand-in that records every read (the end-to-end cases on the real Kong are the cache's
 * and the chain's suites, which run this path):
 * - the access of the same event takes the lookup started early: one read per request;
 * - isolation: a lookup started for tenant A's request is never what another request's access
 *   gets, not even B's asking the same bytes at the same moment: B reads under its own keys, and
 *   A's access still finds its own;
 * - taken once: a second access on the same event reads again (nothing kept past its request).
 */
import { randomBytes } from 'node:crypto';
import test from 'ava';
import type { KongPdk } from '../../lib/pdk/kong';
import { closeAllRedis } from '../../lib/redis/client';
import { openScope, type RequestScope } from '../../lib/request/scope';
import {
  encodeTenantContext,
  TENANT_CONTEXT_KEY,
  type TenantContext,
} from '../../lib/tenant/context';
import { decide, startEarly } from '../../plugins/tenant-cache/lookup';
import { startUp, type StartUp } from '../../plugins/tenant-cache/ready';
import { tenantContextOf } from '../helpers/tenant-context';

process.env.KTA_CACHE_MASTER_KEY ??= randomBytes(32).toString('hex');
// The real client startUp made (never connected: the stand-in answers in its place).
test.after.always(() => closeAllRedis());

/** tenant-cache ready to serve, its Redis a stand-in that records the keys of every MGET. */
function cacheState(): { state: StartUp; reads: string[][] } {
  const s = startUp({ redis: { url: 'redis://127.0.0.1:1', key_namespace: 'early' } });
  if (!s.ok) throw new Error(`tenant-cache did not start: ${s.reason}`);
  const reads: string[][] = [];
  const redis = {
    isReady: true,
    mGet: async (keys: string[]) => {
      reads.push(keys);
      return keys.map(() => null);
    },
  };
  const state = {
    ...s,
    ready: { ...s.ready, redis: redis as unknown as typeof s.ready.redis },
  } as StartUp;
  return { state, reads };
}

const tenant = (id: string): TenantContext => tenantContextOf(id, 'pro');

/** One request's access event: its carrier, and the request as Kong would answer it. */
function event(ctx: TenantContext, question: string): { kong: KongPdk; scope: RequestScope } {
  const scope = openScope();
  const carrier = encodeTenantContext(ctx, scope.key);
  scope.bindCarrier(carrier, ctx);
  const body = JSON.stringify({
    model: 'gpt-4o-mini',
    temperature: 0,
    messages: [{ role: 'user', content: question }],
  });
  const kong = {
    ctx: {
      shared: {
        get: async (k: string) => (k === TENANT_CONTEXT_KEY ? carrier : null),
        set: async () => undefined,
      },
    },
    request: {
      getMethod: async () => 'POST',
      getPath: async () => '/v1/chat/completions',
      getPathWithQuery: async () => '/v1/chat/completions',
      getHeaders: async () => ({ 'content-type': 'application/json' }),
      getRawBody: async () => body,
    },
    router: { getRoute: async () => ({ id: 'route-ai' }), getService: async () => null },
    log: { err: async () => undefined, warn: async () => undefined },
  };
  return { kong: kong as unknown as KongPdk, scope };
}

test('the access of the same event takes the lookup started early: one read per request', async (t) => {
  const { state, reads } = cacheState();
  const acme = tenant('acme');
  const a = event(acme, 'What is the capital of France?');
  startEarly(state, a.kong, () => 'acme');
  await new Promise((r) => setImmediate(r));
  t.is(reads.length, 1, 'the read went out before access ran');
  const outcome = await decide(state, a.kong, a.scope, acme, 'acme');
  t.is(outcome.status, 'miss');
  t.is(reads.length, 1, 'access read nothing again');
});

test("isolation: a lookup started for A's request is never another request's, even for the same bytes", async (t) => {
  const { state, reads } = cacheState();
  const acme = tenant('acme');
  const globex = tenant('globex');
  const q = 'What did our Q3 board deck say about layoffs?';
  const a = event(acme, q);
  const b = event(globex, q);
  startEarly(state, a.kong, () => 'acme');
  await new Promise((r) => setImmediate(r));
  // B's access, while A's early lookup is in hand: B reads for itself, under its own keys.
  const outB = await decide(state, b.kong, b.scope, globex, 'globex');
  t.is(outB.status, 'miss');
  t.is(reads.length, 2);
  const [readA, readB] = reads as [string[], string[]];
  t.true(
    readB.every((k) => k.includes('{t:globex}')),
    `B's read names only B's keys: ${readB.join(' ')}`,
  );
  t.true(readA.every((k) => k.includes('{t:acme}')));
  t.notDeepEqual(readA[2], readB[2], 'the same bytes, another entry key');
  // A's access still takes its own: no third read.
  await decide(state, a.kong, a.scope, acme, 'acme');
  t.is(reads.length, 2);
});

test('taken once: a second access on the same event reads again; nothing is kept past it', async (t) => {
  const { state, reads } = cacheState();
  const acme = tenant('acme');
  const a = event(acme, 'Once only?');
  startEarly(state, a.kong, () => 'acme');
  await decide(state, a.kong, a.scope, acme, 'acme');
  await decide(state, a.kong, a.scope, acme, 'acme');
  t.is(reads.length, 2);
});
