/**
 * Adversarial model-tier cases: a free tenant trying every way to reach the frontier model
 * or to see another plan's models, and the plugins after tenant-auth (token-meter,
 * tenant-cache) never pricing or serving across the tier decision.
 */
import test from 'ava';
import { apiError, eventually } from '../helpers/frontdoor';
import { sharedTierDoor, uniqueChat } from '../helpers/tier-door';

const door = sharedTierDoor(test);
const FRONTIER = 'gpt-4o';

/** Every way the issue names (and a few more) of asking for the frontier model in a body. */
const FRONTIER_ASKS: Array<[string, string, Record<string, unknown>]> = [
  ['by name', '/v1/chat/completions', uniqueChat('gpt-4o')],
  ['by alias', '/v1/chat/completions', uniqueChat('smart')],
  ['by alias in another case', '/v1/chat/completions', uniqueChat(' SMART ')],
  ['by case variant', '/v1/chat/completions', uniqueChat('GPT-4O')],
  ['with whitespace', '/v1/chat/completions', uniqueChat('\tgpt-4o \n')],
  ['in fullwidth letters', '/v1/chat/completions', uniqueChat('\uff47\uff50\uff54-4o')],
  ['with a zero-width space', '/v1/chat/completions', uniqueChat('gpt-4o\u200b')],
  ['as a dated snapshot', '/v1/chat/completions', uniqueChat('gpt-4o-2024-08-06')],
  ['with a provider prefix', '/v1/chat/completions', uniqueChat('openai/gpt-4o')],
  ['inside a Responses API body', '/v1/responses', { model: 'gpt-4o', input: 'hi' }],
  ['in a batch of n', '/v1/chat/completions', uniqueChat('gpt-4o', { n: 4 })],
  ['streamed', '/v1/chat/completions', uniqueChat('gpt-4o', { stream: true })],
  ['as legacy completions', '/v1/completions', { model: 'gpt-4o', prompt: ['a', 'b'] }],
  ['via a route prefix', '/v1/../v1/chat/completions', uniqueChat('gpt-4o')],
];

for (const [how, path, body] of FRONTIER_ASKS) {
  test(`a free tenant asking for the frontier model ${how} is served the small model`, async (t) => {
    const { res, upstream } = await door().call('free8', path, { body });
    t.truthy(upstream, `reached the upstream (${res.status} ${res.text})`);
    t.is((upstream?.json as { model?: unknown }).model, 'gpt-4o-mini');
    t.notRegex(upstream?.rawBody.toString('utf8') ?? '', /gpt-4o(?!-mini)/i);
    t.is(res.headers['x-model-served'], 'gpt-4o-mini');
  });

  test(`reject mode: the frontier model ${how} is refused 403, nothing upstream`, async (t) => {
    const { res, upstream } = await door().call('free8', `/strict${path}`, { body });
    t.is(res.status, 403, res.text);
    t.like(apiError(res), { code: 'model_not_allowed', param: 'model' });
    t.is(upstream, undefined);
  });
}

test('a duplicate `model` key cannot smuggle the frontier model past the check', async (t) => {
  for (const raw of [
    '{"model":"gpt-4o-mini","model":"gpt-4o","messages":[{"role":"user","content":"dup a"}]}',
    '{"model":"gpt-4o","model":"gpt-4o-mini","messages":[{"role":"user","content":"dup b"}]}',
  ]) {
    const { res, upstream } = await door().call('free8', '/v1/chat/completions', {
      body: raw,
      headers: [['content-type', 'application/json']],
    });
    t.is(res.status, 200, res.text);
    // Upstreams differ on which duplicate wins: what goes upstream has one, the checked one.
    t.notRegex(upstream?.rawBody.toString('utf8') ?? '', /gpt-4o(?!-mini)/);
  }
});

