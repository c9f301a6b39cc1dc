/**
 * The API surface gate: what the front door serves is declared per plan (`api_surface`), and
 * every other request is refused before any upstream call, whatever its method or path
 * spelling. The decision is made on the path Kong will send upstream (`ngx.var.upstream_uri`,
 * set by Kong's router before any plugin's access phase: the route's strip_path and the
 * service's path applied, normalised by kong/tools/uri.lua), never on the raw request line.
 *
 * Also here, because they are decided on the same request line: the query string loses what
 * must never reach the provider (a credential a client put there, a `model` an upstream might
 * prefer to the body's), and a method that carries no body carries none upstream.
 */
import { GatewayError } from '../../lib/http/errors';
import {
  API_CATALOGUE,
  ApiSurfaceMatcher,
  BODYLESS_METHODS,
  DEFAULT_API_SURFACE,
  type ApiVerdict,
} from '../../lib/http/api-surface';
import { splitPathAndQuery } from '../../lib/http/path';
import type { KongPdk } from '../../lib/pdk/kong';
import type { RequestScope } from '../../lib/request/scope';
import type { TenantAuthConfig } from './config';

/** What the gate let through. */
export interface SurfaceDecision {
  /** The API served (a name of lib/http/api-surface.ts). */
  readonly api: string;
  /** Upper case. */
  readonly method: string;
  /** The method carries no body: none goes upstream, nothing reads or rewrites one. */
  readonly bodyless: boolean;
  /**
   * The body is not JSON (a file upload's multipart form): forwarded as sent, never read or
   * checked as JSON (nginx's client_max_body_size bounds it).
   */
  readonly opaqueBody: boolean;
  /** The catalogue path matched (`/files/{id}/content`, lib/http/api-surface.ts). */
  readonly endpoint: string;
  /** The object id in the path (`{id}`), as sent; null when the path names none. */
  readonly id: string | null;
  /** What follows the id on an open endpoint (`/files` of `/vector_stores/{id}/**`), or ''. */
  readonly tail: string;
  /** Query arguments (decoded names) removed from what goes upstream. */
  readonly dropQueryArgs: readonly string[];
}

/** APIs that generate text: the model they name must be one that does. */
export const GENERATION_APIS: ReadonlySet<string> = new Set(['chat', 'completions', 'responses']);

/**
 * Endpoints whose body is a file (a multipart form), not JSON: `<METHOD> <catalogue path>`.
 * Image edits and audio also take forms, but name a model the tier must decide: they stay
 * JSON-only (415 for a form) until the tier can read a form.
 */
const MULTIPART_ENDPOINTS: ReadonlySet<string> = new Set(['POST /files', 'POST /uploads/{id}/**']);

/** Query parameters that never go upstream (compared lower-cased, `_` as `-`). */
const QUERY_CREDENTIALS = ['apikey', 'api-key', 'key', 'access-token', 'token', 'jwt'];

/** A query argument's name as Kong's clear_query_arg compares it (URL-decoded, `+` a space). */
function decodedName(raw: string): string {
  try {
    return decodeURIComponent(raw.replace(/\+/g, ' '));
  } catch {
    return raw;
  }
}

/**
 * The query arguments (decoded names, each once) that must not reach the upstream: credentials
 * (every name of `upstream_auth.strip_client_credentials` and the usual query spellings of a
 * key, compared lower-cased with `_` as `-`), and `model` (`model[]`, any case), which some
 * OpenAI-compatible servers read in preference to the body's model the tier decided.
 */
export function queryArgsToDrop(rawQuery: string, credentialNames: ReadonlySet<string>): string[] {
  if (rawQuery === '') return [];
  const drop = new Set<string>();
  for (const part of rawQuery.split('&')) {
    const eq = part.indexOf('=');
    const name = decodedName(eq < 0 ? part : part.slice(0, eq));
    const key = name.trim().toLowerCase().replace(/_/g, '-');
    if (key === 'model' || key.startsWith('model[') || credentialNames.has(key)) drop.add(name);
  }
  return [...drop];
}

export class ApiSurfaceGate {
  private readonly matcher: ApiSurfaceMatcher;
  private readonly byDefault: ReadonlySet<string>;
  private readonly byPlan = new Map<string, ReadonlySet<string>>();
  private readonly byTenant = new Map<string, ReadonlySet<string>>();
  private readonly credentialNames: ReadonlySet<string>;

  constructor(config: TenantAuthConfig) {
    this.matcher = new ApiSurfaceMatcher(config.api_base_path);
    this.byDefault = new Set(config.api_surface);
    for (const [plan, p] of Object.entries(config.plans)) {
      if (p.api_surface) this.byPlan.set(plan, new Set(p.api_surface));
    }
    for (const [tenant, o] of Object.entries(config.tenants)) {
      if (o.api_surface) this.byTenant.set(tenant, new Set(o.api_surface));
    }
    this.credentialNames = new Set([
      ...QUERY_CREDENTIALS,
      ...config.upstream_auth.strip_client_credentials.map((h) => h.toLowerCase()),
    ]);
  }

  /** The APIs `tenant` on `plan` is served: the tenant's list, else its plan's, else the default. */
  enabledFor(plan: string, tenant: string): ReadonlySet<string> {
    return this.byTenant.get(tenant) ?? this.byPlan.get(plan) ?? this.byDefault;
  }

  /**
   * Reads what the decision needs (the method, Kong's upstream URI, the raw query: reads the
   * PDK batch fetches with the phase's first call) and refuses what the surface does not serve.
   */
  async decide(
    kong: KongPdk,
    scope: RequestScope,
    plan: string,
    tenant: string,
  ): Promise<SurfaceDecision> {
    const method = (await scope.method(kong)).toUpperCase();
    const upstreamUri = await scope.upstreamUri(kong);
    const { query } = splitPathAndQuery(await scope.pathWithQuery(kong));
    const verdict = this.matcher.decide(method, upstreamUri, this.enabledFor(plan, tenant));
    if (verdict.kind !== 'served') throw refusal(verdict, method, plan);
    return {
      api: verdict.api,
      method,
      bodyless: BODYLESS_METHODS.has(method),
      opaqueBody: MULTIPART_ENDPOINTS.has(`${method} ${verdict.endpoint}`),
      endpoint: verdict.endpoint,
      id: verdict.id,
      tail: verdict.tail,
      dropQueryArgs: queryArgsToDrop(query, this.credentialNames),
    };
  }
}

function refusal(verdict: Exclude<ApiVerdict, { kind: 'served' }>, method: string, plan: string) {
  switch (verdict.kind) {
    case 'not_enabled':
      return new GatewayError({
        status: 403,
        type: 'permission_error',
        code: 'api_not_enabled',
        message: `the ${verdict.title} API (${verdict.api}) is not enabled on the '${plan}' plan of this gateway`,
      });
    case 'wrong_method':
      return new GatewayError({
        status: 405,
        type: 'invalid_request_error',
        code: 'method_not_allowed',
        message: `${/^[A-Z]{1,16}$/.test(method) ? method : 'this method'} is not allowed on this path of this gateway`,
        headers: { Allow: verdict.allow.join(', ') },
      });
    case 'unknown':
      return new GatewayError({
        status: 404,
        type: 'invalid_request_error',
        code: 'unknown_api',
        message:
          'this gateway does not serve this path: it is not an API of the OpenAI surface it offers',
      });
  }
}

/** The names `api_surface` accepts (the schema's one_of). */
export const SURFACE_NAMES: readonly string[] = API_CATALOGUE.map((a) => a.name);
export { DEFAULT_API_SURFACE };
