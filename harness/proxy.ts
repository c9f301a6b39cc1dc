// The proxy step: the request as modified by kong.service.request.* goes to the service.
// Upstream headers: kong/templates/nginx_kong.lua (3.9.3) proxy_set_header list, values from
// kong/runloop/handler.lua (3.9.3) access.after (X-Forwarded-*, Via, Host via balancer.set_host_header).
// Errors: connection failure -> 502, timeouts -> 504 (nginx upstream errors, rendered by
// kong/error_handlers.lua).
import { request as httpRequest, type IncomingMessage } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { joinedHeader } from './headers';
import { KONG_SERVER } from './kong-headers';
import type { RequestState } from './request-state';

export type ProxyResult =
  | { kind: 'response'; res: IncomingMessage; waitingMs: number }
  | { kind: 'error'; status: 502 | 504; reason: string };

/** Lua's tostring of ngx.req.http_version() (1.1, 1.0 -> "1", 2.0 -> "2"). */
function luaHttpVersion(v: string): string {
  const n = Number(v);
  return Number.isInteger(n) ? String(n) : v;
}

/**
 * The `proxy_set_header` lines of kong/templates/nginx_kong.lua (3.9.3), in order, with the
 * values kong/runloop/handler.lua (3.9.3) access.after gives them. An empty value sends no
 * header, and the client's header of that name is not passed either (nginx replaces it).
 */
function kongUpstreamHeaders(st: RequestState): Array<[string, string]> {
  const svc = st.service;
  if (!svc) return [];
  const clientHost = st.headers.get('host')?.[0] ?? '';
  const defaultPort = svc.protocol === 'https' ? 443 : 80;
  // kong.service.set_target sets ngx.var.upstream_host = host (kong/pdk/service.lua 3.9.3);
  // runloop access.after then keeps it (preserve_host) and balancer.set_host_header adds no port.
  const host = st.target
    ? st.target.host
    : st.route?.preserve_host
      ? clientHost
      : svc.port === defaultPort
        ? svc.host
        : `${svc.host}:${svc.port}`;
  const xff = joinedHeader(st.headers, 'x-forwarded-for');
  const via = joinedHeader(st.headers, 'via');
  const inboundVia = `${luaHttpVersion(st.httpVersion)} ${KONG_SERVER}`;
  const upgrade = joinedHeader(st.headers, 'upgrade')?.toLowerCase() === 'websocket';
  // "add te header only when client requests trailers (proxy removes it)"
  const te = (joinedHeader(st.headers, 'te') ?? '')
    .toLowerCase()
    .split(',')
    .some((x) => x.trim() === 'trailers');
  const out: Array<[string, string]> = [
    ['te', te ? 'trailers' : ''],
    ['via', via ? `${via}, ${inboundVia}` : inboundVia],
    ['host', host],
    ['upgrade', upgrade ? 'websocket' : ''],
    ['connection', upgrade ? 'keep-alive, Upgrade' : 'keep-alive'],
    ['x-forwarded-for', xff ? `${xff}, ${st.clientIp}` : st.clientIp],
    ['x-forwarded-proto', 'http'],
    ['x-forwarded-host', st.host],
    ['x-forwarded-port', String(st.serverPort)],
    ['x-forwarded-path', st.rawPath],
    // forwarded_prefix = match_t.prefix, which kong/router/atc.lua sets only for strip_path.
    ['x-forwarded-prefix', st.matchedPrefix && st.matchedPrefix !== '/' ? st.matchedPrefix : ''],
    ['x-real-ip', st.clientIp],
    ['x-kong-request-id', st.id],
  ];
  return out;
}

/**
 * Client headers nginx's proxy module does not pass (its default proxy_set_header list:
 * Keep-Alive, Expect, Upgrade, TE, Transfer-Encoding, Content-Length are its own) and those
 * kong/runloop/handler.lua access.after clears: every name listed in Connection, Proxy,
 * Proxy-Connection.
 */
