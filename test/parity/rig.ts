/**
 * The parity rig: one recording upstream, one declarative config, and a raw HTTP/1.1 client,
 * so the same bytes go to the real Kong and to the harness and what comes back (and what the
 * upstream received) can be compared line for line.
 */
import { createServer, type IncomingMessage, type Server } from 'node:http';
import net, { type AddressInfo } from 'node:net';

export interface UpstreamRecord {
  method: string;
  target: string;
  /** Header lines as received (names lowercased, order and repeats kept). */
  headers: Array<[string, string]>;
  body: string;
}

export interface RecordingUpstream {
  url: string;
  port: number;
  records: UpstreamRecord[];
  close(): Promise<void>;
}

/**
 * Records every request by its `x-case` header. Answers: `/v1/chunked*` with a chunked JSON
 * body, `/v1/sse*` with an event stream, `/v1/status/<n>` with that status, anything else
 * with a JSON body and Content-Length.
 */
export async function startRecordingUpstream(): Promise<RecordingUpstream> {
  const records: UpstreamRecord[] = [];
  const server: Server = createServer({ maxHeaderSize: 1 << 20 }, (req: IncomingMessage, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const headers: Array<[string, string]> = [];
      for (let i = 0; i + 1 < req.rawHeaders.length; i += 2)
        headers.push([
          (req.rawHeaders[i] as string).toLowerCase(),
          req.rawHeaders[i + 1] as string,
        ]);
      records.push({
        method: req.method ?? '',
        target: req.url ?? '',
        headers,
        body: Buffer.concat(chunks).toString('latin1'),
      });
      const url = req.url ?? '/';
      const status = /\/status\/(\d{3})/.exec(url);
      if (url.includes('/chunked')) {
        res.writeHead(200, { 'content-type': 'application/json', 'x-upstream': 'chunked' });
        res.write('{"part":1,');
        setTimeout(() => res.end('"part2":2}'), 5);
        return;
      }
      if (url.includes('/sse')) {
        res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' });
        res.write('data: one\n\n');
        setTimeout(() => res.end('data: [DONE]\n\n'), 5);
        return;
      }
      const body = JSON.stringify({ ok: true, path: url });
      res.writeHead(status ? Number(status[1]) : 200, {
        'content-type': 'application/json',
        'content-length': Buffer.byteLength(body),
        'x-upstream': 'yes',
      });
      res.end(body);
    });
  });
  server.maxHeadersCount = 0;
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  const port = (server.address() as AddressInfo).port;
  return {
    url: `http://127.0.0.1:${port}`,
    port,
    records,
    close: () =>
      new Promise((r) => {
        server.closeAllConnections();
        server.close(() => r());
      }),
  };
}

export interface RawResponse {
  status: number;
  /** Header lines as sent (names lowercased, order and repeats kept). */
  headers: Array<[string, string]>;
  /** Whether the body came chunked (Transfer-Encoding: chunked). */
  chunked: boolean;
  body: string;
}

function dechunk(raw: Buffer): Buffer {
  const out: Buffer[] = [];
  let i = 0;
  for (;;) {
    const eol = raw.indexOf('\r\n', i);
    if (eol < 0) break;
    const size = parseInt(raw.subarray(i, eol).toString('latin1'), 16);
    if (!Number.isFinite(size) || size === 0) break;
    out.push(raw.subarray(eol + 2, eol + 2 + size));
    i = eol + 2 + size + 2;
  }
  return Buffer.concat(out);
}

/**
 * Sends raw bytes (a whole request; `Connection: close` is the caller's) and reads until the
 * server closes. HEAD-less parsing: one response per connection.
 */
export function rawRequest(
  port: number,
  bytes: Buffer | string,
  timeoutMs = 10000,
): Promise<RawResponse> {
  return new Promise((resolve, reject) => {
    const sock = net.connect(port, '127.0.0.1');
    const chunks: Buffer[] = [];
    const timer = setTimeout(() => {
      sock.destroy();
      reject(new Error('no complete response in time'));
    }, timeoutMs);
    sock.on('data', (c: Buffer) => chunks.push(c));
    sock.on('error', () => undefined);
    sock.on('close', () => {
      clearTimeout(timer);
      let raw = Buffer.concat(chunks);
      // Skip interim responses (100 Continue): both gateways send one for Expect.
      while (/^HTTP\/1\.[01] 1\d\d /.test(raw.subarray(0, 16).toString('latin1'))) {
        const e = raw.indexOf('\r\n\r\n');
        if (e < 0) break;
        raw = raw.subarray(e + 4);
      }
      const end = raw.indexOf('\r\n\r\n');
      if (end < 0) {
        resolve({ status: 0, headers: [], chunked: false, body: raw.toString('latin1') });
        return;
      }
      const lines = raw.subarray(0, end).toString('latin1').split('\r\n');
      const status = Number((lines[0] ?? '').split(' ')[1]);
      const headers = lines.slice(1).map((l): [string, string] => {
        const c = l.indexOf(':');
        return [l.slice(0, c).toLowerCase(), l.slice(c + 1).trim()];
      });
      const chunked = headers.some(([k, v]) => k === 'transfer-encoding' && /chunked/i.test(v));
      const rest = raw.subarray(end + 4);
      resolve({
        status,
        headers,
        chunked,
        body: (chunked ? dechunk(rest) : rest).toString('utf8'),
      });
    });
    sock.write(bytes);
  });
}
