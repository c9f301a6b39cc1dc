/**
 * Request paths as Kong 3.9.3 sees them. The chain decides what a request is (which API, a
 * showback page, the models list) on the path Kong proxies, never on the raw one: a decision
 * on `/v1//organization/costs` as written would miss what Kong sends upstream as
 * `/v1/organization/costs`.
 *
 * `normalisePath` is kong/tools/uri.lua `normalize(uri, true)`, which kong/router/utils.lua
 * applies to the request path before routing and `kong.request.get_path()` returns: `%XX` of
 * unreserved and "other" characters decoded, reserved ones kept encoded (hex upper-cased), dot
 * segments resolved, `//` merged. It works on a latin1 string (one char per byte), as Kong
 * does on bytes. Idempotent on its own output and on Kong's escaped upstream URI
 * (`ngx.var.upstream_uri`, uri.lua `escape` only re-encodes what `normalize` decoded).
 */

/** kong/tools/uri.lua RESERVED_CHARS: these stay percent-encoded. */
const RESERVED = new Set([..."!*'();:@&=+$,/?%#[]"].map((c) => c.charCodeAt(0)));

export function normalisePath(uri: string): string {
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

/** A path and its raw query, split at the first `?` (the query without it; '' when none). */
export function splitPathAndQuery(pathWithQuery: string): { path: string; query: string } {
  const q = pathWithQuery.indexOf('?');
  return q < 0
    ? { path: pathWithQuery, query: '' }
    : { path: pathWithQuery.slice(0, q), query: pathWithQuery.slice(q + 1) };
}
