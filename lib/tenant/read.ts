/**
 * The one way a plugin after `tenant-auth` obtains the tenant: a single `ctx.shared` read,
 * decoded and re-validated — once per request in a process: the carrier names the request's
 * scope (lib/request/scope.ts), which keeps the decoded context and the request's other facts.
 * A route that forgot `tenant-auth` must not quietly serve untenanted traffic, so absence is an
 * error the caller turns into a refusal.
 */
import { GatewayError } from '../http/errors';
import type { KongPdk } from '../pdk/kong';
import { adoptScope, findScope, privateScope, type RequestScope } from '../request/scope';
import {
  TENANT_CONTEXT_KEY,
  carrierRequestKey,
  decodeTenantContext,
  isTenantContextError,
  type TenantContext,
} from './context';

/** The tenant of the request and its scope in this process. */
export interface TenantRequest {
  readonly tenant: TenantContext;
  readonly scope: RequestScope;
}

/**
 * Reads the TenantContext and finds (or, in a process that has none yet, adopts) the
 * request's scope; throws a GatewayError (500, fail closed) when the context is absent or
 * invalid. One PDK call. A carrier that names no scope (written by another tenant-auth
 * version) gets a private scope: its facts then last one phase.
 */
export async function readRequest(kong: KongPdk, plugin: string): Promise<TenantRequest> {
  return fromCarrier(kong, plugin, await kong.ctx.shared.get(TENANT_CONTEXT_KEY));
}

function fromCarrier(kong: KongPdk, plugin: string, raw: unknown): TenantRequest {
  const key = carrierRequestKey(raw);
  const known = key === null ? undefined : findScope(key);
  if (known && typeof raw === 'string' && known.boundTo(raw) && known.tenant) {
    return { tenant: known.tenant, scope: known };
  }
  let tenant: TenantContext;
  try {
    tenant = decodeTenantContext(raw);
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
  const scope = key === null ? privateScope() : (known ?? adoptScope(key));
  // A scope under this key bound to another carrier is never used: this request gets its own.
  const usable =
    scope.tenant === undefined || scope.boundTo(raw as string) ? scope : privateScope();
  usable.bindCarrier(raw as string, tenant);
  return { tenant, scope: usable };
}

/**
 * In a log phase: the request's tenant and scope when tenant-auth published them, else null
 * (a request refused before it). One PDK call; never throws for an absent context.
 */
export async function findRequest(kong: KongPdk, plugin: string): Promise<TenantRequest | null> {
  const raw = await kong.ctx.shared.get(TENANT_CONTEXT_KEY);
  return raw === null || raw === undefined ? null : fromCarrier(kong, plugin, raw);
}

/** Reads the TenantContext; throws a GatewayError (500, fail closed) when absent or invalid. */
export async function readTenantContext(kong: KongPdk, plugin: string): Promise<TenantContext> {
  return (await readRequest(kong, plugin)).tenant;
}
