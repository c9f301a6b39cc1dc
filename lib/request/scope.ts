/**
 * RequestScope: what the plugins of one request learn about it, kept in the plugin-server
 * process so that each thing is read from Kong once, parsed once and decoded once.
 *
 * Why: every PDK call is a round trip to Kong (≈ 50 µs of CPU on the two sides, kong-facts.md).
 * Before scopes, the body was fetched and parsed by five plugins and the TenantContext decoded
 * in eight phases. `tenant-auth` now opens a scope and writes its key into the TenantContext's
 * carrier in `kong.ctx.shared` (lib/tenant/context.ts); every later plugin makes the one
 * `ctx.shared` read it made anyway and finds the scope by that key. With the chain co-hosted
 * in one process (the default) the plugins share one scope; with one process per plugin each
 * process holds its own scope under the same key, and a fact one plugin learnt in another
 * process is simply read again from Kong. A scope is an optimisation with a fallback, never
 * the only way to learn a fact.
 *
 * Isolation: a scope is found only by its key, 128 random bits that only `kong.ctx.shared` of
 * its own request carries (clients cannot write there), and a reader also requires the
 * scope's carrier to be the very string it read (`bindCarrier`), so no request can read
 * another's facts. Nothing is held forever: scopes end when their last log phase releases
 * them, after `SCOPE_TTL_MS` in any case (a lost log timer, a plugin that never ran), and the
 * store is bounded in entries and in body bytes (the oldest scope goes first; a scope whose
 * body was dropped reads it again).
 */
import { randomBytes } from 'node:crypto';
import {
  bodyToBuffer,
  firstHeader,
  normaliseHeaderMap,
  withHeaderWrites,
  type HeaderMap,
  type HeaderValue,
  type KongPdk,
} from '../pdk/kong';
import type { TenantContext } from '../tenant/context';
import { LogHolds, type DeferredLog } from './log-holds';
import { SCOPE_IDLE_MS, SCOPE_TTL_MS, ScopeStore } from './scope-store';
import { parseJsonOrUndefined } from './json-depth';

/** A typed slot of a scope: one per fact, declared once beside the code that owns it. */
export interface ScopeSlot<T> {
  readonly name: string;
  /** Only for the type. */
  readonly _type?: T;
}

export function slot<T>(name: string): ScopeSlot<T> {
  return Object.freeze({ name });
}

const KEY_PATTERN = /^[0-9a-f]{32}$/;

const store = new ScopeStore<RequestScope>();

export class RequestScope {
  readonly bornAt = Date.now();
  private touchedAt = this.bornAt;
  private carrier: string | undefined;
  private tenantCtx: TenantContext | undefined;
  private readonly facts = new Map<string, unknown>();
  private readonly reads = new Map<string, Promise<unknown>>();
  private bodyBytes: Buffer | undefined;
  private jsonOf: Buffer | undefined;
  private jsonValue: unknown;
  private headerMap: HeaderMap | undefined;
  /** Who still needs the scope for a log phase, and the log work left for the chain's. */
  private readonly holds = new LogHolds();

  constructor(readonly key: string) {}

  /** The TenantContext decoded from `carrier`, once per scope. */
  get tenant(): TenantContext | undefined {
    return this.tenantCtx;
  }

  /**
   * Binds the scope to the carrier string tenant-auth wrote (and to its decoded context): a
   * later reader must present the same string to use the scope's facts.
   */
  bindCarrier(carrier: string, tenant: TenantContext): void {
    this.carrier = carrier;
    this.tenantCtx = tenant;
  }

  /** Whether this scope belongs to the request whose carrier is `carrier`. */
  boundTo(carrier: string): boolean {
    return this.carrier === carrier;
  }

  get<T>(s: ScopeSlot<T>): T | undefined {
    return this.facts.get(s.name) as T | undefined;
  }

  set<T>(s: ScopeSlot<T>, value: T): void {
    this.facts.set(s.name, value);
  }

