// kong.service.request.* (kong/pdk/service/request.lua 3.9.3) and
// kong.service.response.* (kong/pdk/service/response.lua 3.9.3).
import { headerMapToObject, joinedHeader, normalizeHeaderName, type HeaderMap } from '../headers';
import type { RequestState } from '../request-state';
import {
  ACCESS_REWRITE_BALANCER,
  HEADER_BODY_LOG,
  KongLuaError,
  bufferOf,
  checkPhase,
  luaString,
  luaType,
  maxHeadersArg,
  normalizeHeaderValues,
  requireRequestContext,
  type PdkFn,
} from './core';
import { truncateHeaders } from './request';

function headerValue(name: string, value: unknown): string[] {
  if (typeof value === 'string') return [value];
  if (typeof value === 'number' || typeof value === 'boolean') return [String(value)];
  if (value instanceof Uint8Array) return [Buffer.from(value).toString('utf8')];
  if (Array.isArray(value)) {
    // kong/pdk/private/checks.lua (3.9.3) validate_header(s): array entries must be strings
    // (numbers and booleans are accepted only as a whole value).
    return value.map((v) => {
      if (typeof v === 'string') return v;
      if (v instanceof Uint8Array) return Buffer.from(v).toString('utf8');
      throw new KongLuaError(
        `invalid header value in array "${name}": got ${luaType(v)}, expected string`,
      );
    });
  }
  throw new KongLuaError(
    `invalid header value for "${name}": got ${luaType(value)}, expected array of string, string, number or boolean`,
  );
}

function headerName(name: unknown): string {
  if (typeof name !== 'string')
    throw new KongLuaError(
      `invalid header name "${String(name)}": got ${luaType(name)}, expected string`,
    );
  // ngx.req.set_header keeps the name as given (lua-nginx-module's "_" -> "-" rewrite is
  // compiled out with #if 0); only case is folded when it matches existing headers.
  return name.toLowerCase();
}

function setHeader(map: HeaderMap, name: unknown, value: unknown, add = false): void {
  const n = headerName(name);
  // kong/pdk/service/request.lua (3.9.3) set_header/add_header/set_headers:
  // ngx.req.set_header(name, normalize_multi_header(value)), so "" travels as " ".
  const vs = normalizeHeaderValues(headerValue(n, value));
  // ngx.req.set_header(name, {}) removes the header (lua-nginx-module treats an empty value
  // list like nil); kong/pdk/service/request.lua set_header/set_headers pass the table through.
  if (!add && vs.length === 0) {
    map.delete(n);
    return;
  }
  map.set(n, add ? [...(map.get(n) ?? []), ...vs] : vs);
}

function encodeArgs(args: Record<string, unknown>): string {
  const parts: string[] = [];
  for (const k of Object.keys(args).sort()) {
    const v = args[k];
    const vals = Array.isArray(v) ? v : [v];
    for (const x of vals) {
      if (x === true) parts.push(encodeURIComponent(k));
      else if (x !== false && x !== null && x !== undefined)
        parts.push(`${encodeURIComponent(k)}=${encodeURIComponent(String(x))}`);
    }
  }
  return parts.join('&');
}

function setBody(st: RequestState, body: Buffer): void {
  st.upstream.body = body;
  st.bodyReplaced = true;
  st.upstream.headers.set('content-length', [String(body.length)]);
}

/**
 * kong/pdk/service/response.lua (3.9.3) get_headers. After buffered proxying
 * (ctx.buffered_headers, set by kong/init.lua Kong.response, also in the log timer's cloned
 * ngx.ctx) it returns attach_buffered_headers_mt: an empty table whose __index looks names up.
 * mp_rpc.lua fix_mmap walks it with pairs(), so a plugin server receives an EMPTY map
 * (`forWire`); get_header still finds names. Without buffered headers it reads
 * ngx.resp.get_headers(max), which needs the request: a Lua error in plugin.lua's log timer.
 */
function serviceResponseHeaders(st: RequestState, limit: number, forWire: boolean): HeaderMap {
  if (st.bufferedProxying && st.serviceResponse?.body !== undefined) {
    return forWire ? new Map() : st.serviceResponse.headers;
  }
  requireRequestContext(st);
  return st.serviceResponse ? truncateHeaders(st.serviceResponse.headers, limit) : new Map();
}

