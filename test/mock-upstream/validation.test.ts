import test from 'ava';
import { postJson, startMock, type OpenAIError } from './_helpers';

const cases: Array<{
  name: string;
  path: string;
  body: unknown;
  param: string | null;
  code: string | null;
  message: RegExp;
}> = [
  {
    name: 'unparseable JSON',
    path: '/v1/chat/completions',
    body: '{"model": "gpt-4o", ',
    param: null,
    code: null,
    message: /could not parse the JSON body/,
  },
  {
    name: 'a JSON body that is not an object',
    path: '/v1/chat/completions',
    body: '[1,2]',
    param: null,
    code: null,
    message: /could not parse the JSON body/,
  },
  {
    name: 'missing model',
    path: '/v1/chat/completions',
    body: { messages: [{ role: 'user', content: 'hi' }] },
    param: null,
    code: null,
    message: /you must provide a model parameter/,
  },
  {
    name: 'missing messages',
    path: '/v1/chat/completions',
    body: { model: 'gpt-4o' },
    param: 'messages',
    code: 'missing_required_parameter',
    message: /Missing required parameter: 'messages'/,
  },
  {
    name: 'messages not an array',
    path: '/v1/chat/completions',
    body: { model: 'gpt-4o', messages: 'hi' },
    param: 'messages',
    code: 'invalid_type',
    message: /Invalid type for 'messages'/,
  },
  {
    name: 'empty messages',
    path: '/v1/chat/completions',
    body: { model: 'gpt-4o', messages: [] },
    param: 'messages',
    code: 'empty_array',
    message: /empty array/,
  },
  {
    name: 'unknown role',
    path: '/v1/chat/completions',
    body: { model: 'gpt-4o', messages: [{ role: 'wizard', content: 'hi' }] },
    param: 'messages[0].role',
    code: 'invalid_value',
    message: /Supported values are/,
  },
  {
    name: 'user message without content',
    path: '/v1/chat/completions',
    body: { model: 'gpt-4o', messages: [{ role: 'user' }] },
    param: 'messages[0].content',
    code: 'missing_required_parameter',
    message: /messages\[0\]\.content/,
  },
  {
    name: 'max_tokens below 1',
    path: '/v1/chat/completions',
    body: { model: 'gpt-4o', messages: [{ role: 'user', content: 'hi' }], max_tokens: 0 },
    param: 'max_tokens',
    code: 'integer_below_min_value',
    message: /integer below minimum value/,
  },
  {
    name: 'stream_options without stream',
    path: '/v1/chat/completions',
    body: {
      model: 'gpt-4o',
      messages: [{ role: 'user', content: 'hi' }],
      stream_options: { include_usage: true },
    },
    param: 'stream_options',
    code: 'invalid_value',
    message: /only allowed when 'stream' is enabled/,
  },
  {
    name: 'embeddings without input',
    path: '/v1/embeddings',
    body: { model: 'text-embedding-3-small' },
    param: 'input',
    code: 'missing_required_parameter',
    message: /Missing required parameter: 'input'/,
  },
  {
    name: 'embeddings with an empty string',
    path: '/v1/embeddings',
    body: { model: 'text-embedding-3-small', input: '' },
    param: 'input',
    code: 'invalid_value',
    message: /empty string/,
  },
  {
    name: 'embeddings with a bad encoding_format',
    path: '/v1/embeddings',
    body: { model: 'text-embedding-3-small', input: 'x', encoding_format: 'hex' },
    param: 'encoding_format',
    code: 'invalid_value',
    message: /Supported values are: 'float' and 'base64'/,
  },
  {
    name: 'embeddings without model',
    path: '/v1/embeddings',
    body: { input: 'x' },
    param: null,
    code: null,
    message: /you must provide a model parameter/,
  },
];

for (const c of cases) {
  test(`400 invalid_request_error for ${c.name}`, async (t) => {
    const mock = await startMock(t);
    const res = await postJson(`${mock.url}${c.path}`, c.body);
    t.is(res.status, 400);
    const { error } = res.body as OpenAIError;
    t.is(error.type, 'invalid_request_error');
    t.is(error.param, c.param);
    t.is(error.code, c.code);
    t.regex(error.message, c.message);
  });
}

test('unknown paths and wrong methods get an OpenAI-style 404', async (t) => {
  const mock = await startMock(t);
  const unknown = await postJson(`${mock.url}/v1/completions-of-the-future`, {});
  t.is(unknown.status, 404);
  t.deepEqual(unknown.body, {
    error: {
      message: 'Invalid URL (POST /v1/completions-of-the-future)',
      type: 'invalid_request_error',
      param: null,
      code: null,
    },
  });
  // GET /v1/chat/completions is the stored completions list (mock-upstream/objects.ts).
  const wrongMethod = await fetch(`${mock.url}/v1/embeddings`);
  t.is(wrongMethod.status, 404);
  t.is(
    ((await wrongMethod.json()) as OpenAIError).error.message,
    'Invalid URL (GET /v1/embeddings)',
  );
});