  /**
   * One PDK read per request and scope: the first caller's promise is shared by the others
   * (concurrent callers included). A failed read is forgotten, so a later caller tries again.
   */
  once<T>(name: string, read: () => Promise<T>): Promise<T> {
    const known = this.reads.get(name) as Promise<T> | undefined;
    if (known) return known;
    const p = read();
    this.reads.set(name, p);
    p.catch(() => this.reads.delete(name));
    return p;
  }

  method(kong: KongPdk): Promise<string> {
    return this.once('method', () => kong.request.getMethod());
  }

  path(kong: KongPdk): Promise<string> {
    return this.once('path', () => kong.request.getPath());
  }

  pathWithQuery(kong: KongPdk): Promise<string> {
    return this.once('pathWithQuery', () => kong.request.getPathWithQuery());
  }

  /**
   * The path (and query) Kong will send upstream, after its router's strip_path and the
   * service's path, normalised: what the API surface is decided on (access only).
   */
  upstreamUri(kong: KongPdk): Promise<string> {
    return this.once('upstreamUri', async () =>
      String((await kong.nginx.getVar('upstream_uri')) ?? ''),
    );
  }

  /** Kong's request id (access only: `ngx.var` raises in the log timer). */
  requestId(kong: KongPdk): Promise<string> {
    return this.once('requestId', async () =>
      String((await kong.nginx.getVar('kong_request_id')) ?? ''),
    );
  }

  /**
   * The request headers as later plugins see them: what tenant-auth read, with the writes it
   * made since (`applyHeaderWrites`), else one `getHeaders` read.
   */
  async headers(kong: KongPdk, maxHeaders?: number): Promise<HeaderMap> {
    if (this.headerMap) return this.headerMap;
    const read = await this.once('headers', async () =>
      normaliseHeaderMap(await kong.request.getHeaders(maxHeaders)),
    );
    this.headerMap ??= read;
    return this.headerMap;
  }

  /** One request header's first value: from the headers already read, else one `getHeader`. */
  async header(kong: KongPdk, name: string): Promise<string | undefined> {
    if (this.headerMap) return firstHeader(this.headerMap, name);
    return (await kong.request.getHeader(name)) ?? undefined;
  }

  /** Headers a plugin read itself (tenant-auth, with its own line limit). */
  rememberHeaders(headers: HeaderMap): void {
    this.headerMap = headers;
  }

  /** What `service.request.setHeaders(map)` did to the request headers, mirrored. */
  applyHeaderWrites(map: Record<string, HeaderValue>): void {
    if (this.headerMap) this.headerMap = withHeaderWrites(this.headerMap, map);
  }

  /**
   * The request body as the upstream would receive it now (after the rewrites of earlier
   * plugins), read from Kong once. `maxAllowedFileSize` as `getRawBody`'s: 0 reads any size.
   * Returns null when Kong answers nil (a body over the given size).
   */
  async rawBody(kong: KongPdk, maxAllowedFileSize = 0): Promise<Buffer | null> {
    if (this.bodyBytes) return this.bodyBytes;
    const raw = await kong.request.getRawBody(maxAllowedFileSize);
    if (raw === null || raw === undefined) return null;
    this.keepBody(bodyToBuffer(raw));
    return this.bodyBytes ?? bodyToBuffer(raw);
  }

  /** The body parsed as JSON (undefined: empty or not JSON), read and parsed once. */
  async jsonBody(kong: KongPdk): Promise<unknown> {
    const bytes = await this.rawBody(kong, 0);
    if (bytes === null || bytes.length === 0) return undefined;
    return this.json(bytes);
  }

  /** A body a plugin read itself (tenant-auth, with its own limit). */
  rememberBody(bytes: Buffer): void {
    this.keepBody(bytes);
  }

  /**
   * What a plugin that parsed `bytes` itself found (tenant-auth's strict parse): later plugins
   * get it from `json` instead of parsing the body again. It must be what JSON.parse makes of
   * those bytes (tenant-auth hands over its object only while it is).
   */
  rememberJson(bytes: Buffer, value: unknown): void {
    this.jsonOf = bytes;
    this.jsonValue = value;
  }

