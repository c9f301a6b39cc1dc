/**
 * token-meter end to end: key-auth, tenant-auth, token-meter and Kong's post-function (the
 * usage snippet of kong.yml) in front of the mock upstream, on the real Redis.
 */
import test from 'ava';
import http from 'node:http';
import { apiError, chat, eventually, send } from '../helpers/frontdoor';
import { METRICS_PORT, sharedMeterDoor, totals } from '../helpers/token-meter-door';

const door = sharedMeterDoor(test);

interface Usage {
  prompt_tokens: number;
  completion_tokens: number;
}

test.serial(
  'a streamed answer stays streamed: the first chunk arrives while the upstream is still sending',
  async (t) => {
    const d = door();
    d.upstream.configure({ streamChunkDelayMs: 40 });
    t.teardown(() => d.upstream.configure({ streamChunkDelayMs: 0 }));
    const body = JSON.stringify(chat('tell me a long story about streams', { stream: true }));
    const seen = await new Promise<{ upstreamBusyAtFirstChunk: boolean; text: string }>(
      (resolve, reject) => {
        const req = http.request(
          `${d.url}/v1/chat/completions`,
          {
            method: 'POST',
            headers: {
              apikey: 'streamco-key',
              'content-type': 'application/json',
              'content-length': Buffer.byteLength(body),
            },
          },
          (res) => {
            let text = '';
            let busy: boolean | undefined;
            res.on('data', (c: Buffer) => {
              busy ??= d.upstream.stats().inFlight > 0;
              text += c.toString('utf8');
            });
            res.on('end', () => resolve({ upstreamBusyAtFirstChunk: busy === true, text }));
            res.on('error', reject);
          },
        );
        req.on('error', reject);
        req.end(body);
      },
    );
    t.true(seen.upstreamBusyAtFirstChunk, 'the gateway did not wait for the whole answer');
    const events = seen.text
      .split('\n\n')
      .filter((e) => e.startsWith('data: {'))
      .map((e) => JSON.parse(e.slice(6)) as { usage?: Usage | null });
    const final = events.at(-1)?.usage;
    t.truthy(final, 'include_usage was turned on for the upstream');
    const results = await d.usage('streamco', (r) => totals(r).n >= 1);
    t.like(totals(results), {
      input: final?.prompt_tokens,
      output: final?.completion_tokens,
      n: 1,
    });
  },
);

test('a non-streamed answer is metered exactly, bounded, and said in headers', async (t) => {
  const d = door();
  const { res, upstream } = await d.call('globex', '/v1/chat/completions', {
    body: chat('how many tokens is this?'),
  });
  t.is(res.status, 200);
  const usage = (res.json as { usage: Usage }).usage;
  t.is((upstream?.json as { max_tokens?: number }).max_tokens, 1024, 'default bound set');
  t.is(res.headers['x-budget-state'], 'ok');
  t.is(res.headers['x-model-served'], 'gpt-4o-mini');
  t.truthy(res.headers['x-budget-remaining-tokens']);
  t.truthy(res.headers['x-budget-reset']);
  const results = await d.usage('globex', (r) => totals(r).n >= 1);
  t.like(totals(results), { input: usage.prompt_tokens, output: usage.completion_tokens, n: 1 });
  t.is(results[0]?.model, 'gpt-4o-mini');
});

test.serial(
  'a client that accepts gzip: the upstream is asked for identity, and the answer is billed exactly',
  async (t) => {
    const d = door();
    // As OpenAI does: non-streamed JSON gzip-compressed for a request that accepts gzip.
    d.upstream.configure({ gzipJson: true });
    t.teardown(() => d.upstream.configure({ gzipJson: false }));
    const asked: Array<[string, object]> = [
      ['/v1/chat/completions', chat('compress this answer if you can')],
      ['/v1/embeddings', { model: 'text-embedding-3-small', input: 'a compressible sentence' }],
    ];
    const billed: Record<string, { prompt: number; completion: number }> = {};
    for (const [pathname, body] of asked) {
      const { res, upstream } = await d.call('gzipco', pathname, {
        body,
        headers: [['accept-encoding', 'gzip, deflate']],
      });
      t.is(res.status, 200, pathname);
      const usage = (res.json as { usage?: Usage } | undefined)?.usage;
      const entry = await d.ledgerEntry('gzipco', res);
      t.like(
        entry,
        {
          estimated: false,
          promptTokens: usage?.prompt_tokens ?? -1,
          completionTokens: usage?.completion_tokens ?? 0,
        },
        `${pathname}: billed from the upstream's usage, not estimated`,
      );
      billed[pathname] = { prompt: entry.promptTokens, completion: entry.completionTokens };
      t.is(upstream?.headers['accept-encoding'], 'identity', `${pathname}: identity asked for`);
      t.is(res.headers['content-encoding'], undefined, `${pathname}: answered uncompressed`);
    }
    // The chat ledger entry is what the upstream counted (the mock's own tally; chat only).
    t.deepEqual(d.upstream.usage().gzipco, { answers: 1, ...billed['/v1/chat/completions'] });
  },
);

