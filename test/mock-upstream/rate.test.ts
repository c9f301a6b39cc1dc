import test from 'ava';
import { getJson, postJson, startMock, until, type OpenAIError } from './_helpers';

const errorName = (e: unknown): unknown => (e as { name?: unknown }).name;

const hello = { model: 'gpt-4o', messages: [{ role: 'user', content: 'hello' }] };

test('a rate quota: past the burst, requests wait first-in first-out for their start', async (t) => {
  const mock = await startMock(t, { ratePerSecond: 10, rateBurst: 1 });
  const order: number[] = [];
  const replies = [0, 1, 2].map((i) =>
    postJson(`${mock.url}/v1/chat/completions`, { ...hello, user: String(i) }).then((r) => {
      order.push(i);
      return r.status;
    }),
  );
  await until(() => mock.stats().rateQueued === 2, 'two requests to wait for the quota');
  t.is(mock.stats().started, 1);
  t.deepEqual(await Promise.all(replies), [200, 200, 200]);
  t.deepEqual(order, [0, 1, 2]);
  t.like(mock.stats(), { started: 3, rateQueued: 0, queued: 0 });
  // Never faster than the quota: one start per 100 ms after the first.
  const starts = mock.startTimes();
  t.is(starts.length, 3);
  for (let i = 1; i < starts.length; i++) {
    t.true((starts[i] ?? 0) - (starts[i - 1] ?? 0) >= 90, `starts ${starts.join(', ')}`);
  }
});

test('a rate quota limits starts, not seats: started requests are served together', async (t) => {
  const mock = await startMock(t, { ratePerSecond: 100, rateBurst: 3, latencyMs: 300 });
  const replies = [0, 1, 2].map(() => postJson(`${mock.url}/v1/chat/completions`, hello));
  await until(() => mock.stats().inFlight === 3, 'the three requests in service together');
  t.deepEqual(
    (await Promise.all(replies)).map((r) => r.status),
    [200, 200, 200],
  );
  t.is(mock.stats().maxInFlight, 3);
});

test("a rate quota with 'reject': past the burst, 429 at once", async (t) => {
  const mock = await startMock(t, { ratePerSecond: 0.5, rateBurst: 1, overCapacity: 'reject' });
  t.is((await postJson(`${mock.url}/v1/chat/completions`, hello)).status, 200);
  const second = await postJson(`${mock.url}/v1/chat/completions`, hello);
  t.is(second.status, 429);
  t.is((second.body as OpenAIError).error.code, 'rate_limit_exceeded');
  t.like(mock.stats(), { started: 1, rejected: 1, rateQueued: 0 });
});

test('a client that gives up while waiting for the quota leaves the queue', async (t) => {
  const mock = await startMock(t, { ratePerSecond: 0.5, rateBurst: 1 });
  t.is((await postJson(`${mock.url}/v1/chat/completions`, hello)).status, 200);
  const abort = new AbortController();
  const quitter = postJson(`${mock.url}/v1/chat/completions`, hello, abort.signal);
  await until(() => mock.stats().rateQueued === 1, 'the second request to wait');
  abort.abort();
  t.is(await quitter.then(() => 'answered', errorName), 'AbortError');
  await until(() => mock.stats().rateQueued === 0, 'the quota queue to drop the quitter');
  t.is(mock.stats().started, 1);
});

test('turning the quota off starts every waiting request at once', async (t) => {
  const mock = await startMock(t, { ratePerSecond: 0.2, rateBurst: 1 });
  t.is((await postJson(`${mock.url}/v1/chat/completions`, hello)).status, 200);
  const waiting = [0, 1].map(() => postJson(`${mock.url}/v1/chat/completions`, hello));
  await until(() => mock.stats().rateQueued === 2, 'two requests to wait');
  mock.configure({ ratePerSecond: 0 });
  t.is(mock.stats().rateQueued, 0);
  t.deepEqual(
    (await Promise.all(waiting)).map((r) => r.status),
    [200, 200],
  );
});

test('rate knobs are validated, and the start times are served by the control API', async (t) => {
  const mock = await startMock(t, { latencyMs: 1 });
  t.throws(() => mock.configure({ rateBurst: 0 }), {
    message: /rateBurst must be an integer >= 1/,
  });
  t.throws(() => mock.configure({ ratePerSecond: -1 }), { message: /ratePerSecond/ });
  const before = Date.now();
  await postJson(`${mock.url}/v1/chat/completions`, hello);
  const starts = (await getJson(`${mock.url}/__mock/starts`)).body as number[];
  t.is(starts.length, 1);
  t.true((starts[0] ?? 0) >= before);
  mock.reset();
  t.deepEqual(mock.startTimes(), []);
  t.is(mock.stats().started, 0);
});

test('end times: when each started request freed its seat, the next one starting there', async (t) => {
  const mock = await startMock(t, { capacity: 1, latencyMs: 60 });
  const replies = [0, 1].map(() => postJson(`${mock.url}/v1/chat/completions`, hello));
  t.deepEqual(
    (await Promise.all(replies)).map((r) => r.status),
    [200, 200],
  );
  await until(() => mock.endTimes().length === 2, 'both seats freed');
  const [s0, s1] = mock.startTimes();
  const ends = (await getJson(`${mock.url}/__mock/ends`)).body as number[];
  t.is(ends.length, 2);
  const [e0, e1] = ends as [number, number];
  // One seat: the second starts when the first frees, and ends a service time later.
  t.true(e0 - (s0 ?? 0) >= 55, `${ends.join(', ')} / ${s0}`);
  t.true((s1 ?? 0) >= e0 - 1 && (s1 ?? 0) - e0 < 40, `start ${s1} after the first end ${e0}`);
  t.true(e1 - (s1 ?? 0) >= 55);
  mock.reset();
  t.deepEqual(mock.endTimes(), []);
});
