import test from 'ava';
import { postJson, startMock, until, type OpenAIError } from './_helpers';

const errorName = (e: unknown): unknown => (e as { name?: unknown }).name;

const hello = { model: 'gpt-4o', messages: [{ role: 'user', content: 'hello' }] };

test("capacity 1 with 'queue': a second request waits its turn, both succeed", async (t) => {
  const mock = await startMock(t, { capacity: 1, latencyMs: 300 });
  const first = postJson(`${mock.url}/v1/chat/completions`, hello);
  await until(() => mock.stats().inFlight === 1, 'the first request to take the slot');
  const second = postJson(`${mock.url}/v1/chat/completions`, hello);
  await until(() => mock.stats().queued === 1, 'the second request to queue');
  t.is(mock.stats().inFlight, 1);
  const [a, b] = await Promise.all([first, second]);
  t.is(a.status, 200);
  t.is(b.status, 200);
  t.like(mock.stats(), { maxInFlight: 1, served: 2, rejected: 0, queued: 0, inFlight: 0 });
});

test('without a capacity limit concurrent requests are served together', async (t) => {
  const mock = await startMock(t, { latencyMs: 300 });
  const first = postJson(`${mock.url}/v1/chat/completions`, hello);
  await until(() => mock.stats().inFlight === 1, 'the first request to start');
  const second = postJson(`${mock.url}/v1/chat/completions`, hello);
  await until(() => mock.stats().inFlight === 2, 'both requests in flight');
  await Promise.all([first, second]);
  t.is(mock.stats().maxInFlight, 2);
});

test("capacity 1 with 'reject': the second concurrent request gets one 429", async (t) => {
  const mock = await startMock(t, { capacity: 1, overCapacity: 'reject', latencyMs: 300 });
  const first = postJson(`${mock.url}/v1/chat/completions`, hello);
  await until(() => mock.stats().inFlight === 1, 'the first request to take the slot');
  const second = await postJson(`${mock.url}/v1/chat/completions`, hello);
  t.is(second.status, 429);
  t.is(second.headers.get('retry-after'), '1');
  t.is((second.body as OpenAIError).error.code, 'rate_limit_exceeded');
  t.is((await first).status, 200);
  t.like(mock.stats(), { maxInFlight: 1, served: 1, rejected: 1 });
});

test('raising capacity admits queued requests at once', async (t) => {
  const mock = await startMock(t, { capacity: 1, latencyMs: 300 });
  const requests = [postJson(`${mock.url}/v1/chat/completions`, hello)];
  await until(() => mock.stats().inFlight === 1, 'the first request to take the slot');
  requests.push(postJson(`${mock.url}/v1/chat/completions`, hello));
  requests.push(postJson(`${mock.url}/v1/chat/completions`, hello));
  await until(() => mock.stats().queued === 2, 'two requests to queue');
  mock.configure({ capacity: 3 });
  t.is(mock.stats().queued, 0);
  t.is(mock.stats().inFlight, 3);
  t.deepEqual(
    (await Promise.all(requests)).map((r) => r.status),
    [200, 200, 200],
  );
});

test('a client that gives up while queued leaves the queue', async (t) => {
  const mock = await startMock(t, { capacity: 1, latencyMs: 300 });
  const first = postJson(`${mock.url}/v1/chat/completions`, hello);
  await until(() => mock.stats().inFlight === 1, 'the first request to take the slot');
  const abort = new AbortController();
  const quitter = postJson(`${mock.url}/v1/chat/completions`, hello, abort.signal);
  await until(() => mock.stats().queued === 1, 'the second request to queue');
  abort.abort();
  t.is(await quitter.then(() => 'answered', errorName), 'AbortError');
  await until(() => mock.stats().queued === 0, 'the queue to drop the quitter');
  t.is((await first).status, 200);
  t.like(mock.stats(), { served: 1, inFlight: 0 });
});
