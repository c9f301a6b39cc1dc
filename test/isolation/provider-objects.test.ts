/**
 * `store: scoped` (issue 21 part 2), on either gateway: one provider key shared by every
 * tenant, the provider (the mock, mock-upstream/objects.ts) keeping every object under it as
 * OpenAI does per project, and the gateway recording which tenant made each. Tenant B tries
 * every way to read, list, continue, reference or delete tenant A's stored responses, stored
 * chat completions, files, batches, uploads, vector stores and conversations, by their real ids: each is refused before the provider
 * (404 `object_not_found`, the answer an unknown id gets), and each positive control (A on its
 * own objects) reaches the provider.
 */
import { randomUUID } from 'node:crypto';
import test from 'ava';
import { probe, type Probe } from '../helpers/object-probe';
import { ANSWER_SNIPPET } from '../helpers/capture-door';
import {
  Closers,
  declarative,
  eventually,
  KEY_AUTH,
  planConsumers,
  startFrontDoor,
  type FrontDoor,
} from '../helpers/frontdoor';
import { deleteKeysMatching } from '../helpers/redis-cleanup';

const REDIS_URL = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379';
const NAMESPACE = `po${randomUUID().slice(0, 8)}`;
const closers = new Closers();
let door: FrontDoor;

const SURFACE = [
  'chat',
  'responses',
  'files',
  'batches',
  'stored_responses',
  'stored_chat_completions',
  'uploads',
  'vector_stores',
  'conversations',
  'assistants',
  'fine_tuning',
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
                // One provider key for all: the gateway keeps each tenant to its own objects.
                team: { tools_allowed: ['*'], api_surface: SURFACE, store: 'scoped' },
              },
              tenants: { hermit: { store: 'off' } },
              upstream_auth: { default_key: 'env:KTA_TEST_SHARED_KEY' },
              stored_objects: { redis: { url: REDIS_URL, key_namespace: NAMESPACE } },
            },
          },
          // Keeps the answer of a request that makes an object (kong.yml's entry).
          { name: 'post-function', route: 'ai', config: { body_filter: [ANSWER_SNIPPET] } },
        ],
        planConsumers([
          ['alice', 'team'],
          ['bob', 'team'],
          ['hermit', 'team'],
        ] as const),
      ),
    { env: { KTA_TEST_SHARED_KEY: 'sk-shared' } },
  );
  closers.add(async () => {
    await deleteKeysMatching(REDIS_URL, `${NAMESPACE}*`);
  });
});

test.after.always(() => closers.closeAll());

const call = (
  tenant: string,
  method: string,
  pathname: string,
  body?: object | string,
  headers: Record<string, string> = {},
): Promise<Probe> => probe(door, tenant, method, pathname, body, headers);

const err = (r: Probe) =>
  (r.res.json as { error: { code: string; param: string | null; message: string } }).error;
const idOf = (r: Probe) => (r.res.json as { id: string }).id;

/** Refused before the provider: `status` with `code`, nothing upstream. */
function refused(
  t: import('ava').ExecutionContext,
  r: Probe,
  status: number,
  code: string,
  what: string,
) {
  t.is(r.res.status, status, `${what}: ${r.res.text}`);
  t.is(err(r)?.code, code, what);
  t.deepEqual(r.upstream, [], `${what}: nothing reached the provider`);
}

/** Reached the provider with the shared key and was answered 2xx. */
function reached(t: import('ava').ExecutionContext, r: Probe, what: string) {
  t.true(r.res.status >= 200 && r.res.status < 300, `${what}: ${r.res.status} ${r.res.text}`);
  t.is(r.upstream.length, 1, what);
  t.is(r.upstream[0]?.auth, 'Bearer sk-shared', what);
}

/** Polls until `tenant` reaches `path` (the maker's log phase recorded the object). */
async function ownedBy(tenant: string, path: string): Promise<Probe> {
  return eventually(async () => {
    const r = await call(tenant, 'GET', path);
    return r.res.status === 200 ? r : undefined;
  }, 10_000);
}

const RESPONSE = { model: 'gpt-4o-mini', input: 'hello' };

