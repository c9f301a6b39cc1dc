/**
 * The one way a plugin after `tenant-auth` obtains the tenant: a single `ctx.shared` read,
 * decoded and re-validated. A route that forgot `tenant-auth` must not quietly serve
 * untenanted traffic, so absence is an error the caller turns into a refusal.
 */
import { GatewayError } from '../http/errors';
import type { KongPdk } from '../pdk/kong';
import {
  TENANT_CONTEXT_KEY,
  decodeTenantContext,
  isTenantContextError,
  type TenantContext,
} from './context';

/** Reads the TenantContext; throws a GatewayError (500, fail closed) when absent or invalid. */
export async function readTenantContext(kong: KongPdk, plugin: string): Promise<TenantContext> {
  const raw = await kong.ctx.shared.get(TENANT_CONTEXT_KEY);
  try {
    return decodeTenantContext(raw);
  } catch (e) {
    if (!isTenantContextError(e)) throw e;
    void kong.log.err(`${plugin}: refusing request without a valid tenant context: ${e.message}`);
    throw new GatewayError({
      status: 500,
      type: 'server_error',
      code: e.kind === 'missing' ? 'tenant_context_missing' : 'tenant_context_invalid',
      message: `${plugin} requires tenant-auth to run first on this route; request refused`,
    });
  }
}
