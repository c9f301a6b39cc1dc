import test from 'ava';
import { appendBounded, MAX_RECEIVED, type ReceivedRequest } from '../../mock-upstream/recording';
import { getJson, postJson, startMock } from './_helpers';

test('records method, path, headers, raw body and parsed JSON of each request, in order', async (t) => {
  const mock = await startMock(t);
  const body = { model: 'gpt-4o', messages: [{ role: 'user', content: 'héllo' }] };
  const before = Date.now();
  await fetch(`${mock.url}/v1/chat/completions?trace=1`, {
    method: 'POST',
    headers: {
      'content-type': 'application/json',
      'X-Tenant-Id': 'acme',
      authorization: 'Bearer k',
    },
    body: JSON.stringify(body),
  });
  await getJson(`${mock.url}/v1/models`);

  t.is(mock.received.length, 2);
  const [chat, models] = mock.received as [ReceivedRequest, ReceivedRequest];
  t.is(chat.method, 'POST');
  t.is(chat.path, '/v1/chat/completions?trace=1');
  t.is(chat.headers['x-tenant-id'], 'acme');
  t.is(chat.headers.authorization, 'Bearer k');
  t.true(chat.rawBody.equals(Buffer.from(JSON.stringify(body))));
  t.deepEqual(chat.json, body);
  t.true(chat.at >= before);
  t.is(models.method, 'GET');
  t.is(models.path, '/v1/models');
  t.is(models.rawBody.length, 0);
  t.is(models.json, undefined);
});

test('a body that is not JSON is recorded raw with json undefined', async (t) => {
  const mock = await startMock(t);
  await postJson(`${mock.url}/v1/chat/completions`, 'not json at all');
  t.is(mock.received[0]?.rawBody.toString(), 'not json at all');
  t.is(mock.received[0]?.json, undefined);
});

test('control API requests are not recorded', async (t) => {
  const mock = await startMock(t);
  await getJson(`${mock.url}/__mock/stats`);
  await getJson(`${mock.url}/__mock/received`);
  t.is(mock.received.length, 0);
});

test('the record keeps only the last 10 000 requests, in place', (t) => {
  const log: ReceivedRequest[] = [];
  const entry = (i: number): ReceivedRequest => ({
    method: 'POST',
    path: `/r/${i}`,
    headers: {},
    rawBody: Buffer.alloc(0),
    json: undefined,
    at: i,
  });
  for (let i = 0; i < MAX_RECEIVED + 5; i++) appendBounded(log, entry(i));
  t.is(MAX_RECEIVED, 10_000);
  t.is(log.length, MAX_RECEIVED);
  t.is(log[0]?.path, '/r/5');
  t.is(log.at(-1)?.path, `/r/${MAX_RECEIVED + 4}`);
});
