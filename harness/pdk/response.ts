// kong.response.* (kong/pdk/response.lua 3.9.3); in the log timer get_status/get_header(s)/
// get_source read the snapshot (plugin.lua exposed_api).
import { errorBody, defaultErrorMessage, responseType } from '../errors';
import { headerMapToObject, joinedHeader, normalizeHeaderName, type HeaderMap } from '../headers';
import type { DownstreamResponse, RequestState } from '../request-state';
import {
  ExitSignal,
  HEADER_BODY_LOG,
  KongLuaError,
  REWRITE_ACCESS_HEADER,
  bufferOf,
  checkPhase,
  luaType,
  maxHeadersArg,
  normalizeHeaderValues,
  type PdkFn,
} from './core';
import { truncateHeaders } from './request';

function currentHeaders(st: RequestState): HeaderMap {
  return st.response?.headers ?? st.pendingResponseHeaders;
}

/** A header value after validate_header + normalize_multi_header ("" is sent as " "). */
function toHeaderValues(name: string, v: unknown): string[] {
  return normalizeHeaderValues(rawHeaderValues(name, v));
}

function rawHeaderValues(name: string, v: unknown): string[] {
  if (typeof v === 'string' || typeof v === 'number' || typeof v === 'boolean') return [String(v)];
  if (Array.isArray(v)) return v.flatMap((x) => rawHeaderValues(name, x));
  throw new KongLuaError(
    `invalid header value for "${name}": got ${luaType(v)}, expected array of string, string, number or boolean`,
  );
}

function headersArg(headers: unknown): HeaderMap {
  const out: HeaderMap = new Map();
  if (headers === null || headers === undefined) return out;
  if (luaType(headers) !== 'table') throw new KongLuaError('headers must be a nil or table');
  for (const [k, v] of Object.entries(headers as Record<string, unknown>)) {
    const n = normalizeHeaderName(k);
    if (n === 'transfer-encoding') continue; // "manually setting Transfer-Encoding. Ignored."
    out.set(n, toHeaderValues(k, v));
  }
  return out;
}

function checkNotSent(st: RequestState): void {
  if (st.phase === 'log') throw new KongLuaError('headers have already been sent');
}

/** send() of kong/pdk/response.lua (3.9.3): JSON for tables, Content-Length always. */
export function buildExit(status: number, body: unknown, headers: HeaderMap): DownstreamResponse {
  let buf: Buffer | undefined;
  if (body !== null && body !== undefined) {
    const raw = bufferOf(body);
    if (raw) buf = raw;
    else {
      buf = Buffer.from(JSON.stringify(body));
      if (!headers.has('content-type'))
        headers.set('content-type', ['application/json; charset=utf-8']);
    }
  }
  if (!headers.has('content-length')) headers.set('content-length', [String(buf?.length ?? 0)]);
  return { status, headers, body: buf ?? Buffer.alloc(0) };
}

function finishExit(st: RequestState, res: DownstreamResponse): never {
  st.exited = true;
  // Headers already set (ngx.header: kong.response.set_header earlier, or the buffered upstream
  // headers in the response phase) stay on the response; exit's own headers win.
  for (const [k, v] of currentHeaders(st)) if (!res.headers.has(k)) res.headers.set(k, v);
  st.exitResponse = res;
  throw new ExitSignal('exit');
}

