/**
 * Objects the provider keeps, on a provider key shared by tenants (issue 21 part 2), on either
 * gateway. The provider keeps stored responses, chat completions, files and batches under the
 * key, not the tenant: on a shared key tenant B would read, list, continue or delete tenant A's.
 * tenant-auth's `store` (auto: on only for a tenant with its own key) makes that impossible by
 * construction: on a shared key no such object is made (Responses go with `store: false`) and
 * none is reached (the stateful APIs are refused even where `api_surface` lists them; a
 * reference to a stored object in a Responses body is refused). Positive controls: a tenant with
 * its own key, and one the operator vouched for (`store: on`), reach the upstream.
 */
import test from 'ava';
import { probe, type Probe } from '../helpers/object-probe';
import {
  Closers,
  declarative,
  KEY_AUTH,
  planConsumers,
  startFrontDoor,
  type FrontDoor,
} from '../helpers/frontdoor';

const closers = new Closers();
let door: FrontDoor;

const STATEFUL = [
  'chat',
  'responses',
  'files',
  'batches',
  'stored_responses',
  'stored_chat_completions',
];

test.before(async () => {
  door = await startFrontDoor(
    closers.add,
    (u) =>
      declarative(
        u,
        [
          KEY_AUTH,
          {
            name: 'tenant-auth',
            route: 'ai',
            config: {
              plans: {
                // Every tenant of it shares the default provider key.
                team: { tools_allowed: ['*'], api_surface: STATEFUL },
                vouched: { tools_allowed: ['*'], api_surface: STATEFUL, store: 'on' },
              },
              tenants: { hermit: { store: 'off' } },
              upstream_auth: {
                default_key: 'env:KTA_TEST_SHARED_KEY',
                tenants: { solo: 'env:KTA_TEST_SOLO_KEY', hermit: 'env:KTA_TEST_HERMIT_KEY' },
              },
            },
          },
        ],
        planConsumers([
          ['alice', 'team'],
          ['bob', 'team'],
          ['solo', 'team'],
          ['hermit', 'team'],
          ['dedicated', 'vouched'],
        ] as const),
      ),
    {
      env: {
        KTA_TEST_SHARED_KEY: 'sk-shared',
        KTA_TEST_SOLO_KEY: 'sk-solo',
        KTA_TEST_HERMIT_KEY: 'sk-hermit',
      },
    },
  );
});

test.after.always(() => closers.closeAll());

const call = (
  tenant: string,
  method: string,
  pathname: string,
  body?: object | string,
  headers: Record<string, string> = {},
): Promise<Probe> => probe(door, tenant, method, pathname, body, headers);

const err = (r: Probe) => (r.res.json as { error: { code: string; param: string | null } }).error;

/** What tenant B might try on tenant A's objects, by their ids. */
const REACH: Array<[string, string, object?]> = [
  ['GET', '/v1/files'],
  ['GET', '/v1/files/file-alice1'],
  ['GET', '/v1/files/file-alice1/content'],
  ['DELETE', '/v1/files/file-alice1'],
  ['POST', '/v1/files', { purpose: 'batch' }],
  ['GET', '/v1/batches'],
  ['GET', '/v1/batches/batch_alice1'],
  ['POST', '/v1/batches/batch_alice1/cancel', {}],
  ['POST', '/v1/batches', { input_file_id: 'file-alice1', endpoint: '/v1/chat/completions' }],
  ['GET', '/v1/responses/resp_alice1'],
  ['GET', '/v1/responses/resp_alice1/input_items'],
  ['DELETE', '/v1/responses/resp_alice1'],
  ['GET', '/v1/chat/completions'],
  ['GET', '/v1/chat/completions/chatcmpl-alice1'],
  ['GET', '/v1/chat/completions/chatcmpl-alice1/messages'],
  ['DELETE', '/v1/chat/completions/chatcmpl-alice1'],
];

