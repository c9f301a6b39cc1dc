/**
 * Prices that match the bill, end to end: a model with a long-context tier (as providers bill a
 * long prompt: the whole request at higher prices past a prompt length) is billed at the tier
 * its real prompt fell in, and the costs showback adds up to exactly what the upstream's usage
 * costs at those prices. Reasoning tokens are part of completion_tokens and billed once.
 */
import test from 'ava';
import { Closers, chat } from '../helpers/frontdoor';
import { PRICES, startMeterDoor } from '../helpers/token-meter-door';

const TIER_ABOVE = 40;
const BASE = { prompt: 0.15, completion: 0.6 };
const LONG = { prompt: 3, completion: 12 };

interface Usage {
  prompt_tokens: number;
  completion_tokens: number;
}

test('a prompt past the long-context threshold is billed at the tier; the showback adds up', async (t) => {
  const closers = new Closers();
  t.teardown(() => closers.closeAll());
  const d = await startMeterDoor(closers.add, {
    prices: {
      ...PRICES,
      'gpt-4o-mini': {
        prompt_per_million: BASE.prompt,
        completion_per_million: BASE.completion,
        long_context: {
          above_prompt_tokens: TIER_ABOVE,
          prompt_per_million: LONG.prompt,
          completion_per_million: LONG.completion,
        },
      },
    },
  });
  const ask = async (content: string): Promise<Usage> => {
    const { res } = await d.call('globex', '/v1/chat/completions', {
      body: chat(content, { max_tokens: 20 }),
    });
    t.is(res.status, 200, res.text);
    return (res.json as { usage: Usage }).usage;
  };
  const short = await ask('a short question');
  const long = await ask(`a long question: ${'word '.repeat(120)}`);
  t.true(short.prompt_tokens <= TIER_ABOVE, `short prompt: ${short.prompt_tokens} tokens`);
  t.true(long.prompt_tokens > TIER_ABOVE, `long prompt: ${long.prompt_tokens} tokens`);

  const usd = (u: Usage, p: { prompt: number; completion: number }) =>
    (u.prompt_tokens * p.prompt + u.completion_tokens * p.completion) / 1e6;
  const expected = usd(short, BASE) + usd(long, LONG);
  const flat = usd(short, BASE) + usd(long, BASE);

  const start = Math.floor(Date.now() / 1000) - 86_400;
  let billed = 0;
  for (let i = 0; i < 100; i++) {
    const { res } = await d.call(
      'globex',
      `/v1/organization/costs?start_time=${start}&group_by=line_item&limit=2`,
    );
    t.is(res.status, 200, res.text);
    const page = res.json as {
      data: Array<{ results: Array<{ amount: { value: number }; line_item: string }> }>;
    };
    billed = page.data
      .flatMap((b) => b.results)
      .filter((r) => r.line_item === 'gpt-4o-mini')
      .reduce((a, r) => a + r.amount.value, 0);
    if (Math.abs(billed - expected) < 1e-9) break;
    await new Promise((r) => setTimeout(r, 50));
  }
  t.true(
    Math.abs(billed - expected) < 1e-9,
    `billed ${billed} USD, the upstream's usage at the tiered prices is ${expected} (flat would be ${flat})`,
  );
  t.true(expected > flat, 'the tier made a difference the test can see');
});

test('a model’s declared kind keeps it to its APIs: 400 model_not_supported before anything is sent', async (t) => {
  const closers = new Closers();
  t.teardown(() => closers.closeAll());
  const d = await startMeterDoor(closers.add, {
    prices: {
      ...PRICES,
      // Names that do not say what they are: only the declared kind can tell.
      'vec-small': { kind: 'embedding', prompt_per_million: 0.02, completion_per_million: 0 },
      'gpt-4o-mini': { kind: 'generation', prompt_per_million: 0.15, completion_per_million: 0.6 },
    },
  });
  const refused = async (path: string, body: object, model: string) => {
    const { res, upstream } = await d.call('globex', path, { body });
    t.is(res.status, 400, res.text);
    const e = (res.json as { error: { code: string; param: string; message: string } }).error;
    t.is(e.code, 'model_not_supported');
    t.is(e.param, 'model');
    t.true(e.message.includes(model));
    t.is(upstream, undefined, 'nothing reached the upstream');
  };
  await refused('/v1/chat/completions', chat('hi', { model: 'vec-small' }), 'vec-small');
  await refused('/v1/responses', { model: 'vec-small', input: 'hi' }, 'vec-small');
  await refused('/v1/embeddings', { model: 'gpt-4o-mini', input: 'hi' }, 'gpt-4o-mini');
  // Controls: each kind where it belongs, and a model with no kind declared anywhere.
  for (const [path, body] of [
    ['/v1/embeddings', { model: 'vec-small', input: 'hi' }],
    ['/v1/chat/completions', chat('hi', { model: 'gpt-4o-mini' })],
    ['/v1/embeddings', { model: 'gpt-4o', input: 'hi' }],
  ] as const) {
    const { res, upstream } = await d.call('globex', path, { body });
    t.is(res.status, 200, `${path} ${body.model}: ${res.text}`);
    t.truthy(upstream);
  }
});

test('work the provider spends later, unreserved, is refused on a metered route: a batch of a file the meter never read, a fine-tuning job', async (t) => {
  const closers = new Closers();
  t.teardown(() => closers.closeAll());
  // A tenant whose provider key is its own (store on), with the stateful APIs served: only the
  // meter stands between it and tokens spent where no reservation came first.
  const d = await startMeterDoor(
    closers.add,
    {},
    {
      authExtra: {
        tenants: {
          globex: {
            store: 'on',
            api_surface: ['chat', 'files', 'batches', 'fine_tuning', 'conversations'],
          },
        },
      },
    },
  );
  // A batch is metered from its input file, read when it was uploaded through the meter
  // (test/plugins/token-meter-batches.test.ts); one of a file it never read cannot be reserved.
  for (const [path, body, status, code] of [
    [
      '/v1/batches',
      { input_file_id: 'file-1', endpoint: '/v1/chat/completions', completion_window: '24h' },
      400,
      'batch_input_unmetered',
    ],
    [
      '/v1/fine_tuning/jobs',
      { training_file: 'file-1', model: 'gpt-4o-mini' },
      403,
      'fine_tuning_not_metered',
    ],
  ] as const) {
    const { res, upstream } = await d.call('globex', path, { method: 'POST', body });
    t.is(res.status, status, `${path}: ${res.text}`);
    t.is((res.json as { error: { code: string } }).error.code, code);
    t.is(upstream, undefined, `${path}: nothing reached the provider`);
  }
  // What spends nothing passes unmetered: a fine-tuning job's cancel, a conversation.
  for (const path of ['/v1/fine_tuning/jobs/ftjob-1/cancel', '/v1/conversations']) {
    const { res, upstream } = await d.call('globex', path, { method: 'POST', body: {} });
    t.truthy(upstream, `${path} reached the provider (${res.status} ${res.text})`);
    t.is(res.headers['x-budget-state'], undefined, `${path} is not metered`);
  }
});