  /**
   * Sends a rewritten body upstream (one call) and makes it the body later plugins read;
   * `json`, when given, is `body` parsed (the object it was serialized from).
   */
  async setBody(kong: KongPdk, body: string, json?: unknown): Promise<void> {
    await kong.service.request.setRawBody(body);
    const bytes = Buffer.from(body, 'utf8');
    this.keepBody(bytes);
    if (json !== undefined) this.rememberJson(bytes, json);
  }

  /**
   * `bytes` parsed as JSON, once per body (undefined: not JSON, or nested deeper than
   * MAX_JSON_DEPTH, which no plugin's walk of it could take: json-depth.ts).
   */
  json(bytes: Buffer): unknown {
    if (this.jsonOf !== bytes) {
      this.jsonOf = bytes;
      this.jsonValue = parseJsonOrUndefined(bytes.toString('utf8'));
    }
    return this.jsonValue;
  }

  /** The bytes held for the body (for the store's accounting). */
  get bodySize(): number {
    return this.bodyBytes?.length ?? 0;
  }

  dropBody(): void {
    if (this.registered()) store.bodyChanged(-this.bodySize);
    this.bodyBytes = undefined;
    this.jsonOf = undefined;
    this.jsonValue = undefined;
  }

  /** `plugin`'s log phase will need this scope: it is kept until `release(plugin)` (or TTL). */
  hold(plugin: string): void {
    this.holds.hold(plugin);
  }

  /** Leaves log work for the chain's one log phase (log-holds.ts). */
  defer(entry: DeferredLog): void {
    this.holds.defer(entry);
  }

  takeDeferred(): DeferredLog[] {
    return this.holds.takeDeferred();
  }

  takeDeferredOf(plugin: string): DeferredLog | undefined {
    return this.holds.takeDeferredOf(plugin);
  }

  /** `plugin`'s log phase is done with the scope; the last holder ends it. */
  release(plugin: string): void {
    if (this.holds.release(plugin)) store.end(this);
  }

  /** Ended by the store's sweep: past its TTL, or unheld and untouched for SCOPE_IDLE_MS. */
  expired(now: number): boolean {
    if (now - this.bornAt > SCOPE_TTL_MS) return true;
    return !this.holds.held && now - this.touchedAt > SCOPE_IDLE_MS;
  }

  /** Marks the scope in use (a plugin found it). */
  touch(now = Date.now()): void {
    this.touchedAt = now;
  }

  private keepBody(bytes: Buffer): void {
    if (this.registered()) store.bodyChanged(bytes.length - this.bodySize);
    this.bodyBytes = bytes;
    if (this.registered()) store.trimBodies(this);
  }

  /** Whether later phases of this request can find this scope (it has a carrier's key). */
  get findable(): boolean {
    return this.registered();
  }

  private registered(): boolean {
    return store.holds(this);
  }
}

/** A new scope under a fresh unguessable key (tenant-auth, once per request). */
export function openScope(): RequestScope {
  return adoptScope(randomBytes(16).toString('hex'));
}

/** The scope of `key` in this process, created when this process has none yet. */
export function adoptScope(key: string): RequestScope {
  if (!KEY_PATTERN.test(key)) throw new RangeError('a request scope key is 32 hex digits');
  store.sweep();
  const known = findScope(key);
  if (known) return known;
  const scope = new RequestScope(key);
  store.add(scope);
  return scope;
}

/** The scope of `key` if this process holds one (undefined after its end or its TTL). */
export function findScope(key: string): RequestScope | undefined {
  const scope = store.get(key);
  if (!scope) return undefined;
  const now = Date.now();
  if (scope.expired(now)) {
    store.end(scope);
    return undefined;
  }
  scope.touch(now);
  return scope;
}

/** A scope no other phase can find (a carrier without a key): facts for one phase only. */
export function privateScope(): RequestScope {
  return new RequestScope(randomBytes(16).toString('hex'));
}

/** How many scopes and body bytes this process holds (metrics, tests). */
export function scopeStats(now = Date.now()): { scopes: number; bodyBytes: number } {
  return store.stats(now);
}
