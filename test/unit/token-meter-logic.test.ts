/** token-meter's pure parts: body checks and rewrites, the ladder, periods, showback, state. */
import test from 'ava';
import { GatewayError } from '../../lib/http/errors';
import { ladder } from '../../plugins/token-meter/ladder';
import { ledgerFields, parseLedgerFields } from '../../plugins/token-meter/ledger';
import { periodAt, periodsBetween } from '../../plugins/token-meter/period';
import { costOf, priceOf, type TokenPrice } from '../../plugins/token-meter/pricing';
import type { ModelPrice, TokenMeterConfig } from '../../plugins/token-meter/config';
import { readMeteredRequest, rewriteBody } from '../../plugins/token-meter/request-body';
import { parseShowbackQuery, showbackKind, showbackPage } from '../../plugins/token-meter/showback';
import {
  decodeMeterState,
  encodeMeterState,
  type MeterState,
} from '../../plugins/token-meter/state';

const limits = { maxTokensCap: 1000, maxChoices: 4 };
const read = (body: unknown, path = '/v1/chat/completions') =>
  readMeteredRequest(
    Buffer.from(typeof body === 'string' ? body : JSON.stringify(body)),
    path,
    limits,
  );
const code = (f: () => unknown): string | undefined => {
  try {
    f();
  } catch (e) {
    if (e instanceof GatewayError) return e.code;
    throw e;
  }
  return undefined;
};

/** A ledger entry as readLedger gives it (showback tests). */
const LEDGER_ENTRY = {
  requestId: 'r',
  modelAsked: 'a',
  modelServed: 'a',
  promptTokens: 3,
  completionTokens: 4,
  cachedTokens: 1,
  cost: 5,
  cacheHit: false,
  estimated: false,
  downgrade: 'none' as const,
  stream: false,
  status: 200,
  settledBy: 'log' as const,
};

test('bad bodies are defined 400s', (t) => {
  t.is(
    code(() => read('')),
    'invalid_request_body',
  );
  t.is(
    code(() => read('[1]')),
    'invalid_request_body',
  );
  t.is(
    code(() => read({ messages: [] })),
    'missing_model',
  );
  t.is(
    code(() => read({ model: 'm', max_tokens: 0 })),
    'invalid_max_tokens',
  );
  t.is(
    code(() => read({ model: 'm', max_tokens: 1.5 })),
    'invalid_max_tokens',
  );
  t.is(
    code(() => read({ model: 'm', max_completion_tokens: 1001 })),
    'max_tokens_too_large',
  );
  t.is(
    code(() => read({ model: 'm', n: 0 })),
    'invalid_n',
  );
  t.is(
    code(() => read({ model: 'm', n: 5 })),
    'n_too_large',
  );
  t.like(read({ model: 'm', max_tokens: 50, max_completion_tokens: 40, n: 2 }), {
    askedMaxTokens: 40,
    n: 2,
  });
});

test('every forwarded request is bounded; streams ask for usage', (t) => {
  const plain = read({ model: 'gpt-4o', messages: [] });
  t.deepEqual(JSON.parse(rewriteBody(plain, 'gpt-4o', 64) ?? '{}'), {
    model: 'gpt-4o',
    messages: [],
    max_tokens: 64,
  });
  const reasoning = read({ model: 'o3-mini', messages: [] });
  t.is(JSON.parse(rewriteBody(reasoning, 'o3-mini', 64) ?? '{}').max_completion_tokens, 64);
  const responses = read({ model: 'gpt-4o', input: 'hi', stream: true }, '/v1/responses');
  const r = JSON.parse(rewriteBody(responses, 'gpt-4o', 10) ?? '{}') as Record<string, unknown>;
  t.is(r.max_output_tokens, 10);
  t.is(r.stream_options, undefined, 'the Responses API has no stream_options');
  const stream = read({ model: 'gpt-4o', messages: [], stream: true, max_tokens: 10 });
  t.deepEqual(JSON.parse(rewriteBody(stream, 'gpt-4o-mini', 10) ?? '{}'), {
    model: 'gpt-4o-mini',
    messages: [],
    stream: true,
    max_tokens: 10,
    stream_options: { include_usage: true },
  });
  const done = read({ model: 'gpt-4o', messages: [], max_tokens: 10 });
  t.is(rewriteBody(done, 'gpt-4o', 10), null, 'nothing to change: the client bytes go');
  const emb = read({ model: 'e', input: 'x' }, '/v1/embeddings');
  t.is(rewriteBody(emb, 'e', 0), null);
});

