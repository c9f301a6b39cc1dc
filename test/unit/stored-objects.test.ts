/**
 * The pure parts of `store: scoped` (plugins/tenant-auth/objects.ts) and of token-meter's
 * choice of what a POST spends (lib/http/api-surface.ts `postSpends`).
 */
import test from 'ava';
import { postSpends } from '../../lib/http/api-surface';
import { isGatewayError } from '../../lib/http/errors';
import { decodeSeen, madeId } from '../../lib/provider-objects/answer';
import { listOptions, references, snapshotOf } from '../../plugins/tenant-auth/object-refs';

test('references: every scoped id in a body, at any depth, with its field and kind', (t) => {
  t.deepEqual(
    references({
      model: 'm',
      previous_response_id: 'resp_1',
      input: [
        { role: 'user', content: [{ type: 'input_file', file_id: 'file-1' }] },
        { type: 'message', content: [{ type: 'input_text', text: 'file_id' }] },
      ],
      tools: [
        { type: 'code_interpreter', container: { type: 'auto', file_ids: ['file-2', 'file-3'] } },
      ],
    }),
    [
      { param: 'previous_response_id', kind: 'response', id: 'resp_1' },
      { param: 'file_id', kind: 'file', id: 'file-1' },
      { param: 'file_ids', kind: 'file', id: 'file-2' },
      { param: 'file_ids', kind: 'file', id: 'file-3' },
    ],
  );
  t.deepEqual(references({ input_file_id: 'file-9', endpoint: '/v1/chat/completions' }), [
    { param: 'input_file_id', kind: 'file', id: 'file-9' },
  ]);
  t.deepEqual(references({ tools: [{ type: 'file_search', vector_store_ids: ['vs_1'] }] }), [
    { param: 'vector_store_ids', kind: 'vector_store', id: 'vs_1' },
  ]);
  // A Responses `conversation`, as its id or as `{id}`; a conversation item's file.
  t.deepEqual(references({ conversation: 'conv_1' }), [
    { param: 'conversation', kind: 'conversation', id: 'conv_1' },
  ]);
  t.deepEqual(
    references({
      conversation: { id: 'conv_2' },
      items: [{ type: 'message', content: [{ type: 'input_file', file_id: 'file-4' }] }],
    }),
    [
      { param: 'conversation', kind: 'conversation', id: 'conv_2' },
      { param: 'file_id', kind: 'file', id: 'file-4' },
    ],
  );
  t.deepEqual(references({ model: 'm', messages: [{ role: 'user', content: 'hi' }] }), []);
  // Non-string ids name nothing (the provider refuses them).
  t.deepEqual(
    references({ previous_response_id: 7, file_ids: [null, ''], conversation: { id: 3 } }),
    [],
  );
});

test('references the gateway does not scope are refused with the field named', (t) => {
  for (const [body, param] of [
    [{ tools: [{ type: 'code_interpreter', container: 'cntr_1' }] }, 'container'],
    [{ input: [{ type: 'item_reference', id: 'msg_1' }] }, 'item_reference'],
    [{ input: [{ type: 'reasoning', id: 'rs_1', summary: [] }] }, 'id'],
  ] as const) {
    const e = t.throws(() => references(body));
    t.true(isGatewayError(e));
    t.like((e as unknown as { spec: object }).spec, {
      status: 400,
      code: 'stored_objects_disabled',
      param,
    });
  }
  // A new container, an empty list, a reasoning item carrying its encrypted content: no reference.
  t.deepEqual(
    references({
      tools: [{ type: 'code_interpreter', container: { type: 'auto' } }, { vector_store_ids: [] }],
      input: [{ type: 'reasoning', id: 'rs_1', encrypted_content: 'gAAA' }],
    }),
    [],
  );
});

test('list options: limit 1..100 (default 20), order asc|desc (default desc), after', (t) => {
  const q = (s: string) => listOptions(new URLSearchParams(s));
  t.deepEqual(q(''), { limit: 20, order: 'desc', after: null });
  t.deepEqual(q('limit=100&order=asc&after=file-1'), { limit: 100, order: 'asc', after: 'file-1' });
  for (const bad of [
    'limit=0',
    'limit=101',
    'limit=1.5',
    'limit=abc',
    'limit=',
    'limit=1e1',
    'order=up',
  ]) {
    const e = t.throws(() => q(bad), undefined, bad);
    t.like(
      (e as unknown as { spec: object }).spec,
      { status: 400, code: 'invalid_list_parameter' },
      bad,
    );
  }
});

test('the id an answer made: the JSON object’s own, else the first in a stream', (t) => {
  t.is(madeId('{"object":"file","id":"file-1","bytes":3}'), 'file-1');
  t.is(madeId('{"object":"file"}'), null);
  t.is(
    madeId(
      'event: response.created\ndata: {"type":"response.created","sequence_number":0,"response":{"id":"resp_9","object":"response"}}\n\n',
    ),
    'resp_9',
  );
  t.is(madeId('data: {"id":"chatcmpl-3","object":"chat.completion.chunk"}\n\n'), 'chatcmpl-3');
  t.is(madeId('not json and no id'), null);
  t.deepEqual(decodeSeen('all;{"id":"x"}'), { text: '{"id":"x"}', whole: true });
  t.deepEqual(decodeSeen('cut;{"id":"x"'), { text: '{"id":"x"', whole: false });
  t.is(decodeSeen('other'), null);
  t.is(decodeSeen(undefined), null);
});