test('streamed requests get include_usage added, other stream options kept', async (t) => {
  const { res, upstream } = await door().call('acme', '/v1/chat/completions', {
    body: chat('hi', { stream: true, stream_options: { include_obfuscation: false } }),
  });
  t.is(res.status, 200);
  t.deepEqual((upstream?.json as { stream_options?: unknown }).stream_options, {
    include_obfuscation: false,
    include_usage: true,
  });
});

test('hard cap: 429 insufficient_quota with reset time and Retry-After, never proxied', async (t) => {
  const { res, upstream } = await door().call('tinyco', '/v1/chat/completions', {
    body: chat('hi', { max_tokens: 400 }),
  });
  t.is(res.status, 429);
  t.like(apiError(res), { type: 'insufficient_quota', code: 'budget_exhausted' });
  t.regex(apiError(res).message, /300 tokens/);
  t.regex(apiError(res).message, /resets at \d{4}-\d\d-\d\dT/);
  t.true(Number(res.headers['retry-after']) > 0);
  t.is(res.headers['x-budget-state'], 'exhausted');
  t.is(upstream, undefined);
  const ok = await door().call('tinyco', '/v1/chat/completions', {
    body: chat('hi', { max_tokens: 100 }),
  });
  t.is(ok.res.status, 200, 'a request that fits still goes through');
});

test('downgrade: past what the preferred model costs, the plan fallback serves, and says so', async (t) => {
  const { res, upstream } = await door().call('usdco', '/v1/chat/completions', {
    body: chat('hi', { model: 'gpt-4o', max_tokens: 1000 }),
  });
  t.is(res.status, 200);
  t.is((upstream?.json as { model: string }).model, 'gpt-4o-mini');
  t.is(res.headers['x-budget-state'], 'fallback');
  t.is(res.headers['x-model-requested'], 'gpt-4o');
  t.is(res.headers['x-model-served'], 'gpt-4o-mini');
});

test('clamp: max_tokens lowered to what the budget still covers', async (t) => {
  const { res, upstream } = await door().call('clampco', '/v1/chat/completions', {
    body: chat('hi', { max_tokens: 1000 }),
  });
  t.is(res.status, 200);
  const bound = (upstream?.json as { max_tokens: number }).max_tokens;
  t.true(bound < 1000 && bound >= 5, `clamped to ${bound}`);
  t.is(res.headers['x-budget-state'], 'clamp');
});

test('bad input: each a defined 400, nothing proxied', async (t) => {
  const d = door();
  const cases: Array<[string | object | undefined, string]> = [
    // tenant-auth (validate_json_body) refuses a POST without a body (require_body_methods)
    // and malformed JSON before the meter sees them.
    [undefined, 'empty_body'],
    ['{not json', 'invalid_json'],
    [chat('hi', { model: 'gpt-unknown' }), 'model_not_priced'],
    [chat('hi', { max_tokens: -5 }), 'invalid_max_tokens'],
    [chat('hi', { max_tokens: 10_000_000 }), 'max_tokens_too_large'],
    [chat('hi', { n: 100 }), 'n_too_large'],
    [{ messages: [{ role: 'user', content: 'hi' }] }, 'missing_model'],
  ];
  for (const [body, code] of cases) {
    const { res, upstream } = await d.call('badco', '/v1/chat/completions', {
      method: 'POST',
      ...(body === undefined ? {} : { body }),
      headers: [['content-type', 'application/json']],
    });
    t.is(res.status, 400, code);
    t.is(apiError(res).code, code);
    t.is(upstream, undefined);
  }
});

test('n > 1 reserves for every choice', async (t) => {
  const { res } = await door().call('tinyco', '/v1/chat/completions', {
    body: chat('hi', { max_tokens: 100, n: 3 }),
  });
  t.is(res.status, 429, '3 × 100 completion tokens do not fit in 300');
});

test.serial('an upstream error releases the reservation and bills nothing', async (t) => {
  const d = door();
  d.upstream.configure({
    failure: { mode: 'status', status: 500, count: 1, pathPrefix: '/v1/chat' },
  });
  const failed = await d.call('errco', '/v1/chat/completions', {
    body: chat('hi', { max_tokens: 100 }),
  });
  t.is(failed.res.status, 500);
  const ok = await d.call('errco', '/v1/chat/completions', { body: chat('hi') });
  t.is(ok.res.status, 200);
  const results = await d.usage('errco', (r) => totals(r).n >= 1);
  t.is(totals(results).n, 1, 'only the answered request is in the ledger');
});