test('stored responses: B cannot read, list items of, cancel, continue or delete A’s; A can', async (t) => {
  const made = await call('alice', 'POST', '/v1/responses', RESPONSE);
  reached(t, made, 'alice makes a response');
  // Stored as the provider's default: the gateway does not force store: false under scoped.
  t.false('store' in (JSON.parse(made.upstream[0]?.body ?? '{}') as object));
  const id = idOf(made);
  t.true(door.upstream.objectIds('response').includes(id), 'the provider keeps it');
  reached(t, await ownedBy('alice', `/v1/responses/${id}`), 'alice reads hers');

  for (const [method, path] of [
    ['GET', `/v1/responses/${id}`],
    ['GET', `/v1/responses/${id}/input_items`],
    ['POST', `/v1/responses/${id}/cancel`],
    ['DELETE', `/v1/responses/${id}`],
    ['GET', `/v1//responses/${id}`],
    ['GET', `/v1/Responses/${id}/`],
  ] as const) {
    refused(
      t,
      await call('bob', method, path, method === 'POST' ? {} : undefined),
      404,
      'object_not_found',
      `bob ${method} ${path}`,
    );
  }
  const cont = await call('bob', 'POST', '/v1/responses', {
    ...RESPONSE,
    previous_response_id: id,
  });
  refused(t, cont, 400, 'object_not_found', 'bob continues alice’s response');
  t.is(err(cont).param, 'previous_response_id');
  // The same answer for an id that never existed: no oracle.
  const none = await call('bob', 'GET', '/v1/responses/resp_doesnotexist');
  refused(t, none, 404, 'object_not_found', 'an unknown id');
  t.is(
    err(none).message.replace('resp_doesnotexist', 'X'),
    err(await call('bob', 'GET', `/v1/responses/${id}`)).message.replace(id, 'X'),
  );

  // Controls: alice continues, reads its items, deletes; then it is gone for her too.
  reached(
    t,
    await call('alice', 'POST', '/v1/responses', { ...RESPONSE, previous_response_id: id }),
    'alice continues',
  );
  reached(
    t,
    await call('alice', 'GET', `/v1/responses/${id}/input_items`),
    'alice lists its items',
  );
  reached(t, await call('alice', 'DELETE', `/v1/responses/${id}`), 'alice deletes');
  await eventually(async () => {
    const r = await call('alice', 'GET', `/v1/responses/${id}`);
    return r.res.status === 404 && r.upstream.length === 0 ? true : undefined;
  }, 10_000);
  t.pass();
});

test('a streamed response or chat completion is recorded from its first event; store: false records nothing', async (t) => {
  const stream = await call('alice', 'POST', '/v1/responses', { ...RESPONSE, stream: true });
  reached(t, stream, 'alice streams');
  const id = /"id":"(resp_[0-9a-f]+)"/.exec(stream.res.text)?.[1] ?? '';
  t.truthy(id, stream.res.text);
  reached(t, await ownedBy('alice', `/v1/responses/${id}`), 'alice reads her streamed response');
  refused(t, await call('bob', 'GET', `/v1/responses/${id}`), 404, 'object_not_found', 'bob');

  // A streamed stored chat completion: listed from its first chunk (a marked summary), to
  // alice only.
  const chat = await call('alice', 'POST', '/v1/chat/completions', {
    model: 'gpt-4o-mini',
    messages: [{ role: 'user', content: 'hi' }],
    store: true,
    stream: true,
  });
  reached(t, chat, 'alice streams a stored chat completion');
  const chatId = /"id":"(chatcmpl-[^"]+)"/.exec(chat.res.text)?.[1] ?? '';
  t.truthy(chatId, chat.res.text);
  const listed = await eventually(async () => {
    const r = await call('alice', 'GET', '/v1/chat/completions');
    return r.res.text.includes(chatId) ? r : undefined;
  }, 10_000);
  const item = (listed.res.json as { data: Array<Record<string, unknown>> }).data.find(
    (d) => d.id === chatId,
  );
  t.like(item, { object: 'chat.completion', model: 'gpt-4o-mini', _gateway_summary: true });
  t.false((await call('bob', 'GET', '/v1/chat/completions')).res.text.includes(chatId));

  const unstored = await call('alice', 'POST', '/v1/responses', { ...RESPONSE, store: false });
  reached(t, unstored, 'store: false');
  const gone = idOf(unstored);
  t.false(door.upstream.objectIds('response').includes(gone));
  // Nothing to reach: refused for alice too (after the one recheck), never forwarded.
  refused(
    t,
    await call('alice', 'GET', `/v1/responses/${gone}`),
    404,
    'object_not_found',
    'unstored',
  );
});