test('postSpends: uploads, cancels and conversation items spend nothing, a batch or a fine-tuning job spends later, the rest is metered', (t) => {
  for (const p of [
    '/v1/files',
    '/v1/files/',
    '/v1/Files',
    '/v1/uploads',
    '/v1/uploads/upload_1/parts',
    '/v1/uploads/upload_1/complete',
    '/v1/responses/resp_1/cancel',
    '/v1/batches/batch_1/cancel',
    '/v1/chat/completions/chatcmpl-1',
    '/v1/vector_stores',
    '/v1/vector_stores/vs_1/files',
    '/v1/vector_stores/vs_1/search',
    '/v1/conversations',
    '/v1/conversations/conv_1/items',
    '/v1/conversations/conv_1',
  ]) {
    t.is(postSpends(p), 'none', p);
  }
  t.is(postSpends('/v1/batches'), 'batch');
  t.is(postSpends('/v1/fine_tuning/jobs'), 'training');
  t.is(postSpends('/v1/fine_tuning/jobs/ftjob-1/cancel'), 'none');
  for (const p of [
    '/v1/chat/completions',
    '/v1/responses',
    '/v1/embeddings',
    '/v1/completions',
    '/v1/messages',
    '/v1/threads/t_1/runs',
    '/v1/files%2F..%2Fchat/completions',
    '/anything',
  ]) {
    t.is(postSpends(p), 'tokens', p);
  }
});

test('what a list keeps: the object when whole and small, else a marked summary, never another object', (t) => {
  const small = JSON.stringify({ id: 'file-1', object: 'file', bytes: 3, filename: 'a.txt' });
  t.is(snapshotOf({ text: small, whole: true }, 'file-1'), small);
  // Another object's answer (a refresh that answered something else) keeps nothing.
  t.is(snapshotOf({ text: small, whole: true }, 'file-2'), null);

  // Too large: its top-level scalars and small usage/metadata, not the big fields.
  const big = {
    id: 'chatcmpl-9',
    object: 'chat.completion',
    created: 1_700_000_000,
    model: 'gpt-4o-mini',
    choices: [{ index: 0, message: { role: 'assistant', content: 'x'.repeat(20_000) } }],
    usage: { prompt_tokens: 3, completion_tokens: 5000, total_tokens: 5003 },
    metadata: { team: 'a' },
    instructions: 'y'.repeat(600),
  };
  const s1 = JSON.parse(
    snapshotOf({ text: JSON.stringify(big), whole: true }, 'chatcmpl-9') ?? '{}',
  );
  t.deepEqual(s1, {
    id: 'chatcmpl-9',
    object: 'chat.completion',
    created: 1_700_000_000,
    model: 'gpt-4o-mini',
    usage: big.usage,
    metadata: big.metadata,
    _gateway_summary: true,
  });

  // A streamed chat completion: its first chunk names the whole.
  const sse =
    'data: {"id":"chatcmpl-7","object":"chat.completion.chunk","created":5,"model":"m","choices":[{"delta":{"role":"assistant"}}]}\n\ndata: {"id":"chatcmpl-7","choices":[]}\n\ndata: [DONE]\n\n';
  t.deepEqual(JSON.parse(snapshotOf({ text: sse, whole: true }, 'chatcmpl-7') ?? '{}'), {
    id: 'chatcmpl-7',
    object: 'chat.completion',
    created: 5,
    model: 'm',
    _gateway_summary: true,
  });
  // A streamed response: response.created carries the response.
  const rs =
    'event: response.created\ndata: {"type":"response.created","sequence_number":0,"response":{"id":"resp_1","object":"response","status":"in_progress","model":"m","output":[]}}\n\n';
  t.like(JSON.parse(snapshotOf({ text: rs, whole: false }, 'resp_1') ?? '{}'), {
    id: 'resp_1',
    object: 'response',
    status: 'in_progress',
    _gateway_summary: true,
  });
  t.is(snapshotOf({ text: rs, whole: false }, 'resp_2'), null);

  // Cut at 64 KiB: the fields before the first nested value; a nested id is never taken.
  const cut = `{"id":"batch_1","object":"batch","status":"completed","errors":{"data":[{"id":"other"`;
  t.deepEqual(JSON.parse(snapshotOf({ text: cut, whole: false }, 'batch_1') ?? '{}'), {
    id: 'batch_1',
    object: 'batch',
    status: 'completed',
    _gateway_summary: true,
  });
  t.is(snapshotOf({ text: '{"data":[{"id":"batch_1"', whole: false }, 'batch_1'), null);
  t.is(snapshotOf({ text: 'not json', whole: false }, 'x'), null);
});
