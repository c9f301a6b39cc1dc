import { readFileSync } from 'node:fs';
import path from 'node:path';
import test from 'ava';
import { parse } from 'yaml';
import { readConfig } from '../../lib/schema/config';
import { checkConfig } from '../../plugins/tenant-auth/ready';
import { Schema } from '../../plugins/tenant-auth/schema';
import { isGatewayError } from '../../lib/http/errors';
import {
  buildModelTier,
  checkModelTiers,
  decideModel,
  endpointKind,
  modelKey,
  modelsAnswer,
  modelsRequest,
  type ModelTier,
} from '../../plugins/tenant-auth/models';
import { ModelTiers } from '../../plugins/tenant-auth/policy';
import { parseTenantId } from '../../lib/tenant/tenant-id';
import { tenantAuthConfig } from '../helpers/tenant-auth-config';

const base = {
  tools_allowed: [],
  persona: null,
  weight: 1,
  fallback_model: null,
  capture: false,
  api_surface: null,
  guard: null,
  store: null,
};
const NONE = { model_aliases: {}, model_policy: null, embedding_model: null };

function config(extra: Record<string, unknown> = {}) {
  return tenantAuthConfig({
    plans: {
      free: {
        ...base,
        ...NONE,
        preferred_model: 'gpt-4o-mini',
        models: ['gpt-4o-mini', 'text-embedding-3-small'],
        embedding_model: 'text-embedding-3-small',
      },
      pro: {
        ...base,
        ...NONE,
        preferred_model: 'gpt-4o',
        fallback_model: 'gpt-4o-mini',
        models: ['gpt-4o', 'gpt-4o-mini'],
        model_aliases: { smart: 'gpt-4o' },
      },
      strict: {
        ...base,
        ...NONE,
        preferred_model: 'gpt-4o-mini',
        models: ['gpt-4o-mini'],
        model_policy: 'reject',
      },
      open: { ...base, ...NONE, preferred_model: 'gpt-4o', models: [] },
    },
    model_aliases: { fast: 'gpt-4o-mini', smart: 'gpt-4o' },
    ...extra,
  });
}

function tier(plan: string, tenant = ''): ModelTier {
  const t = buildModelTier(config(), plan, tenant);
  if (!t) throw new Error('no tier');
  return t;
}

function decide(plan: string, body: Record<string, unknown>, path = '/v1/chat/completions') {
  const b = { ...body };
  const choice = decideModel(b, tier(plan), endpointKind(path), plan);
  return { choice, sent: b.model };
}

test('model names compare ignoring case, surrounding whitespace, format characters and compatibility forms', (t) => {
  for (const v of [
    'GPT-4o',
    ' gpt-4o\t',
    'gpt\u200b-4o',
    '\uff47\uff50\uff54-4o',
    'gpt-4o\u0000',
    'Gpt-4O\n',
  ]) {
    t.is(modelKey(v), 'gpt-4o', JSON.stringify(v));
  }
  t.not(modelKey('gpt-4o-mini'), modelKey('gpt-4o'));
  t.not(modelKey('gpt 4o'), modelKey('gpt-4o'));
});

test('a free tenant asking for the frontier model is served the plan model, however it asks', (t) => {
  for (const model of ['gpt-4o', 'GPT-4O', ' gpt-4o ', 'gpt-4o-2024-08-06', 'openai/gpt-4o', '']) {
    const { choice, sent } = decide('free', { model, messages: [] });
    t.is(sent, 'gpt-4o-mini', model);
    t.deepEqual(choice, { requested: model, served: 'gpt-4o-mini', decision: 'rewritten' });
  }
  // by alias: the top-level alias names a model outside the free tier.
  t.like(decide('free', { model: 'smart' }).choice, {
    served: 'gpt-4o-mini',
    decision: 'rewritten',
  });
  t.like(decide('free', { model: 'Fast' }).choice, { served: 'gpt-4o-mini', decision: 'alias' });
});

