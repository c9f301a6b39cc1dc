// What nginx (OpenResty 1.25.3.2 as Kong 3.9.3 builds and configures it) does to a request
// before Kong's Lua sees it, mirrored from the nginx sources and checked against the real Kong
// by test/parity/kong-vs-harness.test.ts:
// - ngx_http_request.c / ngx_http_parse.c: request-line and header parsing, with Kong's
//   `large_client_header_buffers 4 8k` (nginx default, kong/templates/nginx_kong.lua leaves it),
//   `max_headers 1000` (nginx default), `underscores_in_headers on` (nginx_kong.lua) and
//   `ignore_invalid_headers on` (default). A refusal here is a 400/414/494 rendered by
//   kong/error_handlers.lua (494 is sent as 400 "Request header or cookie too large").
// - kong/tools/uri.lua normalize/escape and kong/router/utils.lua strip_uri_args: the path the
//   router matches and the upstream URI.

/** nginx `large_client_header_buffers 4 8k`. */
const LARGE_BUFFER = 8192;
const LARGE_BUFFERS = 4;
/** nginx `max_headers` default: from the 1001st header line, 494. */
const MAX_HEADERS = 1000;

/**
 * Headers nginx keeps one of (ngx_http_headers_in with ngx_http_process_unique_header_line,
 * plus Host in ngx_http_process_host): a second line is "client sent duplicate header line",
 * 400 before any plugin runs.
 */
const UNIQUE_HEADERS = new Set([
  'host',
  'if-modified-since',
  'if-unmodified-since',
  'if-match',
  'if-none-match',
  'content-length',
  'content-range',
  'if-range',
  'transfer-encoding',
  'expect',
  'authorization',
]);

export interface RequestHead {
  method: string;
  /** The request target as sent (origin-form, absolute-form, `*`). */
  target: string;
  httpVersion: string;
  /** Node's rawHeaders: name, value, name, value… */
  rawHeaders: string[];
}

export interface NginxRefusal {
  /** 400, 414 or 494 (kong/error_handlers.lua sends 494 as 400). */
  status: 400 | 413 | 414 | 494;
  reason: string;
}

export interface ParsedTarget {
  /** The path of the request URI as sent (no query), what $request_uri starts with. */
  path: string;
  /** The raw query ($args) or undefined when there is no `?`. */
  query: string | undefined;
  /** Host from an absolute-form target (nginx prefers it to the Host header for $host). */
  host: string | undefined;
}