test('embeddings are metered on their prompt tokens', async (t) => {
  const d = door();
  const { res, upstream } = await d.call('acme', '/v1/embeddings', {
    body: { model: 'text-embedding-3-small', input: 'a sentence to embed' },
  });
  t.is(res.status, 200);
  t.is((upstream?.json as { max_tokens?: number }).max_tokens, undefined);
  const prompt = (res.json as { usage: Usage }).usage.prompt_tokens;
  const results = await d.usage('acme', (r) => r.some((x) => x.model === 'text-embedding-3-small'));
  t.like(
    results.find((r) => r.model === 'text-embedding-3-small'),
    { input_tokens: prompt, output_tokens: 0 },
  );
});

test('GET requests that are not showback pass unmetered', async (t) => {
  const { res } = await door().call('acme', '/v1/models');
  t.is(res.status, 200);
  t.is(res.headers['x-budget-state'], undefined);
});

test('costs showback: amounts by line item in USD', async (t) => {
  const d = door();
  await d.call('acme', '/v1/chat/completions', { body: chat('cost me something') });
  await d.usage('acme', (r) => r.some((x) => x.model === 'gpt-4o-mini'));
  const start = Math.floor(Date.now() / 1000) - 86_400;
  const { res } = await d.call(
    'acme',
    `/v1/organization/costs?start_time=${start}&group_by=line_item&limit=2`,
  );
  t.is(res.status, 200);
  const page = res.json as {
    object: string;
    data: Array<{
      results: Array<{ amount: { value: number; currency: string }; line_item: string }>;
    }>;
  };
  t.is(page.object, 'page');
  const items = page.data.flatMap((b) => b.results);
  t.true(items.some((i) => i.line_item === 'gpt-4o-mini' && i.amount.value > 0));
  t.true(items.every((i) => i.amount.currency === 'usd'));
});

test('a showback query without start_time is a 400', async (t) => {
  const { res } = await door().call('acme', '/v1/organization/usage/completions');
  t.is(res.status, 400);
  t.is(apiError(res).code, 'invalid_showback_query');
});

test('a cache hit is in the ledger as a hit with 0 upstream tokens, not billed from the cached body', async (t) => {
  const d = door();
  const { res, upstream } = await d.call('cacheco', '/v1/chat/completions', {
    body: chat('asked before'),
    headers: [['x-probe-cache', 'hit']],
  });
  t.is(res.status, 200);
  t.is(res.headers['x-cache-status'], 'Hit');
  t.is(upstream, undefined);
  const start = Math.floor(Date.now() / 1000) - 86_400;
  const page = await eventually(async () => {
    const { res: r } = await d.call(
      'cacheco',
      `/v1/organization/usage/completions?start_time=${start}&limit=2`,
    );
    const results = (r.json as { data: Array<{ results: unknown[] }> }).data.flatMap(
      (b) => b.results,
    );
    return results.length > 0 ? results : undefined;
  });
  t.like(page[0], { input_tokens: 0, output_tokens: 0, num_model_requests: 0 });
  const costs = await d.call('cacheco', `/v1/organization/costs?start_time=${start}&limit=2`);
  const amounts = (
    costs.res.json as { data: Array<{ results: Array<{ amount: { value: number } }> }> }
  ).data.flatMap((b) => b.results.map((x) => x.amount.value));
  t.deepEqual(amounts, [0]);
});

test('metrics: tokens and cost per tenant and model on the metrics port', async (t) => {
  const d = door();
  await d.call('metricco', '/v1/chat/completions', { body: chat('measure me') });
  await d.usage('metricco', (r) => totals(r).n >= 1);
  const text = await eventually(async () => {
    const r = await send(`http://127.0.0.1:${METRICS_PORT}/metrics`);
    return r.text.includes('tenant="metricco"') ? r.text : undefined;
  });
  t.regex(
    text,
    /token_meter_tokens_total\{tenant="metricco",model="gpt-4o-mini",kind="prompt"\} [1-9]/,
  );
  t.regex(text, /token_meter_cost_usd_total\{tenant="metricco",model="gpt-4o-mini"\} [0-9.e-]+/);
  t.regex(text, /token_meter_budget_used_ratio\{tenant="metricco",dimension="tokens"\} [0-9.e-]+/);
  // tinyco is refused at its hard cap by another test of this file.
  await eventually(async () => {
    const r = await send(`http://127.0.0.1:${METRICS_PORT}/metrics`);
    return /token_meter_budget_refusals_total\{tenant="tinyco"\} [1-9]/.test(r.text)
      ? true
      : undefined;
  });
  t.pass();
});