test('files: B cannot read, download, delete, list or reference A’s; the provider’s list is never forwarded', async (t) => {
  const boundary = 'ktaBoundary42';
  const form = (name: string) =>
    [
      `--${boundary}`,
      'Content-Disposition: form-data; name="purpose"',
      '',
      'batch',
      `--${boundary}`,
      `Content-Disposition: form-data; name="file"; filename="${name}.jsonl"`,
      'Content-Type: application/octet-stream',
      '',
      `{"custom_id":"${name}"}`,
      `--${boundary}--`,
      '',
    ].join('\r\n');
  const upload = (tenant: string) =>
    call(tenant, 'POST', '/v1/files', form(tenant), {
      'content-type': `multipart/form-data; boundary=${boundary}`,
    });
  const a = await upload('alice');
  reached(t, a, 'alice uploads (multipart goes as sent)');
  t.true(a.upstream[0]?.body.includes('{"custom_id":"alice"}'));
  const fileA = idOf(a);
  const b = await upload('bob');
  reached(t, b, 'bob uploads');
  const fileB = idOf(b);
  reached(t, await ownedBy('alice', `/v1/files/${fileA}`), 'alice reads hers');
  await ownedBy('bob', `/v1/files/${fileB}`);

  for (const [method, path] of [
    ['GET', `/v1/files/${fileA}`],
    ['GET', `/v1/files/${fileA}/content`],
    ['DELETE', `/v1/files/${fileA}`],
  ] as const) {
    refused(t, await call('bob', method, path), 404, 'object_not_found', `bob ${method} ${path}`);
  }
  const content = await call('alice', 'GET', `/v1/files/${fileA}/content`);
  reached(t, content, 'alice downloads');
  t.is(content.res.text, '{"custom_id":"alice"}');

  // Lists: each sees exactly its own, answered by the gateway (the provider holds both).
  t.true(
    door.upstream.objectIds('file').includes(fileA) &&
      door.upstream.objectIds('file').includes(fileB),
  );
  for (const [tenant, own, other] of [
    ['alice', fileA, fileB],
    ['bob', fileB, fileA],
  ] as const) {
    const list = await call(tenant, 'GET', '/v1/files');
    t.is(list.res.status, 200, list.res.text);
    t.deepEqual(list.upstream, [], 'the provider’s list is never asked');
    const ids = (list.res.json as { data: Array<{ id: string; object: string }> }).data.map(
      (d) => d.id,
    );
    t.true(ids.includes(own), `${tenant} lists its file`);
    t.false(ids.includes(other), `${tenant} does not list the other's`);
    t.is((list.res.json as { object: string }).object, 'list');
  }
  // Each item as the provider answered its upload (other tests add files of alice's too).
  const all = (await call('alice', 'GET', '/v1/files?limit=100')).res.json as {
    data: Array<Record<string, unknown>>;
  };
  t.like(
    all.data.find((d) => d.id === fileA),
    { id: fileA, object: 'file', purpose: 'batch', filename: 'alice.jsonl' },
  );
  refused(
    t,
    await call('alice', 'GET', '/v1/files?limit=1000'),
    400,
    'invalid_list_parameter',
    'limit',
  );

  // A reference in a body: a Responses input file and a batch's input.
  const ref = await call('bob', 'POST', '/v1/responses', {
    model: 'gpt-4o-mini',
    input: [{ role: 'user', content: [{ type: 'input_file', file_id: fileA }] }],
  });
  refused(t, ref, 400, 'object_not_found', 'bob references alice’s file');
  t.is(err(ref).param, 'file_id');
  const batch = await call('bob', 'POST', '/v1/batches', {
    input_file_id: fileA,
    endpoint: '/v1/chat/completions',
    completion_window: '24h',
  });
  refused(t, batch, 400, 'object_not_found', 'bob batches alice’s file');
  t.is(err(batch).param, 'input_file_id');
});

