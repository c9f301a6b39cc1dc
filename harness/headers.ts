/** Lower-cased multi-value header map, as nginx/Kong expose headers. */
export type HeaderMap = Map<string, string[]>;

export function headerMapFromRaw(raw: string[]): HeaderMap {
  const map: HeaderMap = new Map();
  for (let i = 0; i + 1 < raw.length; i += 2) {
    const name = (raw[i] as string).toLowerCase();
    const list = map.get(name) ?? [];
    list.push(raw[i + 1] as string);
    map.set(name, list);
  }
  return map;
}

/** Kong normalizes header names: case-insensitive, "_" equivalent to "-". */
export const normalizeHeaderName = (name: string): string => name.toLowerCase().replace(/_/g, '-');

/**
 * $http_<name> of nginx >= 1.23 (OpenResty 1.25 in Kong 3.9): all values joined by ", "
 * ("; " for Cookie). kong.request.get_header reads that variable.
 */
export function joinedHeader(map: HeaderMap, name: string): string | undefined {
  const n = normalizeHeaderName(name);
  const values = map.get(n);
  if (!values || values.length === 0) return undefined;
  return values.join(n === 'cookie' ? '; ' : ', ');
}

/** mp_rpc.lua fix_mmap: a header table as {name: [values]}. */
export function headerMapToObject(map: HeaderMap): Record<string, string[]> {
  // A Lua table has no prototype: a header named `__proto__` must travel as an ordinary key.
  const out = Object.create(null) as Record<string, string[]>;
  for (const [k, v] of map) out[k] = [...v];
  return out;
}
