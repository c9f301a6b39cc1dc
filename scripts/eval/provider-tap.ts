/**
 * A real OpenAI-compatible provider behind a tap: the gateway under evaluation calls the tap
 * on 127.0.0.1, the tap records what the chain sent (the body the persona, tool and tier
 * checks read) and forwards it to the provider with the provider's key, streaming the answer
 * back as it comes. The mock upstream records requests itself; a provider does not, and the
 * chain's decisions are only visible in what it sends.
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { Readable } from 'node:stream';
import type { ReadableStream as WebReadableStream } from 'node:stream/web';

export interface TappedRequest {
  method: string;
  path: string;
  headers: http.IncomingHttpHeaders;
  json: unknown;
}

export interface ProviderTap {
  readonly url: string;
  readonly received: TappedRequest[];
  close(): Promise<void>;
}

/** Request headers never forwarded: hop-by-hop, the gateway's credentials, the eval's tag. */
const DROP_REQUEST = new Set([
  'host',
  'connection',
  'keep-alive',
  'transfer-encoding',
  'content-length',
  'authorization',
  'apikey',
  'x-api-key',
  'x-eval-case',
]);
/** fetch has decoded the body already: its length and encoding no longer hold. */
const DROP_RESPONSE = new Set([
  'content-encoding',
  'content-length',
  'transfer-encoding',
  'connection',
]);

/** Most requests kept (the oldest go first): a bound, not a log. */
const MAX_KEPT = 5000;

export async function startProviderTap(opts: {
  /** The provider's base URL as the OpenAI SDKs take it, e.g. https://api.openai.com/v1. */
  baseUrl: string;
  apiKey: string | undefined;
  timeoutMs?: number;
}): Promise<ProviderTap> {
  const base = opts.baseUrl.replace(/\/+$/, '');
  const received: TappedRequest[] = [];
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const raw = Buffer.concat(chunks);
      let json: unknown;
      try {
        json = raw.length > 0 ? JSON.parse(raw.toString('utf8')) : undefined;
      } catch {
        json = undefined;
      }
      received.push({
        method: req.method ?? 'GET',
        path: req.url ?? '/',
        headers: req.headers,
        json,
      });
      if (received.length > MAX_KEPT) received.splice(0, received.length - MAX_KEPT);
      const headers = new Headers();
      for (const [k, v] of Object.entries(req.headers)) {
        if (DROP_REQUEST.has(k) || v === undefined) continue;
        headers.set(k, Array.isArray(v) ? v.join(', ') : v);
      }
      if (opts.apiKey) headers.set('authorization', `Bearer ${opts.apiKey}`);
      // The gateway calls /v1/<endpoint>; the base URL already names the API root.
      const target = `${base}${(req.url ?? '/').replace(/^\/v1(?=\/|$)/, '')}`;
      fetch(target, {
        method: req.method ?? 'GET',
        headers,
        ...(raw.length > 0 ? { body: raw } : {}),
        signal: AbortSignal.timeout(opts.timeoutMs ?? 120_000),
      })
        .then((up) => {
          const out: Record<string, string> = {};
          up.headers.forEach((v, k) => {
            if (!DROP_RESPONSE.has(k)) out[k] = v;
          });
          res.writeHead(up.status, out);
          if (!up.body) return res.end();
          Readable.fromWeb(up.body as unknown as WebReadableStream<Uint8Array>)
            .on('error', () => res.destroy())
            .pipe(res);
        })
        .catch((e: unknown) => {
          const message = `eval provider tap: ${e instanceof Error ? e.message : String(e)}`;
          res.writeHead(502, { 'content-type': 'application/json' });
          res.end(
            JSON.stringify({
              error: { message, type: 'server_error', code: 'provider_unreachable' },
            }),
          );
        });
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    received,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
