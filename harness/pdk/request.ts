// kong.request.* (kong/pdk/request.lua 3.9.3); log-phase overrides from
// kong/runloop/plugin_servers/plugin.lua (3.9.3) exposed_api.
import { normalizePath } from '../nginx';
import { headerMapToObject, joinedHeader, normalizeHeaderName, type HeaderMap } from '../headers';
import type { RequestState } from '../request-state';
import {
  BEFORE_CONTENT,
  KongLuaError,
  REQUEST_PHASES,
  checkPhase,
  maxHeadersArg,
  requireRequestContext,
  type PdkFn,
} from './core';

/** Client body buffer (kong_defaults.lua client_body_buffer_size = 8k); larger bodies go to a file. */
export let clientBodyBufferSize = 8192;
export function setClientBodyBufferSize(n: number): void {
  clientBodyBufferSize = n;
}

export function parseQuery(raw: string | undefined): Map<string, Array<string | true>> {
  const out = new Map<string, Array<string | true>>();
  if (!raw) return out;
  for (const part of raw.split('&')) {
    if (part === '') continue;
    const eq = part.indexOf('=');
    const dec = (s: string) => {
      try {
        return decodeURIComponent(s.replace(/\+/g, ' '));
      } catch {
        return s;
      }
    };
    const k = dec(eq < 0 ? part : part.slice(0, eq));
    const v: string | true = eq < 0 ? true : dec(part.slice(eq + 1));
    out.set(k, [...(out.get(k) ?? []), v]);
  }
  return out;
}

/** Lua table shape of ngx.req.get_uri_args, then mp_rpc fix_mmap: true -> [], string -> [s]. */
function queryToObject(q: Map<string, Array<string | true>>): Record<string, string[]> {
  // No prototype, as a Lua table: `?__proto__=1` arrives as an ordinary key.
  const out = Object.create(null) as Record<string, string[]>;
  for (const [k, vs] of q)
    out[k] = vs.length === 1 && vs[0] === true ? [] : vs.map((v) => (v === true ? '' : v));
  return out;
}

/**
 * The request headers as ngx.req holds them now: kong.request.get_header(s) read
 * ngx.req.get_headers()/$http_*, which kong.service.request.set_header (ngx.req.set_header)
 * changes, so a later plugin sees what an earlier one set or cleared (key-auth's
 * X-Consumer-*, a removed credential). Before the upstream request exists, the client's.
 */
function currentHeaders(st: RequestState) {
  return st.upstream?.headers ?? st.headers;
}

/** ngx.req.get_headers(max): at most `max` header lines, in order. */
export function truncateHeaders(map: HeaderMap, max: number): HeaderMap {
  const out: HeaderMap = new Map();
  let n = 0;
  for (const [k, vs] of map) {
    for (const v of vs) {
      if (n >= max) return out;
      out.set(k, [...(out.get(k) ?? []), v]);
      n++;
    }
  }
  return out;
}

function rawBody(st: RequestState, maxAllowedFileSize: unknown): Buffer | null {
  // kong/pdk/request.lua 3.9.3 get_raw_body(max_allowed_file_size): a body that did not fit the
  // client body buffer lives in a file. Without the argument (or with a negative one) Kong
  // returns nil, "request body did not fit ..."; with 0 it reads the file whatever its size;
  // with N > 0 it returns nil when the file is larger than N. mp_rpc passes the JS arguments
  // through (`method(unpack(args))`).
  //
  // It reads ngx.req.get_body_data(), i.e. the body as it stands: once a plugin replaced it
  // (kong.service.request.set_raw_body/set_body -> ngx.req.set_body_data, which drops the
  // temp file and keeps the new body in memory) later plugins read the new body, whatever
  // its size.
  if (st.bodyReplaced) return st.upstream.body;
  if (st.body.length <= clientBodyBufferSize) return st.body;
  if (typeof maxAllowedFileSize !== 'number' || maxAllowedFileSize < 0) return null;
  if (maxAllowedFileSize > 0 && st.body.length > maxAllowedFileSize) return null;
  return st.body;
}

function decodeForm(text: string): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [k, vs] of parseQuery(text)) out[k] = vs.length === 1 ? vs[0] : vs;
  return out;
}

/** The error lua-MessagePack raises when Kong packs a nil raw body (mp_rpc.lua fix_raw). */
export const MSGPACK_NIL_BODY =
  "/usr/local/share/lua/5.1/MessagePack.lua:126: attempt to get length of local 'str' (a nil value)";