const price = (p: number, c: number) => ({ prompt: p, completion: c, cachedPrompt: p / 2 });

test('the ladder: preferred (soft-gated when a fallback exists), fallback, clamp', (t) => {
  const steps = ladder({
    askedModel: 'big',
    askedPrice: price(10, 40),
    fallback: { model: 'small', price: price(1, 4) },
    allowClamp: true,
    minClampTokens: 16,
    softThreshold: 0.8,
    promptTokens: 100,
    choices: 2,
    maxTokensPerChoice: 500,
  });
  t.deepEqual(
    steps.map((s) => [s.model, s.downgrade, s.candidate.softRatio, s.candidate.minUnits]),
    [
      ['big', 'none', 0.8, 500],
      ['small', 'fallback', 1, 500],
      ['small', 'clamp', 1, 16],
    ],
  );
  t.like(steps[0]?.candidate, { baseTokens: 100, baseCost: 1000, unitTokens: 2, unitCost: 80 });
  const alone = ladder({
    askedModel: 'big',
    askedPrice: price(10, 40),
    fallback: null,
    allowClamp: false,
    minClampTokens: 16,
    softThreshold: 0.8,
    promptTokens: 100,
    choices: 1,
    maxTokensPerChoice: 500,
  });
  t.is(alone.length, 1);
  t.is(alone[0]?.candidate.softRatio, 1, 'no fallback: the soft threshold does not apply');
});

test('cost in nano-USD: cached prompt tokens at their own price', (t) => {
  t.is(
    costOf(price(2.5, 10), { promptTokens: 100, completionTokens: 10, cachedTokens: 40 }),
    60 * 2.5 + 40 * 1.25 + 100,
  );
});

test('long-context tier: the whole request at the tier its prompt falls in', (t) => {
  // 1.25 / 10 USD per million up to 200k prompt tokens, 2.5 / 15 above (Gemini 2.5 Pro's shape).
  const tiered = priceOf(
    configWith({
      kind: null,
      prompt_per_million: 1.25,
      completion_per_million: 10,
      cached_prompt_per_million: null,
      long_context: {
        above_prompt_tokens: 200_000,
        prompt_per_million: 2.5,
        completion_per_million: 15,
        cached_prompt_per_million: 0.625,
      },
    }),
    'm',
  );
  if (!tiered) return t.fail('priced');
  const usage = (prompt: number) => ({
    promptTokens: prompt,
    completionTokens: 1000,
    cachedTokens: 0,
  });
  t.is(costOf(tiered, usage(200_000)), 200_000 * 1250 + 1000 * 10_000, 'at the threshold: base');
  t.is(costOf(tiered, usage(200_001)), 200_001 * 2500 + 1000 * 15_000, 'past it: all at the tier');
  t.is(
    costOf(tiered, { promptTokens: 300_000, completionTokens: 0, cachedTokens: 100_000 }),
    200_000 * 2500 + 100_000 * 625,
    'cached prompt tokens at the tier’s cached price',
  );
  // Reserved at the tier the estimate falls in.
  const reserve = (promptTokens: number) =>
    ladder({
      askedModel: 'm',
      askedPrice: tiered,
      fallback: null,
      allowClamp: false,
      minClampTokens: 16,
      softThreshold: 0.8,
      promptTokens,
      choices: 1,
      maxTokensPerChoice: 100,
    })[0]?.candidate;
  t.is(reserve(1000)?.baseCost, 1000 * 1250);
  t.is(reserve(1000)?.unitCost, 10_000);
  t.is(reserve(250_000)?.baseCost, 250_000 * 2500);
  t.is(reserve(250_000)?.unitCost, 15_000);
  // A price without a tier is one price at every length.
  const plain = priceOf(configWith({ ...flatPrice, long_context: null }), 'm');
  if (!plain) return t.fail('priced');
  t.is(costOf(plain, usage(900_000)), 900_000 * 1250 + 1000 * 10_000);
  // And the tier survives the meter state's trip through ctx.shared.
  const state = { ...stateOf(tiered) };
  t.deepEqual(decodeMeterState(encodeMeterState(state)), state);
  const broken = { ...state, price: { ...tiered, longContext: { abovePromptTokens: 'x' } } };
  t.is(decodeMeterState(JSON.stringify(broken)), undefined);
});