test('a tenant override does not leak: another free tenant still cannot use the frontier model', async (t) => {
  const vip = await door().call('vip', '/v1/chat/completions', { body: uniqueChat(FRONTIER) });
  t.is((vip.upstream?.json as { model?: unknown }).model, FRONTIER);
  const other = await door().call('free9', '/v1/chat/completions', { body: uniqueChat(FRONTIER) });
  t.is((other.upstream?.json as { model?: unknown }).model, 'gpt-4o-mini');
});

const LIST_PATHS = [
  '/v1/models',
  '/v1/models/',
  '/v1//models',
  '/v1/./models',
  '/v1/x/../models',
  '/v1/MODELS',
  '/v1/%6Dodels',
  '/v1/models?limit=100',
];

for (const path of LIST_PATHS) {
  test(`a free tenant's model list (${path}) never shows another plan's models`, async (t) => {
    const { res, upstream } = await door().call('free9', path);
    t.is(res.status, 200, res.text);
    t.is(upstream, undefined, 'answered by the gateway, never the upstream’s full list');
    const ids = (res.json as { data: Array<{ id: string }> }).data.map((m) => m.id);
    t.deepEqual(ids, ['gpt-4o-mini', 'text-embedding-3-small']);
  });
}

for (const id of [
  'gpt-4o',
  'GPT-4o',
  'gpt-4o%20',
  'smart',
  'gpt-4o-2024-08-06',
  'gpt-4o-mini/../gpt-4o',
]) {
  test(`a free tenant cannot retrieve a model outside its tier: ${id}`, async (t) => {
    const { res, upstream } = await door().call('free9', `/v1/models/${id}`);
    t.is(res.status, 404, res.text);
    t.is(apiError(res).code, 'model_not_found');
    t.is(upstream, undefined);
  });
}

test('the meter prices the served model: the ledger of a rewritten request says gpt-4o-mini', async (t) => {
  const { res } = await door().call('free1', '/v1/chat/completions', {
    body: uniqueChat(FRONTIER, { max_tokens: 8 }),
  });
  t.is(res.status, 200, res.text);
  t.is(res.headers['x-model-requested'], FRONTIER);
  t.is(res.headers['x-model-served'], 'gpt-4o-mini');
  t.is(res.headers['x-budget-state'], 'ok');
  const rows = await door().usage('free1', (r) => r.length > 0);
  t.true(rows.length > 0);
  t.deepEqual([...new Set(rows.map((r) => r.model))], ['gpt-4o-mini']);
});

test('the cache never serves a tier-rewritten answer under another tier, even to the same tenant', async (t) => {
  const body = uniqueChat(FRONTIER);
  // The same tenant, first on the free plan (its JWT says so): rewritten, then cached.
  const first = await door().call('shifty', '/jwt/v1/chat/completions', { body, jwtPlan: 'free' });
  t.is(first.res.status, 200, first.res.text);
  t.is((first.res.json as { model: string }).model, 'gpt-4o-mini');
  await eventually(async () => {
    const again = await door().call('shifty', '/jwt/v1/chat/completions', {
      body,
      jwtPlan: 'free',
    });
    return again.res.headers['x-cache-status'] === 'HIT' ? true : undefined;
  }, 10_000);
  // Now on pro: the same body must reach the frontier model, not the free tier's answer.
  const pro = await door().call('shifty', '/jwt/v1/chat/completions', { body, jwtPlan: 'pro' });
  t.is(pro.res.status, 200, pro.res.text);
  t.not(pro.res.headers['x-cache-status'], 'HIT');
  t.is((pro.res.json as { model: string }).model, FRONTIER);
  t.is((pro.upstream?.json as { model?: unknown }).model, FRONTIER);
  // Another tenant on the free plan, same body: its own miss, never the first tenant's entry.
  const other = await door().call('drifty', '/jwt/v1/chat/completions', {
    body,
    jwtPlan: 'free',
  });
  t.not(other.res.headers['x-cache-status'], 'HIT');
  t.truthy(other.upstream);
});