export const requestPdk: Record<string, PdkFn> = {
  'kong.request.get_scheme': (st) => (requireRequestContext(st), 'http'),
  'kong.request.get_host': (st) => (requireRequestContext(st), st.host),
  'kong.request.get_port': (st) => (requireRequestContext(st), st.serverPort),
  'kong.request.get_forwarded_scheme': (st) => (requireRequestContext(st), 'http'),
  'kong.request.get_forwarded_host': (st) => (requireRequestContext(st), st.host),
  'kong.request.get_forwarded_port': (st) => (requireRequestContext(st), st.serverPort),
  'kong.request.get_forwarded_path': (st) => (requireRequestContext(st), st.rawPath),
  'kong.request.get_forwarded_prefix': (st) => (
    requireRequestContext(st),
    st.matchedPrefix && st.matchedPrefix !== '/' ? st.matchedPrefix : null
  ),
  'kong.request.get_http_version': (st) => (requireRequestContext(st), Number(st.httpVersion)),
  // ngx.req.get_method(): what kong.service.request.set_method (ngx.req.set_method) left.
  'kong.request.get_method': (st) => (requireRequestContext(st), st.upstream.method),
  // kong/pdk/request.lua get_path: normalize(get_raw_path(), true) (kong/tools/uri.lua); the
  // decoded bytes travel as a string.
  'kong.request.get_path': (st) => (
    requireRequestContext(st),
    Buffer.from(normalizePath(st.rawPath), 'latin1').toString('utf8')
  ),
  'kong.request.get_raw_path': (st) => (requireRequestContext(st), st.rawPath),
  'kong.request.get_path_with_query': (st) => (
    requireRequestContext(st),
    st.rawPath + (st.rawQuery ? `?${st.rawQuery}` : '')
  ),
  // var.args: what set_raw_query / set_query (ngx.req.set_uri_args) and clear_query_arg
  // (ngx.var.args) of an earlier plugin left, e.g. key-auth's hide_credentials.
  'kong.request.get_raw_query': (st) => (requireRequestContext(st), st.upstream.query),
  'kong.request.get_query_arg': (st, [name]) => {
    requireRequestContext(st);
    const v = parseQuery(st.upstream.query).get(String(name))?.[0];
    return v === undefined ? null : v;
  },
  'kong.request.get_query': (st) => (
    requireRequestContext(st),
    queryToObject(parseQuery(st.upstream.query))
  ),
  'kong.request.get_header': (st, [name]) => {
    if (typeof name !== 'string') throw new KongLuaError('header name must be a string');
    const h = currentHeaders(st);
    // kong/runloop/plugin_servers/plugin.lua (3.9.3) exposed_api: in the log timer,
    // saved.request_headers[name] (or its [1]) where saved.request_headers = ngx.req.get_headers()
    // taken when the log phase starts, i.e. the request headers as plugins left them.
    if (st.inLogTimer) return h.get(normalizeHeaderName(name))?.[0] ?? null;
    // kong/tools/http.lua (3.9.3) get_header: $http_<name> (repeated headers joined by ", "
    // since nginx 1.23); when that value contains ", " it reads ngx.req.get_headers()[name]
    // instead and returns the FIRST value of a repeated header (a single value is kept whole).
    const joined = joinedHeader(h, name);
    if (joined === undefined) return null;
    if (!joined.includes(', ')) return joined;
    return h.get(normalizeHeaderName(name))?.[0] ?? null;
  },
  'kong.request.get_headers': (st, [max]) => {
    // kong/pdk/request.lua (3.9.3) get_headers(max_headers): 1..1000, default 100
    // (ngx.req.get_headers: header lines beyond the limit are left out, "truncated").
    // plugin.lua (3.9.3) exposed_api: the log timer answers saved.request_headers
    // (ngx.req.get_headers() with its default limit), whatever the argument.
    const limit = st.inLogTimer ? 100 : maxHeadersArg(max);
    return headerMapToObject(truncateHeaders(currentHeaders(st), limit));
  },
  'kong.request.get_raw_body': (st, [maxAllowedFileSize]) => {
    checkPhase(st, BEFORE_CONTENT);
    requireRequestContext(st);
    const body = rawBody(st, maxAllowedFileSize);
    // mp_rpc.lua call_pdk_method keeps only the first return value and passes it to fix_raw,
    // whose packer does `#str`: a nil body (too big for the buffer / for the given maximum)
    // is a Lua error while Kong packs the Step reply, so the phase fails with a 500. Observed
    // on Kong 3.9.3 with a 2 MB chunked body and get_raw_body(1 MiB).
    if (body === null) throw new KongLuaError(MSGPACK_NIL_BODY);
    return body;
  },
  'kong.request.get_body': (st, [mimetype, , maxAllowedFileSize]) => {
    checkPhase(st, BEFORE_CONTENT);
    requireRequestContext(st);
    const ct =
      typeof mimetype === 'string' ? mimetype : joinedHeader(currentHeaders(st), 'content-type');
    if (!ct) return null; // nil, "missing content type": only the first value crosses
    const type = (ct.toLowerCase().split(';')[0] ?? '').trim();
    // get_body(mimetype, max_args, max_allowed_file_size) reads the body like get_raw_body.
    const body = rawBody(st, maxAllowedFileSize);
    if (type.startsWith('application/x-www-form-urlencoded'))
      return decodeForm((st.bodyReplaced ? st.upstream.body : st.body).toString('utf8'));
    if (type.startsWith('application/json')) {
      if (body === null) return null;
      try {
        const json: unknown = JSON.parse(body.toString('utf8'));
        return typeof json === 'object' && json !== null ? json : null; // "invalid json body"
      } catch {
        return null;
      }
    }
    return null; // multipart not emulated; "unsupported content type" -> nil
  },
  'kong.request.get_start_time': (st) => {
    checkPhase(st, REQUEST_PHASES);
    return st.startTime;
  },
};