test('tier models pass in the tier spelling; aliases and default resolve; no model gets the preferred one', (t) => {
  t.deepEqual(decide('pro', { model: 'gpt-4o' }).choice, {
    requested: 'gpt-4o',
    served: 'gpt-4o',
    decision: 'as_asked',
  });
  t.like(decide('pro', { model: ' GPT-4o-Mini ' }), {
    choice: { served: 'gpt-4o-mini', decision: 'normalised' },
    sent: 'gpt-4o-mini',
  });
  t.like(decide('pro', { model: 'DEFAULT' }).choice, { served: 'gpt-4o', decision: 'alias' });
  t.like(decide('free', { model: 'default' }).choice, { served: 'gpt-4o-mini', decision: 'alias' });
  t.like(decide('pro', { model: 'smart' }).choice, { served: 'gpt-4o', decision: 'alias' });
  for (const body of [{}, { model: null }]) {
    t.like(decide('pro', body), {
      choice: { requested: '', served: 'gpt-4o', decision: 'default' },
      sent: 'gpt-4o',
    });
  }
});

test('embeddings are served by the embedding model; a plan without one refuses what it cannot serve', (t) => {
  const path = '/v1/embeddings';
  t.like(decide('free', { input: 'x' }, path).choice, {
    served: 'text-embedding-3-small',
    decision: 'default',
  });
  t.like(decide('free', { model: 'text-embedding-3-large', input: 'x' }, path).choice, {
    served: 'text-embedding-3-small',
    decision: 'rewritten',
  });
  t.like(decide('free', { model: 'default', input: 'x' }, path).choice, {
    served: 'text-embedding-3-small',
    decision: 'alias',
  });
  for (const body of [{ input: 'x' }, { model: 'text-embedding-3-small', input: 'x' }]) {
    const e = t.throws(() => decide('pro', body, path));
    t.true(isGatewayError(e) && [400, 403].includes(e.status), JSON.stringify(body));
  }
});

test('reject mode: 403 model_not_allowed naming the param and the plan’s models', (t) => {
  const e = t.throws(() => decide('strict', { model: 'gpt-4o', n: 4 }));
  t.true(isGatewayError(e));
  if (!isGatewayError(e)) return;
  t.is(e.status, 403);
  t.like(e.spec, { code: 'model_not_allowed', param: 'model', type: 'permission_error' });
  t.regex(e.message, /gpt-4o-mini/);
  // what the tier holds still passes, in the tier's spelling
  t.like(decide('strict', { model: 'GPT-4o-mini' }).choice, { served: 'gpt-4o-mini' });
});

test('a model that is not a string is a 400 on param model', (t) => {
  for (const model of [42, ['gpt-4o'], { id: 'gpt-4o' }, true]) {
    const e = t.throws(() => decide('pro', { model }));
    t.true(isGatewayError(e) && e.status === 400 && e.spec.param === 'model');
  }
});

test('tenant overrides replace the tier and layer aliases; a plan without models has no tier', (t) => {
  const cfg = config({
    tenants: {
      acme: {
        tools_allowed: null,
        preferred_model: 'gpt-4o-mini',
        fallback_model: null,
        persona: null,
        knowledge_namespace: null,
        weight: null,
        models: ['gpt-4o-mini'],
        model_aliases: { smart: 'gpt-4o-mini' },
        model_policy: 'reject',
        embedding_model: null,
      },
    },
  });
  const tiers = new ModelTiers(cfg);
  const acme = tiers.tierFor('pro', parseTenantId('acme'));
  t.deepEqual(acme?.models, ['gpt-4o-mini']);
  t.is(acme?.mode, 'reject');
  t.is(acme?.aliases.get('smart'), 'gpt-4o-mini');
  t.deepEqual(tiers.tierFor('pro', parseTenantId('globex'))?.models, ['gpt-4o', 'gpt-4o-mini']);
  t.is(tiers.tierFor('open', parseTenantId('globex')), null);
  // inherited from the plan: kept when inside acme's own tier, dropped when outside it
  t.is(acme?.fallback, 'gpt-4o-mini');
  t.is(tiers.tierFor('free', parseTenantId('acme'))?.embedding, null);
  t.is(tiers.tierFor('pro', parseTenantId('globex'))?.fallback, 'gpt-4o-mini');
  t.is(tiers.tierFor('pro', parseTenantId('globex')), tiers.tierFor('pro', parseTenantId('x')));
});

