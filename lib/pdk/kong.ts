/**
 * The typed facade over the PDK calls our plugins make. kong-pdk 0.6.0 ships `.d.ts` files
 * with errors and wrong return types, so the boundary is typed once, here, to what Kong 3.9
 * really returns across the plugin-server protocol (kong/runloop/plugin_servers/rpc/mp_rpc.lua):
 *
 * - header and query maps arrive as `{ name: [values] }` with lower-cased names (`fix_mmap`);
 * - raw bodies arrive as msgpack binary, i.e. a Uint8Array (`fix_raw`), or nil when absent;
 * - only the first Lua return value crosses the boundary;
 * - `kong.response.exit` never resolves meaningfully: return right after calling it.
 *
 * Every method here is one IPC round trip; callers should read each thing once.
 */
export type HeaderMap = Record<string, string[]>;

/** A header value as the PDK's set_headers accepts it; an empty array removes the header. */
export type HeaderValue = string | string[];

export interface KongConsumer {
  id: string;
  username?: string | null;
  custom_id?: string | null;
  tags?: string[] | null;
}

/** The matched route entity (kong.router.get_route); `service` is a foreign key. */
export interface KongRoute {
  id: string;
  name?: string | null;
  service?: { id: string } | null;
}

export interface KongCredential {
  id: string;
  consumer?: { id: string } | null;
}

/** The fields of a Kong Service entity our plugins read (kong.router.get_service). */
export interface KongService {
  id?: string;
  name?: string | null;
  host: string;
  port: number;
  protocol?: string;
}

export interface KongPdk {
  request: {
    getHeader(name: string): Promise<string | null | undefined>;
    getHeaders(maxHeaders?: number): Promise<HeaderMap | null | undefined>;
    /** `maxAllowedFileSize`: also read a body nginx buffered to a file, up to this size (0: any). */
    getRawBody(maxAllowedFileSize?: number): Promise<Uint8Array | string | null | undefined>;
    getMethod(): Promise<string>;
    getPath(): Promise<string>;
    /** Path and query string as the client sent them (normalised path). */
    getPathWithQuery(): Promise<string>;
  };
  client: {
    getConsumer(): Promise<KongConsumer | null | undefined>;
    getCredential(): Promise<KongCredential | null | undefined>;
    getIp(): Promise<string>;
  };
  router: {
    getRoute(): Promise<KongRoute | null | undefined>;
    getService(): Promise<KongService | null | undefined>;
  };
  nginx: {
    /** Raises in the log phase (a timer): the JS promise then never settles. Access only. */
    getVar(name: string): Promise<string | null | undefined>;
  };
  service: {
    /** Direct host:port for this request, bypassing the load balancer (kong/pdk/service.lua). */
    setTarget(host: string, port: number): Promise<unknown>;
    request: {
      setPath(path: string): Promise<unknown>;
      setHeader(name: string, value: string): Promise<unknown>;
      setHeaders(headers: Record<string, HeaderValue>): Promise<unknown>;
      clearHeader(name: string): Promise<unknown>;
      setRawBody(body: string): Promise<unknown>;
      /**
       * Removes every query argument of that (decoded) name from the upstream request; the
       * rest of the query is re-encoded (resty.ada.search.remove, as WHATWG URLSearchParams).
       */
      clearQueryArg(name: string): Promise<unknown>;
      /** Access only: buffer this request's response so `log` can read its body. */
      enableBuffering(): Promise<unknown>;
    };
    response: {
      getStatus(): Promise<number | null | undefined>;
      getHeaders(maxHeaders?: number): Promise<HeaderMap | null | undefined>;
      getRawBody(): Promise<Uint8Array | string | null | undefined>;
    };
  };
  response: {
    exit(
      status: number,
      body?: string | Record<string, unknown>,
      headers?: Record<string, HeaderValue>,
    ): Promise<unknown>;
    setHeader(name: string, value: string): Promise<unknown>;
    setHeaders(headers: Record<string, HeaderValue>): Promise<unknown>;
    getStatus(): Promise<number>;
    getHeader(name: string): Promise<string | null | undefined>;
    getHeaders(maxHeaders?: number): Promise<HeaderMap | null | undefined>;
    getSource(): Promise<'service' | 'error' | 'exit' | string>;
  };
  ctx: {
    shared: {
      get(key: string): Promise<unknown>;
      set(key: string, value: string): Promise<unknown>;
    };
  };
  log: {
    debug(...args: unknown[]): Promise<unknown>;
    info(...args: unknown[]): Promise<unknown>;
    notice(...args: unknown[]): Promise<unknown>;
    warn(...args: unknown[]): Promise<unknown>;
    err(...args: unknown[]): Promise<unknown>;
    setSerializeValue(key: string, value: unknown): Promise<unknown>;
    serialize(): Promise<unknown>;
  };
}

/**
 * The `kong` object a phase handler receives is an untyped Proxy built by kong-pdk; this is
 * the single place it is given our type.
 */
export function asKongPdk(kong: unknown): KongPdk {
  return kong as KongPdk;
}

/** Raw bodies may arrive as a Uint8Array (msgpack bin) or a string; normalise to a Buffer. */
export function bodyToBuffer(body: Uint8Array | string | null | undefined): Buffer {
  if (body === null || body === undefined) return Buffer.alloc(0);
  if (typeof body === 'string') return Buffer.from(body, 'utf8');
  return Buffer.from(body.buffer, body.byteOffset, body.byteLength);
}

/** First value of a header in a PDK header map (names are lower-cased by Kong). */
export function firstHeader(headers: HeaderMap, name: string): string | undefined {
  const key = name.toLowerCase();
  const v = Object.prototype.hasOwnProperty.call(headers, key) ? headers[key] : undefined;
  return Array.isArray(v) ? v[0] : typeof v === 'string' ? v : undefined;
}

/** Normalise whatever the PDK returned for a header map to `{lowercase: [values]}`. */
export function normaliseHeaderMap(raw: unknown): HeaderMap {
  // No prototype: a client header named `constructor` or `__proto__` is just a header.
  const out: HeaderMap = Object.create(null) as HeaderMap;
  if (raw === null || typeof raw !== 'object') return out;
  for (const [k, v] of Object.entries(raw as Record<string, unknown>)) {
    const name = k.toLowerCase();
    const values = Array.isArray(v) ? v.map(String) : v === true ? [] : [String(v)];
    out[name] = (out[name] ?? []).concat(values);
  }
  return out;
}

/** How many header lines a map holds (each value of a repeated header counts). */
export function headerLineCount(headers: HeaderMap): number {
  let n = 0;
  for (const values of Object.values(headers)) n += Math.max(1, values.length);
  return n;
}

/** `headers` after `service.request.setHeaders(writes)`: a new map, names lower-cased. */
export function withHeaderWrites(
  headers: HeaderMap,
  writes: Record<string, HeaderValue>,
): HeaderMap {
  const next: HeaderMap = Object.assign(Object.create(null) as HeaderMap, headers);
  for (const [name, value] of Object.entries(writes)) {
    const k = name.toLowerCase();
    const values = Array.isArray(value) ? value : [value];
    if (values.length === 0) delete next[k];
    else next[k] = values.map(String);
  }
  return next;
}