for (const [method, path, body] of REACH) {
  test(`shared key: ${method} ${path} is refused (403 stored_objects_disabled), nothing upstream; own key and vouched reach it`, async (t) => {
    for (const tenant of ['bob', 'alice', 'hermit']) {
      const r = await call(tenant, method, path, body);
      t.is(r.res.status, 403, `${tenant}: ${r.res.text}`);
      t.is(err(r).code, 'stored_objects_disabled');
      t.deepEqual(r.upstream, [], `${tenant}: nothing reached the provider`);
    }
    // Controls: with its own key, solo reaches the provider with that key; `dedicated` is
    // vouched for by the operator (store: on) and goes with the shared one.
    const solo = await call('solo', method, path, body);
    t.is(solo.upstream.length, 1, solo.res.text);
    t.is(solo.upstream[0]?.auth, 'Bearer sk-solo');
    const vouched = await call('dedicated', method, path, body);
    t.is(vouched.upstream.length, 1, vouched.res.text);
    t.is(vouched.upstream[0]?.auth, 'Bearer sk-shared');
  });
}

const RESPONSE = { model: 'gpt-4o-mini', input: 'hello' };

test('shared key: a Responses request goes with store: false, whatever the client left out', async (t) => {
  const r = await call('alice', 'POST', '/v1/responses', RESPONSE);
  t.is(r.upstream.length, 1, r.res.text);
  t.is((JSON.parse(r.upstream[0]?.body ?? '{}') as { store?: unknown }).store, false);
  const kept = await call('alice', 'POST', '/v1/responses', { ...RESPONSE, store: false });
  t.is((JSON.parse(kept.upstream[0]?.body ?? '{}') as { store?: unknown }).store, false);
  // Controls: an own key and a vouched tenant send what the client sent (no store added).
  for (const tenant of ['solo', 'dedicated']) {
    const own = await call(tenant, 'POST', '/v1/responses', RESPONSE);
    t.false('store' in (JSON.parse(own.upstream[0]?.body ?? '{}') as object), tenant);
  }
});

test('shared key: continuing, or pointing at, a stored object is refused with its field named', async (t) => {
  const attempts: Array<[string, object]> = [
    ['previous_response_id', { ...RESPONSE, previous_response_id: 'resp_alice1' }],
    ['conversation', { ...RESPONSE, conversation: 'conv_alice1' }],
    ['conversation', { ...RESPONSE, conversation: { id: 'conv_alice1' } }],
    ['store', { ...RESPONSE, store: true }],
    [
      'file_id',
      {
        model: 'gpt-4o-mini',
        input: [{ role: 'user', content: [{ type: 'input_file', file_id: 'file-alice1' }] }],
      },
    ],
    [
      'vector_store_ids',
      { ...RESPONSE, tools: [{ type: 'file_search', vector_store_ids: ['vs_alice1'] }] },
    ],
    [
      'file_ids',
      {
        ...RESPONSE,
        tools: [
          { type: 'code_interpreter', container: { type: 'auto', file_ids: ['file-alice1'] } },
        ],
      },
    ],
    ['container', { ...RESPONSE, tools: [{ type: 'code_interpreter', container: 'cntr_alice1' }] }],
  ];
  for (const [param, body] of attempts) {
    const r = await call('bob', 'POST', '/v1/responses', body);
    t.is(r.res.status, 400, `${param}: ${r.res.text}`);
    t.is(err(r).code, 'stored_objects_disabled');
    t.is(err(r).param, param);
    t.deepEqual(r.upstream, []);
    // Control: solo's own key may continue its own objects at the provider.
    const own = await call('solo', 'POST', '/v1/responses', body);
    t.is(own.upstream.length, 1, `${param} (solo): ${own.res.text}`);
  }
  // A new code-interpreter container is no reference.
  const fresh = await call('bob', 'POST', '/v1/responses', {
    ...RESPONSE,
    tools: [{ type: 'code_interpreter', container: { type: 'auto' } }],
  });
  t.is(fresh.upstream.length, 1, fresh.res.text);
});