test('config faults: preferred, fallback or embedding model outside the tier, duplicates', (t) => {
  const plan = (p: Record<string, unknown>) =>
    config({ plans: { p: { ...base, ...NONE, preferred_model: 'a', models: ['a'], ...p } } });
  t.notThrows(() => checkModelTiers(plan({})));
  t.throws(() => checkModelTiers(plan({ preferred_model: 'b' })), { message: /preferred_model/ });
  t.throws(() => checkModelTiers(plan({ preferred_model: null })), { message: /preferred_model/ });
  t.throws(() => checkModelTiers(plan({ fallback_model: 'b' })), { message: /fallback_model/ });
  t.throws(() => checkModelTiers(plan({ embedding_model: 'b' })), { message: /embedding_model/ });
  t.throws(() => checkModelTiers(plan({ models: ['a', ' A '] })), { message: /same model/ });
  // a spelling variant of a tier model is accepted and resolved to the tier's spelling
  t.is(buildModelTier(plan({ preferred_model: 'A' }), 'p', '')?.preferred, 'a');
});

test('models paths under any prefix; ids are percent-decoded', (t) => {
  t.deepEqual(modelsRequest('/v1/models'), { kind: 'list' });
  t.deepEqual(modelsRequest('/v1/models/'), { kind: 'list' });
  t.deepEqual(modelsRequest('/openai/v1/models'), { kind: 'list' });
  t.deepEqual(modelsRequest('/v1/models/gpt-4o'), { kind: 'retrieve', id: 'gpt-4o' });
  t.deepEqual(modelsRequest('/v1/models/GPT%2D4o'), { kind: 'retrieve', id: 'GPT-4o' });
  t.deepEqual(modelsRequest('/v1/models/ft:gpt-4o:org/x'), {
    kind: 'retrieve',
    id: 'ft:gpt-4o:org/x',
  });
  for (const p of ['/v1/chat/completions', '/v1/embeddings', '/v1/modelsx', '/v1/mymodels']) {
    t.is(modelsRequest(p), null, p);
  }
});

test('the model list is the tier in OpenAI’s shape; retrieving outside the tier is a 404', (t) => {
  const list = modelsAnswer({ kind: 'list' }, tier('free'));
  t.is(list.status, 200);
  t.deepEqual(list.body, {
    object: 'list',
    data: ['gpt-4o-mini', 'text-embedding-3-small'].map((id) => ({
      id,
      object: 'model',
      created: 0,
      owned_by: 'system',
    })),
  });
  t.like(modelsAnswer({ kind: 'retrieve', id: 'GPT-4o-mini' }, tier('free')), {
    status: 200,
    body: { id: 'gpt-4o-mini', object: 'model' },
  });
  const missing = modelsAnswer({ kind: 'retrieve', id: 'gpt-4o' }, tier('free'));
  t.is(missing.status, 404);
  t.like(missing.body, { error: { code: 'model_not_found', param: 'model' } });
  t.like(modelsAnswer({ kind: 'retrieve', id: 'default' }, tier('pro')), {
    body: { id: 'gpt-4o' },
  });
});

test("kong.yml's example plans each show a tier: free the small model only, pro both", (t) => {
  const doc = parse(readFileSync(path.join(__dirname, '..', '..', 'kong.yml'), 'utf8')) as {
    plugins: Array<{ name: string; config: Record<string, unknown> }>;
  };
  const entry = doc.plugins.find((p) => p.name === 'tenant-auth');
  const cfg = readConfig(Schema, entry?.config);
  t.notThrows(() => checkConfig(cfg));
  const tiers = new ModelTiers(cfg);
  const chat = (plan: string) =>
    tiers.tierFor(plan, parseTenantId('someone'))?.models.filter((m) => !m.includes('embedding'));
  t.deepEqual(chat('free'), ['gpt-4o-mini']);
  t.deepEqual(chat('pro'), ['gpt-4o', 'gpt-4o-mini']);
});
