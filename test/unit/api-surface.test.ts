/**
 * The API surface's pure parts: the path normaliser (against the harness's independent port
 * of kong/tools/uri.lua), the catalogue's verdicts, the query arguments dropped, token-meter's
 * showback match on the same normalisation, and the body checks that came with them.
 */
import test from 'ava';
import { normalizePath as harnessNormalize } from '../../harness/nginx';
import { isGatewayError } from '../../lib/http/errors';
import { API_NAMES, ApiSurfaceMatcher, DEFAULT_API_SURFACE } from '../../lib/http/api-surface';
import { normalisePath } from '../../lib/http/path';
import { parseJsonObject } from '../../plugins/tenant-auth/body';
import { assertGenerationModel, buildModelTier } from '../../plugins/tenant-auth/models';
import { queryArgsToDrop } from '../../plugins/tenant-auth/surface';
import { showbackKind } from '../../plugins/token-meter/showback';
import { readConfig } from '../../lib/schema/config';
import { Schema } from '../../plugins/tenant-auth/schema';

const SPELLINGS = [
  '/v1/files',
  '/v1//files',
  '/v1/./files',
  '/v1/x/../files',
  '/v1/%66iles',
  '/v1/%2e%2E/v1/files',
  '/v1/models/..%2Ffiles',
  '/v1/a/b/../../files/',
  '/v1/chat/completions/../../../../files',
  '/v1/%7euser/%41%42',
  '/v1/%2f%3a%40',
  '..',
  '/',
  '',
];

test('normalisePath is kong/tools/uri.lua normalize(uri, true), as the harness ports it too', (t) => {
  for (const p of SPELLINGS) t.is(normalisePath(p), harnessNormalize(p), p);
  t.is(normalisePath('/v1//files'), '/v1/files');
  t.is(normalisePath('/v1/x/../files'), '/v1/files');
  t.is(normalisePath('/v1/%66iles'), '/v1/files');
  t.is(normalisePath('/v1/models/..%2ffiles'), '/v1/models/..%2Ffiles', 'reserved stay encoded');
  // Idempotent: Kong's escaped upstream URI normalises to the same path.
  for (const p of SPELLINGS) t.is(normalisePath(normalisePath(p)), normalisePath(p), p);
});

const matcher = new ApiSurfaceMatcher('/v1');
const byDefault = new Set(DEFAULT_API_SURFACE);

test('the default surface: the six APIs, each on its own methods', (t) => {
  t.deepEqual(
    [...DEFAULT_API_SURFACE],
    ['chat', 'completions', 'responses', 'embeddings', 'models', 'showback'],
  );
  const served = (m: string, p: string) => {
    const v = matcher.decide(m, p, byDefault);
    return v.kind === 'served' ? { kind: v.kind, api: v.api } : v;
  };
  t.deepEqual(served('POST', '/v1/chat/completions'), { kind: 'served', api: 'chat' });
  t.deepEqual(served('POST', '/v1/CHAT/Completions/'), { kind: 'served', api: 'chat' });
  t.deepEqual(served('POST', '/v1/completions'), { kind: 'served', api: 'completions' });
  t.deepEqual(served('POST', '/v1/responses'), { kind: 'served', api: 'responses' });
  t.deepEqual(served('POST', '/v1/embeddings'), { kind: 'served', api: 'embeddings' });
  t.deepEqual(served('HEAD', '/v1/models/gpt-4o%20'), { kind: 'served', api: 'models' });
  t.deepEqual(served('GET', '/v1//organization/costs'), { kind: 'served', api: 'showback' });
  t.deepEqual(served('GET', '/v1/organization/usage/completions?x=1'), {
    kind: 'served',
    api: 'showback',
  });
});

test('known APIs off the surface are 403, other methods 405 with what the path takes, the rest 404', (t) => {
  const decide = (m: string, p: string) => matcher.decide(m, p, byDefault);
  t.like(decide('GET', '/v1/chat/completions'), {
    kind: 'not_enabled',
    api: 'stored_chat_completions',
  });
  t.like(decide('GET', '/v1/responses/resp_1/input_items'), {
    kind: 'not_enabled',
    api: 'stored_responses',
  });
  t.like(decide('GET', '/v1/x/../Files'), { kind: 'not_enabled', api: 'files' });
  t.like(decide('POST', '/v1/vector_stores/vs_1/files'), {
    kind: 'not_enabled',
    api: 'vector_stores',
  });
  t.deepEqual(decide('DELETE', '/v1/models/gpt-4o'), {
    kind: 'wrong_method',
    allow: ['GET', 'HEAD'],
  });
  t.deepEqual(decide('PUT', '/v1/chat/completions'), { kind: 'wrong_method', allow: ['POST'] });
  for (const p of [
    '/v1/models/..%2Ffiles',
    '/v1/models/a%5Cb',
    '/v1\\files',
    '/v1/organization/projects',
    '/v1/anything',
    '/v2/chat/completions',
    '/chat/completions',
    '/v1/chat/completions/x/y',
    '/v1/files;x',
  ]) {
    t.deepEqual(decide('GET', p), { kind: 'unknown' }, p);
  }
});