test('reasoning tokens are completion tokens: billed once, at the completion price', (t) => {
  // OpenAI: usage.completion_tokens = 1200, of which completion_tokens_details.reasoning_tokens
  // = 1000. The meter reads completion_tokens (the usage snippet) and bills it once.
  const p = priceOf(configWith({ ...flatPrice, long_context: null }), 'm');
  if (!p) return t.fail('priced');
  t.is(
    costOf(p, { promptTokens: 10, completionTokens: 1200, cachedTokens: 0 }),
    10 * 1250 + 1200 * 10_000,
  );
});

const flatPrice = {
  kind: null,
  prompt_per_million: 1.25,
  completion_per_million: 10,
  cached_prompt_per_million: null,
};

function configWith(price: ModelPrice): TokenMeterConfig {
  return {
    prices: { m: price },
    unknown_model: 'refuse',
    default_price: { ...flatPrice, long_context: null },
  } as unknown as TokenMeterConfig;
}

function stateOf(price: TokenPrice): MeterState {
  return {
    v: 1,
    requestId: 'r',
    tenant: 'acme',
    period: '2026-12',
    periodEndMs: 1,
    modelAsked: 'm',
    modelServed: 'm',
    downgrade: 'none',
    stream: false,
    promptTokens: 3,
    maxTokensPerChoice: 4,
    n: 1,
    price,
    reserved: true,
  };
}

test('periods are calendar UTC', (t) => {
  const now = Date.UTC(2026, 10, 28, 14, 5);
  t.deepEqual(periodAt('month', now), {
    id: '2026-11',
    startMs: Date.UTC(2026, 10, 1),
    endMs: Date.UTC(2026, 11, 1),
  });
  t.is(periodAt('day', now).id, '2026-11-28');
  t.is(periodAt('hour', now).id, '2026-11-28-14');
  t.is(periodAt('month', Date.UTC(2026, 11, 31, 23)).endMs, Date.UTC(2027, 0, 1));
  t.deepEqual(
    periodsBetween('month', Date.UTC(2026, 9, 15), Date.UTC(2026, 11, 2)).map((p) => p.id),
    ['2026-10', '2026-11', '2026-12'],
  );
});

test('showback queries: OpenAI parameters, bounded, no tenant among them', (t) => {
  t.is(showbackKind('/v1/organization/usage/completions'), 'usage');
  t.is(showbackKind('/v1/organization/costs/'), 'costs');
  t.is(showbackKind('/v1/chat/completions'), undefined);
  t.is(
    code(() => parseShowbackQuery('usage', '')),
    'invalid_showback_query',
  );
  t.is(
    code(() => parseShowbackQuery('costs', 'start_time=0&bucket_width=1h')),
    'invalid_showback_query',
  );
  t.is(
    code(() => parseShowbackQuery('usage', 'start_time=0&limit=99')),
    'invalid_showback_query',
  );
  t.is(
    code(() => parseShowbackQuery('usage', 'start_time=0&group_by=user_id')),
    'invalid_showback_query',
  );
  const q = parseShowbackQuery('usage', 'start_time=86400&bucket_width=1d&limit=2&group_by=model');
  t.like(q, { startMs: 86_400_000, endMs: 3 * 86_400_000, groupByModel: true });
  const entry = LEDGER_ENTRY;
  const page = showbackPage(q, [
    { ...entry, ts: 86_400_000 + 5 },
    { ...entry, ts: 86_400_000 + 6, modelServed: 'b' },
    { ...entry, ts: 2 * 86_400_000 + 1 },
    { ...entry, ts: 9 * 86_400_000 },
  ]) as {
    data: Array<{ start_time: number; results: Array<{ model: string; input_tokens: number }> }>;
  };
  t.is(page.data.length, 2);
  t.deepEqual(
    page.data.map((b) => b.results.map((r) => [r.model, r.input_tokens])),
    [
      [
        ['a', 3],
        ['b', 3],
      ],
      [['a', 3]],
    ],
  );
});

