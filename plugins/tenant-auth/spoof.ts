/**
 * Spoof stripping: which client-sent headers the gateway owns, and how they go.
 *
 * A dashed name (`X-Tenant-Id`, any case, any count) is removed by sending it to
 * `kong.service.request.set_headers` with an empty value list. An underscore spelling
 * (`X_Tenant_Id`) is refused instead: Kong passes it upstream (`underscores_in_headers on`),
 * where CGI-style frameworks read it as the same variable as `X-Tenant-Id`, and whether nginx
 * removes it by name is an nginx detail the harness cannot prove. No honest client sends one.
 */
import { GatewayError } from '../../lib/http/errors';
import type { HeaderMap, HeaderValue } from '../../lib/pdk/kong';
import { AUTH_IDENTITY_HEADERS, isGatewayOwnedHeader } from '../../lib/tenant/headers';

export interface SpoofVerdict {
  /** Header updates that remove every removable client copy. */
  readonly removals: Record<string, HeaderValue>;
  readonly spoofed: boolean;
}

function reserved(name: string): GatewayError {
  return new GatewayError({
    status: 400,
    type: 'invalid_request_error',
    code: 'reserved_header',
    message: `header '${name.slice(0, 64)}' is reserved for the gateway`,
    param: name.slice(0, 64),
  });
}

export function spoofVerdict(headers: HeaderMap, extra: ReadonlySet<string>): SpoofVerdict {
  const removals: Record<string, HeaderValue> = {};
  for (const name of Object.keys(headers)) {
    if (
      name.includes('_') &&
      AUTH_IDENTITY_HEADERS.includes(name.toLowerCase().replace(/_/g, '-'))
    ) {
      throw reserved(name);
    }
    if (!isGatewayOwnedHeader(name, extra)) continue;
    if (name.includes('_')) {
      throw reserved(name);
    }
    removals[name] = [];
  }
  return { removals, spoofed: Object.keys(removals).length > 0 };
}

/**
 * Removals of the auth plugins' identity headers when no Kong consumer identified the tenant:
 * they are then client copies, or an anonymous consumer's, and name nobody's tenant.
 */
export function identityHeaderRemovals(
  headers: HeaderMap,
  identifiedByConsumer: boolean,
): Record<string, HeaderValue> {
  const removals: Record<string, HeaderValue> = {};
  if (identifiedByConsumer) return removals;
  for (const name of Object.keys(headers)) {
    if (AUTH_IDENTITY_HEADERS.includes(name.toLowerCase())) removals[name] = [];
  }
  return removals;
}
