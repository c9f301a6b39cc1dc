/**
 * The API surface (issue 21, part 1) on the repo's own kong.yml chain, on either gateway:
 * every API a plan does not serve is refused before any upstream call, however its path is
 * spelt or whatever the method, counted by the mock upstream's request log; the APIs it serves
 * still reach the upstream (positive controls). Also the small items found with it: a GET with
 * a body, `"n": 1e400`, chat on the embedding model, `?apikey=` and `?model=` in the query.
 *
 * The route accepts every method here (kong.yml's takes GET and POST only, Kong answers the
 * rest with its own 404): the gate itself must refuse a DELETE or a PUT.
 */
import { randomUUID } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import test from 'ava';
import type { ReceivedRequest } from '../../mock-upstream/index';
import { Closers, collectSent, eventually, type Sent } from '../helpers/frontdoor';
import { startKongYmlDoor, type KongYmlDoor } from '../helpers/kong-yml-door';

const closers = new Closers();
let door: KongYmlDoor;

/** globex (free) is served the default surface; `filer` (free too) also files and stored chats. */
const GLOBEX = 'globex-demo-key';
const FILER = 'filer-surface-key';

test.before(async () => {
  door = await startKongYmlDoor(
    closers.add,
    (p) => {
      if (p.name === 'tenant-ratelimit' && p.config) {
        // This file sends a few dozen requests as globex in a minute: not a rate-limit test.
        const roomy = { requests_per_minute: 6000, request_burst: 1000, max_concurrent: 16 };
        const plans = p.config.plans as Record<string, Record<string, unknown>>;
        p.config.plans = { ...plans, free: { ...plans.free, ...roomy } };
      }
      if (p.name !== 'tenant-auth' || !p.config) return;
      const tenants = (p.config.tenants ?? {}) as Record<string, unknown>;
      p.config.tenants = {
        ...tenants,
        filer: {
          // The surface is what this file tests; whether the provider may keep filer's objects
          // on a shared key is test/isolation/provider-state.test.ts's (here: vouched for).
          store: 'on',
          api_surface: [
            'chat',
            'embeddings',
            'models',
            'showback',
            'files',
            'stored_chat_completions',
          ],
        },
      };
    },
    [
      {
        username: 'filer-app',
        custom_id: 'filer',
        tags: ['plan:free'],
        keyauth_credentials: [{ key: FILER }],
      },
    ],
    // No Milvus on this path: the gate runs first, and chat answers need no knowledge here.
    ['retrieval-injector'],
    { service: { routes: [{ name: 'ai', paths: ['/v1'], strip_path: false }] } },
  );
});

test.after.always(() => closers.closeAll());

interface Probe {
  res: Sent;
  /** What the mock upstream received for this request (by its x-test-id), in order. */
  upstream: ReceivedRequest[];
}

/**
 * Sends `rawPath` exactly as written (no URL parsing: dot segments, `\` and `//` reach the
 * gateway as they are) and returns what the upstream received for it.
 */
async function probe(
  key: string | null,
  method: string,
  rawPath: string,
  body?: string | object,
  extraHeaders: Record<string, string> = {},
): Promise<Probe> {
  const id = randomUUID();
  const url = new URL(door.url);
  const payload =
    body === undefined ? undefined : typeof body === 'string' ? body : JSON.stringify(body);
  const headers: Record<string, string> = { 'x-test-id': id, ...extraHeaders };
  if (key !== null) headers.apikey = key;
  if (payload !== undefined) {
    headers['content-type'] ??= 'application/json';
    headers['content-length'] = String(Buffer.byteLength(payload));
  }
  const res = await new Promise<Sent>((resolve, reject) => {
    const req = http.request(
      { hostname: url.hostname, port: url.port, path: rawPath, method, headers, agent: false },
      (r) => collectSent(r).then(resolve, reject),
    );
    req.on('error', reject);
    req.end(payload);
  });
  const upstream = door.upstream.received.filter((x) => x.headers['x-test-id'] === id);
  return { res, upstream };
}

interface ApiError {
  message: string;
  type: string;
  code: string;
  request_id?: string;
}

function apiError(res: Sent): ApiError {
  return (res.json as { error: ApiError }).error;
}

