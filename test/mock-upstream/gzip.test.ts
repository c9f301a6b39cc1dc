/**
 * The `gzipJson` knob: JSON answers gzip-compressed for a request that accepts gzip, as OpenAI
 * answers (token-meter's tests need an upstream that does, test/plugins/token-meter.test.ts).
 */
import test from 'ava';
import http from 'node:http';
import { gunzipSync } from 'node:zlib';
import { acceptsGzip } from '../../mock-upstream/json-answer';
import { startMock, type ChatCompletion, type EmbeddingList } from './_helpers';

/** A POST with node:http, which (unlike fetch) neither asks for gzip nor decodes it. */
function post(
  url: string,
  body: unknown,
  acceptEncoding?: string,
): Promise<{ headers: http.IncomingHttpHeaders; bytes: Buffer }> {
  const payload = JSON.stringify(body);
  return new Promise((resolve, reject) => {
    const req = http.request(
      url,
      {
        method: 'POST',
        headers: {
          'content-type': 'application/json',
          ...(acceptEncoding === undefined ? {} : { 'accept-encoding': acceptEncoding }),
        },
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => resolve({ headers: res.headers, bytes: Buffer.concat(chunks) }));
        res.on('error', reject);
      },
    );
    req.on('error', reject);
    req.end(payload);
  });
}

const CHAT = { model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'squeeze me' }] };

test('acceptsGzip reads Accept-Encoding as RFC 9110 says', (t) => {
  for (const yes of [
    'gzip',
    'gzip, deflate',
    'br;q=1.0, gzip;q=0.8, *;q=0.1',
    'x-gzip',
    '*',
    'GZIP',
  ])
    t.true(acceptsGzip(yes), yes);
  for (const no of [undefined, '', 'identity', 'br, deflate', 'gzip;q=0', '*;q=0', 'gzip;q=0, *'])
    t.false(acceptsGzip(no), String(no));
  t.true(acceptsGzip(['deflate', 'gzip']), 'repeated header lines');
});

test('gzipJson on: a chat answer is gzip-compressed when the request accepts gzip', async (t) => {
  const mock = await startMock(t, { gzipJson: true });
  const r = await post(`${mock.url}/v1/chat/completions`, CHAT, 'gzip, deflate');
  t.is(r.headers['content-encoding'], 'gzip');
  t.is(Number(r.headers['content-length']), r.bytes.length);
  const answer = JSON.parse(gunzipSync(r.bytes).toString('utf8')) as ChatCompletion;
  t.is(answer.choices[0]?.message.content, 'mock answer to: squeeze me');
  t.true(answer.usage.prompt_tokens > 0);
  t.deepEqual(mock.usage()[''], {
    answers: 1,
    prompt: answer.usage.prompt_tokens,
    completion: answer.usage.completion_tokens,
  });
});

test('gzipJson on: identity asked, or nothing said, gets plain JSON', async (t) => {
  const mock = await startMock(t, { gzipJson: true });
  for (const accept of ['identity', undefined]) {
    const r = await post(`${mock.url}/v1/chat/completions`, CHAT, accept);
    t.is(r.headers['content-encoding'], undefined, String(accept));
    t.is((JSON.parse(r.bytes.toString('utf8')) as ChatCompletion).object, 'chat.completion');
  }
});

test('gzipJson on: embeddings too; off (the default): plain whatever the request accepts', async (t) => {
  const mock = await startMock(t);
  const plain = await post(`${mock.url}/v1/chat/completions`, CHAT, 'gzip');
  t.is(plain.headers['content-encoding'], undefined);
  mock.configure({ gzipJson: true });
  const r = await post(
    `${mock.url}/v1/embeddings`,
    { model: 'text-embedding-3-small', input: 'a vector, compressed' },
    'gzip',
  );
  t.is(r.headers['content-encoding'], 'gzip');
  t.is((JSON.parse(gunzipSync(r.bytes).toString('utf8')) as EmbeddingList).object, 'list');
  t.throws(() => mock.configure({ gzipJson: 'yes' as unknown as boolean }), {
    message: /gzipJson must be true or false/,
  });
});
