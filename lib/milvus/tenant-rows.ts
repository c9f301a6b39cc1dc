/**
 * What every store of tenant rows in Milvus does alike (retrieval's knowledge store, the
 * semantic cache's store): open its collection, check a call's status, count a tenant's rows.
 * Each store names its own error (a retrieval outage, a semantic-cache miss), so each helper
 * takes the error to throw.
 */
import { ConsistencyLevelEnum, ErrorCode, type MilvusClient } from '@zilliz/milvus2-sdk-node';
import type { TenantId } from '../tenant/tenant-id';
import { MilvusOperationError, ensureTenantCollection, type TenantCollectionSpec } from './client';
import { tenantFilter } from './tenant-filter';

/** Builds the store's own error from a message. */
export type MilvusFailure = (message: string) => Error;

/** Throws `fail('<what> failed: <reason>')` unless Milvus says the call succeeded. */
export function checkStatus(
  status: { error_code: string | number; reason: string },
  what: string,
  fail: MilvusFailure,
): void {
  if (status.error_code !== ErrorCode.SUCCESS) throw fail(`${what} failed: ${status.reason}`);
}

/**
 * Opens (creating if missing) a tenant collection; one holding vectors of another model or
 * size is `mismatch(message)`. Any other error is thrown as it is.
 */
export async function openTenantCollection(
  client: MilvusClient,
  spec: TenantCollectionSpec,
  mismatch: MilvusFailure,
): Promise<void> {
  try {
    await ensureTenantCollection(client, spec);
  } catch (e) {
    if (e instanceof MilvusOperationError) throw mismatch(e.message);
    throw e;
  }
}

/** Rows of `tenant` in the collection now (strongly consistent). */
export async function countTenantRows(
  client: MilvusClient,
  collection: string,
  tenant: TenantId,
  fail: MilvusFailure,
): Promise<number> {
  const res = await client.query({
    collection_name: collection,
    filter: tenantFilter(tenant),
    output_fields: ['count(*)'],
    consistency_level: ConsistencyLevelEnum.Strong,
  });
  checkStatus(res.status, 'count', fail);
  return Number(res.data[0]?.['count(*)'] ?? 0);
}
