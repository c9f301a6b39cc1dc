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
/** Exact gateway-owned header names outside the prefixes. */
export const GATEWAY_OWNED_HEADERS: readonly string[] = [RETRIEVAL_CONTEXT_HEADER];

/** True when `name` (any case) is a header the gateway owns, or one the config names. */
export function isGatewayOwnedHeader(name: string, extra: ReadonlySet<string>): boolean {
  const lower = name.toLowerCase();
  if (extra.has(lower)) return true;
  if (GATEWAY_OWNED_HEADERS.includes(lower)) return true;
  return GATEWAY_OWNED_HEADER_PREFIXES.some((p) => lower.startsWith(p));
}
