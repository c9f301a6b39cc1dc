/**
 * The embeddings call asks once more when the server closed the connection without answering
 * (a kept-alive socket closed by the server's idle timeout as it was reused: the soak's
 * occasional 503 retrieval_unavailable), and only then: a timeout or an error answer is final.
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import test from 'ava';
import { Embedder } from '../../lib/retrieval/embedder';
import { isRetrievalUnavailableError } from '../../lib/retrieval/errors';
import { parseTenantId } from '../../lib/tenant/tenant-id';

const acme = parseTenantId('acme');

/** A server whose n-th request is handled by `handle(n, req, res)`; counts requests. */
async function server(
  handle: (n: number, req: http.IncomingMessage, res: http.ServerResponse) => void,
): Promise<{ url: string; count: () => number; close: () => Promise<void> }> {
  let n = 0;
  const srv = http.createServer((req, res) => {
    req.resume();
    req.on('end', () => handle(++n, req, res));
  });
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
  const { port } = srv.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}/v1/embeddings`,
    count: () => n,
    close: () =>
      new Promise((r) => {
        srv.closeAllConnections();
        srv.close(() => r());
      }),
  };
}

const answer = (res: http.ServerResponse) => {
  res.setHeader('content-type', 'application/json');
  res.end(JSON.stringify({ data: [{ index: 0, embedding: [0.6, 0.8] }] }));
};

const embedder = (url: string, timeoutMs = 5000) =>
  new Embedder({
    url,
    model: 'm',
    dim: 2,
    sendDimensions: false,
    apiKey: null,
    timeoutMs,
    cache: null,
  });

test('a connection closed without an answer is asked again once, and the answer is used', async (t) => {
  const s = await server((n, req, res) => (n === 1 ? req.socket.destroy() : answer(res)));
  t.teardown(s.close);
  const { vector } = await embedder(s.url).embedQuery(acme, 'hello');
  t.is(vector.length, 2);
  t.is(s.count(), 2);
});

test('closed twice: unavailable, after two tries, never a third', async (t) => {
  const s = await server((_n, req) => req.socket.destroy());
  t.teardown(s.close);
  const e = await t.throwsAsync(embedder(s.url).embedQuery(acme, 'hello'));
  t.true(isRetrievalUnavailableError(e));
  t.is(s.count(), 2);
});

test('an error answer is not asked again', async (t) => {
  const s = await server((_n, _req, res) => {
    res.statusCode = 500;
    res.end('{}');
  });
  t.teardown(s.close);
  const e = await t.throwsAsync(embedder(s.url).embedQuery(acme, 'hello'));
  t.true(isRetrievalUnavailableError(e));
  t.is(s.count(), 1);
});

test('a timeout is not asked again', async (t) => {
  const s = await server(() => undefined); // never answers
  t.teardown(s.close);
  const e = await t.throwsAsync(embedder(s.url, 300).embedQuery(acme, 'hello'));
  t.true(isRetrievalUnavailableError(e));
  t.is(s.count(), 1);
});
