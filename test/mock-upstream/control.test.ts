import test from 'ava';
import { DEFAULT_KNOBS, startMockUpstream } from '../../mock-upstream/index';
import { getJson, postJson, startMock } from './_helpers';

const hello = { model: 'gpt-4o', messages: [{ role: 'user', content: 'hello' }] };

test('GET /__mock/received returns what was received, body as text', async (t) => {
  const mock = await startMock(t);
  await postJson(`${mock.url}/v1/chat/completions`, hello);
  const res = await getJson(`${mock.url}/__mock/received`);
  t.is(res.status, 200);
  t.like(res.body, [
    { method: 'POST', path: '/v1/chat/completions', body: JSON.stringify(hello), json: hello },
  ]);
});

test('POST /__mock/config changes knobs; GET /__mock/config shows them', async (t) => {
  const mock = await startMock(t);
  const set = await postJson(`${mock.url}/__mock/config`, {
    failure: { mode: 'status', status: 503 },
    embeddingDim: 32,
  });
  t.is(set.status, 200);
  t.like(set.body, { embeddingDim: 32, failure: { mode: 'status', status: 503 } });
  t.like((await getJson(`${mock.url}/__mock/config`)).body, { embeddingDim: 32 });
  t.is((await postJson(`${mock.url}/v1/chat/completions`, hello)).status, 503);
});

test('POST /__mock/config refuses bad knobs with 400 naming the bad value, changing nothing', async (t) => {
  const mock = await startMock(t);
  const bad = await postJson(`${mock.url}/__mock/config`, { capacity: 2, latencyMs: -5 });
  t.is(bad.status, 400);
  t.like(bad.body, { error: { message: 'latencyMs must be a finite number >= 0, got -5' } });
  t.like((await getJson(`${mock.url}/__mock/config`)).body, { capacity: 0 });
  const typo = await postJson(`${mock.url}/__mock/config`, { latency: 5 });
  t.is(typo.status, 400);
  t.like(typo.body, { error: { message: 'unknown knob "latency"' } });
  t.is((await postJson(`${mock.url}/__mock/config`, '{oops')).status, 400);
});

test('GET /__mock/stats and POST /__mock/reset', async (t) => {
  const mock = await startMock(t, { failure: { mode: 'status', count: 1 } });
  await postJson(`${mock.url}/v1/chat/completions`, hello);
  await postJson(`${mock.url}/v1/chat/completions`, hello);
  t.like((await getJson(`${mock.url}/__mock/stats`)).body, {
    served: 1,
    rejected: 0,
    injected: 1,
    inFlight: 0,
    maxInFlight: 1,
  });
  const reset = await postJson(`${mock.url}/__mock/reset`, {});
  t.deepEqual(reset.body, DEFAULT_KNOBS);
  t.is(mock.received.length, 0);
  t.like(mock.stats(), { served: 0, injected: 0, maxInFlight: 0 });
});

test('reset() in process clears the record and knobs', async (t) => {
  const mock = await startMock(t, { failure: { mode: 'status', status: 500 } });
  await postJson(`${mock.url}/v1/chat/completions`, hello);
  const held = mock.received;
  mock.reset();
  t.is(held.length, 0, 'the array a test holds is cleared, not replaced');
  t.is((await postJson(`${mock.url}/v1/chat/completions`, hello)).status, 200);
});

test('unknown control paths are 404 and not recorded', async (t) => {
  const mock = await startMock(t);
  t.is((await getJson(`${mock.url}/__mock/nothing`)).status, 404);
  t.is(mock.received.length, 0);
});

test('configure() and startMockUpstream() validate knobs up front', async (t) => {
  const mock = await startMock(t);
  t.throws(() => mock.configure({ capacity: 1.5 }), {
    instanceOf: RangeError,
    message: 'capacity must be an integer >= 0, got 1.5',
  });
  t.throws(() => mock.configure({ failure: { mode: 'status', rate: 2 } }), {
    message: 'failure.rate must be a number 0..1, got 2',
  });
  await t.throwsAsync(startMockUpstream({ port: 0, embeddingDim: 0 }), {
    instanceOf: RangeError,
  });
});
