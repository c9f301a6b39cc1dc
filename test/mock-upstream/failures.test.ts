import test from 'ava';
import http from 'node:http';
import { postJson, startMock, until, type ChatCompletion, type OpenAIError } from './_helpers';

const errorName = (e: unknown): unknown => (e as { name?: unknown }).name;

const hello = { model: 'gpt-4o', messages: [{ role: 'user', content: 'hello' }] };

test("'status' answers with that status and an OpenAI-style error", async (t) => {
  const mock = await startMock(t, { failure: { mode: 'status', status: 503 } });
  const res = await postJson(`${mock.url}/v1/chat/completions`, hello);
  t.is(res.status, 503);
  const { error } = res.body as OpenAIError;
  t.is(error.type, 'server_error');
  t.regex(error.message, /injected failure/);
  t.is(mock.stats().injected, 1);
  t.is(mock.stats().served, 0);
});

test("'status' defaults to 500 and can send a body verbatim", async (t) => {
  const mock = await startMock(t, { failure: { mode: 'status' } });
  t.is((await postJson(`${mock.url}/v1/chat/completions`, hello)).status, 500);
  mock.configure({
    failure: { mode: 'status', status: 429, body: '{"error":{"message":"slow down"}}' },
  });
  const res = await postJson(`${mock.url}/v1/chat/completions`, hello);
  t.is(res.status, 429);
  t.deepEqual(res.body, { error: { message: 'slow down' } });
});

test('count fails only the next N requests', async (t) => {
  const mock = await startMock(t, { failure: { mode: 'status', status: 502, count: 2 } });
  const statuses: number[] = [];
  for (let i = 0; i < 4; i++)
    statuses.push((await postJson(`${mock.url}/v1/chat/completions`, hello)).status);
  t.deepEqual(statuses, [502, 502, 200, 200]);
});

test('rate fails that share of requests, spread evenly and repeatably', async (t) => {
  const mock = await startMock(t, { failure: { mode: 'status', status: 500, rate: 0.5 } });
  const statuses: number[] = [];
  for (let i = 0; i < 6; i++)
    statuses.push((await postJson(`${mock.url}/v1/chat/completions`, hello)).status);
  t.deepEqual(statuses, [200, 500, 200, 500, 200, 500]);
  mock.configure({ failure: { mode: 'status', rate: 0 } });
  t.is((await postJson(`${mock.url}/v1/chat/completions`, hello)).status, 200);
});

test('pathPrefix limits the failure to matching paths', async (t) => {
  const mock = await startMock(t, {
    failure: { mode: 'status', status: 503, pathPrefix: '/v1/embeddings' },
  });
  t.is((await postJson(`${mock.url}/v1/chat/completions`, hello)).status, 200);
  const emb = await postJson(`${mock.url}/v1/embeddings`, {
    model: 'text-embedding-3-small',
    input: 'x',
  });
  t.is(emb.status, 503);
});

test("'reset' destroys the connection without a response", async (t) => {
  const mock = await startMock(t, { failure: { mode: 'reset', count: 1 } });
  const err = await t.throwsAsync(postJson(`${mock.url}/v1/chat/completions`, hello));
  const cause = (err as Error & { cause?: { code?: string } }).cause;
  t.is(cause?.code, 'ECONNRESET');
  t.is(mock.received.length, 1, 'the request was still recorded');
  // The failure was for one request only; the next one is served.
  const next = await postJson(`${mock.url}/v1/chat/completions`, hello);
  t.is((next.body as ChatCompletion).choices[0]?.message.content, 'mock answer to: hello');
});

