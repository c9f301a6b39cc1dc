/** Everything the harness knows about one request (ngx.ctx + nginx variables in Kong). */
import type {
  ConsumerEntity,
  KeyAuthCredentialEntity,
  RouteEntity,
  ServiceEntity,
} from './config/entities';
import type { HeaderMap } from './headers';
import type { RequestStats } from './types';

export type KongPhase = 'rewrite' | 'access' | 'response' | 'header_filter' | 'log';

export interface UpstreamRequest {
  method: string;
  /** Upstream URI path (already percent-encoded as sent). */
  path: string;
  /** Raw query string without "?" ("" when none). */
  query: string;
  headers: HeaderMap;
  body: Buffer;
}

export interface ServiceResponse {
  status: number;
  headers: HeaderMap;
  body?: Buffer;
}

export interface DownstreamResponse {
  status: number;
  headers: HeaderMap;
  body: Buffer;
}

export interface Credential {
  id?: string;
  consumer?: { id: string };
  [k: string]: unknown;
}

export class RequestState {
  phase: KongPhase = 'rewrite';
  /** True while running the log phase from the saved snapshot (plugin.lua's timer). */
  inLogTimer = false;
  route?: RouteEntity;
  service?: ServiceEntity;
  /** Matched path prefix for X-Forwarded-Prefix / strip_path. */
  matchedPrefix?: string;
  upstream!: UpstreamRequest;
  consumer?: ConsumerEntity | Record<string, unknown>;
  credential?: KeyAuthCredentialEntity | Credential;
  readonly ctxShared = new Map<string, unknown>();
  readonly ngxCtx = new Map<string, unknown>();
  /** ctx.serialize_values of kong/pdk/log.lua: applied in order when serialize() runs. */
  readonly serializeValues: Array<{
    key: string;
    value: unknown;
    mode: 'set' | 'add' | 'replace';
  }> = [];
  bufferedProxying = false;
  /**
   * kong.service.set_target (kong/pdk/service.lua 3.9.3): ctx.balancer_data.host/port replace
   * the service's, and ngx.var.upstream_host = host, so the Host header sent upstream is the
   * bare host (runloop access.after then treats it as preserve_host).
   */
  target?: { host: string; port: number };
  /**
   * The request body was replaced (ngx.req.set_body_data via kong.service.request.set_raw_body /
   * set_body, or key-auth's hide_credentials): kong.request.get_raw_body/get_body read it.
   */
  bodyReplaced = false;
  /** ctx.KONG_EXITED / KONG_PROXIED / KONG_UNEXPECTED: kong.response.get_source. */
  exited = false;
  proxied = false;
  unexpected = false;
  /** Response decided by exit/error (delayed in access, immediate elsewhere). */
  exitResponse?: DownstreamResponse;
  /** Headers/status set through kong.response.* before the response is sent. */
  readonly pendingResponseHeaders: HeaderMap = new Map();
  pendingStatus?: number;
  serviceResponse?: ServiceResponse;
  /** The response as it stands (response phase onwards). */
  response?: DownstreamResponse;
  upstreamLatency?: number;
  proxyLatency?: number;
  /** kong.log.serialize() taken when the log phase starts (plugin.lua saves it for the timer). */
  savedSerialize?: unknown;
  readonly stats: RequestStats = { plugins: {}, totalRoundTrips: 0, pdkErrors: [] };

  constructor(
    readonly id: string,
    readonly startTime: number,
    readonly method: string,
    /** Raw request target path (before "?"). */
    readonly rawPath: string,
    readonly rawQuery: string | undefined,
    readonly headers: HeaderMap,
    readonly body: Buffer,
    readonly clientIp: string,
    readonly clientPort: number,
    readonly serverPort: number,
    readonly httpVersion: string,
  ) {}

  get host(): string {
    const h = this.headers.get('host')?.[0] ?? '';
    return h.replace(/:\d+$/, '').toLowerCase();
  }
}
