/**
 * token-meter's start-up and budget policy at the door: a config that passes Kong's schema but
 * not the plugin's own checks starts (Kong would retry a failed StartInstance on every request)
 * and refuses every request with 500 plugin_misconfigured, never forwarding one; a tenant whose
 * plan has no budget is refused the same way under `unlisted_plan: refuse` (the default).
 * Positive control: on the same gateway, a well-configured route serves a budgeted tenant.
 */
import test from 'ava';
import { randomBytes, randomUUID } from 'node:crypto';
import { REDIS_URL } from '../helpers/ratelimit-door';
import { deleteKeysMatching } from '../helpers/redis-cleanup';
import {
  apiError,
  chat,
  Closers,
  send,
  startFrontDoor,
  type FrontDoor,
} from '../helpers/frontdoor';
import { meterConfig } from '../helpers/token-meter-door';

const closers = new Closers();
test.after.always(() => closers.closeAll());

const namespace = `tmm${randomBytes(4).toString('hex')}`;
let door: FrontDoor | undefined;

test.before(async () => {
  closers.add(async () => {
    await deleteKeysMatching(REDIS_URL, `${namespace}:*`);
  });
  door = await startFrontDoor(closers.add, (upstreamUrl) => ({
    _format_version: '3.0',
    services: [
      {
        name: 'llm',
        url: upstreamUrl,
        routes: [
          { name: 'good', paths: ['/good'], strip_path: true },
          { name: 'bad', paths: ['/bad'], strip_path: true },
        ],
      },
    ],
    plugins: [
      ...['good', 'bad'].flatMap((route) => [
        { name: 'key-auth', route, config: { hide_credentials: true } },
        {
          name: 'tenant-auth',
          route,
          config: { plans: { free: {}, unbudgeted: {} } },
        },
      ]),
      { name: 'token-meter', route: 'good', config: meterConfig(namespace) },
      {
        name: 'token-meter',
        route: 'bad',
        // Kong's schema takes each field; checkConfig refuses the pair.
        config: meterConfig(namespace, { default_max_tokens: 2000, max_tokens_cap: 1000 }),
      },
    ],
    consumers: [
      { username: 'globex', custom_id: 'globex', tags: ['plan:free'] },
      { username: 'noplan', custom_id: 'noplan', tags: ['plan:unbudgeted'] },
    ].map((c) => ({ ...c, keyauth_credentials: [{ key: `${c.custom_id}-key` }] })),
  }));
});

async function ask(route: string, tenant: string, method = 'POST') {
  if (!door) throw new Error('the door did not start');
  const testId = randomUUID();
  // A GET asks for showback, the meter's own endpoint.
  const path = method === 'POST' ? '/v1/chat/completions' : '/v1/organization/costs?start_time=0';
  const res = await send(`${door.url}/${route}${path}`, {
    method,
    headers: [
      ['apikey', `${tenant}-key`],
      ['x-test-id', testId],
    ],
    ...(method === 'POST' ? { body: chat('hello') } : {}),
  });
  const reached = door.upstream.received.some((r) => r.headers['x-test-id'] === testId);
  return { res, reached };
}

test('a misconfigured instance refuses every request, 500 plugin_misconfigured, none forwarded', async (t) => {
  const good = await ask('good', 'globex');
  t.is(good.res.status, 200, 'positive control: the good route serves');
  t.true(good.reached);
  const showback = await ask('good', 'globex', 'GET');
  t.is(showback.res.status, 200, 'positive control: the good route answers showback');
  for (const method of ['POST', 'GET']) {
    const bad = await ask('bad', 'globex', method);
    t.is(bad.res.status, 500, method);
    t.like(apiError(bad.res), { type: 'server_error', code: 'plugin_misconfigured' });
    t.false(bad.reached, `${method} not forwarded`);
  }
});

test('a plan without a budget is refused under unlisted_plan: refuse', async (t) => {
  const r = await ask('good', 'noplan');
  t.is(r.res.status, 500);
  t.is(apiError(r.res).code, 'plugin_misconfigured');
  t.false(r.reached);
});
