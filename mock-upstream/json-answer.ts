/**
 * A successful JSON answer as a provider sends it. With the `gzipJson` knob on, the answer is
 * gzip-compressed when the request's `Accept-Encoding` accepts gzip, as OpenAI compresses its
 * non-streamed JSON for clients that accept it (httpx, `curl --compressed`, most SDKs): a
 * gateway that reads the answer's bytes (token-meter's usage reader) must ask for `identity`.
 * Off (the default), or without gzip in `Accept-Encoding`: plain JSON, as `sendJson`.
 */
import { gzipSync } from 'node:zlib';
import type { EndpointContext } from './endpoint';
import { sendJson } from './openai-error';

/**
 * Whether an `Accept-Encoding` value accepts gzip (RFC 9110 §12.5.3): `gzip` or `x-gzip`
 * with a q-value above 0, or `*` above 0 when gzip is not named. No header: not accepted (a
 * provider answers identity to a client that says nothing).
 */
export function acceptsGzip(header: string | string[] | undefined): boolean {
  if (header === undefined) return false;
  const value = Array.isArray(header) ? header.join(',') : header;
  let named: boolean | undefined;
  let star: boolean | undefined;
  for (const part of value.split(',')) {
    const [coding = '', ...params] = part.split(';').map((s) => s.trim().toLowerCase());
    const q = params.find((p) => p.startsWith('q='));
    const accepted = q === undefined || Number(q.slice(2)) > 0;
    if (coding === 'gzip' || coding === 'x-gzip') named = (named ?? false) || accepted;
    else if (coding === '*') star = accepted;
  }
  return named ?? star ?? false;
}

/** Sends `body` with status 200, gzip-compressed when the knob and the request allow it. */
export function sendJsonAnswer(
  ctx: EndpointContext,
  body: unknown,
  headers: Record<string, string> = {},
): void {
  if (!ctx.knobs.gzipJson || !acceptsGzip(ctx.req.headers['accept-encoding'])) {
    sendJson(ctx.res, 200, body, headers);
    return;
  }
  const payload = gzipSync(Buffer.from(JSON.stringify(body)));
  ctx.res.writeHead(200, {
    'content-type': 'application/json',
    'content-encoding': 'gzip',
    'content-length': String(payload.length),
    vary: 'Accept-Encoding',
    ...headers,
  });
  ctx.res.end(payload);
}
