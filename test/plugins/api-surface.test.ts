/**
 * tenant-auth's `api_surface` and `api_base_path` end to end, on either gateway: plans and
 * tenants replace the surface, the base path is where Kong sends the request upstream (a
 * strip_path route onto a service path), refusals are OpenAI-shaped and go nowhere, and a
 * config whose base path is unusable refuses every request.
 */
import { randomUUID } from 'node:crypto';
import test from 'ava';
import { Closers, send, startFrontDoor, type FrontDoor, type Sent } from '../helpers/frontdoor';

const closers = new Closers();
let door: FrontDoor;

const plans = {
  std: {},
  // A batch-only plan: chat for its tests, batches opted in, nothing else.
  // store: on — the surface is under test here; test/isolation/provider-state.test.ts has the
  // shared-key refusals.
  batchy: { api_surface: ['chat', 'batches'], store: 'on' },
};

test.before(async () => {
  door = await startFrontDoor(closers.add, (u) => ({
    _format_version: '3.0',
    services: [
      { name: 'llm', url: u, routes: [{ name: 'ai', paths: ['/v1'], strip_path: false }] },
      {
        // An upstream that serves the API under /openai/v1: the route's prefix is stripped.
        name: 'azure',
        url: `${u}/openai/v1`,
        routes: [{ name: 'az', paths: ['/az'], strip_path: true }],
      },
      { name: 'bad', url: u, routes: [{ name: 'bad', paths: ['/bad'], strip_path: true }] },
    ],
    plugins: [
      { name: 'key-auth', config: { key_names: ['apikey'], hide_credentials: true } },
      {
        name: 'tenant-auth',
        route: 'ai',
        config: {
          plans,
          tenants: { vip: { api_surface: ['chat', 'files'], store: 'on' } },
        },
      },
      {
        name: 'tenant-auth',
        route: 'az',
        config: { plans, api_base_path: '/openai/v1' },
      },
      {
        name: 'tenant-auth',
        route: 'bad',
        config: { plans, api_base_path: '/v1/' },
      },
    ],
    consumers: [
      {
        username: 'std',
        custom_id: 'std',
        tags: ['plan:std'],
        keyauth_credentials: [{ key: 'std-key' }],
      },
      {
        username: 'batchy',
        custom_id: 'batchy',
        tags: ['plan:batchy'],
        keyauth_credentials: [{ key: 'batchy-key' }],
      },
      {
        username: 'vip',
        custom_id: 'vip',
        tags: ['plan:std'],
        keyauth_credentials: [{ key: 'vip-key' }],
      },
    ],
  }));
});

test.after.always(() => closers.closeAll());

async function call(
  key: string,
  method: string,
  pathname: string,
  body?: object,
): Promise<{ res: Sent; upstream: string[] }> {
  const id = randomUUID();
  const res = await send(`${door.url}${pathname}`, {
    method,
    headers: { apikey: key, 'x-test-id': id },
    ...(body === undefined ? {} : { body }),
  });
  const upstream = door.upstream.received
    .filter((r) => r.headers['x-test-id'] === id)
    .map((r) => `${r.method} ${r.path}`);
  return { res, upstream };
}

const chat = { model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'hi' }] };

function code(res: Sent): string {
  return (res.json as { error: { code: string } }).error.code;
}

test('a plan’s api_surface replaces the default; a tenant’s replaces its plan’s', async (t) => {
  // std: the default surface.
  t.deepEqual(
    (await call('std-key', 'POST', '/v1/embeddings', { model: 'm', input: 'x' })).upstream,
    ['POST /v1/embeddings'],
  );
  const stdBatch = await call('std-key', 'POST', '/v1/batches', { input_file_id: 'f' });
  t.is(stdBatch.res.status, 403);
  t.is(code(stdBatch.res), 'api_not_enabled');
  t.deepEqual(stdBatch.upstream, []);
  // batchy: batches yes, embeddings no.
  t.deepEqual((await call('batchy-key', 'GET', '/v1/batches/batch_1')).upstream, [
    'GET /v1/batches/batch_1',
  ]);
  const emb = await call('batchy-key', 'POST', '/v1/embeddings', { model: 'm', input: 'x' });
  t.is(emb.res.status, 403, emb.res.text);
  t.regex((emb.res.json as { error: { message: string } }).error.message, /Embeddings.*'batchy'/);
  t.deepEqual(emb.upstream, []);
  // vip (plan std, its own list): files yes, models no. A GET's body never goes upstream.
  const id = randomUUID();
  await send(`${door.url}/v1/files`, {
    method: 'GET',
    headers: { apikey: 'vip-key', 'x-test-id': id },
    body: { purpose: 'smuggled' },
  });
  const got = door.upstream.received.find((r) => r.headers['x-test-id'] === id);
  t.is(got?.path, '/v1/files');
  t.is(got?.rawBody.length, 0);
  t.is(got?.headers['transfer-encoding'], undefined);
  t.log(`content-length of a GET upstream: ${String(got?.headers['content-length'])}`);
  t.true([undefined, '0'].includes(got?.headers['content-length'] as string | undefined));
  const models = await call('vip-key', 'GET', '/v1/models');
  t.is(models.res.status, 403);
  t.deepEqual(models.upstream, []);
});

test('the base path is matched on what Kong sends upstream (strip_path onto a service path)', async (t) => {
  // Forwarded below the service's path (where the mock serves nothing: its own 404).
  const ok = await call('std-key', 'POST', '/az/chat/completions', chat);
  t.deepEqual(ok.upstream, ['POST /openai/v1/chat/completions']);
  const doubled = await call('std-key', 'POST', '/az//chat/./completions', chat);
  t.deepEqual(doubled.upstream, ['POST /openai/v1/chat/completions']);
  const files = await call('std-key', 'GET', '/az/files');
  t.is(files.res.status, 403);
  t.deepEqual(files.upstream, []);
  // The same path on the /v1 route's base is not an API of this one.
  const wrongBase = await call('std-key', 'POST', '/az/v1/chat/completions', chat);
  t.is(wrongBase.res.status, 404);
  t.is(code(wrongBase.res), 'unknown_api');
  t.deepEqual(wrongBase.upstream, []);
});

test('405 says what the path takes; HEAD is a GET; refusals carry the request id', async (t) => {
  const del = await call('std-key', 'DELETE', '/v1/embeddings');
  t.is(del.res.status, 405);
  t.is(del.res.headers.allow, 'POST');
  t.is(code(del.res), 'method_not_allowed');
  t.is(
    (del.res.json as { error: { request_id: string } }).error.request_id,
    String(del.res.headers['x-kong-request-id']),
  );
  t.deepEqual(del.upstream, []);
  // Forwarded (the mock answers a path it does not serve with its own 404).
  const head = await call('vip-key', 'HEAD', '/v1/files');
  t.deepEqual(head.upstream, ['HEAD /v1/files']);
});

test('an unusable api_base_path refuses every request (plugin_misconfigured), never proxies', async (t) => {
  const r = await call('std-key', 'POST', '/bad/v1/chat/completions', chat);
  t.is(r.res.status, 500);
  t.is(code(r.res), 'plugin_misconfigured');
  t.deepEqual(r.upstream, []);
});