test('an opted-in API is served; the base path is where the upstream serves the API', (t) => {
  const files = new Set([...DEFAULT_API_SURFACE, 'files']);
  t.deepEqual(matcher.decide('GET', '/v1/files/file-1/content', files), {
    kind: 'served',
    api: 'files',
    endpoint: '/files/{id}/content',
    id: 'file-1',
    tail: '',
  });
  t.deepEqual(
    matcher.decide('POST', '/v1/vector_stores/vs_1/files/file-2', new Set(['vector_stores'])),
    {
      kind: 'served',
      api: 'vector_stores',
      endpoint: '/vector_stores/{id}/**',
      id: 'vs_1',
      tail: '/files/file-2',
    },
  );
  t.deepEqual(matcher.decide('GET', '/v1/Files/', files), {
    kind: 'served',
    api: 'files',
    endpoint: '/files',
    id: null,
    tail: '',
  });
  const azureLike = new ApiSurfaceMatcher('/openai/v1');
  t.like(azureLike.decide('POST', '/openai/v1/chat/completions', byDefault), {
    kind: 'served',
    api: 'chat',
  });
  t.deepEqual(azureLike.decide('POST', '/v1/chat/completions', byDefault), { kind: 'unknown' });
  const root = new ApiSurfaceMatcher('');
  t.like(root.decide('POST', '/embeddings', byDefault), { kind: 'served', api: 'embeddings' });
  t.true(API_NAMES.includes('stored_responses'));
});

test('query arguments dropped: model in any spelling, credentials; others kept', (t) => {
  const creds = new Set(['apikey', 'api-key', 'authorization']);
  t.deepEqual(
    queryArgsToDrop('model=gpt-4o&Model%5B%5D=o1&limit=2&api_key=k&APIKEY=k&x=%20y', creds),
    ['model', 'Model[]', 'api_key', 'APIKEY'],
  );
  t.deepEqual(queryArgsToDrop('limit=2&after=x&models=1', creds), []);
  t.deepEqual(queryArgsToDrop('', creds), []);
  t.deepEqual(queryArgsToDrop('%zz=1&Authorization=Bearer+x', creds), ['Authorization']);
});

test('showback is matched on the path Kong proxies, in any case, under any prefix', (t) => {
  t.is(showbackKind('/v1//organization/costs'), 'costs');
  t.is(showbackKind('/v1/organization/usage/../costs/'), 'costs');
  t.is(showbackKind('/v1/ORGANIZATION/USAGE/COMPLETIONS'), 'usage');
  t.is(showbackKind('/gw/v1/organization/%63osts'), 'costs');
  t.is(showbackKind('/v1/organization%2Fcosts'), undefined);
  t.is(showbackKind('/v1/organization/costs/x'), undefined);
  t.is(showbackKind('/v1/chat/completions'), undefined);
});

test('a number outside JSON’s safe range is refused with its field, not turned into null or another number', (t) => {
  for (const [text, param] of [
    ['{"model":"m","n":1e400}', 'n'],
    ['{"temperature":-1E+999}', 'temperature'],
    [`{"seed":${'9'.repeat(400)}}`, 'seed'],
    // Past 2^53 − 1 an integer parses to a nearby double: forwarded, it would be another number.
    ['{"seed":9007199254740993}', 'seed'],
    ['{"max_tokens":1e300}', 'max_tokens'],
    ['{"messages":[{"role":"user","content":[{"type":"text","n":-1e16}]}]}', 'n'],
  ] as const) {
    const e = t.throws(() => parseJsonObject(Buffer.from(text), 1 << 20));
    t.true(isGatewayError(e));
    if (isGatewayError(e)) {
      t.is(e.code, 'invalid_number');
      t.is(e.spec.param, param);
    }
  }
  // Safe integers, fractions of any size, and the same text inside a string, are fine.
  t.deepEqual(
    parseJsonObject(
      Buffer.from(
        '{"seed":9007199254740991,"t":1.5e-300,"p":0.1e2,"s":"1e400","big":"9007199254740993"}',
      ),
      1 << 20,
    ),
    { seed: 9007199254740991, t: 1.5e-300, p: 10, s: '1e400', big: '9007199254740993' },
  );
});

test('text-generating APIs refuse an embedding model: the plan’s, or any named embed', (t) => {
  const cfg = readConfig(Schema, {
    plans: {
      free: {
        preferred_model: 'gpt-4o-mini',
        models: ['gpt-4o-mini', 'my-vectors'],
        embedding_model: 'my-vectors',
      },
    },
  });
  const tier = buildModelTier(cfg, 'free', 't1');
  const refuse = (model: unknown, withTier = true) =>
    t.throws(() => assertGenerationModel(model, withTier ? tier : null), {
      message: /embedding model/,
    });
  refuse('my-vectors');
  refuse('text-embedding-3-small', false);
  refuse('Text-Embedding-3-Large', false);
  t.notThrows(() => assertGenerationModel('gpt-4o-mini', tier));
  t.notThrows(() => assertGenerationModel(undefined, tier));
  t.notThrows(() => assertGenerationModel('my-vectors', null), 'untiered: only the name counts');
});
