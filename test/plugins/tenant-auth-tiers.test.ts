/**
 * Model tiers end to end (tenant-auth → tenant-cache → token-meter → upstream): the model a
 * plan may use, aliases, the default model, rewrite and reject, the per-tenant model list,
 * and the OpenAI SDK against it. Runs on the harness and on the real Kong (GATEWAY=kong).
 */
import test from 'ava';
import OpenAI from 'openai';
import { apiError } from '../helpers/frontdoor';
import { sharedTierDoor, uniqueChat } from '../helpers/tier-door';

const door = sharedTierDoor(test);

function upstreamModel(u: { json?: unknown } | undefined): unknown {
  return (u?.json as { model?: unknown } | undefined)?.model;
}

test('a free tenant asking for the frontier model is served the plan’s model, and told so', async (t) => {
  const { res, upstream } = await door().call('free1', '/v1/chat/completions', {
    body: uniqueChat('gpt-4o'),
  });
  t.is(res.status, 200, res.text);
  t.is(upstreamModel(upstream), 'gpt-4o-mini');
  t.is((res.json as { model: string }).model, 'gpt-4o-mini');
  t.is(res.headers['x-model-requested'], 'gpt-4o');
  t.is(res.headers['x-model-served'], 'gpt-4o-mini');
});

test('a pro tenant gets the frontier model as asked; its preferred model when it names none', async (t) => {
  const asked = await door().call('pro1', '/v1/chat/completions', { body: uniqueChat('gpt-4o') });
  t.is(asked.res.status, 200, asked.res.text);
  t.is(upstreamModel(asked.upstream), 'gpt-4o');
  t.is(asked.res.headers['x-model-served'], 'gpt-4o');

  const body = uniqueChat(undefined);
  delete (body as { model?: unknown }).model;
  const none = await door().call('pro1', '/v1/chat/completions', { body });
  t.is(none.res.status, 200, none.res.text);
  t.is(upstreamModel(none.upstream), 'gpt-4o');
  t.is(none.res.headers['x-model-requested'], '(none)');
  t.is(none.res.headers['x-model-served'], 'gpt-4o');
});

test('aliases and spelling variants resolve to the tier’s spelling', async (t) => {
  for (const [model, served] of [
    ['default', 'gpt-4o'],
    ['fast', 'gpt-4o-mini'],
    ['smart', 'gpt-4o'],
    [' GPT-4o-Mini ', 'gpt-4o-mini'],
  ]) {
    const { res, upstream } = await door().call('pro2', '/v1/chat/completions', {
      body: uniqueChat(model),
    });
    t.is(res.status, 200, `${model}: ${res.text}`);
    t.is(upstreamModel(upstream), served, model);
    t.is(res.headers['x-model-served'], served, model);
    // HTTP drops a header value's surrounding whitespace.
    t.is(res.headers['x-model-requested'], model?.trim());
  }
});

test('reject mode: a model outside the tier is a 403 model_not_allowed and nothing goes upstream', async (t) => {
  const { res, upstream } = await door().call('free2', '/strict/v1/chat/completions', {
    body: uniqueChat('gpt-4o'),
  });
  t.is(res.status, 403);
  t.like(apiError(res), { code: 'model_not_allowed', param: 'model', type: 'permission_error' });
  t.regex(apiError(res).message, /gpt-4o-mini/);
  t.is(upstream, undefined);
  const ok = await door().call('free2', '/strict/v1/chat/completions', {
    body: uniqueChat('gpt-4o-mini'),
  });
  t.is(ok.res.status, 200, ok.res.text);
});

test('a streamed answer carries the model headers and comes from the served model', async (t) => {
  const { res, upstream } = await door().call('free3', '/v1/chat/completions', {
    body: uniqueChat('gpt-4o', { stream: true }),
  });
  t.is(res.status, 200, res.text);
  t.regex(String(res.headers['content-type']), /text\/event-stream/);
  t.is(upstreamModel(upstream), 'gpt-4o-mini');
  t.is(res.headers['x-model-requested'], 'gpt-4o');
  t.is(res.headers['x-model-served'], 'gpt-4o-mini');
  t.regex(res.text, /"model":"gpt-4o-mini"/);
  t.notRegex(res.text, /"model":"gpt-4o"/);
});

test('embeddings outside the tier are served by the plan’s embedding model', async (t) => {
  const { res, upstream } = await door().call('free3', '/v1/embeddings', {
    body: { model: 'text-embedding-3-large', input: 'hello' },
  });
  t.is(res.status, 200, res.text);
  t.is(upstreamModel(upstream), 'text-embedding-3-small');
  t.is(res.headers['x-model-served'], 'text-embedding-3-small');
});

