import test from 'ava';
import { privateScope } from '../../lib/request/scope';
import {
  decodeEstimate,
  encodeEstimate,
  estimateRequest,
  sharedEstimate,
  ESTIMATE_KEY,
} from '../../lib/tokens/estimate';
import { decodeUsage, encodeUsage } from '../../lib/tokens/usage';
import { countChatPromptTokens } from '../../lib/tokens/tokenize';
import type { KongPdk } from '../../lib/pdk/kong';
import { parseTenantId } from '../../lib/tenant/tenant-id';

const ACME = parseTenantId('acme');

const chat = (content: string, extra: Record<string, unknown> = {}) => ({
  model: 'gpt-4o-mini',
  messages: [{ role: 'user', content }],
  ...extra,
});

test('prompt tokens come from the BPE tokenizer of the model family', (t) => {
  const e = estimateRequest(chat('hello there, how are you today?', { max_tokens: 50 }));
  t.is(e.source, 'tokenizer');
  t.is(
    e.promptTokens,
    countChatPromptTokens(
      [{ role: 'user', text: 'hello there, how are you today?' }],
      'gpt-4o-mini',
    ),
  );
  t.is(e.completionTokens, 50);
  t.is(e.totalTokens, e.promptTokens + 50);
  t.is(e.model, 'gpt-4o-mini');
});

test('no max_tokens: the default; max_completion_tokens wins over max_tokens', (t) => {
  t.is(estimateRequest(chat('x'), { defaultMaxTokens: 300 }).completionTokens, 300);
  t.is(
    estimateRequest(chat('x', { max_tokens: 10, max_completion_tokens: 20 })).completionTokens,
    20,
  );
});

test('absurd, negative or non-numeric max_tokens are capped or defaulted', (t) => {
  const opts = { defaultMaxTokens: 100, maxTokensCap: 1000 };
  t.is(estimateRequest(chat('x', { max_tokens: 1e12 }), opts).completionTokens, 1000);
  t.is(estimateRequest(chat('x', { max_tokens: -5 }), opts).completionTokens, 100);
  t.is(estimateRequest(chat('x', { max_tokens: '50' }), opts).completionTokens, 100);
  t.is(estimateRequest(chat('x', { max_tokens: Infinity }), opts).completionTokens, 100);
});

test('n multiplies the completion worst case, bounded', (t) => {
  t.is(estimateRequest(chat('x', { max_tokens: 10, n: 3 })).completionTokens, 30);
  t.is(estimateRequest(chat('x', { max_tokens: 10, n: 1000 }), { maxChoices: 4 }).n, 4);
});

test('no body, not JSON, or an unknown shape still gets a defined cost', (t) => {
  for (const body of [undefined, null, 'text', 42, [], { foo: 1 }]) {
    const e = estimateRequest(body, { unknownPromptTokens: 77, defaultMaxTokens: 5 });
    t.is(e.source, 'default');
    t.is(e.totalTokens, 82);
  }
});

test('Responses API input and array content parts are counted', (t) => {
  const a = estimateRequest({ model: 'gpt-4o', input: 'a long question about things' });
  t.is(a.source, 'tokenizer');
  t.true(a.promptTokens > 3);
  const b = estimateRequest({
    model: 'gpt-4o',
    messages: [{ role: 'user', content: [{ type: 'text', text: 'a long question about things' }] }],
  });
  t.is(
    b.promptTokens,
    estimateRequest(chat('a long question about things', { model: 'gpt-4o' })).promptTokens,
  );
});

test('tools count as prompt tokens', (t) => {
  const tools = [
    { type: 'function', function: { name: 'search', parameters: { type: 'object' } } },
  ];
  t.true(
    estimateRequest(chat('x', { tools })).promptTokens > estimateRequest(chat('x')).promptTokens,
  );
});