test("'timeout' never answers, and close() still ends the held socket", async (t) => {
  const mock = await startMock(t, { failure: { mode: 'timeout' } });
  let settled = false;
  const pending = postJson(`${mock.url}/v1/chat/completions`, hello).finally(() => {
    settled = true;
  });
  await until(() => mock.received.length === 1, 'the request to arrive');
  // Another request goes through the whole pipeline meanwhile, so the first one was not
  // merely slow: it is held.
  mock.configure({ failure: null });
  t.is((await postJson(`${mock.url}/v1/chat/completions`, hello)).status, 200);
  t.false(settled);
  await mock.close();
  await t.throwsAsync(pending);
});

test('a client giving up on a held request takes no capacity with it', async (t) => {
  const mock = await startMock(t, { failure: { mode: 'timeout' }, capacity: 1 });
  const abort = new AbortController();
  const pending = postJson(`${mock.url}/v1/chat/completions`, hello, abort.signal);
  await until(() => mock.received.length === 1, 'the request to arrive');
  abort.abort();
  t.is(await pending.then(() => 'answered', errorName), 'AbortError');
  mock.configure({ failure: null });
  t.is((await postJson(`${mock.url}/v1/chat/completions`, hello)).status, 200);
  t.is(mock.stats().inFlight, 0);
});

test('apiKey: the mock demands its provider key and answers 401 invalid_api_key otherwise', async (t) => {
  const mock = await startMock(t, { apiKey: 'sk-mock' });
  const body = JSON.stringify({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'x' }] });
  const call = (auth?: string) =>
    fetch(`${mock.url}/v1/chat/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', ...(auth ? { authorization: auth } : {}) },
      body,
    });
  t.is((await call('Bearer sk-mock')).status, 200);
  const wrong = await call('Bearer sk-other');
  t.is(wrong.status, 401);
  t.like(await wrong.json(), { error: { code: 'invalid_api_key' } });
  t.is((await call()).status, 401);
  t.throws(() => mock.configure({ apiKey: '' }), { instanceOf: RangeError });
});

/** The raw reply of one request: status, what arrived, and how it ended. */
function rawPost(
  url: string,
  body: object,
): Promise<{ status: number; text: string; ended: 'end' | 'cut' }> {
  return new Promise((resolve, reject) => {
    let status = 0;
    let text = '';
    const cut = () => resolve({ status, text, ended: 'cut' });
    const req = http.request(url, { method: 'POST', agent: false }, (res) => {
      status = res.statusCode ?? 0;
      res.setEncoding('utf8');
      res.on('data', (c: string) => (text += c));
      res.on('end', () => resolve({ status, text, ended: 'end' }));
      res.on('error', cut);
      res.on('aborted', cut);
    });
    // A reset after the response began is the cut; before it, a failure of the test.
    req.on('error', (e) => (status ? cut() : reject(e)));
    req.end(JSON.stringify(body));
  });
}

test("'cut' answers 200, then resets a stream after `afterEvents` events and a JSON body half-way", async (t) => {
  const mock = await startMock(t, { failure: { mode: 'cut', afterEvents: 2 } });
  const stream = await rawPost(`${mock.url}/v1/chat/completions`, {
    ...hello,
    stream: true,
    stream_options: { include_usage: true },
  });
  t.is(stream.status, 200);
  t.is(stream.ended, 'cut');
  t.is(stream.text.split('\n\n').filter((e) => e.startsWith('data: ')).length, 2);
  t.false(stream.text.includes('[DONE]'));
  t.false(stream.text.includes('"usage":{'));
  const json = await rawPost(`${mock.url}/v1/chat/completions`, hello);
  t.is(json.status, 200);
  t.is(json.ended, 'cut');
  t.throws(() => JSON.parse(json.text) as unknown);
  t.true(json.text.startsWith('{"id":"chatcmpl-mock-'));
  t.is(mock.stats().injected, 2);
});

test('a served request records the id it was answered with', async (t) => {
  const mock = await startMock(t);
  const res = await postJson(`${mock.url}/v1/chat/completions`, hello);
  const id = (res.body as ChatCompletion).id;
  t.is(`chatcmpl-${mock.received.at(-1)?.responseId ?? ''}`, id);
});