test('showback usage grouped by batch: batch entries apart from the rest, as OpenAI groups them', (t) => {
  const q = parseShowbackQuery('usage', 'start_time=0&bucket_width=1d&limit=1&group_by=batch');
  t.like(q, { groupByBatch: true, groupByModel: false });
  t.is(
    code(() => parseShowbackQuery('costs', 'start_time=0&group_by=batch')),
    'invalid_showback_query',
  );
  const entry = { ...LEDGER_ENTRY, ts: 5, cachedTokens: 0 };
  const page = showbackPage(q, [
    entry,
    { ...entry, batchId: 'batch_1', promptTokens: 10 },
    entry,
  ]) as {
    data: Array<{ results: Array<{ batch: boolean | null; input_tokens: number }> }>;
  };
  t.deepEqual(
    page.data[0]?.results.map((r) => [r.batch, r.input_tokens]),
    [
      [false, 6],
      [true, 10],
    ],
  );
  const plain = showbackPage(parseShowbackQuery('usage', 'start_time=0&limit=1'), [
    { ...entry, batchId: 'batch_1' },
  ]) as { data: Array<{ results: Array<{ batch: boolean | null }> }> };
  t.is(plain.data[0]?.results[0]?.batch, null, 'not grouped: null, as OpenAI answers');
});

test('meter state survives the trip through ctx.shared; anything else is rejected', (t) => {
  const s: MeterState = {
    v: 1,
    requestId: 'abc',
    tenant: 'acme',
    period: '2026-11',
    periodEndMs: 1,
    modelAsked: 'a',
    modelServed: 'b',
    downgrade: 'fallback',
    stream: true,
    promptTokens: 3,
    maxTokensPerChoice: 4,
    n: 1,
    price: { prompt: 1, completion: 2, cachedPrompt: 0.5 },
    reserved: true,
  };
  t.deepEqual(decodeMeterState(encodeMeterState(s)), s);
  t.is(decodeMeterState(JSON.stringify({ ...s, downgrade: 'other' })), undefined);
  t.is(decodeMeterState('{'), undefined);
  t.is(decodeMeterState(null), undefined);
});

test('an estimated ledger entry says what its estimate rests on; a metered one does not', (t) => {
  const base = {
    ts: 1,
    modelAsked: 'gpt-4o-mini',
    modelServed: 'gpt-4o-mini',
    promptTokens: 10,
    completionTokens: 64,
    cachedTokens: 0,
    cost: 5,
    cacheHit: false,
    downgrade: 'none' as const,
    stream: true,
    status: 200,
  };
  const metered = ledgerFields({ ...base, estimated: false });
  t.false('estimate_basis' in metered, 'usage read: no basis');
  t.is(parseLedgerFields(metered).estimateBasis, undefined);
  const bound = ledgerFields({ ...base, estimated: true });
  t.is(
    bound.estimate_basis,
    'prompt=tokenizer;completion=bound',
    'by default: tokenizer and bound',
  );
  t.is(parseLedgerFields(bound).estimateBasis, 'prompt=tokenizer;completion=bound');
  const line = ledgerFields({
    ...base,
    estimated: true,
    estimateBasis: 'tokens=kong;price=request_model',
  });
  t.is(line.estimate_basis, 'tokens=kong;price=request_model');
  // A basis on an entry not marked estimated is not read as one.
  t.is(parseLedgerFields({ ...metered, estimate_basis: 'x' }).estimateBasis, undefined);
});
