/**
 * token-meter's batch meter, its pure parts (plugins/token-meter/batch/input.ts, meter.ts): a
 * batch input file read from a multipart upload, summed line by line, each bad line refused by
 * number; which requests are batch calls; the provider's usage of a finished batch.
 */
import test from 'ava';
import { isGatewayError, type GatewayError } from '../../lib/http/errors';
import { readConfig } from '../../lib/schema/config';
import { createTenantContext, type TenantPolicyInput } from '../../lib/tenant/context';
import { countChatPromptTokens } from '../../lib/tokens/tokenize';
import {
  decodeSummary,
  summariseBatchInput,
  LINES_PER_SLICE,
  type LineRules,
} from '../../plugins/token-meter/batch/input';
import { batchCall } from '../../plugins/token-meter/batch/meter';
import { batchUsage, decodeBatchState } from '../../plugins/token-meter/batch/settle';
import { readUpload } from '../../plugins/token-meter/batch/upload';
import { Schema } from '../../plugins/token-meter/schema';

const config = readConfig(Schema, {
  plans: { pro: { budget_tokens: 100000 } },
  prices: {
    'gpt-4o-mini': { kind: 'generation', prompt_per_million: 0.15, completion_per_million: 0.6 },
    embed: { kind: 'embedding', prompt_per_million: 0.02, completion_per_million: 0 },
  },
  max_tokens_cap: 4096,
  max_choices: 4,
});

const policy = (p: Partial<TenantPolicyInput> = {}): TenantPolicyInput => ({
  toolsAllowed: ['*'],
  preferredModel: null,
  fallbackModel: null,
  persona: null,
  knowledgeNamespace: 'kb',
  weight: 1,
  ...p,
});
const rules = (p: Partial<TenantPolicyInput> = {}): LineRules => ({
  config,
  ctx: createTenantContext({
    tenantId: 'acme',
    plan: 'pro',
    source: 'consumer',
    subject: 'acme',
    policy: policy(p),
  }),
});

const line = (i: number, body: Record<string, unknown>, url = '/v1/chat/completions') =>
  JSON.stringify({ custom_id: `r${i}`, method: 'POST', url, body });
const chat = (text: string, extra: Record<string, unknown> = { max_tokens: 10 }) => ({
  model: 'gpt-4o-mini',
  messages: [{ role: 'user', content: text }],
  ...extra,
});
const file = (...lines: string[]) => Buffer.from(`${lines.join('\n')}\n`);

async function refusal(
  t: import('ava').ExecutionContext,
  f: () => Promise<unknown>,
): Promise<GatewayError> {
  const e = await t.throwsAsync(f);
  if (!isGatewayError(e)) throw new Error(`not a GatewayError: ${String(e)}`);
  return e;
}

test('a file is summed: the tokenizer’s prompt count and every line’s bound × n', async (t) => {
  const s = await summariseBatchInput(
    file(
      line(1, chat('first question')),
      '',
      line(2, chat('a second, longer question about batches', { max_tokens: 30, n: 3 })),
    ),
    rules(),
  );
  const p1 = countChatPromptTokens([{ role: 'user', text: 'first question' }], 'gpt-4o-mini');
  const p2 = countChatPromptTokens(
    [{ role: 'user', text: 'a second, longer question about batches' }],
    'gpt-4o-mini',
  );
  t.deepEqual(s, {
    v: 1,
    endpoint: '/v1/chat/completions',
    model: 'gpt-4o-mini',
    lines: 2,
    promptTokens: p1 + p2,
    maxLinePromptTokens: Math.max(p1, p2),
    completionTokens: 10 + 90,
  });
  t.deepEqual(decodeSummary(JSON.stringify(s)), s);
  t.is(decodeSummary('{"v":1}'), undefined);
  t.is(decodeSummary('not json'), undefined);
});

test('embeddings lines: no completion, every string of an input array counted', async (t) => {
  const s = await summariseBatchInput(
    file(
      line(1, { model: 'embed', input: ['alpha beta', 'gamma delta epsilon'] }, '/v1/embeddings'),
    ),
    rules(),
  );
  t.is(s.completionTokens, 0);
  t.true(s.promptTokens >= 5, `counted: ${s.promptTokens}`);
});

