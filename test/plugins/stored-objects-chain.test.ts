/**
 * `store: scoped` through the repo's whole kong.yml chain (one plugin server for the chain, its
 * access phases merged into tenant-auth's, its log work in tenant-auth's log phase), on either
 * gateway: what tenant-auth records in the chain's one log phase is what it checks on the next
 * request. acme makes a stored response and uploads a file (a multipart form, through every
 * plugin of the chain); globex, on the same provider key, reaches neither; acme reaches both.
 */
import test from 'ava';
import { doorCall } from '../helpers/batch-door';
import { Closers, eventually, type Sent } from '../helpers/frontdoor';
import { startKongYmlDoor, type KongYmlDoor } from '../helpers/kong-yml-door';

const closers = new Closers();
let door: KongYmlDoor;
let call: ReturnType<typeof doorCall>;
const SCOPED = {
  store: 'scoped',
  api_surface: [
    'chat',
    'completions',
    'responses',
    'embeddings',
    'models',
    'showback',
    'stored_responses',
    'files',
    'batches',
    'conversations',
  ],
};

test.before(async () => {
  door = await startKongYmlDoor(closers.add, (p) => {
    if (p.name !== 'tenant-auth') return;
    const c = p.config as { tenants?: Record<string, Record<string, unknown>> };
    c.tenants = {
      ...c.tenants,
      acme: { ...c.tenants?.acme, ...SCOPED },
      globex: { ...c.tenants?.globex, ...SCOPED },
    };
  });
  call = doorCall(door);
});
test.after.always(() => closers.closeAll());

const idOf = (r: { res: Sent }) => (r.res.json as { id: string }).id;
const code = (r: { res: Sent }) => (r.res.json as { error?: { code: string } }).error?.code;

test('a stored response made through the chain is its maker’s alone', async (t) => {
  const made = await call('acme', 'POST', '/v1/responses', { model: 'gpt-4o-mini', input: 'hi' });
  t.is(made.res.status, 200, made.res.text);
  const id = idOf(made);
  const read = await eventually(async () => {
    const r = await call('acme', 'GET', `/v1/responses/${id}`);
    return r.res.status === 200 ? r : undefined;
  }, 10_000);
  t.is(read.upstream, 1);
  const other = await call('globex', 'GET', `/v1/responses/${id}`);
  t.is(other.res.status, 404, other.res.text);
  t.is(code(other), 'object_not_found');
  t.is(other.upstream, 0);
  const cont = await call('globex', 'POST', '/v1/responses', {
    model: 'gpt-4o-mini',
    input: 'more',
    previous_response_id: id,
  });
  t.is(cont.res.status, 400, cont.res.text);
  t.is(cont.upstream, 0);
});

test('a file uploaded as a form through the chain is its maker’s alone', async (t) => {
  const boundary = 'chainBoundary7';
  const form = [
    `--${boundary}`,
    'Content-Disposition: form-data; name="purpose"',
    '',
    'user_data',
    `--${boundary}`,
    'Content-Disposition: form-data; name="file"; filename="a.jsonl"',
    '',
    '{"custom_id":"1"}',
    `--${boundary}--`,
    '',
  ].join('\r\n');
  const made = await call('acme', 'POST', '/v1/files', form, {
    'content-type': `multipart/form-data; boundary=${boundary}`,
  });
  t.is(made.res.status, 200, made.res.text);
  const id = idOf(made);
  await eventually(async () => {
    const r = await call('acme', 'GET', `/v1/files/${id}/content`);
    return r.res.status === 200 && r.res.text === '{"custom_id":"1"}' ? true : undefined;
  }, 10_000);
  const other = await call('globex', 'GET', `/v1/files/${id}/content`);
  t.is(other.res.status, 404, other.res.text);
  t.is(other.upstream, 0);
  const lists = await Promise.all([
    call('acme', 'GET', '/v1/files'),
    call('globex', 'GET', '/v1/files'),
  ]);
  t.true(lists[0].res.text.includes(id));
  t.false(lists[1].res.text.includes(id));
  t.deepEqual(
    lists.map((l) => l.upstream),
    [0, 0],
  );
});

test('on the metered chain a batch of a file the meter never read is refused; a cancel or an upload is not metered', async (t) => {
  // The mock's JSON upload (not OpenAI's form): stored, but never read as batch input, so a
  // batch of it cannot be reserved (the metered way: test/plugins/token-meter-batches.test.ts).
  const file = await call('acme', 'POST', '/v1/files', { purpose: 'batch', content: '{}' });
  t.is(file.res.status, 200, file.res.text);
  await eventually(async () => {
    const r = await call('acme', 'GET', `/v1/files/${idOf(file)}`);
    return r.res.status === 200 ? true : undefined;
  }, 10_000);
  const batch = await call('acme', 'POST', '/v1/batches', {
    input_file_id: idOf(file),
    endpoint: '/v1/chat/completions',
    completion_window: '24h',
  });
  t.is(batch.res.status, 400, batch.res.text);
  t.is(code(batch), 'batch_input_unmetered');
  t.is(batch.upstream, 0);
  const made = await call('acme', 'POST', '/v1/responses', { model: 'gpt-4o-mini', input: 'x' });
  const id = idOf(made);
  const cancel = await eventually(async () => {
    const r = await call('acme', 'POST', `/v1/responses/${id}/cancel`, {});
    return r.res.status === 200 ? r : undefined;
  }, 10_000);
  t.is(cancel.upstream, 1, 'a cancel carries no model and is not metered');
});

test('a conversation through the metered chain: made and added to unmetered, continued metered, its maker’s alone', async (t) => {
  const made = await call('acme', 'POST', '/v1/conversations', {
    items: [{ type: 'message', role: 'user', content: 'acme roadmap' }],
  });
  t.is(
    made.res.status,
    200,
    `a conversation carries no model and spends nothing: ${made.res.text}`,
  );
  const conv = idOf(made);
  await eventually(async () => {
    const r = await call('acme', 'GET', `/v1/conversations/${conv}`);
    return r.res.status === 200 ? true : undefined;
  }, 10_000);
  const added = await call('acme', 'POST', `/v1/conversations/${conv}/items`, {
    items: [{ type: 'message', role: 'user', content: 'more' }],
  });
  t.is(added.res.status, 200, added.res.text);
  const next = await call('acme', 'POST', '/v1/responses', {
    model: 'gpt-4o-mini',
    input: 'go on',
    conversation: conv,
  });
  t.is(next.res.status, 200, next.res.text);
  t.is(next.res.headers['x-budget-state'], 'ok', 'the continuation is metered');
  t.is(made.res.headers['x-budget-state'], undefined, 'the conversation itself is not');
  for (const [method, path, body] of [
    ['GET', `/v1/conversations/${conv}/items`, undefined],
    ['POST', '/v1/responses', { model: 'gpt-4o-mini', input: 'x', conversation: { id: conv } }],
  ] as const) {
    const r = await call('globex', method, path, body);
    t.true(r.res.status === 404 || r.res.status === 400, `${method} ${path}: ${r.res.text}`);
    t.is(code(r), 'object_not_found');
    t.is(r.upstream, 0);
    t.false(r.res.text.includes('roadmap'));
  }
});
