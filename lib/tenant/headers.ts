/**
 * Headers the gateway owns. A client must never be able to set them: `tenant-auth` removes
 * every client-sent copy (any case, any number of occurrences) before it sets its own, so
 * an upstream that reads them can trust them.
 */
export const TENANT_ID_HEADER = 'x-tenant-id';
export const TENANT_PLAN_HEADER = 'x-tenant-plan';
/** Carries the pre-filtered, tenant-labelled retrieval context to the upstream app. */
export const RETRIEVAL_CONTEXT_HEADER = 'x-retrieval-context';

/** Any header starting with one of these prefixes is gateway-owned. */
export const GATEWAY_OWNED_HEADER_PREFIXES: readonly string[] = ['x-tenant-'];
/**
 * Kong's acl plugin sets X-Consumer-Groups (and X-Authenticated-Groups), and it runs after
 * tenant-auth (priority 950): on a route without acl a client copy would reach the upstream
 * as if Kong had set it. oauth2 and ldap-auth set X-Authenticated-Scope/-Userid/-Groups; the
 * chain's upstream reads the tenant from X-Tenant-*, so every copy is removed.
 */
export const CONSUMER_GROUPS_HEADER = 'x-consumer-groups';

/** Exact gateway-owned header names outside the prefixes. */
export const GATEWAY_OWNED_HEADERS: readonly string[] = [
  RETRIEVAL_CONTEXT_HEADER,
  CONSUMER_GROUPS_HEADER,
  'x-authenticated-groups',
  'x-authenticated-scope',
  'x-authenticated-userid',
];

/**
 * The identity headers every Kong auth plugin sets when it authenticates (kong/constants.lua
 * HEADERS, set_consumer in each auth handler), overwriting client copies. When the tenant was
 * not identified by a Kong consumer (a JWT), no auth plugin vouched for them: `tenant-auth`
 * removes them. Their underscore spellings are never overwritten, so they are refused always.
 */
export const AUTH_IDENTITY_HEADERS: readonly string[] = [
  'x-consumer-id',
  'x-consumer-custom-id',
  'x-consumer-username',
  'x-credential-identifier',
  'x-anonymous-consumer',
];

/**
 * True when `name` is a header the gateway owns, or one the config names (`extra`, lower-case
 * with dashes), in any case and with `_` for `-`: Kong runs nginx with
 * `underscores_in_headers on` (kong/templates/nginx_kong.lua), so `X_Tenant_Id` reaches the
 * upstream, where many frameworks (CGI/WSGI/PHP) read it as the same variable as `X-Tenant-Id`.
 */
export function isGatewayOwnedHeader(name: string, extra: ReadonlySet<string>): boolean {
  const n = name.toLowerCase().replace(/_/g, '-');
  if (extra.has(n)) return true;
  if (GATEWAY_OWNED_HEADERS.includes(n)) return true;
  return GATEWAY_OWNED_HEADER_PREFIXES.some((p) => n.startsWith(p));
}

/** Response headers saying which model a request asked for and which one serves it. */
export const MODEL_REQUESTED_HEADER = 'X-Model-Requested';
export const MODEL_SERVED_HEADER = 'X-Model-Served';

/**
 * A client-chosen string as a header value: printable ASCII kept, every other byte (CR, LF,
 * NUL, non-ASCII) percent-encoded, so a model name can neither split nor corrupt a header.
 */
export function headerSafe(value: string): string {
  let out = '';
  for (const byte of Buffer.from(value, 'utf8')) {
    out +=
      byte >= 0x20 && byte <= 0x7e && byte !== 0x25
        ? String.fromCharCode(byte)
        : `%${byte.toString(16).toUpperCase().padStart(2, '0')}`;
  }
  return out;
}

/** The two model headers: what the client asked for (`(none)` when it named no model), what serves it. */
export function modelHeaders(requested: string, served: string): Record<string, string> {
  return {
    [MODEL_REQUESTED_HEADER]: requested === '' ? '(none)' : headerSafe(requested),
    [MODEL_SERVED_HEADER]: headerSafe(served),
  };
}