export const servicePdk: Record<string, PdkFn> = {
  // kong/pdk/service.lua (3.9.3) set_target: phases access, rewrite, balancer, preread;
  // ngx.var.upstream_host = host; ctx.balancer_data.host/port = host/port.
  'kong.service.set_target': (st, [host, port]) => {
    checkPhase(st, ACCESS_REWRITE_BALANCER);
    if (typeof host !== 'string') throw new KongLuaError('host must be a string');
    if (typeof port !== 'number' || Math.floor(port) !== port)
      throw new KongLuaError('port must be an integer');
    if (port < 0 || port > 65535)
      throw new KongLuaError(`port must be an integer between 0 and 65535: given ${port}`);
    st.target = { host, port };
    return null;
  },
  'kong.service.request.enable_buffering': (st) => {
    checkPhase(st, ['rewrite', 'access']);
    st.bufferedProxying = true;
    return null;
  },
  'kong.service.request.set_scheme': (st, [scheme]) => {
    checkPhase(st, ACCESS_REWRITE_BALANCER);
    if (scheme !== 'http' && scheme !== 'https')
      throw new KongLuaError(`invalid scheme: ${String(scheme)}`);
    return null;
  },
  'kong.service.request.set_path': (st, [path]) => {
    checkPhase(st, ACCESS_REWRITE_BALANCER);
    if (typeof path !== 'string') throw new KongLuaError('path must be a string');
    if (!path.startsWith('/')) throw new KongLuaError('path must start with /');
    st.upstream.path = path;
    return null;
  },
  'kong.service.request.set_raw_query': (st, [q]) => {
    checkPhase(st, ACCESS_REWRITE_BALANCER);
    if (typeof q !== 'string') throw new KongLuaError('query must be a string');
    st.upstream.query = q;
    return null;
  },
  'kong.service.request.set_method': (st, [m]) => {
    checkPhase(st, ACCESS_REWRITE_BALANCER);
    if (typeof m !== 'string' || !/^[A-Z]+$/.test(m))
      throw new KongLuaError(`invalid method: ${String(m)}`);
    st.upstream.method = m;
    return null;
  },
  'kong.service.request.set_query': (st, [args]) => {
    checkPhase(st, ACCESS_REWRITE_BALANCER);
    if (luaType(args) !== 'table') throw new KongLuaError('args must be a table');
    st.upstream.query = encodeArgs(args as Record<string, unknown>);
    return null;
  },
  'kong.service.request.clear_query_arg': (st, [name]) => {
    checkPhase(st, ACCESS_REWRITE_BALANCER);
    if (typeof name !== 'string') throw new KongLuaError('query argument name must be a string');
    st.upstream.query = st.upstream.query
      .split('&')
      .filter((p) => p !== '' && decodeURIComponent(p.split('=')[0] ?? '') !== name)
      .join('&');
    return null;
  },
  'kong.service.request.set_header': (st, [name, value]) => {
    checkPhase(st, ACCESS_REWRITE_BALANCER);
    setHeader(st.upstream.headers, name, value);
    return null;
  },
  'kong.service.request.add_header': (st, [name, value]) => {
    checkPhase(st, ACCESS_REWRITE_BALANCER);
    setHeader(st.upstream.headers, name, value, true);
    return null;
  },
  'kong.service.request.clear_header': (st, [name]) => {
    checkPhase(st, ACCESS_REWRITE_BALANCER);
    st.upstream.headers.delete(headerName(name));
    return null;
  },
  'kong.service.request.set_headers': (st, [headers]) => {
    checkPhase(st, ACCESS_REWRITE_BALANCER);
    if (luaType(headers) !== 'table') throw new KongLuaError('headers must be a table');
    for (const [k, v] of Object.entries(headers as Record<string, unknown>))
      setHeader(st.upstream.headers, k, v);
    return null;
  },
  'kong.service.request.set_raw_body': (st, [body]) => {
    checkPhase(st, ACCESS_REWRITE_BALANCER);
    const buf = bufferOf(body);
    if (!buf) throw new KongLuaError('body must be a string');
    setBody(st, buf);
    return null;
  },
  'kong.service.request.set_body': (st, [args, mimetype]) => {
    checkPhase(st, ACCESS_REWRITE_BALANCER);
    if (luaType(args) !== 'table') throw new KongLuaError('args must be a table');
    const ct = luaString(mimetype) ?? joinedHeader(st.upstream.headers, 'content-type');
    if (!ct) throw new KongLuaError('content type must be provided');
    const type = (ct.toLowerCase().split(';')[0] ?? '').trim();
    if (type === 'application/json') setBody(st, Buffer.from(JSON.stringify(args)));
    else if (type === 'application/x-www-form-urlencoded')
      setBody(st, Buffer.from(encodeArgs(args as Record<string, unknown>)));
    else throw new KongLuaError(`harness: set_body for content type '${type}' is not emulated`);
    if (typeof mimetype === 'string') st.upstream.headers.set('content-type', [mimetype]);
    return null;
  },

  'kong.service.response.get_status': (st) => {
    checkPhase(st, HEADER_BODY_LOG);
    return st.serviceResponse?.status ?? null;
  },
  'kong.service.response.get_headers': (st, [max]) => {
    checkPhase(st, HEADER_BODY_LOG);
    return headerMapToObject(serviceResponseHeaders(st, maxHeadersArg(max), true));
  },
  'kong.service.response.get_header': (st, [name]) => {
    checkPhase(st, HEADER_BODY_LOG);
    if (typeof name !== 'string') throw new KongLuaError('name must be a string');
    // kong/pdk/service/response.lua (3.9.3) get_header: get_headers()[name], the first value
    // of a repeated header (the buffered proxy table is indexed by name, so it finds it).
    const h = serviceResponseHeaders(st, 100, false);
    return h.get(normalizeHeaderName(name))?.[0] ?? null;
  },
  'kong.service.response.get_raw_body': (st) => {
    checkPhase(st, HEADER_BODY_LOG);
    if (!st.bufferedProxying) {
      throw new KongLuaError(
        'service body is only available with buffered proxying (see: kong.service.request.enable_buffering function)',
      );
    }
    return st.serviceResponse?.body ?? Buffer.alloc(0);
  },
  'kong.service.response.get_body': (st) => {
    checkPhase(st, HEADER_BODY_LOG);
    if (!st.bufferedProxying) {
      throw new KongLuaError(
        'service body is only available with buffered proxying (see: kong.service.request.enable_buffering function)',
      );
    }
    const ct = st.serviceResponse
      ? joinedHeader(st.serviceResponse.headers, 'content-type')
      : undefined;
    if (!ct?.toLowerCase().startsWith('application/json')) return null;
    try {
      const v: unknown = JSON.parse((st.serviceResponse?.body ?? Buffer.alloc(0)).toString('utf8'));
      return typeof v === 'object' && v !== null ? v : null;
    } catch {
      return null;
    }
  },
};
