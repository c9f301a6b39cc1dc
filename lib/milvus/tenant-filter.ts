/**
 * The Milvus boolean expression that confines a query to one tenant. A filter expression is
 * code; it is built here, and only from a `TenantId`, whose pattern (lowercase letters,
 * digits, `-`, `_`) cannot close the string literal or add an operator.
 */
import type { TenantId } from '../tenant/tenant-id';
import { TENANT_COLLECTION_FIELDS } from './client';

export function tenantFilter(tenant: TenantId): string {
  return `${TENANT_COLLECTION_FIELDS.tenantId} == "${tenant}"`;
}