/** A refusal of the gate: the code, an OpenAI-shaped body naming the request, nothing upstream. */
function refused(t: import('ava').ExecutionContext, p: Probe, status: number, code: string) {
  t.is(p.res.status, status, p.res.text);
  const e = apiError(p.res);
  t.is(e.code, code);
  t.is(typeof e.message, 'string');
  t.is(e.request_id, String(p.res.headers['x-kong-request-id']));
  t.deepEqual(p.upstream, [], 'never reached the upstream');
}

const chatBody = (content: string, extra: Record<string, unknown> = {}) => ({
  model: 'gpt-4o-mini',
  messages: [{ role: 'user', content }],
  max_tokens: 8,
  ...extra,
});

// Files, the stored chat completions list, a stored response, the provider's organization
// APIs and paths of no API at all, in every spelling Kong would normalise into them (and a few
// it would not, which an upstream might): all refused for globex, before the upstream.
const REFUSED: Array<[string, string, number, string]> = [
  ['GET', '/v1/files', 403, 'api_not_enabled'],
  ['GET', '/v1//files', 403, 'api_not_enabled'],
  ['GET', '/v1/./files', 403, 'api_not_enabled'],
  ['GET', '/v1/models/../files', 403, 'api_not_enabled'],
  ['GET', '/v1/chat/completions/../../files', 403, 'api_not_enabled'],
  ['GET', '/v1/%66iles', 403, 'api_not_enabled'],
  ['GET', '/v1/%2e/files', 403, 'api_not_enabled'],
  ['GET', '/v1/FILES/', 403, 'api_not_enabled'],
  ['GET', '/v1/files?purpose=batch', 403, 'api_not_enabled'],
  ['GET', '/v1/files/file-abc/content', 403, 'api_not_enabled'],
  ['DELETE', '/v1/files/file-abc', 403, 'api_not_enabled'],
  ['POST', '/v1/files', 403, 'api_not_enabled'],
  ['GET', '/v1/models/..%2Ffiles', 404, 'unknown_api'],
  ['GET', '/v1/models/x%2F..%2F..%2Ffiles', 404, 'unknown_api'],
  ['GET', '/v1/models%5C..%5Cfiles', 404, 'unknown_api'],
  ['GET', '/v1\\files', 404, 'unknown_api'],
  ['GET', '/v1/files;x=1', 404, 'unknown_api'],
  ['GET', '/v1/chat/completions', 403, 'api_not_enabled'],
  ['GET', '/v1/chat/completions?limit=100', 403, 'api_not_enabled'],
  ['GET', '/v1//chat//completions/chatcmpl-1/messages', 403, 'api_not_enabled'],
  ['GET', '/v1/responses/resp_1', 403, 'api_not_enabled'],
  ['GET', '/v1/responses/resp_1/input_items', 403, 'api_not_enabled'],
  ['DELETE', '/v1/responses/resp_1', 403, 'api_not_enabled'],
  ['POST', '/v1/batches', 403, 'api_not_enabled'],
  ['GET', '/v1/vector_stores/vs_1/files', 403, 'api_not_enabled'],
  ['GET', '/v1/organization/projects', 404, 'unknown_api'],
  ['GET', '/v1/organization/usage/embeddings', 404, 'unknown_api'],
  ['GET', '/v1/organization/admin_api_keys', 404, 'unknown_api'],
  ['GET', '/v1/', 404, 'unknown_api'],
  ['GET', '/v1', 404, 'unknown_api'],
  ['POST', '/v1/anything', 404, 'unknown_api'],
  ['POST', '/v1/chat/completions/x/y', 404, 'unknown_api'],
  ['DELETE', '/v1/models/gpt-4o-mini', 405, 'method_not_allowed'],
  ['PUT', '/v1/chat/completions', 405, 'method_not_allowed'],
  ['PATCH', '/v1/embeddings', 405, 'method_not_allowed'],
  ['OPTIONS', '/v1/chat/completions', 405, 'method_not_allowed'],
  ['DELETE', '/v1/chat/completions', 405, 'method_not_allowed'],
];

for (const [method, raw, status, code] of REFUSED) {
  test(`refused before the upstream: ${method} ${raw}`, async (t) => {
    const body =
      method === 'POST' || method === 'PUT' || method === 'PATCH' ? chatBody('x') : undefined;
    const p = await probe(GLOBEX, method, raw, body);
    refused(t, p, status, code);
    if (status === 405) t.truthy(p.res.headers.allow, 'Allow names what the path takes');
  });
}