test('a Responses API body and a batch of n are decided like any other', async (t) => {
  const responses = await door().call('free4', '/v1/responses', {
    body: { model: 'gpt-4o', input: 'hello', max_output_tokens: 16 },
  });
  t.is(upstreamModel(responses.upstream), 'gpt-4o-mini');
  t.is(responses.res.headers['x-model-served'], 'gpt-4o-mini');

  const batch = await door().call('free4', '/v1/chat/completions', {
    body: uniqueChat('gpt-4o', { n: 3 }),
  });
  t.is(batch.res.status, 200, batch.res.text);
  t.like(batch.upstream?.json, { model: 'gpt-4o-mini', n: 3 });
});

test('a body that cannot be parsed is still refused on a tiered plan (fail closed)', async (t) => {
  const { res, upstream } = await door().call('free5', '/v1/chat/completions', {
    body: '{"model": "gpt-4o", ',
    headers: [['content-type', 'application/json']],
  });
  t.is(res.status, 400);
  t.is(apiError(res).code, 'invalid_json');
  t.is(upstream, undefined);
  const notString = await door().call('free5', '/v1/chat/completions', {
    body: uniqueChat(['gpt-4o']),
  });
  t.is(notString.res.status, 400);
  t.like(apiError(notString.res), { code: 'invalid_model', param: 'model' });
});

test('GET /v1/models lists the tenant’s tier, answered by the gateway', async (t) => {
  const free = await door().call('free6', '/v1/models');
  t.is(free.res.status, 200, free.res.text);
  t.is(free.upstream, undefined, 'never forwarded');
  t.deepEqual(free.res.json, {
    object: 'list',
    data: ['gpt-4o-mini', 'text-embedding-3-small'].map((id) => ({
      id,
      object: 'model',
      created: 0,
      owned_by: 'system',
    })),
  });
  const pro = await door().call('pro3', '/v1/models');
  t.deepEqual(
    (pro.res.json as { data: Array<{ id: string }> }).data.map((m) => m.id),
    ['gpt-4o', 'gpt-4o-mini', 'text-embedding-3-small'],
  );
  const vip = await door().call('vip', '/v1/models');
  t.deepEqual(
    (vip.res.json as { data: Array<{ id: string }> }).data.map((m) => m.id),
    ['gpt-4o', 'gpt-4o-mini'],
    'a tenant override replaces its plan’s tier',
  );
});

test('GET /v1/models/{id}: the tier’s models and aliases; anything else a 404; other methods 405', async (t) => {
  const ok = await door().call('free6', '/v1/models/gpt-4o-mini');
  t.is(ok.res.status, 200);
  t.like(ok.res.json, { id: 'gpt-4o-mini', object: 'model' });
  const missing = await door().call('free6', '/v1/models/gpt-4o');
  t.is(missing.res.status, 404);
  t.like(apiError(missing.res), { code: 'model_not_found', param: 'model' });
  t.is(missing.upstream, undefined);
  const del = await door().call('free6', '/v1/models/gpt-4o-mini', { method: 'DELETE' });
  t.is(del.res.status, 405);
  t.is(del.res.headers.allow, 'GET, HEAD');
  t.is(del.upstream, undefined);
});

test('a plan without a tier is not touched: its models list is the upstream’s, its model as asked', async (t) => {
  const list = await door().call('open1', '/v1/models');
  t.is(list.res.status, 200);
  t.truthy(list.upstream, 'forwarded to the upstream');
  t.true((list.res.json as { data: unknown[] }).data.length > 3);
  const { res, upstream } = await door().call('open1', '/v1/chat/completions', {
    body: uniqueChat('gpt-4o'),
  });
  t.is(res.status, 200);
  t.is(upstreamModel(upstream), 'gpt-4o');
});

test('the OpenAI SDK lists each tenant’s own models', async (t) => {
  const client = (tenant: string) =>
    new OpenAI({
      apiKey: 'unused',
      baseURL: `${door().url}/v1`,
      defaultHeaders: { apikey: `${tenant}-key` },
      maxRetries: 0,
    });
  const ids = async (tenant: string) => {
    const out: string[] = [];
    for await (const m of client(tenant).models.list()) out.push(m.id);
    return out;
  };
  t.deepEqual(await ids('free7'), ['gpt-4o-mini', 'text-embedding-3-small']);
  t.deepEqual(await ids('pro4'), ['gpt-4o', 'gpt-4o-mini', 'text-embedding-3-small']);
  const m = await client('pro4').models.retrieve('gpt-4o');
  t.is(m.id, 'gpt-4o');
  const e = await t.throwsAsync(client('free7').models.retrieve('gpt-4o'));
  t.true(e instanceof OpenAI.NotFoundError);
  const completion = await client('free7').chat.completions.create({
    model: 'gpt-4o',
    messages: [{ role: 'user', content: 'sdk tier test' }],
  });
  t.is(completion.model, 'gpt-4o-mini');
});