export const responsePdk: Record<string, PdkFn> = {
  'kong.response.get_status': (st) => {
    checkPhase(st, HEADER_BODY_LOG);
    return st.response?.status ?? st.pendingStatus ?? 200;
  },
  'kong.response.get_header': (st, [name]) => {
    checkPhase(st, HEADER_BODY_LOG);
    if (typeof name !== 'string') throw new KongLuaError('header name must be a string');
    // kong/pdk/response.lua (3.9.3) get_header: get_headers()[name] (so within the default
    // 100 header lines), and for a header sent several times its first value (also what
    // plugin.lua's log-timer override returns from saved.response_headers).
    return truncateHeaders(currentHeaders(st), 100).get(normalizeHeaderName(name))?.[0] ?? null;
  },
  'kong.response.get_headers': (st, [max]) => {
    checkPhase(st, HEADER_BODY_LOG);
    // kong/pdk/response.lua (3.9.3) get_headers(max_headers): nil -> ngx.resp.get_headers()
    // (100 header lines), else a number 1..1000. plugin.lua (3.9.3) exposed_api: the log timer
    // answers saved.response_headers (ngx.resp.get_headers() when log started), whatever the
    // argument.
    const limit = st.inLogTimer ? 100 : maxHeadersArg(max);
    return headerMapToObject(truncateHeaders(currentHeaders(st), limit));
  },
  'kong.response.get_source': (st) => {
    checkPhase(st, HEADER_BODY_LOG);
    if (st.unexpected) return 'error';
    if (st.exited) return 'exit';
    if (st.proxied) return 'service';
    return 'error';
  },
  'kong.response.set_status': (st, [status]) => {
    checkPhase(st, REWRITE_ACCESS_HEADER);
    checkNotSent(st);
    if (typeof status !== 'number' || !Number.isInteger(status))
      throw new KongLuaError('code must be a number');
    if (status < 100 || status > 599)
      throw new KongLuaError('code must be a number between 100 and 599');
    if (st.response) st.response.status = status;
    else st.pendingStatus = status;
    return null;
  },
  'kong.response.set_header': (st, [name, value]) => {
    checkPhase(st, REWRITE_ACCESS_HEADER);
    checkNotSent(st);
    if (typeof name !== 'string') throw new KongLuaError('header name must be a string');
    currentHeaders(st).set(normalizeHeaderName(name), toHeaderValues(name, value));
    return null;
  },
  'kong.response.add_header': (st, [name, value]) => {
    checkPhase(st, REWRITE_ACCESS_HEADER);
    checkNotSent(st);
    if (typeof name !== 'string') throw new KongLuaError('header name must be a string');
    const h = currentHeaders(st);
    const n = normalizeHeaderName(name);
    h.set(n, [...(h.get(n) ?? []), ...toHeaderValues(name, value)]);
    return null;
  },
  'kong.response.clear_header': (st, [name]) => {
    checkPhase(st, REWRITE_ACCESS_HEADER);
    checkNotSent(st);
    if (typeof name !== 'string') throw new KongLuaError('header name must be a string');
    currentHeaders(st).delete(normalizeHeaderName(name));
    return null;
  },
  'kong.response.set_headers': (st, [headers]) => {
    checkPhase(st, REWRITE_ACCESS_HEADER);
    checkNotSent(st);
    const h = currentHeaders(st);
    for (const [k, v] of headersArg(headers)) h.set(k, v);
    return null;
  },
  'kong.response.exit': (st, [status, body, headers]) => {
    checkPhase(st, REWRITE_ACCESS_HEADER);
    checkNotSent(st);
    if (typeof status !== 'number') throw new KongLuaError('code must be a number');
    if (status < 100 || status > 599)
      throw new KongLuaError('code must be a number between 100 and 599');
    if (body !== null && body !== undefined && !['string', 'table'].includes(luaType(body))) {
      throw new KongLuaError('body must be a nil, string or table');
    }
    return finishExit(st, buildExit(status, body, headersArg(headers)));
  },
  'kong.response.error': (st, [status, message, headers]) => {
    checkPhase(st, REWRITE_ACCESS_HEADER);
    checkNotSent(st);
    if (typeof status !== 'number') throw new KongLuaError('code must be a number');
    if (status < 400 || status > 599)
      throw new KongLuaError('code must be a number between 400 and 599');
    let msg: string | undefined;
    if (message !== null && message !== undefined) {
      if (luaType(message) === 'table' && !(message instanceof Uint8Array))
        msg = JSON.stringify(message);
      else if (typeof message === 'string') msg = message;
      else throw new KongLuaError('message must be a nil, a string or a table');
    }
    const h = headersArg(headers);
    const ct =
      h.get('content-type')?.[0] ?? responseType(joinedHeader(st.upstream.headers, 'accept'));
    h.set('content-type', [ct]);
    return finishExit(
      st,
      buildExit(status, errorBody(ct, msg ?? defaultErrorMessage(status), st.id, st.errorConf), h),
    );
  },
  'kong.response.get_raw_body': (st) => (checkPhase(st, ['body_filter']), null),
  'kong.response.set_raw_body': (st) => (checkPhase(st, ['body_filter']), null),
};