test('positive control: files and stored chat completions reach the upstream for a tenant that has them', async (t) => {
  // The same request globex is refused: served for filer, with the gateway's tenant headers.
  const files = await probe(FILER, 'GET', '/v1//files');
  t.is(files.upstream.length, 1, files.res.text);
  t.is(files.upstream[0]?.path, '/v1/files');
  t.is(files.upstream[0]?.headers['x-tenant-id'], 'filer');
  const stored = await probe(FILER, 'GET', '/v1/chat/completions?limit=2');
  t.is(stored.upstream.length, 1, stored.res.text);
  t.is(stored.upstream[0]?.method, 'GET');
  // And globex, on the same paths, is refused (the cases above, once more side by side).
  refused(t, await probe(GLOBEX, 'GET', '/v1//files'), 403, 'api_not_enabled');
});

test('positive control: the default surface is served (chat, completions, responses, embeddings, models, showback)', async (t) => {
  const chat = await probe(GLOBEX, 'POST', '/v1/chat/completions', chatBody(randomUUID()));
  t.is(chat.res.status, 200, chat.res.text);
  t.is(chat.upstream.length, 1);
  const doubled = await probe(GLOBEX, 'POST', '/v1//chat/./completions', chatBody(randomUUID()));
  t.is(doubled.res.status, 200, doubled.res.text);
  t.is(doubled.upstream[0]?.path, '/v1/chat/completions');
  const completions = await probe(GLOBEX, 'POST', '/v1/completions', {
    model: 'gpt-4o-mini',
    prompt: 'hi',
    max_tokens: 4,
  });
  t.is(completions.upstream.length, 1, completions.res.text);
  const responses = await probe(GLOBEX, 'POST', '/v1/responses', {
    model: 'gpt-4o-mini',
    input: 'hi',
    max_output_tokens: 16,
  });
  t.is(responses.upstream.length, 1, responses.res.text);
  const embeddings = await probe(GLOBEX, 'POST', '/v1/embeddings', {
    model: 'text-embedding-3-small',
    input: 'hello',
  });
  t.is(embeddings.res.status, 200, embeddings.res.text);
  t.is(embeddings.upstream.length, 1);
  // Models and showback are the gateway's own answers: served, and still nothing upstream.
  const models = await probe(GLOBEX, 'GET', '/v1/models');
  t.is(models.res.status, 200, models.res.text);
  t.deepEqual(models.upstream, []);
  const since = Math.floor(Date.now() / 1000) - 3600;
  for (const raw of [
    `/v1/organization/costs?start_time=${since}`,
    `/v1//organization/costs?start_time=${since}`,
    `/v1/organization/./costs?start_time=${since}`,
    `/v1/ORGANIZATION/USAGE/COMPLETIONS?start_time=${since}`,
  ]) {
    const p = await probe(GLOBEX, 'GET', raw);
    t.is(p.res.status, 200, `${raw}: ${p.res.text}`);
    t.is((p.res.json as { object?: string }).object, 'page', raw);
    t.deepEqual(p.upstream, [], `${raw} is answered by showback, never by the provider`);
  }
});

test('a GET with a JSON body: refused on the chat path; where a GET is served, no body goes upstream', async (t) => {
  const body = chatBody('rewrite me', { messages: [{ role: 'system', content: 'x' }] });
  refused(t, await probe(GLOBEX, 'GET', '/v1/chat/completions', body), 403, 'api_not_enabled');
  const p = await probe(FILER, 'GET', '/v1/chat/completions', body);
  t.is(p.upstream.length, 1, p.res.text);
  const got = p.upstream[0] as ReceivedRequest;
  t.is(got.rawBody.length, 0, 'no body upstream');
  t.is(got.json, undefined);
  t.is(p.res.headers['x-budget-state'], undefined, 'not metered as chat');
  // Control: the same body as a POST is a chat, rewritten and metered.
  const post = await probe(FILER, 'POST', '/v1/chat/completions', chatBody(randomUUID()));
  t.is(post.upstream.length, 1, post.res.text);
  t.true(post.upstream[0]!.rawBody.length > 0);
  t.truthy(post.res.headers['x-budget-state']);
});

