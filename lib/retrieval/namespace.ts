/**
 * The namespace a TenantContext's retrieval is confined to. Kept apart from the store so
 * that code needing only this (the plugin's hot path) does not load the Milvus SDK.
 */
import type { TenantContext } from '../tenant/context';
import { parseTenantId, type TenantId } from '../tenant/tenant-id';

/** The context's knowledge namespace as a TenantId (validated again: it names a partition). */
export function knowledgeNamespace(ctx: TenantContext): TenantId {
  return parseTenantId(ctx.policy.knowledgeNamespace);
}