test('encode/decode round-trips; anything else decodes to undefined', (t) => {
  const e = estimateRequest(chat('hi', { stream: true }));
  t.deepEqual(decodeEstimate(encodeEstimate(e)), e);
  for (const bad of [undefined, '', '{', '{"v":2}', JSON.stringify({ ...e, promptTokens: -1 }), 5])
    t.is(decodeEstimate(bad), undefined);
});

test('service_tier is read with the estimate: as sent, empty when not a string, null when absent', (t) => {
  t.is(estimateRequest(chat('hi', { service_tier: 'flex' })).serviceTier, 'flex');
  t.is(estimateRequest(chat('hi', { service_tier: 'Priority' })).serviceTier, 'Priority');
  t.is(estimateRequest(chat('hi', { service_tier: 3 })).serviceTier, '');
  t.is(estimateRequest(chat('hi', { service_tier: null })).serviceTier, null);
  t.is(estimateRequest(chat('hi')).serviceTier, null);
  t.is(estimateRequest(undefined).serviceTier, null);
  const e = estimateRequest(chat('hi', { service_tier: 'flex' }));
  t.is(decodeEstimate(encodeEstimate(e))?.serviceTier, 'flex');
  // Published before the field existed: no service tier.
  const { serviceTier: _dropped, ...older } = e;
  t.is(decodeEstimate(JSON.stringify(older))?.serviceTier, null);
  t.is(decodeEstimate(JSON.stringify({ ...e, serviceTier: 7 })), undefined);
});

function fakeKong(store: Map<string, unknown>): KongPdk {
  return {
    ctx: {
      shared: {
        get: async (k: string) => store.get(k),
        set: async (k: string, v: string) => void store.set(k, v),
      },
    },
  } as unknown as KongPdk;
}

test('sharedEstimate across processes: computed once and published; the next plugin reads it without the body', async (t) => {
  const store = new Map<string, unknown>();
  let reads = 0;
  // Two plugin-server processes: two scopes of the same request.
  const first = await sharedEstimate(fakeKong(store), privateScope(), ACME, async () => {
    reads++;
    return chat('hello', { max_tokens: 7 });
  });
  t.is(reads, 1);
  t.true(typeof store.get(ESTIMATE_KEY) === 'string');
  const second = await sharedEstimate(fakeKong(store), privateScope(), ACME, async () => {
    reads++;
    return chat('something else entirely');
  });
  t.is(reads, 1);
  t.deepEqual(second, first);
});

test('sharedEstimate within one process: the scope keeps it, no PDK call for the second plugin', async (t) => {
  const store = new Map<string, unknown>();
  const scope = privateScope();
  const first = await sharedEstimate(fakeKong(store), scope, ACME, async () => chat('hello'));
  store.clear(); // the second read must not come from kong.ctx.shared
  const second = await sharedEstimate(fakeKong(store), scope, ACME, async () => {
    throw new Error('the body must not be read again');
  });
  t.is(second, first);
  t.is(store.size, 0);
});

test('observed usage: the Lua wire string round-trips; malformed strings are rejected', (t) => {
  const u = {
    promptTokens: 12,
    completionTokens: 30,
    totalTokens: 42,
    cachedTokens: 0,
    model: 'gpt-4o-mini-2024-07-18',
    from: 'sse' as const,
  };
  t.deepEqual(decodeUsage(encodeUsage(u)), u);
  t.is(decodeUsage('v=1;prompt=1;completion=2;total=3;cached=0;model=m;from=sse')?.totalTokens, 3);
  for (const bad of [
    undefined,
    '',
    'v=2;prompt=1;completion=1;from=sse',
    'v=1;prompt=-1;completion=1;from=sse',
    'v=1;prompt=1;completion=1;from=file',
    'garbage',
    7,
  ])
    t.is(decodeUsage(bad), undefined);
  t.is(decodeUsage('v=1;prompt=1;completion=1;model=a b"c;from=json')?.model, '');
});