/** Splits the request target: absolute-form `http://host/path?q` or origin-form `/path?q`. */
export function parseTarget(target: string): ParsedTarget | undefined {
  let rest = target;
  let host: string | undefined;
  const abs = /^https?:\/\/([^/?#]*)/i.exec(target);
  if (abs) {
    host = abs[1];
    rest = target.slice(abs[0].length) || '/';
    if (!rest.startsWith('/')) rest = `/${rest}`;
  }
  if (!rest.startsWith('/')) return undefined;
  const q = rest.indexOf('?');
  return {
    path: q < 0 ? rest : rest.slice(0, q),
    query: q < 0 ? undefined : rest.slice(q + 1),
    host,
  };
}

/**
 * ngx_http_parse_complex_uri: %XX decoded, dot segments resolved; a `%00` or a `..` above the
 * root makes the request invalid (400).
 */
function uriEscapesRoot(path: string): string | undefined {
  let decoded: string;
  try {
    decoded = path.replace(/%([0-9a-f]{2})/gi, (_, h: string) =>
      String.fromCharCode(parseInt(h, 16)),
    );
  } catch {
    return undefined;
  }
  if (decoded.includes('\0')) return 'a %00 in the URI';
  let depth = 0;
  for (const seg of decoded.split('/').slice(1)) {
    if (seg === '..') {
      depth -= 1;
      if (depth < 0) return 'a .. above the root';
    } else if (seg !== '.' && seg !== '') depth += 1;
  }
  return undefined;
}

/**
 * ngx_http_alloc_large_header_buffer: the request line and each header line must fit in one
 * 8k buffer (else 414 / 494), and a header block is spread over at most four of them (a line
 * that does not fit in what is left of a buffer moves whole to the next one).
 */
function bufferRefusal(head: RequestHead): NginxRefusal | undefined {
  const requestLine = `${head.method} ${head.target} HTTP/${head.httpVersion}\r\n`.length;
  if (requestLine > LARGE_BUFFER) return { status: 414, reason: 'client sent too long URI' };
  let buffers = 1;
  let used = requestLine;
  for (let i = 0; i + 1 < head.rawHeaders.length; i += 2) {
    const len = `${head.rawHeaders[i] as string}: ${head.rawHeaders[i + 1] as string}\r\n`.length;
    if (len > LARGE_BUFFER) return { status: 494, reason: 'client sent too long header line' };
    if (used + len > LARGE_BUFFER) {
      buffers += 1;
      used = 0;
    }
    used += len;
  }
  if (used + 2 > LARGE_BUFFER) buffers += 1;
  if (buffers > LARGE_BUFFERS) return { status: 494, reason: 'client sent too large request' };
  return undefined;
}

/** What nginx refuses before Kong runs, or undefined. */
export function nginxRefusal(head: RequestHead): NginxRefusal | undefined {
  if (!/^[A-Z_-]+$/.test(head.method)) return { status: 400, reason: 'client sent invalid method' };
  const lines = head.rawHeaders.length / 2;
  if (lines > MAX_HEADERS) return { status: 494, reason: 'client sent too many header lines' };
  const sizes = bufferRefusal(head);
  if (sizes) return sizes;
  const target = parseTarget(head.target);
  if (!target) return { status: 400, reason: 'client sent invalid request' };
  const bad = uriEscapesRoot(target.path);
  if (bad) return { status: 400, reason: `client sent invalid request (${bad})` };
  const seen = new Set<string>();
  for (let i = 0; i < head.rawHeaders.length; i += 2) {
    const name = (head.rawHeaders[i] as string).toLowerCase();
    if (UNIQUE_HEADERS.has(name) && seen.has(name))
      return { status: 400, reason: `client sent duplicate header line: ${name}` };
    seen.add(name);
  }
  if (head.httpVersion === '1.1' && !seen.has('host') && target.host === undefined)
    return { status: 400, reason: 'client sent HTTP/1.1 request without "Host" header' };
  return undefined;
}

/**
 * ignore_invalid_headers on, underscores_in_headers on: a header whose name has a character
 * other than letters, digits, `-` and `_` (e.g. `X.Tenant.Id`) is dropped, as if never sent.
 */
export function dropInvalidHeaders(raw: string[]): string[] {
  const out: string[] = [];
  for (let i = 0; i + 1 < raw.length; i += 2) {
    if (/^[A-Za-z0-9_-]+$/.test(raw[i] as string)) out.push(raw[i] as string, raw[i + 1] as string);
  }
  return out;
}

/** kong/tools/uri.lua RESERVED_CHARS: these stay percent-encoded (hex upper-cased). */
const RESERVED = new Set([..."!*'();:@&=+$,/?%#[]"].map((c) => c.charCodeAt(0)));

/**
 * kong/tools/uri.lua normalize(uri, merge_slashes = true), as kong/router/utils.lua
 * strip_uri_args applies it to the request path before routing: %XX of unreserved and
 * "other" characters decoded, reserved ones upper-cased, dot segments removed, `//` merged.
 * Works on a latin1 string (one char per byte).
 */
export function normalizePath(uri: string): string {
  if (uri === '' || uri === '/') return uri;
  if (uri.includes('%')) {
    uri = uri.replace(/%([0-9a-f]{2})/gi, (m, hex: string) => {
      const n = parseInt(hex, 16);
      return RESERVED.has(n) ? m.toUpperCase() : String.fromCharCode(n);
    });
  }
  if (!uri.includes('.') && !uri.includes('//')) return uri;
  const out: string[] = [];
  while (uri.length > 0) {
    if (uri === '/.') uri = '/';
    else if (uri === '/..') {
      uri = '/';
      out.pop();
    } else if (uri === '.' || uri === '..') uri = '';
    else if (uri.startsWith('../')) uri = uri.slice(3);
    else if (uri.startsWith('./')) uri = uri.slice(2);
    else if (uri.startsWith('/./')) uri = uri.slice(2);
    else if (uri.startsWith('/../')) {
      uri = uri.slice(3);
      out.pop();
    } else if (uri.startsWith('//')) uri = uri.slice(1);
    else {
      const i = uri.indexOf('/', 1);
      out.push(i < 0 ? uri : uri.slice(0, i));
      uri = i < 0 ? '' : uri.slice(i);
    }
  }
  return out.join('');
}

/**
 * kong/tools/uri.lua escape (ESCAPE_PATTERN `[^!#$&'()*+,/:;=?@[\]A-Z\d\-_.~%]`): what
 * kong/runloop/handler.lua applies to the upstream URI. Input and output are latin1 strings.
 */
export function escapeUri(uri: string): string {
  return uri.replace(
    /[^!#$&'()*+,/:;=?@[\]A-Za-z0-9\-_.~%]/g,
    (c) => `%${c.charCodeAt(0).toString(16).toUpperCase().padStart(2, '0')}`,
  );
}

/**
 * nginx's size syntax (ngx_parse_offset): a number with an optional k/m/g suffix, any case.
 * `client_max_body_size 0` means no limit (Infinity here).
 */
export function parseNginxSize(
  value: string | number | boolean | undefined,
  fallback: number,
): number {
  if (value === undefined || typeof value === 'boolean') return fallback;
  const m = /^\s*(\d+)\s*([kKmMgG]?)\s*$/.exec(String(value));
  if (!m) return fallback;
  const n = Number(m[1]) * ({ k: 1024, m: 1024 ** 2, g: 1024 ** 3 }[m[2]!.toLowerCase()] ?? 1);
  return n === 0 ? Infinity : n;
}

/**
 * client_max_body_size (ngx_http_core_module.c, ngx_http_request_body.c): a Content-Length
 * over the limit is refused with 413 as soon as the location is found, before any phase; a
 * chunked body when its running total passes the limit while it is read. Kong's generated
 * config reads bodies before its phases (`lua_need_request_body on`, the project's kong.conf
 * `nginx_proxy_lua_need_request_body`), so either way the 413 comes before any plugin, from
 * kong/error_handlers.lua.
 */
export function bodyLimitRefusal(
  declaredLength: number | undefined,
  receivedLength: number,
  limit: number,
): NginxRefusal | undefined {
  if (declaredLength !== undefined && declaredLength > limit) {
    return {
      status: 413,
      reason: `client intended to send too large body: ${declaredLength} bytes`,
    };
  }
  if (receivedLength > limit) {
    return { status: 413, reason: 'client intended to send too large chunked body' };
  }
  return undefined;
}