test('batches: B cannot read, cancel or list A’s, nor read its output file; A can', async (t) => {
  const file = await call('alice', 'POST', '/v1/files', { purpose: 'batch', content: '{}' });
  reached(t, file, 'alice uploads');
  await ownedBy('alice', `/v1/files/${idOf(file)}`);
  const made = await call('alice', 'POST', '/v1/batches', {
    input_file_id: idOf(file),
    endpoint: '/v1/chat/completions',
    completion_window: '24h',
  });
  reached(t, made, 'alice makes a batch');
  const id = idOf(made);
  const done = await ownedBy('alice', `/v1/batches/${id}`);
  const out = (done.res.json as { output_file_id: string }).output_file_id;
  t.truthy(out);
  // The output file the provider made for alice's batch is hers (recorded from the batch).
  reached(t, await ownedBy('alice', `/v1/files/${out}/content`), 'alice downloads the output');

  refused(t, await call('bob', 'GET', `/v1/batches/${id}`), 404, 'object_not_found', 'bob reads');
  refused(
    t,
    await call('bob', 'POST', `/v1/batches/${id}/cancel`, {}),
    404,
    'object_not_found',
    'bob cancels',
  );
  refused(
    t,
    await call('bob', 'GET', `/v1/files/${out}/content`),
    404,
    'object_not_found',
    'bob downloads the output',
  );
  const bobList = await call('bob', 'GET', '/v1/batches');
  t.is(bobList.res.status, 200);
  t.false(bobList.res.text.includes(id));
  const aliceList = await call('alice', 'GET', '/v1/batches');
  t.deepEqual(aliceList.upstream, []);
  // As last seen through the gateway: completed, with its output file.
  t.like(
    (aliceList.res.json as { data: object[] }).data.find((b) => (b as { id: string }).id === id),
    {
      status: 'completed',
      output_file_id: out,
    },
  );
});

test('stored chat completions: B cannot read, read messages of, update, delete or list A’s', async (t) => {
  const made = await call('alice', 'POST', '/v1/chat/completions', {
    model: 'gpt-4o-mini',
    store: true,
    messages: [{ role: 'user', content: 'remember me' }],
  });
  reached(t, made, 'alice stores a completion');
  const id = idOf(made);
  reached(t, await ownedBy('alice', `/v1/chat/completions/${id}`), 'alice reads it');
  for (const [method, path, body] of [
    ['GET', `/v1/chat/completions/${id}`, undefined],
    ['GET', `/v1/chat/completions/${id}/messages`, undefined],
    ['POST', `/v1/chat/completions/${id}`, { metadata: { x: 'y' } }],
    ['DELETE', `/v1/chat/completions/${id}`, undefined],
  ] as const) {
    refused(
      t,
      await call('bob', method, path, body),
      404,
      'object_not_found',
      `bob ${method} ${path}`,
    );
  }
  const bobList = await call('bob', 'GET', '/v1/chat/completions');
  t.is(bobList.res.status, 200);
  t.deepEqual(bobList.upstream, []);
  t.false(bobList.res.text.includes(id));
  const aliceList = await call('alice', 'GET', '/v1/chat/completions');
  t.true(aliceList.res.text.includes(id));
  // Not stored: nothing recorded.
  const plain = await call('alice', 'POST', '/v1/chat/completions', {
    model: 'gpt-4o-mini',
    messages: [{ role: 'user', content: 'forget me' }],
  });
  reached(t, plain, 'a chat without store');
  refused(
    t,
    await call('alice', 'GET', `/v1/chat/completions/${idOf(plain)}`),
    404,
    'object_not_found',
    'unstored chat',
  );
});

