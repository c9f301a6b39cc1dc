import { createServer, request, type IncomingHttpHeaders, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';

export const FIXTURES = join(__dirname, '..', 'fixtures', 'pluginservers');
export const PROBE_DIR = join(FIXTURES, 'harness-probe');
export const ORDER_DIR = join(FIXTURES, 'harness-order');

export interface Seen {
  method: string;
  url: string;
  headers: IncomingHttpHeaders;
  body: string;
}

export interface Upstream {
  url: string;
  seen: Seen[];
  last(pathPrefix: string): Seen | undefined;
  /** Resolve to let a /stream response finish. */
  releaseStream: () => void;
  close(): Promise<void>;
}

function listen(server: Server): Promise<string> {
  return new Promise((resolve) =>
    server.listen(0, '127.0.0.1', () =>
      resolve(`http://127.0.0.1:${(server.address() as AddressInfo).port}`),
    ),
  );
}

/** A tiny upstream that records every request and answers JSON (special paths: /stream, /slow). */
export async function startUpstream(): Promise<Upstream> {
  const seen: Seen[] = [];
  let release: () => void = () => undefined;
  let streamGate = new Promise<void>((r) => (release = r));
  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const body = Buffer.concat(chunks).toString('utf8');
      seen.push({ method: req.method ?? '', url: req.url ?? '', headers: req.headers, body });
      if (req.headers['x-mode'] === 'stream') {
        res.writeHead(200, { 'content-type': 'text/event-stream', 'x-upstream': 'yes' });
        res.write('data: first\n\n');
        void streamGate.then(() => res.end('data: last\n\n'));
        return;
      }
      if (req.url?.includes('slow')) {
        setTimeout(() => res.end('late'), 3000).unref();
        return;
      }
      res.writeHead(200, {
        'content-type': 'application/json',
        'x-upstream': 'yes',
        via: '1.1 upstream-proxy',
      });
      res.end(JSON.stringify({ url: req.url }));
    });
  });
  const url = await listen(server);
  return {
    url,
    seen,
    last: (p) => [...seen].reverse().find((s) => s.url.startsWith(p)),
    releaseStream: () => {
      release();
      streamGate = new Promise<void>((r) => (release = r));
    },
    close: () =>
      new Promise((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

/** An HTTP sink the fixture's log phase POSTs to. */
export async function startSink(): Promise<{
  url: string;
  reports: unknown[];
  next(): Promise<unknown>;
  close(): Promise<void>;
}> {
  const reports: unknown[] = [];
  const waiters: Array<(v: unknown) => void> = [];
  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const v: unknown = JSON.parse(Buffer.concat(chunks).toString('utf8'));
      reports.push(v);
      waiters.shift()?.(v);
      res.end('ok');
    });
  });
  const url = await listen(server);
  let read = 0;
  return {
    url,
    reports,
    next: () =>
      read < reports.length
        ? Promise.resolve(reports[read++])
        : new Promise((r) => waiters.push((v) => (read++, r(v)))),
    close: () => new Promise((resolve) => server.close(() => resolve())),
  };
}

export interface Reply {
  status: number;
  headers: IncomingHttpHeaders;
  body: string;
}

export function send(
  url: string,
  opts: { method?: string; headers?: Record<string, string | string[]>; body?: string } = {},
): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const req = request(url, { method: opts.method ?? 'GET', headers: opts.headers }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () =>
        resolve({
          status: res.statusCode ?? 0,
          headers: res.headers,
          body: Buffer.concat(chunks).toString('utf8'),
        }),
      );
    });
    req.on('error', reject);
    req.end(opts.body);
  });
}

/** kong.conf as Kong ships it (kong/templates/kong_defaults.lua): stock error pages. */
export const STOCK_ERRORS = { error_default_type: 'text/plain', error_template_json: 'NONE' };