test('each bad line is refused with its number and field', async (t) => {
  const cases: Array<[string[], string, string]> = [
    [
      [line(1, chat('a')), line(2, chat('b', {}))],
      'batch_line_unbounded',
      'line 2: body.max_tokens',
    ],
    [[line(1, chat('a', { max_tokens: 5000 }))], 'max_tokens_too_large', 'line 1: body.max_tokens'],
    [[line(1, chat('a', { max_tokens: 5, n: 9 }))], 'n_too_large', 'line 1: body.n'],
    [[line(1, chat('a')), '{oops'], 'invalid_batch_line', 'line 2'],
    [
      [
        line(1, chat('a')),
        line(2, { ...chat('b'), metadata: JSON.parse(`${'['.repeat(200)}${']'.repeat(200)}`) }),
      ],
      'invalid_batch_line',
      'line 2',
    ],
    [[line(1, chat('a')), line(1, chat('b'))], 'invalid_batch_line', 'line 2'],
    [[line(1, chat('a'), '/v1/moderations')], 'batch_endpoint_not_metered', 'line 1'],
    [[line(1, chat('a')), line(2, chat('b'), '/v1/responses')], 'invalid_batch_line', 'line 2'],
    [
      [line(1, chat('a')), line(2, { ...chat('b'), model: 'embed' })],
      'invalid_batch_line',
      'line 2: body.model',
    ],
    [
      [line(1, chat('a', { max_tokens: 5, stream: true }))],
      'invalid_batch_line',
      'line 1: body.stream',
    ],
    [[line(1, { ...chat('a'), model: 'nope' })], 'model_not_priced', 'line 1: body.model'],
    [[line(1, { ...chat('a'), model: 'embed' })], 'model_not_supported', 'line 1: body.model'],
    [
      [JSON.stringify({ custom_id: 'x', method: 'GET', url: '/v1/chat/completions', body: {} })],
      'invalid_batch_line',
      'line 1',
    ],
    [[''], 'empty_batch_input', 'file'],
  ];
  for (const [lines, code, param] of cases) {
    const e = await refusal(t, () => summariseBatchInput(file(...lines), rules()));
    t.is(e.code, code, lines.join(' | '));
    t.is(e.spec.param, param, lines.join(' | '));
    t.is(e.status, 400);
  }
});

test('a model outside the tenant’s tier is refused (a batch cannot be rewritten)', async (t) => {
  const e = await refusal(t, () =>
    summariseBatchInput(file(line(1, chat('a'))), rules({ models: ['gpt-4o'] })),
  );
  t.is(e.code, 'model_not_allowed');
  t.is(e.status, 403);
});

test('a large file is read in slices: other work runs between them', async (t) => {
  const lines = Array.from({ length: LINES_PER_SLICE * 3 + 5 }, (_, i) => line(i, chat(`q ${i}`)));
  let ticks = 0;
  const timer = setInterval(() => (ticks += 1), 0);
  const s = await summariseBatchInput(file(...lines), rules());
  clearInterval(timer);
  t.is(s.lines, lines.length);
  t.true(ticks >= 1, `the event loop ran between slices (${ticks} timer ticks)`);
});

test('a multipart upload: its purpose and file, as the SDKs send them', async (t) => {
  const boundary = 'XyZ';
  const body = Buffer.from(
    [
      `--${boundary}`,
      'Content-Disposition: form-data; name="file"; filename="in.jsonl"',
      'Content-Type: application/octet-stream',
      '',
      'line one\nline two',
      `--${boundary}`,
      'Content-Disposition: form-data; name="purpose"',
      '',
      'batch',
      `--${boundary}--`,
      '',
    ].join('\r\n'),
  );
  const up = await readUpload(body, `multipart/form-data; boundary=${boundary}`);
  t.is(up.purpose, 'batch');
  t.is(up.file?.toString(), 'line one\nline two');
  t.deepEqual(await readUpload(Buffer.from('{}'), 'application/json'), {
    purpose: null,
    file: null,
  });
  const broken = await readUpload(
    Buffer.from('garbage'),
    `multipart/form-data; boundary=${boundary}`,
  ).catch((e: unknown) => e);
  t.true(
    isGatewayError(broken) || (broken as { file: unknown }).file === null,
    'a broken form is refused or yields no file',
  );
});

test('batch calls: an upload, a creation and a read, on the path Kong sends upstream', (t) => {
  t.deepEqual(batchCall('POST', '/v1/files'), { op: 'upload' });
  t.deepEqual(batchCall('POST', '/v1//batches/'), { op: 'create' });
  t.deepEqual(batchCall('GET', '/v1/batches/batch_1?x=1'), { op: 'read', id: 'batch_1' });
  t.is(batchCall('POST', '/v1/batches/batch_1/cancel'), null);
  t.is(batchCall('GET', '/v1/batches'), null);
  t.is(batchCall('GET', '/v1/batches%2Fbatch_1'), null);
});

test('the usage of a finished batch, and a state that is not a batch’s', (t) => {
  t.deepEqual(
    batchUsage({
      usage: { input_tokens: 10, output_tokens: 4, input_tokens_details: { cached_tokens: 2 } },
    }),
    { promptTokens: 10, completionTokens: 4, cachedTokens: 2 },
  );
  t.is(batchUsage({}), null);
  t.is(batchUsage({ usage: { input_tokens: -1, output_tokens: 4 } }), null);
  t.is(decodeBatchState('none'), undefined);
  t.is(decodeBatchState('{"v":1,"batch":"other"}'), undefined);
  t.deepEqual(decodeBatchState('{"v":1,"batch":"read","id":"b"}'), {
    v: 1,
    batch: 'read',
    id: 'b',
  });
});
