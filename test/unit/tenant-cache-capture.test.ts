/**
 * tenant-cache's store from the answer kong.yml's capture snippet kept (plugins/tenant-cache/
 * capture.ts, store.ts), with a Redis stand-in that records every SET:
 * - the kept answer is stored (no Kong buffered body asked for), and the route is then known to
 *   keep answers;
 * - learnt per route: another route of the same instance is still buffered;
 * - a miss that was not buffered and whose answer was not kept (the route lost the snippet) is
 *   not stored (`no_answer`), and its route is buffered again from the next miss;
 * - `cut;` (longer than max_entry_bytes) is not stored; anything that is not the snippet's
 *   answer is refused by the guard.
 */
import { randomBytes } from 'node:crypto';
import test from 'ava';
import type { KongPdk } from '../../lib/pdk/kong';
import { closeAllRedis } from '../../lib/redis/client';
import { openScope } from '../../lib/request/scope';
import { encodeTenantContext, TENANT_CONTEXT_KEY } from '../../lib/tenant/context';
import {
  CACHE_ANSWER_KEY,
  readKeptAnswer,
  routeKeepsAnswers,
} from '../../plugins/tenant-cache/capture';
import type { Pending } from '../../plugins/tenant-cache/pending';
import { startUp, type StartUp } from '../../plugins/tenant-cache/ready';
import { storePending } from '../../plugins/tenant-cache/store';
import { tenantContextOf } from '../helpers/tenant-context';

process.env.KTA_CACHE_MASTER_KEY ??= randomBytes(32).toString('hex');
test.after.always(() => closeAllRedis());

const ANSWER = JSON.stringify({
  id: 'c1',
  object: 'chat.completion',
  model: 'gpt-4o-mini',
  choices: [{ index: 0, message: { role: 'assistant', content: 'Paris' } }],
});

function cacheState(): { state: StartUp; sets: string[] } {
  const s = startUp({ redis: { url: 'redis://127.0.0.1:1', key_namespace: 'capture' } });
  if (!s.ok) throw new Error(`tenant-cache did not start: ${s.reason}`);
  const sets: string[] = [];
  const redis = {
    isReady: true,
    set: async (key: string) => {
      sets.push(key);
      return 'OK';
    },
  };
  return {
    state: { ...s, ready: { ...s.ready, redis: redis as unknown as typeof s.ready.redis } },
    sets,
  };
}

/** The log phase's PDK: a 200 from the service, and what the snippet left (or nothing). */
function logKong(kept: string | null): { kong: KongPdk; rawBodyAsked: () => number } {
  const scope = openScope();
  const ctx = tenantContextOf('acme', 'pro');
  const carrier = encodeTenantContext(ctx, scope.key);
  scope.bindCarrier(carrier, ctx);
  let asked = 0;
  const kong = {
    ctx: {
      shared: {
        get: async (k: string) =>
          k === TENANT_CONTEXT_KEY ? carrier : k === CACHE_ANSWER_KEY ? kept : null,
      },
    },
    response: {
      getStatus: async () => 200,
      getSource: async () => 'service',
      getHeaders: async () => ({ 'content-type': 'application/json' }),
    },
    service: {
      response: {
        getRawBody: async () => {
          asked++;
          return ANSWER;
        },
      },
    },
    log: { err: async () => undefined, warn: async () => undefined },
  };
  return { kong: kong as unknown as KongPdk, rawBodyAsked: () => asked };
}

const pending = (rt: string, buffered: boolean): Pending => ({
  v: 1,
  d: randomBytes(32).toString('hex'),
  kg: '0',
  cg: '0',
  m: 'gpt-4o-mini',
  ttl: 60,
  rt,
  ...(buffered ? { b: 1 as const } : {}),
});

test('the kept answer is stored, Kong is not asked for a body, and the route is learnt', async (t) => {
  const { state, sets } = cacheState();
  if (!state.ok) return t.fail();
  t.false(routeKeepsAnswers(state.ready, 'route-a'));
  const { kong, rawBodyAsked } = logKong(`all;${ANSWER}`);
  await storePending(state, kong, pending('route-a', true), undefined);
  t.is(sets.length, 1, 'stored');
  t.is(rawBodyAsked(), 0, "the kept answer, not Kong's buffered body");
  t.true(routeKeepsAnswers(state.ready, 'route-a'));
  t.false(routeKeepsAnswers(state.ready, 'route-b'), 'another route is learnt on its own');
});

test('buffered and nothing kept (a route without the snippet): stored from Kong, nothing learnt', async (t) => {
  const { state, sets } = cacheState();
  if (!state.ok) return t.fail();
  const { kong, rawBodyAsked } = logKong(null);
  await storePending(state, kong, pending('route-c', true), undefined);
  t.is(sets.length, 1);
  t.is(rawBodyAsked(), 1);
  t.false(routeKeepsAnswers(state.ready, 'route-c'));
});

test('not buffered and not kept (the route lost the snippet): not stored, buffered again', async (t) => {
  const { state, sets } = cacheState();
  if (!state.ok) return t.fail();
  await storePending(state, logKong(`all;${ANSWER}`).kong, pending('route-d', true), undefined);
  t.true(routeKeepsAnswers(state.ready, 'route-d'));
  const { kong, rawBodyAsked } = logKong(null);
  await storePending(state, kong, pending('route-d', false), undefined);
  t.is(sets.length, 1, 'the second miss was not stored');
  t.is(rawBodyAsked(), 0, 'no buffered body to ask for');
  t.false(routeKeepsAnswers(state.ready, 'route-d'), 'its next miss is buffered');
});

test('an answer past max_entry_bytes (`cut;`) is not stored', async (t) => {
  const { state, sets } = cacheState();
  if (!state.ok) return t.fail();
  await storePending(state, logKong('cut;').kong, pending('route-e', false), undefined);
  t.deepEqual(sets, []);
});

test('the guard: the snippet’s three forms, and nothing else', (t) => {
  t.deepEqual(readKeptAnswer('all;{"a":1}'), { kind: 'body', bytes: Buffer.from('{"a":1}') });
  t.deepEqual(readKeptAnswer(`b64;${Buffer.from([0xff, 0x00, 0xc3]).toString('base64')}`), {
    kind: 'body',
    bytes: Buffer.from([0xff, 0x00, 0xc3]),
  });
  t.deepEqual(readKeptAnswer('cut;'), { kind: 'cut' });
  for (const bad of [null, undefined, 42, '', 'all', 'b64;not base64!', 'b64;abc', 'xyz;{}'])
    t.is(readKeptAnswer(bad), undefined, String(bad));
});