function droppedClientHeaders(st: RequestState): Set<string> {
  const drop = new Set([
    'keep-alive',
    'expect',
    'transfer-encoding',
    'content-length',
    'proxy',
    'proxy-connection',
  ]);
  const conn = (joinedHeader(st.headers, 'connection') ?? '').toLowerCase();
  if (conn !== 'keep-alive' && conn !== 'close' && conn !== 'upgrade') {
    for (const n of conn.split(',')) {
      const name = n.trim();
      if (name && name !== 'close' && name !== 'keep-alive' && name !== 'upgrade') drop.add(name);
    }
  }
  return drop;
}

export function proxyToService(st: RequestState): Promise<ProxyResult> {
  const svc = st.service;
  if (!svc) return Promise.resolve({ kind: 'error', status: 502, reason: 'no service' });
  const kongSet = kongUpstreamHeaders(st);
  // A plugin-set Host wins (kong.service.request.set_header("host") sets $upstream_host).
  const pluginHost =
    st.upstream.headers.has('host') &&
    st.upstream.headers.get('host')?.[0] !== st.headers.get('host')?.[0]
      ? st.upstream.headers.get('host')?.[0]
      : undefined;
  if (pluginHost !== undefined) {
    const h = kongSet.find(([k]) => k === 'host');
    if (h) h[1] = pluginHost;
  }
  // proxy_set_header lines first, then the client's (and plugins') headers in order; a flat
  // list keeps repeats and lets a header named `__proto__` through as Kong does.
  const flat: string[] = [];
  for (const [k, v] of kongSet) if (v !== '') flat.push(k, v);
  const replaced = new Set(kongSet.map(([k]) => k));
  const drop = droppedClientHeaders(st);
  for (const [k, vs] of st.upstream.headers) {
    if (replaced.has(k) || drop.has(k)) continue;
    for (const v of vs) flat.push(k, v);
  }
  // nginx sends Content-Length ($proxy_internal_body_length) only for a request with a body
  // (Content-Length or chunked, read whole) or one a plugin replaced (ngx.req.set_body_data).
  if (st.headers.has('content-length') || st.headers.has('transfer-encoding') || st.bodyReplaced)
    flat.push('content-length', String(st.upstream.body.length));
  const path = st.upstream.path + (st.upstream.query ? `?${st.upstream.query}` : '');
  const started = performance.now();
  return new Promise((resolve) => {
    let settled = false;
    const done = (r: ProxyResult) => {
      if (!settled) {
        settled = true;
        resolve(r);
      }
    };
    const req = (svc.protocol === 'https' ? httpsRequest : httpRequest)({
      host: st.target?.host ?? svc.host,
      port: st.target?.port ?? svc.port,
      method: st.upstream.method,
      path,
      headers: flat,
      agent: false,
      rejectUnauthorized: false,
    });
    const connectTimer = setTimeout(() => {
      req.destroy();
      done({ kind: 'error', status: 504, reason: 'upstream timed out (connect)' });
    }, svc.connect_timeout);
    req.on('socket', (sock) => {
      sock.once('connect', () => {
        clearTimeout(connectTimer);
        req.setTimeout(svc.read_timeout, () => {
          req.destroy();
          done({ kind: 'error', status: 504, reason: 'upstream timed out (read)' });
        });
      });
    });
    req.on('response', (res) => {
      clearTimeout(connectTimer);
      done({ kind: 'response', res, waitingMs: performance.now() - started });
    });
    req.on('error', (e) => {
      clearTimeout(connectTimer);
      done({ kind: 'error', status: 502, reason: e.message });
    });
    req.end(st.upstream.body);
  });
}

/** Reads a whole upstream body, honouring read_timeout between reads (504 on expiry). */
export function readUpstreamBody(
  res: IncomingMessage,
  readTimeout: number,
): Promise<Buffer | 'timeout' | 'error'> {
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    let timer = setTimeout(() => onTimeout(), readTimeout);
    const onTimeout = () => {
      res.destroy();
      resolve('timeout');
    };
    res.on('data', (c: Buffer) => {
      chunks.push(c);
      clearTimeout(timer);
      timer = setTimeout(onTimeout, readTimeout);
    });
    res.on('end', () => {
      clearTimeout(timer);
      resolve(Buffer.concat(chunks));
    });
    res.on('error', () => {
      clearTimeout(timer);
      resolve('error');
    });
  });
}