test('"n": 1e400 is refused with 400 naming n, never forwarded as null', async (t) => {
  const text = JSON.stringify(chatBody('many')).replace(/}$/, ',"n":1e400}');
  const p = await probe(GLOBEX, 'POST', '/v1/chat/completions', text);
  refused(t, p, 400, 'invalid_number');
  t.is((p.res.json as { error: { param: string } }).error.param, 'n');
  // Control: n = 1 is served.
  const ok = await probe(GLOBEX, 'POST', '/v1/chat/completions', chatBody(randomUUID(), { n: 1 }));
  t.is(ok.res.status, 200, ok.res.text);
  t.is((ok.upstream[0]?.json as { n?: unknown }).n, 1);
});

test('a chat request naming the embedding model is refused (400 model_not_supported)', async (t) => {
  for (const model of [
    'text-embedding-3-small',
    'TEXT-EMBEDDING-3-SMALL',
    'text-embedding-3-large',
  ]) {
    const p = await probe(GLOBEX, 'POST', '/v1/chat/completions', chatBody('x', { model }));
    if (model === 'text-embedding-3-large') {
      // Outside the free tier: rewritten to the preferred model (kong.yml's model_policy).
      t.is(p.res.status, 200, p.res.text);
      t.is((p.upstream[0]?.json as { model?: string }).model, 'gpt-4o-mini');
      continue;
    }
    refused(t, p, 400, 'model_not_supported');
  }
  // Control: the embedding model on the embeddings API is served.
  const emb = await probe(GLOBEX, 'POST', '/v1/embeddings', {
    model: 'text-embedding-3-small',
    input: 'x',
  });
  t.is(emb.upstream.length, 1, emb.res.text);
});

test('?model= and credentials in the query never reach the upstream; other parameters do', async (t) => {
  const p = await probe(
    GLOBEX,
    'POST',
    '/v1/chat/completions?model=gpt-4o&Model[]=o1&limit=2&api_key=sk-client&apikey=globex-demo-key&x=%20y',
    chatBody(randomUUID()),
  );
  t.is(p.res.status, 200, p.res.text);
  // What is left is re-encoded as key-auth's own removal of `apikey` re-encodes every query
  // (resty.ada.search.remove: `%20` becomes `+`).
  t.is(p.upstream[0]?.path, '/v1/chat/completions?limit=2&x=+y');
  t.is((p.upstream[0]?.json as { model?: string }).model, 'gpt-4o-mini');
  // Control: a query without those goes as it came.
  const q = await probe(FILER, 'GET', '/v1/files?purpose=batch&limit=3');
  t.is(q.upstream[0]?.path, '/v1/files?purpose=batch&limit=3');
});

test('a key in the query is not accepted, and Kong’s access log does not keep it', async (t) => {
  const secret = 'globex-demo-key';
  const p = await probe(null, 'GET', `/v1/models?apikey=${secret}`);
  t.is(p.res.status, 401, p.res.text);
  t.deepEqual(p.upstream, []);
  // Control: the same key in a header is accepted.
  t.is((await probe(secret, 'GET', '/v1/models')).res.status, 200);
  const prefix = (door.gateway as { prefix?: string }).prefix;
  if (prefix === undefined) {
    // The harness writes no access log: what it answers is all there is to check.
    t.pass();
    return;
  }
  const log = path.join(prefix, 'logs', 'access.log');
  const lines = await eventually(() => {
    if (!existsSync(log)) return undefined;
    const text = readFileSync(log, 'utf8');
    return text.includes(p.res.headers['x-kong-request-id'] as string) ? text : undefined;
  }, 15000);
  t.false(lines.includes(secret), 'the access log never holds the key');
  // Nor does the error log, after this run's requests with keys in their queries (above, and the
  // chat with `api_key=sk-client&apikey=…`): no line was written for them that quotes the query.
  const errorLog = readFileSync(path.join(prefix, 'logs', 'error.log'), 'utf8');
  t.false(errorLog.includes(secret), 'the error log never holds the key');
  t.false(errorLog.includes('sk-client'), 'nor a provider-style key from the query');
  t.true(
    lines.includes('GET /v1/models'),
    'control: the request line is logged, without its query',
  );
});
