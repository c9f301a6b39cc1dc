// The proxy step: the request as modified by kong.service.request.* goes to the service.
// Upstream headers: kong/templates/nginx_kong.lua (3.9.3) proxy_set_header list, values from
// kong/runloop/handler.lua (3.9.3) access.after (X-Forwarded-*, Via, Host via balancer.set_host_header).
// Errors: connection failure -> 502, timeouts -> 504 (nginx upstream errors, rendered by
// kong/error_handlers.lua).
import { request as httpRequest, type IncomingMessage } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { KONG_SERVER } from './kong-headers';
import type { RequestState } from './request-state';

export type ProxyResult =
  | { kind: 'response'; res: IncomingMessage; waitingMs: number }
  | { kind: 'error'; status: 502 | 504; reason: string };

function kongUpstreamHeaders(st: RequestState): Record<string, string> {
  const svc = st.service;
  if (!svc) return {};
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
  const xff = st.headers.get('x-forwarded-for');
  const via = st.headers.get('via')?.join(', ');
  const inboundVia = `${st.httpVersion} ${KONG_SERVER}`;
  const out: Record<string, string> = {
    host,
    via: via ? `${via}, ${inboundVia}` : inboundVia,
    connection: 'keep-alive',
    'x-forwarded-for': xff ? `${xff.join(', ')}, ${st.clientIp}` : st.clientIp,
    'x-forwarded-proto': 'http',
    'x-forwarded-host': st.host,
    'x-forwarded-port': String(st.serverPort),
    'x-forwarded-path': st.rawPath,
    'x-real-ip': st.clientIp,
    'x-kong-request-id': st.id,
  };
  if (st.matchedPrefix && st.matchedPrefix !== '/') out['x-forwarded-prefix'] = st.matchedPrefix;
  return out;
}

export function proxyToService(st: RequestState): Promise<ProxyResult> {
  const svc = st.service;
  if (!svc) return Promise.resolve({ kind: 'error', status: 502, reason: 'no service' });
  const headers: Record<string, string | string[]> = {};
  for (const [k, v] of st.upstream.headers) {
    if (
      k === 'transfer-encoding' ||
      k === 'connection' ||
      k === 'keep-alive' ||
      k === 'te' ||
      k === 'upgrade'
    )
      continue;
    headers[k] = v.length === 1 ? (v[0] as string) : v;
  }
  const kongSet = kongUpstreamHeaders(st);
  // A plugin-set Host wins (kong.service.request.set_header("host") sets $upstream_host).
  if (
    st.upstream.headers.has('host') &&
    st.upstream.headers.get('host')?.[0] !== st.headers.get('host')?.[0]
  )
    delete kongSet.host;
  Object.assign(headers, kongSet);
  headers['content-length'] = String(st.upstream.body.length);
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
      headers,
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