test('uploads: B cannot add parts to, complete or cancel A’s upload, nor read the file it became', async (t) => {
  const made = await call('alice', 'POST', '/v1/uploads', {
    filename: 'big.jsonl',
    purpose: 'batch',
    bytes: 10,
    mime_type: 'text/jsonl',
  });
  reached(t, made, 'alice starts an upload');
  const id = idOf(made);
  const boundary = 'partBoundary9';
  const part = (text: string) =>
    [
      `--${boundary}`,
      'Content-Disposition: form-data; name="data"; filename="blob"',
      '',
      text,
      `--${boundary}--`,
      '',
    ].join('\r\n');
  const form = { 'content-type': `multipart/form-data; boundary=${boundary}` };
  const first = await eventually(async () => {
    const r = await call('alice', 'POST', `/v1/uploads/${id}/parts`, part('{"a":1}'), form);
    return r.res.status === 200 ? r : undefined;
  }, 10_000);
  reached(t, first, 'alice adds a part');
  refused(
    t,
    await call('bob', 'POST', `/v1/uploads/${id}/parts`, part('{"evil":1}'), form),
    404,
    'object_not_found',
    'bob adds a part',
  );
  refused(
    t,
    await call('bob', 'POST', `/v1/uploads/${id}/complete`, { part_ids: [] }),
    404,
    'object_not_found',
    'bob completes',
  );
  refused(
    t,
    await call('bob', 'POST', `/v1/uploads/${id}/cancel`, {}),
    404,
    'object_not_found',
    'bob cancels',
  );
  const done = await call('alice', 'POST', `/v1/uploads/${id}/complete`, {
    part_ids: [idOf(first)],
  });
  reached(t, done, 'alice completes');
  const file = (done.res.json as { file: { id: string } }).file.id;
  const content = await ownedBy('alice', `/v1/files/${file}/content`);
  t.is(content.res.text, '{"a":1}', 'the file the upload became is alice’s');
  refused(
    t,
    await call('bob', 'GET', `/v1/files/${file}/content`),
    404,
    'object_not_found',
    'bob reads it',
  );
  const list = await call('alice', 'GET', '/v1/files?limit=100');
  t.true(list.res.text.includes(file), 'listed among alice’s files');
});

test('vector stores: B cannot read, search, list the files of, delete, list or use A’s store; A can', async (t) => {
  const file = await call('alice', 'POST', '/v1/files', { purpose: 'assistants', content: 'doc' });
  await ownedBy('alice', `/v1/files/${idOf(file)}`);
  // A store over another tenant's file is refused before the provider.
  const stolen = await call('bob', 'POST', '/v1/vector_stores', {
    name: 'x',
    file_ids: [idOf(file)],
  });
  refused(t, stolen, 400, 'object_not_found', 'bob builds a store on alice’s file');
  t.is(err(stolen).param, 'file_ids');
  const made = await call('alice', 'POST', '/v1/vector_stores', {
    name: 'kb',
    file_ids: [idOf(file)],
  });
  reached(t, made, 'alice makes a store');
  const vs = idOf(made);
  reached(t, await ownedBy('alice', `/v1/vector_stores/${vs}`), 'alice reads it');
  for (const [method, path, body] of [
    ['GET', `/v1/vector_stores/${vs}`, undefined],
    ['GET', `/v1/vector_stores/${vs}/files`, undefined],
    ['POST', `/v1/vector_stores/${vs}/search`, { query: 'secret' }],
    ['DELETE', `/v1/vector_stores/${vs}`, undefined],
  ] as const) {
    refused(
      t,
      await call('bob', method, path, body),
      404,
      'object_not_found',
      `bob ${method} ${path}`,
    );
  }
  const search = await call('bob', 'POST', '/v1/responses', {
    ...RESPONSE,
    tools: [{ type: 'file_search', vector_store_ids: [vs] }],
  });
  refused(t, search, 400, 'object_not_found', 'bob’s file_search over alice’s store');
  t.is(err(search).param, 'vector_store_ids');
  reached(
    t,
    await call('alice', 'POST', `/v1/vector_stores/${vs}/search`, { query: 'doc' }),
    'alice searches',
  );
  reached(
    t,
    await call('alice', 'POST', '/v1/responses', {
      ...RESPONSE,
      tools: [{ type: 'file_search', vector_store_ids: [vs] }],
    }),
    'alice’s file_search',
  );
  const bobList = await call('bob', 'GET', '/v1/vector_stores');
  t.deepEqual(bobList.upstream, []);
  t.false(bobList.res.text.includes(vs));
  t.true((await call('alice', 'GET', '/v1/vector_stores')).res.text.includes(vs));
});

test('conversations: B cannot read, update, delete, read or add items to, or continue A’s; A can', async (t) => {
  // A conversation's first items may carry a file: another tenant's is refused.
  const file = await call('alice', 'POST', '/v1/files', { purpose: 'user_data', content: 'doc' });
  await ownedBy('alice', `/v1/files/${idOf(file)}`);
  const fileItem = (id: string) => ({
    type: 'message',
    role: 'user',
    content: [{ type: 'input_file', file_id: id }],
  });
  const stolen = await call('bob', 'POST', '/v1/conversations', { items: [fileItem(idOf(file))] });
  refused(t, stolen, 400, 'object_not_found', 'bob starts a conversation on alice’s file');
  t.is(err(stolen).param, 'file_id');

  const made = await call('alice', 'POST', '/v1/conversations', {
    items: [{ type: 'message', role: 'user', content: 'my secret plan' }, fileItem(idOf(file))],
  });
  reached(t, made, 'alice starts a conversation');
  const conv = idOf(made);
  t.regex(conv, /^conv_/);
  reached(t, await ownedBy('alice', `/v1/conversations/${conv}`), 'alice reads it');

  // Bob, with alice's real id: every endpoint, in every spelling of the reference.
  for (const [method, path, body] of [
    ['GET', `/v1/conversations/${conv}`, undefined],
    ['POST', `/v1/conversations/${conv}`, { metadata: { owner: 'bob' } }],
    ['GET', `/v1/conversations/${conv}/items`, undefined],
    [
      'POST',
      `/v1/conversations/${conv}/items`,
      { items: [{ type: 'message', role: 'user', content: 'x' }] },
    ],
    ['GET', `/v1/conversations/${conv}/items/msg_1`, undefined],
    ['DELETE', `/v1/conversations/${conv}/items/msg_1`, undefined],
    ['DELETE', `/v1/conversations/${conv}`, undefined],
  ] as const) {
    refused(
      t,
      await call('bob', method, path, body),
      404,
      'object_not_found',
      `bob ${method} ${path}`,
    );
  }
  for (const reference of [conv, { id: conv }]) {
    const r = await call('bob', 'POST', '/v1/responses', { ...RESPONSE, conversation: reference });
    refused(t, r, 400, 'object_not_found', 'bob continues alice’s conversation');
    t.is(err(r).param, 'conversation');
    t.false(r.res.text.includes('secret'));
  }
  // Alice's own: items read back, continued (the response is recorded as hers), deleted.
  const items = await call('alice', 'GET', `/v1/conversations/${conv}/items`);
  reached(t, items, 'alice reads her items');
  t.true(items.res.text.includes('my secret plan'));
  const next = await call('alice', 'POST', '/v1/responses', {
    ...RESPONSE,
    conversation: { id: conv },
  });
  reached(t, next, 'alice continues her conversation');
  await ownedBy('alice', `/v1/responses/${idOf(next)}`);
  refused(
    t,
    await call('bob', 'GET', `/v1/responses/${idOf(next)}`),
    404,
    'object_not_found',
    'bob reads the response made in alice’s conversation',
  );
  reached(t, await call('alice', 'DELETE', `/v1/conversations/${conv}`), 'alice deletes it');
  // Forgotten once deleted: even alice is refused before the provider.
  await eventually(async () => {
    const r = await call('alice', 'GET', `/v1/conversations/${conv}`);
    return r.res.status === 404 && r.upstream.length === 0 ? r : undefined;
  }, 10_000);
  // The provider has no list of conversations; neither has the gateway.
  const list = await call('alice', 'GET', '/v1/conversations');
  t.is(list.res.status, 405, list.res.text);
  t.deepEqual(list.upstream, []);
});

test('references the gateway does not scope are refused, and so are the APIs it does not follow', async (t) => {
  for (const [param, body] of [
    ['container', { ...RESPONSE, tools: [{ type: 'code_interpreter', container: 'cntr_x' }] }],
    ['item_reference', { model: 'gpt-4o-mini', input: [{ type: 'item_reference', id: 'msg_x' }] }],
  ] as const) {
    const r = await call('bob', 'POST', '/v1/responses', body);
    refused(t, r, 400, 'stored_objects_disabled', param);
    t.is(err(r).param, param);
  }
  refused(
    t,
    await call('bob', 'GET', '/v1/assistants/asst_x'),
    403,
    'stored_objects_disabled',
    'assistants',
  );
  refused(
    t,
    await call('bob', 'POST', '/v1/fine_tuning/jobs', {
      training_file: 'file-x',
      model: 'gpt-4o-mini',
    }),
    403,
    'stored_objects_disabled',
    'fine-tuning',
  );
  // `off` stays off for a tenant of the same plan.
  refused(t, await call('hermit', 'GET', '/v1/files'), 403, 'stored_objects_disabled', 'hermit');
});
